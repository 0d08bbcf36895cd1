"""What the discriminator uses to tell a run's samples from the data: a diagnosis from observed
values only (the benchmark's removed values are never read).

    python benchmarks/disc_clues.py RUN [-n 2000] [--seed 7] [--iterations 1000] [--group A,B …] [--no-single]

Every score is the selection-style discriminative score (values + gap channels, 2 repeats,
``--iterations`` steps each) against ``n`` observed windows of the run's dataset:

1. controls on real data: other observed windows as they are (the floor); with Gaussian noise of
   std 0.01 / 0.02 / 0.04 added (does step-to-step jitter give samples away?); with every feature
   taken from a different window (does the joint structure across features?);
2. the samples (seed ``--seed``, not a selection seed): all features; each feature alone (real
   and generated windows cut to that feature), sorted; each ``--group`` of features (comma-separated
   column names) the same way; then the samples with the features that alone score above 0.1
   replaced by observed values of other windows (what is left). ``--no-single`` skips the
   one-feature scores (one classifier per feature: minutes on wide data).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from tsdiff_cli.data.store import read_dataset
from tsdiff_cli.jobs.generate import sample_from_run
from tsdiff_cli.metrics.discriminative import discriminative_score, gappy_discriminative_score, with_gap_channels
from tsdiff_cli.runs import run_model, run_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--group", nargs="*", default=[], help="comma-separated column names scored together")
    ap.add_argument("--no-single", action="store_true", help="skip the one-feature scores")
    args = ap.parse_args()
    t0 = time.time()
    rs = run_settings(args.run)
    _, meta = run_model(args.run, "generator", "tsdiff train CONFIG", tensors=False)
    cols = json.loads(meta["columns"])
    obs = read_dataset(Path(meta["dataset"])).observed
    obs = obs[~np.isnan(obs).all(axis=(1, 2))]
    perm = np.random.default_rng(args.seed).permutation(len(obs))
    n = min(args.n, len(obs) // 2)
    real, other = obs[perm[:n]], obs[perm[n:2 * n]]
    kw = dict(seed=args.seed + 1, repeats=2, iterations=args.iterations)

    def plain(a, b):  # both sides keep their own gaps (same distribution): values and gap channels
        return float(np.mean(discriminative_score(with_gap_channels(a), with_gap_channels(b), **kw)))

    def gappy(a, g):  # complete samples given the gaps of real windows, as selection scores them
        return float(np.mean(gappy_discriminative_score(a, g, **kw)))

    rng = np.random.default_rng(args.seed + 2)
    print(f"{args.run}: {n} observed windows each side, {obs.shape[2]} features")
    print(f"  real vs other real windows:                 {plain(real, other):.3f}")
    for s in (0.01, 0.02, 0.04):
        noisy = other + rng.normal(0, s, other.shape).astype(np.float32)
        print(f"  real vs real + noise of std {s}:            {plain(real, noisy):.3f}")
    mixed = np.stack([other[rng.permutation(n), :, f] for f in range(other.shape[2])], axis=-1)
    print(f"  real vs real, each feature from another window: {plain(real, mixed):.3f}")

    gen, _, _ = sample_from_run(args.run, n, steps=rs.sample.steps, seed=args.seed + 10_000,
                                batch_size=rs.sample.batch_size, churn=rs.sample.churn, precision=rs.sample.precision)
    print(f"  samples (sample seed {args.seed + 10_000}):               {gappy(real, gen):.3f}")
    for group in args.group:
        idx = [cols.index(name) for name in group.split(",")]
        print(f"  {group}: {gappy(real[:, :, idx], gen[:, :, idx]):.3f}")
    if args.no_single:
        return
    alone = {f: gappy(real[:, :, [f]], gen[:, :, [f]]) for f in range(gen.shape[2])}
    order = sorted(alone, key=alone.get, reverse=True)
    print("  each feature alone: " + ", ".join(f"{cols[f]} {alone[f]:.3f}" for f in order))
    clues = [f for f in order if alone[f] > 0.1]
    if clues:
        donor = other[rng.permutation(n)]
        swapped = gen.copy()
        swapped[:, :, clues] = np.where(np.isnan(donor[:, :, clues]), gen[:, :, clues], donor[:, :, clues])
        names = ", ".join(cols[f] for f in clues)
        print(f"  samples with {names} from real windows: {gappy(real, swapped):.3f}")
    print(f"  ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
