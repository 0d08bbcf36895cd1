"""Imputation from TimeKD-layout embeddings: the cache speed-up and the two decoders.

Builds an ETTh1-sized folder in the exact TimeKD layout (tests/timekd_fixture.py: float32 (7, 768)
per file; the vectors are a fixed random projection of each variable's window plus noise, as
real GPT-2 embeddings cannot be made here), then measures
  1. reading the small files against reading the consolidated cache;
  2. the "shared" (per-variable) and "flat" decoders, judged with --holdout against the
     baselines, and the time of each.

    python benchmarks/impute_embeddings.py [--flag train|val] [--pred-len 24] [--holdout 0.1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from timekd_fixture import with_gaps, write_layout  # noqa: E402

from tsdiff_cli.data.sources import shipped_path  # noqa: E402
from tsdiff_cli.data.timekd import locate, read_embeddings  # noqa: E402
from tsdiff_cli.settings import load_settings  # noqa: E402
from tsdiff_cli.jobs.impute import impute  # noqa: E402
from tsdiff_cli.runs import metrics_path  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flag", default="train", choices=["train", "val"])
    ap.add_argument("--pred-len", type=int, default=24)
    ap.add_argument("--holdout", type=float, default=0.1)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tsdiff-emb-"))
    frame = pd.read_csv(shipped_path("etth1"))
    t0 = time.perf_counter()
    leaf = write_layout(work / "emb_out", frame, "ETTh1", seq_len=96, pred_len=args.pred_len, flag=args.flag)
    layout = locate(work / "emb_out")
    print(f"wrote {len(layout.files)} files of (7, 768) float32 in {time.perf_counter() - t0:.1f} s: {leaf}")
    with_gaps(frame, 0.2).to_csv(work / "data.csv", index=False)

    t0 = time.perf_counter()
    emb, _ = read_embeddings(layout)  # the small files, no cache
    files = time.perf_counter() - t0
    t0 = time.perf_counter()
    read_embeddings(layout, work / "runs" / "cache")  # files again, and the cache written
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    emb2, cached2 = read_embeddings(layout, work / "runs" / "cache")
    cached = time.perf_counter() - t0
    assert cached2 and (emb == emb2).all()
    print(f"read {emb.shape[0]} windows: {len(layout.files)} files {files:.2f} s; files + writing the cache {first:.2f} s; "
          f"the cache {cached:.3f} s → {files / cached:.1f}× faster (warm page cache)")

    print(f"\nholdout {args.holdout} of the observed values in the covered rows, z-space (train-split statistics)")
    print(f"{'decoder':<10} {'epochs':>6} {'seconds':>8} {'MSE':>8} {'MAE':>8}   linear MSE / MAE")
    for kind in ("shared", "flat"):
        s = load_settings(None, {"impute": {"input": work / "data.csv", "emb_dir": work / "emb_out", "decoder": kind,
                                            "holdout": args.holdout, "runs_dir": work / "runs"}})
        t0 = time.perf_counter()
        result = impute(s, f"bench-{kind}")
        seconds = time.perf_counter() - t0
        m, lin = result.report["method"], result.report["baselines"]["linear"]
        epochs = sum(1 for line in metrics_path(result.run).read_text().splitlines() if '"val_loss"' in line)
        print(f"{kind:<10} {epochs:>6} {seconds:>8.1f} {m['mse']:>8.4f} {m['mae']:>8.4f}   {lin['mse']:.4f} / {lin['mae']:.4f}")


if __name__ == "__main__":
    main()
