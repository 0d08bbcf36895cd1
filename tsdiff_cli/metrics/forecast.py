"""Probabilistic forecast metrics (DESIGN "Metric protocols: Forecast").

All functions take an ensemble ``samples`` of shape (M, ...) and the truth ``y`` of shape (...):

- MSE / MAE of the ensemble median and mean;
- CRPS per element with the fair ensemble estimator (``fair_crps``, shared with imputation);
- the ProbTS / GluonTS "CRPS": the mean weighted quantile loss over 19 quantiles 0.05 … 0.95,
  2 Σ |(ŷ_q − y)(1{y ≤ ŷ_q} − q)| / Σ |y|, on the original scale, and NMAE = Σ |y − median| / Σ |y|;
- the coverage of the central 50 % and 90 % intervals.
"""

from __future__ import annotations

import numpy as np

from tsdiff_cli.metrics.imputation import fair_crps

QUANTILES = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05 … 0.95


def weighted_quantile_loss(samples: np.ndarray, y: np.ndarray, quantiles: np.ndarray = QUANTILES) -> float:
    """Mean over ``quantiles`` of 2 Σ |(ŷ_q − y)(1{y ≤ ŷ_q} − q)| / Σ |y|, with ŷ_q the empirical
    quantile of the samples per element (the "CRPS" of ProbTS and GluonTS' mean_wQuantileLoss)."""
    predicted = np.quantile(samples, quantiles, axis=0)  # (Q, ...)
    q = quantiles.reshape((-1,) + (1,) * y.ndim)
    loss = 2 * np.abs((predicted - y[None]) * ((y[None] <= predicted).astype(np.float64) - q))
    return float(loss.reshape(len(quantiles), -1).sum(1).mean() / np.abs(y).sum())


def nmae(samples: np.ndarray, y: np.ndarray) -> float:
    """Σ |y − median| / Σ |y| (ProbTS)."""
    return float(np.abs(y - np.median(samples, axis=0)).sum() / np.abs(y).sum())


def interval_coverage(samples: np.ndarray, y: np.ndarray, level: float) -> float:
    """Fraction of ``y`` inside the central ``level`` interval of the samples."""
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return float(np.mean((y >= lo) & (y <= hi)))


def forecast_scores(samples: np.ndarray, y: np.ndarray, samples_original: np.ndarray | None = None,
                    y_original: np.ndarray | None = None) -> dict[str, float]:
    """Every forecast metric of DESIGN for z-space ``samples`` (M, ...) and ``y``; the ProbTS
    scores use the original-scale arrays when given (as ProbTS does), else the z-space ones."""
    median, mean = np.median(samples, axis=0), samples.mean(axis=0)
    so = samples if samples_original is None else samples_original
    yo = y if y_original is None else y_original
    return {
        "mse_median": float(np.mean((median - y) ** 2)), "mae_median": float(np.mean(np.abs(median - y))),
        "mse_mean": float(np.mean((mean - y) ** 2)), "mae_mean": float(np.mean(np.abs(mean - y))),
        "crps": float(np.mean(fair_crps(samples, y))),
        "crps_probts": weighted_quantile_loss(so, yo), "nmae_probts": nmae(so, yo),
        "coverage50": interval_coverage(samples, y, 0.5), "coverage90": interval_coverage(samples, y, 0.9),
    }


def gaussian_crps(mu: np.ndarray, sigma: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS of N(mu, sigma²) at y in closed form (Gneiting & Raftery 2007, eq. 21):
    σ [z (2Φ(z) − 1) + 2 φ(z) − 1/√π] with z = (y − μ) / σ."""
    from scipy.stats import norm

    z = (y - mu) / sigma
    return sigma * (z * (2 * norm.cdf(z) - 1) + 2 * norm.pdf(z) - 1 / np.sqrt(np.pi))


def gaussian_scores(mu: np.ndarray, sigma: np.ndarray, y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> dict[str, float]:
    """The metrics of :func:`forecast_scores` for Gaussian forecasts N(mu, sigma²) in z-space, with
    exact quantiles instead of samples; ``mean``, ``std`` map z-space back to the original scale."""
    from scipy.stats import norm

    sigma = np.broadcast_to(sigma, mu.shape)
    quant = norm.ppf(QUANTILES).reshape((-1,) + (1,) * mu.ndim)
    predicted = (mu[None] + quant * sigma[None]) * std + mean  # original scale
    yo = y * std + mean
    q = QUANTILES.reshape((-1,) + (1,) * y.ndim)
    wql = 2 * np.abs((predicted - yo[None]) * ((yo[None] <= predicted).astype(np.float64) - q))
    z50, z90 = norm.ppf(0.75), norm.ppf(0.95)
    return {
        "mse_median": float(np.mean((mu - y) ** 2)), "mae_median": float(np.mean(np.abs(mu - y))),
        "mse_mean": float(np.mean((mu - y) ** 2)), "mae_mean": float(np.mean(np.abs(mu - y))),
        "crps": float(np.mean(gaussian_crps(mu, sigma, y))),
        "crps_probts": float(wql.reshape(len(QUANTILES), -1).sum(1).mean() / np.abs(yo).sum()),
        "nmae_probts": float(np.abs(yo - (mu * std + mean)).sum() / np.abs(yo).sum()),
        "coverage50": float(np.mean(np.abs(y - mu) <= z50 * sigma)),
        "coverage90": float(np.mean(np.abs(y - mu) <= z90 * sigma)),
    }
