"""Imputation with the TSLib protocol on any CSV, the TST imputer beside the simple baselines.

TSLib (Wu et al., TimesNet, ICLR 2023): the file is cut into train / validation / test rows
(ETT files: 12 / 4 / 4 months; any other file: 70 / 10 / 20 %), values are z-scored with the
training rows' mean and std, every window of 96 rows (stride 1, nothing dropped) of the
evaluated split gets random point masks at 12.5 / 25 / 37.5 / 50 %, and MSE / MAE are taken on
the masked points only. Each window is imputed from its own observed values: the TST completes
every 24-row sub-window (stride 1, predictions averaged).

For every dataset and seed the imputer is trained here on the training rows only with the
preset (default config/etth1-impute.toml; its TST alone, as `tsdiff pretrain-tst`, which is the
imputer of `tsdiff impute --model`), and seeds change both the training and the masks. A file
without a date column is read as regular rows. ``--split val`` scores the validation rows,
which is where settings may be chosen; ``--split test`` (default) is the reported figure.

    python benchmarks/impute_datasets.py [--data etth1 energy stock] [--seeds 0 1 2] [--split test|val]
        [--set tst.residual=false …] [--config PATH]

Reference (ETTh1, test): TimesNet average MSE 0.078 / MAE 0.187 (published).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _seeds import parse_value, seed_cell
from tsdiff_cli.data.forecast import read_series
from tsdiff_cli.data.scaling import Scaler
from tsdiff_cli.data.sources import read_frame
from tsdiff_cli.data.timekd import scheme_for, tslib_borders
from tsdiff_cli.jobs.architectures import generator_config
from tsdiff_cli.jobs.generate import train_generator
from tsdiff_cli.metrics.imputation import BASELINE_FILLS, errors
from tsdiff_cli.models.generator import Generator
from tsdiff_cli.models.inpaint import tst_fill
from tsdiff_cli.runs import TST_FILE, run_model
from tsdiff_cli.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
RATES = (0.125, 0.25, 0.375, 0.5)
WINDOW = 96
PUBLISHED = {"etth1": "TimesNet (published) avg MSE 0.078 / MAE 0.187"}
METHODS = ("imputer", "linear", "locf", "mean")


def overrides(items: list[str]) -> dict:
    out: dict = {}
    for item in items:
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = parse_value(value)
    return out


def train_imputer(config: Path, data: str, seed: int, work: Path, extra: dict) -> tuple[Generator, Scaler, float]:
    """The preset's TST trained on the training rows of ``data``: (a generator holding it, its
    [0, 1] scaler, minutes)."""
    series = read_series(data)
    rows = len(series.values)
    train_end = tslib_borders(scheme_for(Path(series.path).stem), rows, WINDOW)["train"][1]
    frame = read_frame(series.path)
    source = work / f"{Path(series.path).stem}-train-{seed}.csv"
    frame.iloc[:train_end].to_csv(source, index=False)
    over = {"data": {"source": str(source), "output": work / f"{source.stem}.h5", "seed": seed},
            "train": {"runs_dir": work / "runs", "device": "cpu", "seed": seed}}
    for section, values in extra.items():
        over.setdefault(section, {}).update(values)
    settings = load_settings(config, over)
    if series.time_column is None:  # regular rows (an override of None would read as "not given")
        data = settings.data.model_copy(update={"time_column": None, "freq": None})
        settings = settings.model_copy(update={"data": data})
    t0 = time.time()
    result = train_generator(settings, config.stem, command="pretrain-tst", tst_only=True)
    minutes = (time.time() - t0) / 60
    tensors, meta = run_model(result.run, "tst", "tsdiff pretrain-tst CONFIG", TST_FILE)
    model = Generator(generator_config(settings, settings.data.seq_len, len(series.columns)))
    model.load_file_tensors(tensors, tst_only=True)  # with [model] quantiles, the map the TST worked in
    return model.eval(), Scaler.from_json(meta["scaler"]), minutes


def score(data: str, model: Generator, scaler: Scaler, split: str, seed: int, rates) -> dict:
    series = read_series(data)
    values = np.where(series.missing, np.nan, series.values)
    rows = len(values)
    borders = tslib_borders(scheme_for(Path(series.path).stem), rows, WINDOW)
    b0, b1 = borders["train"]
    mean, std = np.nanmean(values[b0:b1], 0), np.nanstd(values[b0:b1], 0)
    std = np.where(std > 0, std, 1.0)
    z = (values - mean) / std
    lo, hi = borders[split]
    windows = np.lib.stride_tricks.sliding_window_view(z[lo:hi], WINDOW, axis=0).transpose(0, 2, 1)
    out = {"windows": len(windows)}
    for rate in rates:
        mask = (np.random.default_rng([seed, int(rate * 1000)]).random(windows.shape) <= rate) & ~np.isnan(windows)
        gappy = np.where(mask, np.nan, windows)
        line = {name: errors(fill(gappy), windows, mask) for name, fill in BASELINE_FILLS.items()}
        x01 = torch.from_numpy(scaler.transform(gappy * std + mean).astype(np.float32))
        with torch.inference_mode():
            filled = (scaler.inverse(tst_fill(model, x01).double().numpy()) - mean) / std
        line["imputer"] = errors(filled, windows, mask)
        out[rate] = line
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "config" / "etth1-impute.toml")
    ap.add_argument("--data", nargs="+", default=["etth1", "energy", "stock"], help="shipped names or CSV / Parquet paths")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--split", choices=("test", "val"), default="test",
                    help="val: the validation rows (for choosing settings); test: the reported figure")
    ap.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    ap.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help="settings to change, e.g. tst.residual=false")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (2: this machine's cores)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    extra = overrides(args.set)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for data in args.data:
            results[data] = []
            for seed in args.seeds:
                model, scaler, minutes = train_imputer(args.config, data, seed, Path(tmp), extra)
                t0 = time.time()
                r = score(data, model, scaler, args.split, seed, args.rates)
                print(f"  {data} seed {seed}: trained {minutes:.1f} min, scored {r['windows']} {args.split} windows in "
                      f"{(time.time() - t0) / 60:.1f} min; " + "  ".join(
                          f"{rate:g}: {r[rate]['imputer']['mse']:.4f} vs linear {r[rate]['linear']['mse']:.4f}"
                          for rate in args.rates), flush=True)
                results[data].append(r)

    print(f"\nImputation, TSLib protocol ({args.split} rows, windows of {WINDOW}), {args.config.name}"
          + (f" with {' '.join(args.set)}" if args.set else "")
          + f"; MSE / MAE in z-space on the masked points, medians over seeds {args.seeds} (± max − min of the MSE)")
    for data, rows in results.items():
        print(f"\n{data} ({rows[0]['windows']} windows)")
        print(f"{'mask':>6} " + " ".join(f"{m:>22}" for m in METHODS) + "   imputer ≤ linear")
        avgs = {m: [] for m in METHODS}
        for rate in args.rates:
            cells = []
            for m in METHODS:
                mse = [r[rate][m]["mse"] for r in rows]
                mae = np.median([r[rate][m]["mae"] for r in rows])
                cells.append(f"{seed_cell(mse, 3)}/{mae:.4f}")
            ok = np.median([r[rate]["imputer"]["mse"] for r in rows]) <= np.median([r[rate]["linear"]["mse"] for r in rows])
            print(f"{rate:>6.3f} " + " ".join(f"{c:>22}" for c in cells) + f"   {'yes' if ok else 'NO'}")
        for m in METHODS:
            avgs[m] = [np.mean([r[rate][m]["mse"] for rate in args.rates]) for r in rows]
        maes = {m: np.median([np.mean([r[rate][m]["mae"] for rate in args.rates]) for r in rows]) for m in METHODS}
        print(f"{'avg':>6} " + " ".join(f"{seed_cell(avgs[m], 3) + '/' + format(maes[m], '.4f'):>22}" for m in METHODS))
        if data in PUBLISHED and args.split == "test":
            print(PUBLISHED[data])


if __name__ == "__main__":
    main()
