"""Predictive score, "train on synthetic, test on real" (TimeGAN post-hoc protocol, Yoon et al.
2019; used by ImagenTime and ImagenI2R): a one-layer GRU (hidden = features // 2) with a sigmoid
linear head reads the first F−1 features of steps 0..T−2 and predicts the last feature of steps
1..T−1. It is trained with Adam (lr 1e-3) on generated windows for 5000 iterations of batch 128
with an absolute-error loss, then scored by its mean absolute error on *all* real windows.
(With a single feature the input is that feature itself.) Lower is better. The repeats are
trained together as one :class:`GRUEnsemble`.
"""

from __future__ import annotations

import numpy as np
import torch

from tsdiff_cli.metrics._common import EVAL_CHUNK, Progress, as_tensor, hidden_size
from tsdiff_cli.metrics.gru import GRUEnsemble, feature_major, gather, sample_batches


def _split_xy(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, T, F) → inputs (N, F−1, T−1) and targets (N, 1, T−1), feature-major."""
    features = data.shape[-1]
    inputs = data[:, :-1, : features - 1] if features > 1 else data[:, :-1]
    return feature_major(inputs), feature_major(data[:, 1:, features - 1:])


def predictive_score(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    repeats: int = 10,
    iterations: int = 5000,
    batch_size: int = 128,
    seed: int = 0,
    device: str = "cpu",
    callback: Progress = None,
) -> list[float]:
    """One MAE per repeat; every repeat has its own initialisation and batches."""
    gen = torch.Generator().manual_seed(seed)
    train_x, train_y = _split_xy(as_tensor(generated).to(device))
    test_x, test_y = _split_xy(as_tensor(real).to(device))
    model = GRUEnsemble(repeats, train_x.shape[1], hidden_size(real.shape[-1]), 1, generator=gen, device=device)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    pool = torch.arange(len(train_x)).expand(repeats, -1)
    for step in range(iterations):
        idx = sample_batches(pool, batch_size, gen)
        states, cache = model.run(gather(train_x, idx))
        pred = torch.sigmoid(model.head(states))  # (R, 1, T−1, B)
        target = gather(train_y, idx)
        # d/dlogit of mean |pred − y| through the sigmoid
        d_out = torch.sign(pred - target) * pred * (1 - pred) / (target.shape[2] * target.shape[3])
        model.step(optim, model.grads(cache, d_out))
        if callback is not None:
            callback(step + 1, iterations)

    total = torch.zeros(repeats, device=device)
    with torch.inference_mode():
        for start in range(0, len(test_x), EVAL_CHUNK):
            x = test_x[start:start + EVAL_CHUNK].permute(1, 2, 0)  # (F, T−1, chunk)
            states, _ = model.run(x.expand(repeats, *x.shape), keep=False)
            pred = torch.sigmoid(model.head(states))
            y = test_y[start:start + EVAL_CHUNK].permute(1, 2, 0)
            total += (pred - y).abs().sum(dim=(1, 2, 3))
    # TimeGAN averages the per-window MAE over windows; equal lengths make it the global mean.
    return (total / test_y.numel()).cpu().tolist()
