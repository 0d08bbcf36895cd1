"""Choose a preset's sampling churn the honest way: on the selection score (observed values only),
never on the reported full-protocol score against the benchmark's ground truth.

    python benchmarks/choose_churn.py RUN [--churn 0 10] [--steps 18] [--seeds 0 1 2]

For each churn, number of sampler steps (default: the run's [sample] steps) and seed: sample
as many windows as the run's selection reference holds (the observed windows `tsdiff train`
selects on), give them the reference's gaps and score them with
the selection score (3 repeats, 2000 iterations, as in training). Seeds here are derived for
this purpose ("choice-*"), distinct from selection's and evaluation's. Prints the median over
seeds per churn.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from tsdiff_cli.data.store import read_dataset
from tsdiff_cli.jobs.generate import sample_from_run
from tsdiff_cli.metrics.discriminative import gappy_discriminative_score
from tsdiff_cli.runs import run_model, run_settings
from tsdiff_cli.training.generator import derived_seed, selection_reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--churn", type=float, nargs="+", default=[0.0, 10.0])
    ap.add_argument("--steps", type=int, nargs="+", default=None,
                    help="sampler steps to try (default: the run's [sample] steps)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    s = run_settings(args.run)
    _, meta = run_model(args.run, "generator", "tsdiff train CONFIG", tensors=False)
    ds = read_dataset(Path(meta["dataset"]))
    real, which = selection_reference(ds.observed, ds.split, s.train.eval_samples, s.eval.seed)
    steps = args.steps or [s.sample.steps]
    print(f"{len(real)} observed {which} windows; churn {args.churn}; steps {steps}; seeds {args.seeds}")
    for n_steps, churn in [(n, c) for n in steps for c in args.churn]:
        scores = []
        for seed in args.seeds:
            gen, _, _ = sample_from_run(args.run, len(real), steps=n_steps, seed=derived_seed("choice-sample", seed),
                                        batch_size=s.sample.batch_size, churn=churn, precision=s.sample.precision)
            scores.append(float(np.mean(gappy_discriminative_score(
                real, gen, seed=derived_seed("choice-metric", seed), repeats=s.eval.quick_repeats,
                iterations=s.eval.quick_disc_iterations, batch_size=s.eval.batch_size))))
        print(f"steps {n_steps}, churn {churn:g}: selection score median {statistics.median(scores):.4f} "
              f"(seeds: {', '.join(f'{v:.4f}' for v in scores)})", flush=True)


if __name__ == "__main__":
    main()
