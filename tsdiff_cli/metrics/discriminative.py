"""Discriminative score, the TimeGAN post-hoc protocol (Yoon et al. 2019; used by ImagenTime and
ImagenI2R): a one-layer GRU classifier (hidden = features // 2) with a linear head learns to tell
real from generated windows, trained with Adam (lr 1e-3) for 2000 iterations of 128 real + 128
generated windows drawn from 80 % of each set; score = |accuracy − 0.5| on the other 20 %.
0 means indistinguishable. The loss is the mean cross-entropy on the real batch plus the mean
on the generated batch, as in TimeGAN. (PyTorch's GRU cell applies the reset gate after the
recurrent matrix product, TensorFlow's GRUCell before it; a detail of the cell, not of the
protocol.) The repeats are trained together as one :class:`GRUEnsemble`.
"""

from __future__ import annotations

import numpy as np
import torch

from tsdiff_cli.metrics._common import EVAL_CHUNK, Progress, as_tensor, hidden_size, member_permutations
from tsdiff_cli.metrics.gru import GRUEnsemble, feature_major, gather, sample_batches


def discriminative_score(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    repeats: int = 10,
    iterations: int = 2000,
    batch_size: int = 128,
    train_fraction: float = 0.8,
    seed: int = 0,
    device: str = "cpu",
    callback: Progress = None,
) -> list[float]:
    """One score per repeat; every repeat has its own split, initialisation and batches."""
    gen = torch.Generator().manual_seed(seed)
    data = feature_major(torch.cat([as_tensor(real), as_tensor(generated)])).to(device)  # (N, F, T)
    n_real, n_gen = len(real), len(generated)
    features = data.shape[1]
    # TimeGAN's train_test_divide: each set is split on its own permutation
    real_perm = member_permutations(repeats, n_real, gen)
    gen_perm = member_permutations(repeats, n_gen, gen) + n_real
    cut_real, cut_gen = int(n_real * train_fraction), int(n_gen * train_fraction)
    train_real, test_real = real_perm[:, :cut_real], real_perm[:, cut_real:]
    train_gen, test_gen = gen_perm[:, :cut_gen], gen_perm[:, cut_gen:]

    model = GRUEnsemble(repeats, features, hidden_size(features), 1, generator=gen, device=device)
    optim = torch.optim.Adam(model.parameters(), lr=1e-3)
    for step in range(iterations):
        real_idx = sample_batches(train_real, batch_size, gen)
        gen_idx = sample_batches(train_gen, batch_size, gen)
        n_r, n_g = real_idx.shape[1], gen_idx.shape[1]
        states, cache = model.run(gather(data, torch.cat([real_idx, gen_idx], dim=1)))
        logits = model.head(states[:, :, -1:])  # (R, 1, 1, n_r + n_g)
        # d/dlogit of mean BCE: (σ(l) − y) / batch, separately for the real and generated halves
        d_logits = torch.sigmoid(logits)
        d_logits[..., :n_r] -= 1.0
        d_logits[..., :n_r] /= n_r
        d_logits[..., n_r:] /= n_g
        d_out = torch.zeros(repeats, 1, *states.shape[2:], device=device)
        d_out[:, :, -1:] = d_logits
        model.step(optim, model.grads(cache, d_out))
        if callback is not None:
            callback(step + 1, iterations)

    correct = torch.zeros(repeats, device=device)
    with torch.inference_mode():
        for idx, label in ((test_real, True), (test_gen, False)):
            for start in range(0, idx.shape[1], EVAL_CHUNK):
                states, _ = model.run(gather(data, idx[:, start:start + EVAL_CHUNK]), keep=False)
                logits = model.head(states[:, :, -1:]).flatten(1)
                correct += ((logits > 0) == label).sum(dim=1)
    accuracy = correct / (test_real.shape[1] + test_gen.shape[1])
    return (accuracy - 0.5).abs().cpu().tolist()


# --- the same score under the data's own gaps (model selection without ground truth) ---------------

def impose_gaps(generated: np.ndarray, real: np.ndarray, seed: int) -> np.ndarray:
    """``generated`` windows with the gaps of ``real`` ones: window i takes the missing pattern of
    real window π(i) for a seeded permutation π (cycled when there are more generated windows),
    so both sets have the same distribution of gaps and differ only in their values."""
    pick = np.random.default_rng(seed).permutation(len(real))
    pick = np.resize(pick, len(generated))
    return np.where(np.isnan(real[pick]), np.float32(np.nan), generated).astype(np.float32)


def with_gap_channels(windows: np.ndarray) -> np.ndarray:
    """(N, T, F) windows with NaN gaps → (N, T, 2F): the values with gaps set to 0, then one
    0/1 channel per feature saying where a value is missing (so a classifier can tell a gap from
    a true 0)."""
    missing = np.isnan(windows)
    return np.concatenate([np.where(missing, 0.0, windows), missing], axis=-1).astype(np.float32)


def gappy_discriminative_score(real: np.ndarray, generated: np.ndarray, *, seed: int, **kwargs) -> list[float]:
    """The discriminative score of complete ``generated`` windows against ``real`` windows that
    may have gaps, using only what is observed: each generated window gets the gaps of a real one
    (:func:`impose_gaps`), then both sets are scored as values + missing-indicator channels. With
    the gap patterns equal in distribution, the indicators carry no class information, so the
    classifier can only tell the two apart by the observed values. Used to select checkpoints
    from observed data alone; it is *not* the published protocol (which needs complete windows)."""
    masked = impose_gaps(generated, real, seed)
    return discriminative_score(with_gap_channels(real), with_gap_channels(masked), seed=seed, **kwargs)
