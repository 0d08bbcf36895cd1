"""Where generated windows differ from real ones, feature by feature: a diagnosis for a dataset the
discriminative score says is far off (e.g. energy's 28 features).

    python benchmarks/feature_stats.py RUN [-n 2000] [--seed 7]

Samples ``-n`` windows from RUN (seed ``--seed``: not a selection seed) and compares them with as
many of the run's dataset's *observed* values (gaps ignored; the benchmark's removed values are
never read), in the dataset's [0, 1] space: per feature the mean, the standard deviation across
windows and within a window, the mean |step-to-step change| (roughness), the lag-1
autocorrelation and the share of values at the feature's minimum. Rows are sorted by the largest
relative difference, so the features a classifier finds easiest come first; then the
discriminative score with one feature at a time replaced by real values (the quick profile)
shows which feature the classifier uses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from tsdiff_cli.data.store import read_dataset
from tsdiff_cli.jobs.generate import sample_from_run
from tsdiff_cli.runs import run_model, run_settings


def stats(x: np.ndarray) -> dict[str, np.ndarray]:
    """Per-feature statistics of windows (N, T, F) that may hold NaN."""
    d = np.diff(x, axis=1)
    a, b = x[:, :-1], x[:, 1:]
    ok = ~np.isnan(a) & ~np.isnan(b)
    am, bm = np.where(ok, a, np.nan), np.where(ok, b, np.nan)
    cov = np.nanmean((am - np.nanmean(am, axis=(0, 1))) * (bm - np.nanmean(bm, axis=(0, 1))), axis=(0, 1))
    ac = cov / (np.nanstd(am, axis=(0, 1)) * np.nanstd(bm, axis=(0, 1)) + 1e-12)
    lo = np.nanmin(x, axis=(0, 1))
    return {
        "mean": np.nanmean(x, axis=(0, 1)),
        "std across": np.nanstd(np.nanmean(x, axis=1), axis=0),
        "std within": np.nanmean(np.nanstd(x, axis=1), axis=0),
        "roughness": np.nanmean(np.abs(d), axis=(0, 1)),
        "lag-1 corr": ac,
        "at min": np.nanmean(np.where(np.isnan(x), np.nan, x <= lo + 1e-3), axis=(0, 1)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--ablate", action="store_true", help="also the per-feature replacement scores (slower)")
    args = ap.parse_args()
    rs = run_settings(args.run)
    _, meta = run_model(args.run, "generator", "tsdiff train CONFIG", tensors=False)
    ds = read_dataset(Path(meta["dataset"]))
    real = ds.observed[np.random.default_rng(args.seed).permutation(len(ds.observed))[: args.n]]
    gen, _, _ = sample_from_run(args.run, len(real), steps=rs.sample.steps, seed=args.seed + 10_000,
                                batch_size=rs.sample.batch_size, churn=rs.sample.churn, precision=rs.sample.precision)
    sr, sg = stats(real), stats(gen)
    cols = json.loads(meta["columns"])
    gap = np.max([np.abs(sg[k] - sr[k]) / (np.abs(sr[k]) + 0.02) for k in sr], axis=0)
    print(f"{'feature':>14} " + " ".join(f"{k:>21}" for k in sr) + "   (real → generated)")
    for f in np.argsort(-gap):
        print(f"{cols[f]:>14} " + " ".join(f"{sr[k][f]:>9.3f} → {sg[k][f]:<9.3f}" for k in sr))
    if args.ablate:
        from tsdiff_cli.metrics.discriminative import gappy_discriminative_score

        kw = dict(seed=1, repeats=2, iterations=1000)
        print(f"selection-style disc. of the samples: {np.mean(gappy_discriminative_score(real, gen, **kw)):.3f}")
        for f in np.argsort(-gap)[:8]:
            mixed = gen.copy()
            donor = ds.observed[np.random.default_rng(args.seed + 1).permutation(len(ds.observed))[: len(gen)], :, f]
            mixed[:, :, f] = np.where(np.isnan(donor), gen[:, :, f], donor)
            print(f"  with {cols[f]} real: {np.mean(gappy_discriminative_score(real, mixed, **kw)):.3f}")


if __name__ == "__main__":
    main()
