"""How long the generation metrics take at the full protocol on stock (3661 × 24 × 6).

Prints seconds per metric. The reference figure to beat (DESIGN.md, public reference
implementation on a 2-core CPU): one discriminative-score repeat ≈ 11.5 s; target ≤ 4 s.

    python benchmarks/metrics_speed.py [--threads N]

"Generated" data is the real set plus N(0, 0.01²) noise, so the classifiers have real work.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tsdiff_cli.data.preprocess import preprocess
from tsdiff_cli.metrics import context_fid, correlation_score, discriminative_score, predictive_score
from tsdiff_cli.settings import DataSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--skip-fid", action="store_true", help="leave out Context-FID (the slowest metric)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        cfg = DataSettings(source="stock", reverse_rows=True, val_fraction=0, test_fraction=0, output=Path(tmp) / "s.h5")
        real = preprocess(cfg).dataset.target
    generated = np.clip(real + np.random.default_rng(0).normal(0, 0.01, real.shape), 0, 1).astype(np.float32)
    print(f"stock: real {real.shape}, generated {generated.shape}, torch threads {torch.get_num_threads()}")

    rows = []

    def timed(label, fn, per=1):
        start = time.perf_counter()
        values = fn()
        seconds = time.perf_counter() - start
        rows.append((label, seconds, seconds / per, float(np.mean(values))))
        print(f"  {label:<44} {seconds:8.2f} s   ({seconds / per:6.2f} s per repeat)   mean {np.mean(values):.4f}", flush=True)
        return seconds

    timed("discriminative, 1 repeat (2000 it)", lambda: discriminative_score(real, generated, repeats=1))
    total = timed("discriminative, 10 repeats (2000 it)", lambda: discriminative_score(real, generated, repeats=10), 10)
    total += timed("predictive, 10 repeats (5000 it)", lambda: predictive_score(real, generated, repeats=10), 10)
    if not args.skip_fid:
        total += timed("Context-FID, 5 repeats (TS2Vec 600 it)", lambda: context_fid(real, generated, repeats=5), 5)
    total += timed("correlation, 5 subsets", lambda: correlation_score(real, generated, subsets=5), 5)
    print(f"  {'full evaluation (the four metrics above)':<44} {total:8.2f} s")


if __name__ == "__main__":
    main()
