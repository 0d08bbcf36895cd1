"""How steady is the quick discriminative score that chooses the kept model during training?

For each generator run given, and each sampling seed, the quick profile (3 repeats of 2000
discriminator iterations) is computed three ways: N sampled against all real windows, N sampled
against N real windows, and as many sampled as there are real windows. A score fit to choose the
kept model must rank two runs of known full-protocol quality the same way for every seed.

    python benchmarks/quick_score_noise.py RUN [RUN ...] [--samples 1000] [--seeds 0 1 2]

Each run is sampled in float32 with its own config's steps and churn, against the dataset its config
names (made by preprocess if missing, as `tsdiff train` would); the classifier settings are the
default quick profile's. The real subset of the second variant is drawn with each seed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from tsdiff_cli.data.arrays import gap_free
    from tsdiff_cli.metrics.discriminative import discriminative_score
    from tsdiff_cli.models.generator import sample_windows
    from tsdiff_cli.jobs.generate import ensure_dataset, load_generator
    from tsdiff_cli.runs import run_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="generator run directories")
    parser.add_argument("--samples", type=int, default=1000, help="N of the reduced variants")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="sampling and classifier seeds")
    args = parser.parse_args()

    print(f"{'run':<40} {'variant':<28} " + "  ".join(f"seed {s}" for s in args.seeds) + "   seconds")
    for run in args.runs:
        settings = run_settings(run)
        ds = ensure_dataset(settings)
        real = ds.target[gap_free(ds.target)].astype(np.float32)
        model, _ = load_generator(run, torch.device("cpu"))
        small = min(args.samples, len(real))
        variants = {
            f"{small} vs all {len(real)} real": lambda seed: (real, small),
            f"{small} vs {small} real": lambda seed: (real[np.random.default_rng(seed).permutation(len(real))[:small]], small),
            f"{len(real)} vs {len(real)} real": lambda seed: (real, len(real)),
        }
        for name, pick in variants.items():
            scores, start = [], time.perf_counter()
            for seed in args.seeds:
                ref, n = pick(seed)
                gen = sample_windows(model, n, steps=settings.sample.steps, churn=settings.sample.churn, seed=seed)
                scores.append(float(np.mean(discriminative_score(ref, gen, repeats=3, iterations=2000, seed=seed))))
            seconds = (time.perf_counter() - start) / len(args.seeds)
            print(f"{str(run):<40} {name:<28} " + "  ".join(f"{s:6.3f}" for s in scores) + f"   {seconds:7.0f}", flush=True)


if __name__ == "__main__":
    main()
