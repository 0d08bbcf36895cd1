"""Sliding windows the way the paper's loader makes them."""

from __future__ import annotations

import numpy as np


def window_count(length: int, seq_len: int) -> int:
    """``length - seq_len`` windows: TimeGAN's loader iterates ``range(0, len(data) - seq_len)``,
    so the last possible window is left out; we keep that for comparable numbers."""
    return length - seq_len


def sliding_windows(series: np.ndarray, seq_len: int) -> np.ndarray:
    """(L, F) → (L - seq_len, seq_len, F) windows of stride 1, as a new contiguous array."""
    count = window_count(series.shape[0], seq_len)
    view = np.lib.stride_tricks.sliding_window_view(series, seq_len, axis=0)  # (L-T+1, F, T)
    return np.ascontiguousarray(view[:count].transpose(0, 2, 1))
