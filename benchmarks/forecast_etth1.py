"""ETTh1 96→96 probabilistic forecasting against the targets of the forecast issue.

Trains config/etth1-forecast.toml (TSLib split, StandardScaler on the training months) in a
temporary folder, evaluates all 2 785 test windows (stride 1, nothing dropped), and prints each
figure beside its target: median MSE ≤ 0.375 (iTransformer 0.386, linear 0.383), CRPS ≤ 0.29
per element in z-space (linear + Gaussian 0.30–0.33), ProbTS CRPS ≤ 0.30 (iTransformer 0.321,
CSDI 0.437), coverage within ± 0.05 of 50 % and 90 %, ≤ 10 sampling steps, training ≤ 20 min,
100 samples for every test window ≤ 120 s. Each --seeds value trains its own model.

    python benchmarks/forecast_etth1.py [--seeds 0 1 2] [--steps 5] [--samples 100] [--config PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tsdiff_cli.settings import load_settings
from tsdiff_cli.jobs.forecast import format_forecast_report, train_forecaster

REPO = Path(__file__).resolve().parents[1]

TARGETS = [  # (label, key, test, target text)
    ("median MSE", "mse_median", lambda v: v <= 0.375, "≤ 0.375"),
    ("CRPS (z-space, fair)", "crps", lambda v: v <= 0.29, "≤ 0.29"),
    ("ProbTS CRPS", "crps_probts", lambda v: v <= 0.30, "≤ 0.30"),
    ("coverage 50 %", "coverage50", lambda v: abs(v - 0.5) <= 0.05, "0.45–0.55"),
    ("coverage 90 %", "coverage90", lambda v: abs(v - 0.9) <= 0.05, "0.85–0.95"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "config" / "etth1-forecast.toml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=None, help="sampling steps (default: the config's)")
    ap.add_argument("--samples", type=int, default=None, help="samples per window (default: the config's)")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            over = {"forecast": {"seed": seed, "runs_dir": Path(tmp) / "runs", "device": "cpu", "steps": args.steps,
                                 "samples": args.samples}}
            settings = load_settings(args.config, over)
            t0 = time.time()
            result = train_forecaster(settings, args.config.stem)
            total = time.time() - t0
            report = result.report
            print(f"\nseed {seed}: training {result.minutes:.1f} min ({result.reason}), whole run {total / 60:.1f} min")
            print(format_forecast_report(report))
            rows.append((report["model"], result.minutes, report["protocol"]["sampling_seconds"], report["protocol"]["steps"]))
    print("\nTargets (mean over seeds" + (f" {args.seeds}" if len(args.seeds) > 1 else f" {args.seeds[0]}") + "):")
    for label, key, ok, text in TARGETS:
        values = np.array([r[0][key] for r in rows])
        spread = f" ± {values.std():.4f}" if len(values) > 1 else ""
        print(f"  {label:<22} {values.mean():.4f}{spread}   target {text:<10} {'met' if ok(values.mean()) else 'MISSED'}")
    minutes = max(r[1] for r in rows)
    seconds = max(r[2] for r in rows)
    steps = rows[0][3]
    print(f"  {'sampling steps':<22} {steps}        target ≤ 10       {'met' if steps <= 10 else 'MISSED'}")
    print(f"  {'training minutes':<22} {minutes:.1f}      target ≤ 20       {'met' if minutes <= 20 else 'MISSED'}")
    print(f"  {'sampling seconds':<22} {seconds:.0f}       target ≤ 120      {'met' if seconds <= 120 else 'MISSED'}"
          f"  ({args.samples or 100} samples × 2 785 windows)")


if __name__ == "__main__":
    main()
