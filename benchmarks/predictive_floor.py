"""The predictive score's floor: TimeGAN's predictive GRU trained on the *real* windows instead of
generated ones (train on real, test on real), with the full protocol's 5000 iterations.

    python benchmarks/predictive_floor.py DATASET.h5 [--repeats 3] [--seed 5]

A generator whose predictive score is near this floor makes data as useful for the task as the
real windows; a published figure far below it was not computed on these windows this way. Reads
the benchmark dataset's ground truth (``target``: complete windows, as the protocol scores on).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from tsdiff_cli.data.store import read_dataset
from tsdiff_cli.metrics.predictive import predictive_score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(2)
    ds = read_dataset(args.dataset)
    if not ds.has_target:
        raise SystemExit(f"{args.dataset} has no target (complete windows): make it with [data] missing_rate > 0")
    real = ds.target
    scores = predictive_score(real, real, repeats=args.repeats, seed=args.seed)
    print(f"{args.dataset}: {len(real)} windows; train-on-real predictive MAE "
          + " / ".join(f"{v:.4f}" for v in scores) + f" (median {np.median(scores):.4f})")


if __name__ == "__main__":
    main()
