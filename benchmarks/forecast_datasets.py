"""Probabilistic forecasting on several datasets, 96→96, beside the baselines the report prints.

For every dataset and seed, trains the preset (default config/etth1-forecast.toml, unchanged but
for the data) in a temporary folder and scores every test window (stride 1, nothing dropped).
ETT files take TSLib's 12 / 4 / 4-month borders, any other CSV 70 / 10 / 20 % (DESIGN
"Forecast"). A file without a date column cannot place rows in a learnt cycle, so there the
cycle is off (the only change, printed). Prints one table per split: the medians over seeds, and
the spread (max − min); "val" rows are what settings may be chosen on, "test" rows are reported.

    python benchmarks/forecast_datasets.py [--data etth1 energy stock] [--seeds 0 1 2]
        [--set base=none …] [--samples 100] [--config PATH] [--reports DIR]

With ``--reports DIR`` every seed's report is kept there as it finishes (``DATA-seedS.json``), and
a seed whose report is already there is read instead of trained: seeds run as separate processes
(or a run that was stopped) add up to one table with a last call naming them all.

For ETTh1 it also prints the forecast issue's targets (median MSE ≤ 0.375, CRPS ≤ 0.29, ProbTS
CRPS ≤ 0.30, coverage ± 0.05, ≤ 10 steps, training ≤ 20 min, sampling ≤ 120 s).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _seeds import parse_value, seed_cell
from tsdiff_cli.data.forecast import read_series
from tsdiff_cli.jobs.forecast import train_forecaster
from tsdiff_cli.settings import load_settings

REPO = Path(__file__).resolve().parents[1]

TARGETS = [  # (label, key, test, target text): the ETTh1 targets of the forecast issue
    ("median MSE", "mse_median", lambda v: v <= 0.375, "≤ 0.375"),
    ("CRPS (z-space, fair)", "crps", lambda v: v <= 0.29, "≤ 0.29"),
    ("ProbTS CRPS", "crps_probts", lambda v: v <= 0.30, "≤ 0.30"),
    ("coverage 50 %", "coverage50", lambda v: abs(v - 0.5) <= 0.05, "0.45–0.55"),
    ("coverage 90 %", "coverage90", lambda v: abs(v - 0.9) <= 0.05, "0.85–0.95"),
]


def run_one(config: Path, data: str, seed: int, tmp: Path, extra: dict, samples: int | None,
            reports: Path | None = None) -> dict:
    kept = reports / f"{Path(data).stem}-seed{seed}.json" if reports else None
    if kept is not None and kept.exists():
        print(f"  {data} seed {seed}: report read from {kept}", flush=True)
        return json.loads(kept.read_text())
    over = {"forecast": {"data": data, "seed": seed, "runs_dir": tmp / "runs", "device": "cpu", **extra}}
    if samples:
        over["forecast"]["samples"] = samples
    s = load_settings(config, over)
    if s.forecast.cycle and read_series(data, s.forecast.columns, s.forecast.time_column).times is None:
        print(f"  {data} has no date column: cycle = 0")
        over["forecast"]["cycle"] = 0
        s = load_settings(config, over)
    t0 = time.time()
    result = train_forecaster(s, config.stem)
    r = result.report
    print(f"  {data} seed {seed}: {result.epochs} epochs ({result.reason}), {(time.time() - t0) / 60:.1f} min; "
          f"test median MSE {r['model']['mse_median']:.4f}, deterministic {r['baselines']['deterministic head']['mse_median']:.4f}, "
          f"ridge {r['baselines']['linear ridge']['mse_median']:.4f}, cov90 {r['model']['coverage90']:.3f}", flush=True)
    out = {"report": r, "minutes": result.minutes}
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(".json.tmp")
        partial.write_text(json.dumps(out, indent=1))
        os.replace(partial, kept)
    return out


def _verdict(model: float, ridge: float) -> str:
    if abs(model - ridge) < 5e-5:
        return "level"  # calibration gave the ridge all the weight: the median is the ridge forecast
    return "yes" if model < ridge else f"no (+{model - ridge:.4f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "config" / "etth1-forecast.toml")
    ap.add_argument("--data", nargs="+", default=["etth1", "energy", "stock"], help="shipped names or CSV / Parquet paths")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--samples", type=int, default=None, help="samples per test window (default: the config's)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="[forecast] settings to change, e.g. base=none")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (2: this machine's cores)")
    ap.add_argument("--reports", type=Path, help="keep each seed's report here; seeds already there are read, not run")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    extra = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            results[data] = [run_one(args.config, data, seed, Path(tmp), extra, args.samples, args.reports)
                             for seed in args.seeds]

    print(f"\n96→96 forecasting, {args.config.name}" + (f" with {' '.join(args.set)}" if args.set else "")
          + f"; medians over seeds {args.seeds} (± max − min); MSE in z-space (training split's scaler)")
    print("validation windows (what choices may look at): MSE of the point forecasts")
    print(f"{'data':<10} {'deterministic head':>20} {'linear ridge':>20} {'seasonal naive':>20}")
    for data, rows in results.items():
        v = [r["report"]["validation"] for r in rows]
        print(f"{data:<10} " + " ".join(f"{seed_cell([x[f'mse {k}'] for x in v]):>20}"
                                        for k in ("deterministic head", "linear ridge", "seasonal naive")))
    print("test windows (reported): median of the samples, and the point baselines")
    print(f"{'data':<10} {'tsdiff median':>16} {'deterministic':>16} {'linear ridge':>16} {'seasonal naive':>16} "
          f"{'CRPS':>16} {'cov 50 %':>16} {'cov 90 %':>16} {'median ≤ ridge':>15}")
    for data, rows in results.items():
        m = [r["report"]["model"] for r in rows]
        b = [r["report"]["baselines"] for r in rows]
        med, ridge = np.median([x["mse_median"] for x in m]), np.median([x["linear ridge"]["mse_median"] for x in b])
        print(f"{data:<10} {seed_cell([x['mse_median'] for x in m]):>16} "
              + " ".join(f"{seed_cell([x[k]['mse_median'] for x in b]):>16}" for k in ("deterministic head", "linear ridge", "seasonal naive"))
              + f" {seed_cell([x['crps'] for x in m]):>16} {seed_cell([x['coverage50'] for x in m]):>16} "
              f"{seed_cell([x['coverage90'] for x in m]):>16} {_verdict(med, ridge):>15}")
    if "etth1" in results:
        rows = results["etth1"]
        print("\nETTh1 against the forecast issue's targets (medians over seeds):")
        for label, key, ok, text in TARGETS:
            value = float(np.median([r["report"]["model"][key] for r in rows]))
            print(f"  {label:<22} {value:.4f}   target {text:<10} {'met' if ok(value) else 'MISSED'}")
        pr = rows[0]["report"]["protocol"]
        minutes = max(r["minutes"] for r in rows)
        seconds = max(r["report"]["protocol"]["sampling_seconds"] for r in rows)
        print(f"  {'sampling steps':<22} {pr['steps']}        target ≤ 10       {'met' if pr['steps'] <= 10 else 'MISSED'}")
        print(f"  {'training minutes':<22} {minutes:.1f}      target ≤ 20       {'met' if minutes <= 20 else 'MISSED'}")
        print(f"  {'sampling seconds':<22} {seconds:.0f}       target ≤ 120      {'met' if seconds <= 120 else 'MISSED'}"
              f"  ({pr['samples']} samples × {pr['windows']} windows)")


if __name__ == "__main__":
    main()
