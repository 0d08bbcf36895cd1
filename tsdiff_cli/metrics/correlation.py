"""Correlation score (as reported by Diffusion-TS, Yuan & Qiao 2024, and later papers): the
absolute difference between the lag-0 cross-correlation matrices of real and generated data,
lower triangle with the diagonal, summed, divided by 10. Each feature is standardised over all
windows and steps of its own set before the products are averaged. The score is computed on
``subsets`` random pairs of subsets of N_real // subsets windows each (without replacement)
and reported as mean ± std over them. Lower is better.
"""

from __future__ import annotations

import numpy as np
import torch

from tsdiff_cli.metrics._common import as_tensor


def cross_correlation(x: torch.Tensor) -> torch.Tensor:
    """Lag-0 cross-correlations of (N, T, F) windows: the lower triangle (with diagonal), (P,)."""
    flat = x.reshape(-1, x.shape[-1])
    z = (flat - flat.mean(0)) / flat.std(0).clamp_min(1e-12)
    matrix = z.T @ z / flat.shape[0]
    rows, cols = torch.tril_indices(x.shape[-1], x.shape[-1])
    return matrix[rows, cols]


def correlation_score(real: np.ndarray, generated: np.ndarray, *, subsets: int = 5, seed: int = 0) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    r, g = as_tensor(real).double(), as_tensor(generated).double()
    size = max(2, len(r) // subsets)
    scores = []
    with torch.inference_mode():
        for _ in range(subsets):
            ri = torch.randperm(len(r), generator=gen)[:size]
            gi = torch.randperm(len(g), generator=gen)[:size]
            scores.append(float((cross_correlation(g[gi]) - cross_correlation(r[ri])).abs().sum() / 10.0))
    return scores
