"""What the discriminator uses to tell a run's samples from the data: a diagnosis from observed
values only (the benchmark's removed values are never read).

    python benchmarks/disc_clues.py RUN [-n 2000] [--seed 7] [--iterations 1000] [--group A,B …] [--no-single]
                                        [--stretches L] [--lumpy]

Every score is the selection-style discriminative score (values + gap channels, 2 repeats,
``--iterations`` steps each) against ``n`` observed windows of the run's dataset:

1. controls on real data: other observed windows as they are (the floor); with Gaussian noise of
   std 0.01 / 0.02 / 0.04 added (does step-to-step jitter give samples away?); with every feature
   taken from a different window (does the joint structure across features?);
2. the samples (seed ``--seed``, not a selection seed): all features; each feature alone (real
   and generated windows cut to that feature), sorted; each ``--group`` of features (comma-separated
   column names) the same way; then the samples with the features that alone score above 0.1
   replaced by observed values of other windows (what is left). ``--no-single`` skips the
   one-feature scores (one classifier per feature: minutes on wide data);
3. with ``--stretches L``, the same against complete observed data: every window's stretches of
   L steps with all features observed (a gap in a window hides what happens across it), real
   stretches against other real ones (the floor) and against the samples cut at the same steps;
   all features, each ``--group``, each stretch's level alone (its mean held over the stretch:
   how the columns sit together) and its shape alone (the stretch less its mean, × 10, so the
   classifier sees motion a hundredth of the range);
4. with ``--lumpy``, the features with a point mass or a heavy tail (``models.marginal.is_lumpy``
   on the observed values): each one's 99th percentile, share of values at the observed maximum and
   99th percentile of |step change|, real against samples; then the samples scored with those
   features smoothed (3-step mean) or taken from other real windows, and other real windows
   scored with the samples' jitter (sample − its 3-step mean) added on the lumpy features, or on
   the smooth others (lag-1 autocorrelation > 0.5): is it their roughness that gives the samples
   away, and where?
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
from tsdiff_cli.models.marginal import is_lumpy
from tsdiff_cli.runs import run_model, run_settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("-n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--group", nargs="*", default=[], help="comma-separated column names scored together")
    ap.add_argument("--no-single", action="store_true", help="skip the one-feature scores")
    ap.add_argument("--stretches", type=int, default=0, metavar="L",
                    help="also score complete observed stretches of L steps (0: off)")
    ap.add_argument("--lumpy", action="store_true", help="where the point-mass / heavy-tailed features give samples away")
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
    if args.stretches:
        stretch_clues(obs, gen, cols, args.group, args.stretches, args.seed, kw)
    if args.lumpy:
        lumpy_clues(obs, real, other, gen, cols, plain, gappy)
    if args.no_single:
        print(f"  ({time.time() - t0:.0f} s)")
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


def stretch_clues(obs, gen, cols, groups, length, seed, kw) -> None:
    """Scores on complete stretches of ``length`` observed steps (see the module's docstring, 3)."""
    whole = ~np.isnan(obs).any(axis=2)  # steps with every feature observed
    runs = np.cumsum(np.pad(whole, ((0, 0), (1, 0))).astype(int), axis=1)
    starts_ok = runs[:, length:] - runs[:, :-length] == length  # (N, T − L + 1): a stretch starts here
    rows = np.flatnonzero(starts_ok.any(axis=1))
    rng = np.random.default_rng(seed + 3)
    n = min(len(gen), len(rows) // 2)
    if n < 100:
        print(f"  stretches of {length}: only {len(rows)} windows hold one; too few to score")
        return
    # one stretch per window, at a start drawn among its own (the first free start has no preference)
    starts = np.array([rng.choice(np.flatnonzero(starts_ok[r])) for r in rows])
    perm = rng.permutation(len(rows))
    a, b = perm[:n], perm[n:2 * n]
    steps = np.arange(length)

    def cut(windows, at):
        return np.take_along_axis(windows, (at[:, None] + steps)[:, :, None], axis=1)

    real, other = cut(obs[rows[a]], starts[a]), cut(obs[rows[b]], starts[b])
    samples = cut(gen[:n], starts[b])  # the samples cut where the other real stretches lie

    def score(x, y):
        return float(np.mean(discriminative_score(x, y, **kw)))

    def level(x):
        return np.repeat(x.mean(axis=1, keepdims=True), length, axis=1)

    print(f"  complete stretches of {length} steps ({len(rows)} windows hold one; {n} a side):")
    print(f"    real vs other real:                {score(real, other):.3f}")
    noisy = other + rng.normal(0, 0.01, other.shape).astype(np.float32)
    print(f"    real vs other real + noise 0.01:   {score(real, noisy):.3f}")
    for name in ["all", *groups]:
        idx = list(range(len(cols))) if name == "all" else [cols.index(c) for c in name.split(",")]
        r, g, o = real[:, :, idx], samples[:, :, idx], other[:, :, idx]
        print(f"    {name}: samples {score(r, g):.3f}; level alone {score(level(r), level(g)):.3f} "
              f"(real {score(level(r), level(o)):.3f}); shape alone {score(10 * (r - level(r)), 10 * (g - level(g))):.3f} "
              f"(real {score(10 * (r - level(r)), 10 * (o - level(o))):.3f})")


def smooth3(x: np.ndarray) -> np.ndarray:
    """Each (complete) window's 3-step centred mean, the ends repeated."""
    p = np.concatenate([x[:, :1], x, x[:, -1:]], axis=1)
    return (p[:, :-2] + p[:, 1:-1] + p[:, 2:]) / 3


def lumpy_clues(obs, real, other, gen, cols, plain, gappy) -> None:
    lumpy = [f for f in range(obs.shape[2]) if is_lumpy(obs[:, :, f][~np.isnan(obs[:, :, f])])]
    rest = [f for f in range(obs.shape[2]) if f not in lumpy]
    print(f"  lumpy features: {', '.join(cols[f] for f in lumpy) or 'none'}")
    for f in lumpy:
        r, g = obs[:, :, f], gen[:, :, f]
        top = np.nanmax(r)
        dr, dg = np.abs(np.diff(r, axis=1)), np.abs(np.diff(g, axis=1))
        print(f"    {cols[f]}: 99th pct real {np.nanpercentile(r, 99):.3f} samples {np.percentile(g, 99):.3f}; "
              f"at the maximum real {np.nanmean(np.abs(r - top) < 1e-6):.4f} samples {np.mean(np.abs(g - top) < 1e-6):.4f}; "
              f"|step| 99th pct real {np.nanpercentile(dr, 99):.3f} samples {np.percentile(dg, 99):.3f}")
    if not lumpy:
        return
    jitter = gen - smooth3(gen)
    smoothed = gen.copy()
    smoothed[:, :, lumpy] = smooth3(gen)[:, :, lumpy]
    print(f"  samples, lumpy features smoothed:                {gappy(real, smoothed):.3f}")
    swapped = gen.copy()
    swapped[:, :, lumpy] = np.where(np.isnan(other[:, :, lumpy]), gen[:, :, lumpy], other[:, :, lumpy])
    print(f"  samples, lumpy features from other real windows: {gappy(real, swapped):.3f}")
    def lag1(f):
        a, b = obs[:, :-1, f].ravel(), obs[:, 1:, f].ravel()
        ok = ~np.isnan(a) & ~np.isnan(b)
        return np.corrcoef(a[ok], b[ok])[0, 1]

    smooth = [f for f in rest if lag1(f) > 0.5]  # jitter on white noise (energy's rv1, rv2) would change its law
    for name, idx in (("lumpy", lumpy), ("smooth (lag-1 autocorrelation > 0.5)", smooth)):
        noisy = other.copy()
        noisy[:, :, idx] = np.clip(other[:, :, idx] + jitter[:, :, idx], 0, 1)
        print(f"  other real + the samples' jitter on the {name} features: {plain(real, noisy):.3f}")


if __name__ == "__main__":
    main()
