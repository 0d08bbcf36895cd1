"""ETTh1 imputation with the TSLib protocol: the whole generator (TST and diffusion inpainting)
against baselines. The TST-only table over several datasets is benchmarks/impute_datasets.py.

TSLib (Wu et al., TimesNet, ICLR 2023): windows of 96 hours from the test split (rows
11424–14399, stride 1, all 2 881 windows: no drop_last), values z-scored with the training
split's mean and std, random point masks at 12.5 / 25 / 37.5 / 50 %, MSE and MAE on the masked
points only. Each window is imputed from its own observed values: the TST completes every
24-step sub-window (stride 1, predictions averaged); diffusion inpainting tiles it with four.

The generator is trained here on the training rows only (config/etth1-impute.toml), unless
--run names one. Reference: TimesNet average MSE 0.078 / MAE 0.187.

    python benchmarks/impute_etth1.py [--run RUN] [--minutes 10] [--samples 0] [--diffusion-windows 300] [--start-sigma 0.3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsdiff_cli.data.scaling import Scaler
from tsdiff_cli.data.sources import shipped_path
from tsdiff_cli.metrics.imputation import BASELINE_FILLS, coverage, errors, fair_crps
from tsdiff_cli.models.inpaint import inpaint, tst_fill
from tsdiff_cli.settings import load_settings
from tsdiff_cli.jobs.generate import load_generator, train_generator

REPO = Path(__file__).resolve().parents[1]
RATES = (0.125, 0.25, 0.375, 0.5)
TRAIN_END, TEST = 12 * 30 * 24, (16 * 30 * 24 - 96, 20 * 30 * 24)  # TSLib ETT-hour borders, seq_len 96


def train_run(minutes: float, workdir: Path) -> Path:
    frame = pd.read_csv(shipped_path("etth1"))
    source = workdir / "ETTh1-train.csv"
    frame.iloc[:TRAIN_END].to_csv(source, index=False)
    settings = load_settings(REPO / "config" / "etth1-impute.toml",
                             {"data": {"source": str(source), "output": workdir / "etth1-train.h5"},
                              "train": {"max_minutes": minutes, "runs_dir": workdir / "runs", "device": "cpu"}})
    t0 = time.time()
    result = train_generator(settings, "etth1-impute")
    print(f"trained {result.run.name}: {result.steps} steps in {(time.time() - t0) / 60:.1f} min ({result.reason})")
    return result.run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a trained generator run (default: train one here)")
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget when training here")
    ap.add_argument("--samples", type=int, default=0, help="diffusion inpaintings per window (0: TST only)")
    ap.add_argument("--diffusion-windows", type=int, default=300, help="test windows scored with diffusion (its cost)")
    ap.add_argument("--steps", type=int, default=18, help="Heun steps of inpainting")
    ap.add_argument("--start-sigma", type=float, default=0.3,
                    help="start inpainting from the TST completion noised to this σ (0: from pure noise)")
    ap.add_argument("--rates", type=float, nargs="+", default=list(RATES), help="mask rates")
    args = ap.parse_args()
    torch.set_num_threads(2)

    work = Path(tempfile.mkdtemp(prefix="tsdiff-impute-"))
    run = args.run or train_run(args.minutes, work)
    model, meta = load_generator(run, torch.device("cpu"))
    scaler = Scaler.from_json(meta["scaler"])

    values = pd.read_csv(shipped_path("etth1")).iloc[:, 1:].to_numpy(np.float64)
    mean, std = values[:TRAIN_END].mean(0), values[:TRAIN_END].std(0)
    z = (values - mean) / std
    windows = np.lib.stride_tricks.sliding_window_view(z[TEST[0]:TEST[1]], 96, axis=0).transpose(0, 2, 1)
    print(f"{len(windows)} test windows of 96 h × {windows.shape[2]} variables; run {run}")

    def to01(zv):
        return torch.from_numpy(scaler.transform(zv * std + mean).astype(np.float32))

    def from01(x):
        return (scaler.inverse(x.double().numpy()) - mean) / std

    rows = []
    for rate in args.rates:
        mask = np.random.default_rng([0, int(rate * 1000)]).random(windows.shape) <= rate
        gappy = np.where(mask, np.nan, windows)
        line = {"rate": rate}
        for name, fill in BASELINE_FILLS.items():
            line[name] = errors(fill(gappy), windows, mask)
        t0 = time.perf_counter()
        with torch.inference_mode():
            filled = from01(tst_fill(model, to01(gappy)))
        line["tst_s_per_1000"] = (time.perf_counter() - t0) / len(windows) * 1000
        line["tst"] = errors(filled, windows, mask)
        if args.samples >= 2:
            k = min(args.diffusion_windows, len(windows))
            pick = np.random.default_rng(3).choice(len(windows), k, replace=False)
            t0 = time.perf_counter()
            draws = from01(inpaint(model, to01(gappy[pick]), args.samples, steps=args.steps, seed=0,
                                   start_sigma=args.start_sigma or None))
            line["diff_s_per_1000"] = (time.perf_counter() - t0) / k * 1000
            med = np.median(draws, axis=0)
            line["diffusion"] = errors(med, windows[pick], mask[pick])
            line["diffusion"]["crps"] = float(fair_crps(draws[:, mask[pick]], windows[pick][mask[pick]]).mean())
            lo, hi = np.quantile(draws[:, mask[pick]], [0.05, 0.95], axis=0)
            line["diffusion"]["coverage90"] = coverage(lo, hi, windows[pick][mask[pick]])
            line["tst_same_windows"] = errors(filled[pick], windows[pick], mask[pick])
            line["linear_same_windows"] = errors(BASELINE_FILLS["linear"](gappy[pick]), windows[pick], mask[pick])
        rows.append(line)
        print(f"rate {rate}: " + "  ".join(f"{k} {v['mse']:.4f}/{v['mae']:.4f}" for k, v in line.items() if isinstance(v, dict)),
              flush=True)

    print("\nETTh1 imputation, TSLib protocol, z-space MSE / MAE on masked points (all test windows)")
    names = ["tst", "linear", "locf", "mean"]
    print(f"{'mask':>6} " + " ".join(f"{n:>15}" for n in names))
    for line in rows:
        print(f"{line['rate']:>6.3f} " + " ".join(f"{line[n]['mse']:>7.4f}/{line[n]['mae']:.4f}" for n in names))
    avg = {n: (np.mean([r[n]["mse"] for r in rows]), np.mean([r[n]["mae"] for r in rows])) for n in names}
    print(f"{'avg':>6} " + " ".join(f"{avg[n][0]:>7.4f}/{avg[n][1]:.4f}" for n in names))
    print("TimesNet (published) avg 0.078 / 0.187")
    print(f"TST completion: {np.mean([r['tst_s_per_1000'] for r in rows]):.2f} s per 1000 windows of 96 h")
    if args.samples >= 2:
        start = "pure noise" if not args.start_sigma else f"the TST completion at σ {args.start_sigma:g}"
        print(f"\ndiffusion inpainting from {start}, {args.samples} samples, {args.steps} Heun steps, on {min(args.diffusion_windows, len(windows))} "
              "random test windows (a subset: its cost), median vs TST and linear on the same windows:")
        for line in rows:
            d, t, lin = line["diffusion"], line["tst_same_windows"], line["linear_same_windows"]
            print(f"{line['rate']:>6.3f} diffusion {d['mse']:.4f}/{d['mae']:.4f} (CRPS {d['crps']:.4f}, cov90 {d['coverage90']:.2f})  "
                  f"tst {t['mse']:.4f}/{t['mae']:.4f}  linear {lin['mse']:.4f}/{lin['mae']:.4f}")
        print(f"diffusion: {np.mean([r['diff_s_per_1000'] for r in rows]):.1f} s per 1000 windows of 96 h")


if __name__ == "__main__":
    main()
