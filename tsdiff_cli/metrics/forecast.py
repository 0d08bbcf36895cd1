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
                    y_original: np.ndarray | None = None, chunk: int = 256,
                    scale: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, float]:
    """Every forecast metric of DESIGN for z-space ``samples`` (M, N, ...) and ``y`` (N, ...); the
    ProbTS scores use the original-scale arrays when given (as ProbTS does), or z · std + mean with
    ``scale = (mean, std)`` computed chunk by chunk, else the z-space ones.

    Every score is a sum over elements (or a ratio of two), so it is accumulated over ``chunk``
    windows at a time: the temporary arrays of quantiles and sorted samples stay small (100 samples
    of ETTh1's 2 785 test windows are 750 MB; their 19 quantiles in float64 would be 285 MB more)."""
    so = samples if samples_original is None else samples_original
    yo = y if y_original is None else y_original
    sums = dict.fromkeys(("se_med", "ae_med", "se_mean", "ae_mean", "crps", "in50", "in90", "wql", "abs_err_o", "abs_y_o"), 0.0)
    for i in range(0, y.shape[0], chunk):
        s, t, s_o, t_o = samples[:, i:i + chunk], y[i:i + chunk], so[:, i:i + chunk], yo[i:i + chunk]
        if scale is not None:
            s_o, t_o = s * scale[1] + scale[0], t * scale[1] + scale[0]
        median, mean = np.median(s, axis=0), s.mean(axis=0)
        sums["se_med"] += float(np.sum((median - t) ** 2))
        sums["ae_med"] += float(np.sum(np.abs(median - t)))
        sums["se_mean"] += float(np.sum((mean - t) ** 2))
        sums["ae_mean"] += float(np.sum(np.abs(mean - t)))
        sums["crps"] += float(np.sum(fair_crps(s, t)))
        for level, key in ((0.5, "in50"), (0.9, "in90")):
            lo, hi = np.quantile(s, [(1 - level) / 2, (1 + level) / 2], axis=0)
            sums[key] += float(np.sum((t >= lo) & (t <= hi)))
        predicted = np.quantile(s_o, QUANTILES, axis=0)
        q = QUANTILES.reshape((-1,) + (1,) * t_o.ndim)
        loss = 2 * np.abs((predicted - t_o[None]) * ((t_o[None] <= predicted).astype(np.float64) - q))
        sums["wql"] += loss.reshape(len(QUANTILES), -1).sum(1)  # per quantile
        sums["abs_err_o"] += float(np.sum(np.abs(t_o - np.median(s_o, axis=0))))
        sums["abs_y_o"] += float(np.sum(np.abs(t_o)))
    n = y.size
    return {
        "mse_median": sums["se_med"] / n, "mae_median": sums["ae_med"] / n,
        "mse_mean": sums["se_mean"] / n, "mae_mean": sums["ae_mean"] / n,
        "crps": sums["crps"] / n,
        "crps_probts": float(np.mean(sums["wql"]) / sums["abs_y_o"]), "nmae_probts": sums["abs_err_o"] / sums["abs_y_o"],
        "coverage50": sums["in50"] / n, "coverage90": sums["in90"] / n,
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
