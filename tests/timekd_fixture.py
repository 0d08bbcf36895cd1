"""Embedding folders in the exact TimeKD layout, for tests and benchmarks.

TimeKD's embeddings need GPT-2, so the vectors here are a fixed random projection of each
variable's window (z-scored with train statistics) plus noise: a decoder can only fill gaps
well by learning to read them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tsdiff_cli.data.timekd import scheme_for, tslib_borders, embedding_window_count


def write_layout(root: Path, frame: pd.DataFrame, name: str, *, seq_len: int, pred_len: int, flag: str,
                 width: int = 768, batch: int = 1, shape: str = "2d", noise: float = 0.05, seed: int = 0,
                 csv_suffix: bool = False) -> Path:
    """Write ``{root}/{name}/{pred_len}/{flag}/{i}.h5`` for the complete ``frame`` (a date column
    first, then the values) and return the leaf folder. ``shape``: "2d" writes (N, E) per file,
    "3d" writes (batch, N, E)."""
    import h5py

    values = frame.iloc[:, 1:].to_numpy(dtype=np.float64)
    rows = len(values)
    scheme = scheme_for(name)
    borders = tslib_borders(scheme, rows, seq_len)
    train_end = borders["train"][1]
    z = (values - values[:train_end].mean(0)) / values[:train_end].std(0)
    b1, b2 = borders[flag]
    count = embedding_window_count(b1, b2, seq_len, pred_len)
    length = seq_len + pred_len
    rng = np.random.default_rng(seed)
    proj = rng.standard_normal((length, width)) / np.sqrt(length)
    windows = np.lib.stride_tricks.sliding_window_view(z[b1:b2], length, axis=0)[:count]  # (W, N, L+P)
    emb = (windows @ proj + noise * rng.standard_normal((count, values.shape[1], width))).astype(np.float32)
    leaf = root / (name + (".csv" if csv_suffix else "")) / str(pred_len) / flag
    leaf.mkdir(parents=True)
    for i, lo in enumerate(range(0, count, batch)):
        part = emb[lo:lo + batch]
        if shape == "2d":
            part = part[0]
        with h5py.File(leaf / f"{i}.h5", "w") as f:
            f.create_dataset("embeddings", data=part)
    return leaf


def with_gaps(frame: pd.DataFrame, rate: float, seed: int = 1) -> pd.DataFrame:
    """A copy of ``frame`` with a seeded fraction of its value cells emptied."""
    out = frame.copy()
    values = out.iloc[:, 1:].to_numpy(dtype=np.float64, copy=True)
    values[np.random.default_rng(seed).random(values.shape) < rate] = np.nan
    out.iloc[:, 1:] = values
    return out
