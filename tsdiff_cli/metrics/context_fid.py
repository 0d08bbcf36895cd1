"""Context-FID (Jeha et al., "PSA-GAN", ICLR 2022), as used by ImagenTime: train a TS2Vec
encoder on the real windows, encode real and generated windows as full series (max-pooled
over time, 320 values each), and take the Fréchet distance between the two Gaussian fits,
‖μ_r − μ_g‖² + Tr(Σ_r + Σ_g − 2 (Σ_r Σ_g)^½), with scipy's sqrtm. Each repeat trains a new
encoder with its own seed. Lower is better.
"""

from __future__ import annotations

import numpy as np

from tsdiff_cli.metrics._common import Progress, as_tensor


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if np.iscomplexobj(covmean):
        covmean = covmean.real  # numerical noise of sqrtm on near-singular products
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2.0 * covmean))


def context_fid(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    repeats: int = 5,
    iterations: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    callback: Progress = None,
) -> list[float]:
    from tsdiff_cli.metrics.ts2vec import default_iterations, train_ts2vec

    r, g = as_tensor(real, device), as_tensor(generated, device)
    iters = default_iterations(r.numel()) if iterations is None else iterations
    scores = []
    for k in range(repeats):
        step_cb = None if callback is None else (lambda done, _total, k=k: callback(k * iters + done, repeats * iters))
        encoder = train_ts2vec(r, iterations=iters, seed=seed + 1000 * k, callback=step_cb)
        scores.append(frechet_distance(encoder.encode(r).double().cpu().numpy(), encoder.encode(g).double().cpu().numpy()))
    return scores
