"""Benchmark missingness, as in the paper's irregular setting (ImagenI2R, following KoVAE).

Whole time steps (all features at once) are removed: from the full series before windowing for
real data, from each window independently for the synthetic sine data. The number removed is
``int(length * rate)``, chosen uniformly without replacement with the given generator.
"""

from __future__ import annotations

import numpy as np


def drop_series_steps(series: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``series`` (L, F) with ``int(L * rate)`` whole rows set to NaN."""
    out = series.copy()
    count = int(series.shape[0] * rate)
    out[rng.permutation(series.shape[0])[:count]] = np.nan
    return out


def drop_window_steps(windows: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``windows`` (N, T, F) with ``int(T * rate)`` whole steps of every window set to NaN."""
    n, t, _ = windows.shape
    count = int(t * rate)
    out = windows.copy()
    if count:
        # an independent random permutation per window: argsort of uniform keys
        steps = np.argsort(rng.random((n, t)), axis=1)[:, :count]
        out[np.arange(n)[:, None], steps] = np.nan
    return out
