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

from tsdiff_cli.metrics.imputation import fair_crps_sorted

QUANTILES = np.round(np.arange(1, 20) * 0.05, 2)  # 0.05 … 0.95


def sorted_quantiles(ordered: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """``np.quantile(samples, quantiles, axis=0)`` (its default linear method) from the samples
    already sorted along axis 0: position h = (M − 1) q, interpolated between its two neighbours."""
    m = ordered.shape[0]
    h = (m - 1) * np.asarray(quantiles, dtype=np.float64)
    lo = np.floor(h).astype(int)
    hi = np.minimum(lo + 1, m - 1)
    frac = (h - lo).reshape((-1,) + (1,) * (ordered.ndim - 1))
    return ordered[lo] + frac * (ordered[hi] - ordered[lo])


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
    levels = np.array([0.25, 0.75, 0.05, 0.95])  # the 50 % and 90 % intervals
    for i in range(0, y.shape[0], chunk):
        s, t = samples[:, i:i + chunk], y[i:i + chunk]
        ordered = np.sort(s, axis=0)  # once: every quantile, the median and the CRPS read it
        median, mean = sorted_quantiles(ordered, np.array([0.5]))[0], s.mean(axis=0)
        sums["se_med"] += float(np.sum((median - t) ** 2))
        sums["ae_med"] += float(np.sum(np.abs(median - t)))
        sums["se_mean"] += float(np.sum((mean - t) ** 2))
        sums["ae_mean"] += float(np.sum(np.abs(mean - t)))
        sums["crps"] += float(np.sum(fair_crps_sorted(ordered, t)))
        q50lo, q50hi, q90lo, q90hi = sorted_quantiles(ordered, levels)
        sums["in50"] += float(np.sum((t >= q50lo) & (t <= q50hi)))
        sums["in90"] += float(np.sum((t >= q90lo) & (t <= q90hi)))
        if scale is not None:  # z · std + mean (std > 0) keeps the order: the quantiles map over
            mu, sd = scale
            predicted, t_o = sorted_quantiles(ordered, QUANTILES) * sd + mu, t * sd + mu
            median_o = median * sd + mu
        else:
            ordered_o = ordered if samples_original is None else np.sort(so[:, i:i + chunk], axis=0)
            t_o = yo[i:i + chunk]
            predicted = sorted_quantiles(ordered_o, QUANTILES)
            median_o = sorted_quantiles(ordered_o, np.array([0.5]))[0]
        q = QUANTILES.reshape((-1,) + (1,) * t_o.ndim)
        loss = 2 * np.abs((predicted - t_o[None]) * ((t_o[None] <= predicted).astype(np.float64) - q))
        sums["wql"] += loss.reshape(len(QUANTILES), -1).sum(1)  # per quantile
        sums["abs_err_o"] += float(np.sum(np.abs(t_o - median_o)))
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



def recalibrate(draws: np.ndarray, anchor: np.ndarray, weight: float, spread: float) -> np.ndarray:
    """The ensemble (M, ...) moved and scaled by two constants: with m its per-element median,
    c + spread · (x − m), c = weight · m + (1 − weight) · anchor (a point forecast, e.g. the ridge).
    The new median is c; the samples keep their shape."""
    if weight == 1.0 and spread == 1.0:
        return draws
    median = np.median(draws, axis=0, keepdims=True)
    centre = weight * median + (1 - weight) * anchor[None]
    return centre + spread * (draws - median)


def choose_recalibration(draws: np.ndarray, anchor: np.ndarray, y: np.ndarray, level: float = 0.9,
                         low: float = 0.25, high: float = 8.0) -> tuple[float, float]:
    """(weight, spread) of :func:`recalibrate` from held-out windows (validation, never test):
    the weight in [0, 1] of the ensemble median against ``anchor`` that minimises the squared
    error (least squares on one coefficient: stacking, Wolpert 1992), then the spread whose
    central ``level`` interval covers the closest fraction to ``level`` of ``y`` (recalibration,
    Kuleshov et al. 2018, "Accurate Uncertainties for Deep Learning Using Calibrated
    Regression", §3, with one scale parameter)."""
    ordered = np.sort(draws, axis=0)
    median = sorted_quantiles(ordered, np.array([0.5]))[0]
    gap = median - anchor
    denom = float(np.sum(gap * gap))
    weight = 1.0 if denom == 0 else float(np.clip(np.sum(gap * (y - anchor)) / denom, 0.0, 1.0))
    lo, hi = sorted_quantiles(ordered, np.array([(1 - level) / 2, (1 + level) / 2])) - median
    err = y - (weight * median + (1 - weight) * anchor)
    grid = np.geomspace(low, high, 241)  # steps of 1.5 %
    covered = np.array([np.mean((err >= f * lo) & (err <= f * hi)) for f in grid])
    return weight, float(grid[np.argmin(np.abs(covered - level))])
