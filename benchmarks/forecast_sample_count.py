"""How much of a forecaster's median / mean MSE is the Monte-Carlo noise of its sample count?

One trained forecast run, ETTh1's 2 785 test windows (96→96), M samples drawn once; the scores
of the first 100, 200, … of them, beside the deterministic head's MSE and the mean per-element
sample variance (the mean of M independent samples adds about variance / M to the MSE).

    python benchmarks/forecast_sample_count.py RUN [--samples 100 200 400]

Memory: M × 2 785 × 96 × 7 float32, twice over while the variance is taken (400 samples: 6 GB).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    import torch

    from tsdiff_cli.data.forecast import ForecastWindows, read_series, row_phase, split_borders
    from tsdiff_cli.jobs.forecast import _all, _sample_all, load_forecaster
    from tsdiff_cli.metrics.forecast import forecast_scores
    from tsdiff_cli.runs import run_settings

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a run made by `tsdiff forecast config/etth1-forecast.toml`")
    ap.add_argument("--samples", type=int, nargs="+", default=[100, 200, 400], help="sample counts to score")
    args = ap.parse_args()

    p = run_settings(args.run).forecast
    model, info = load_forecaster(args.run)
    series = read_series(p.data, p.columns, p.time_column)
    borders = split_borders(series.path.stem if p.split == "auto" else series.path.name, len(series.values),
                            p.seq_len, p.pred_len, p.split)
    z = torch.tensor((series.values - info["mean"]) / info["std"], dtype=torch.float32)
    phase = torch.from_numpy(row_phase(series.times, info["t0"], info["freq"], p.cycle, len(z)))
    test = ForecastWindows(z, *borders["test"], p.seq_len, p.pred_len)
    start = time.perf_counter()
    with torch.inference_mode():
        draws, det = _sample_all(model.eval(), test, phase, max(args.samples), p.steps, p.solver, p.sample_windows,
                                 p.seed, lambda *a: None, "")
    _, y = _all(test)
    print(f"{len(test)} test windows, {max(args.samples)} samples in {time.perf_counter() - start:.0f} s")
    print(f"deterministic head MSE {((det - y) ** 2).mean():.4f}; mean sample variance {draws.var(0, ddof=1).mean():.4f}")
    print(f"{'samples':>8} {'MSE median':>11} {'MSE mean':>9} {'CRPS':>7} {'cov 50%':>8} {'cov 90%':>8}")
    for m in sorted(args.samples):
        sc = forecast_scores(draws[:m], y, scale=(info["mean"], info["std"]))
        print(f"{m:8d} {sc['mse_median']:11.4f} {sc['mse_mean']:9.4f} {sc['crps']:7.4f} {sc['coverage50']:8.3f} {sc['coverage90']:8.3f}")


if __name__ == "__main__":
    main()
