"""Judging an imputation (DESIGN "Imputation"): hide a seeded fraction of the observed values,
fill them, and score the filling on the hidden values in z-space, beside three baselines that
need no model (the column mean, the last observation carried forward, linear interpolation).

For sampled fillings, the CRPS per element with the fair ensemble estimator and the coverage of
the central 90 % interval. Everything here works on plain (rows, features) arrays.
"""

from __future__ import annotations

import numpy as np

BASELINES = ("mean", "locf", "linear")


def hide(values: np.ndarray, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A copy of ``values`` with a seeded fraction ``rate`` of its *observed* entries set to NaN,
    and the boolean mask of the hidden entries. ``round(rate · observed)`` entries are hidden,
    chosen uniformly without replacement."""
    observed = np.flatnonzero(~np.isnan(values))
    count = int(round(rate * observed.size))
    chosen = np.random.default_rng([seed, 7]).choice(observed, size=count, replace=False)
    mask = np.zeros(values.size, dtype=bool)
    mask[chosen] = True
    mask = mask.reshape(values.shape)
    out = values.copy()
    out[mask] = np.nan
    return out, mask


def fill_mean(values: np.ndarray) -> np.ndarray:
    """Each gap filled with its column's mean (over the observed values of that column)."""
    means = np.nanmean(values, axis=-2, keepdims=True)
    return np.where(np.isnan(values), means, values)


def fill_locf(values: np.ndarray) -> np.ndarray:
    """Each gap filled with the last observation before it (the next one where none came before).
    Works along axis −2 of (..., rows, features)."""
    observed = ~np.isnan(values)
    t = np.arange(values.shape[-2]).reshape(-1, 1)
    last = np.maximum.accumulate(np.where(observed, t, -1), axis=-2)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(observed, t, values.shape[-2]), -2), axis=-2), -2)
    src = np.where(last >= 0, last, np.minimum(nxt, values.shape[-2] - 1))
    filled = np.take_along_axis(np.nan_to_num(values), src, axis=-2)
    return np.where(observed, values, filled)


def fill_linear(values: np.ndarray) -> np.ndarray:
    """Each gap filled by linear interpolation between the observations either side of it (the
    nearest observation at the ends). Vectorised over all columns and leading axes."""
    observed = ~np.isnan(values)
    n = values.shape[-2]
    t = np.arange(n).reshape(-1, 1)
    last = np.maximum.accumulate(np.where(observed, t, -1), axis=-2)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(observed, t, n), -2), axis=-2), -2)
    zero = np.nan_to_num(values)
    left = np.take_along_axis(zero, np.clip(last, 0, n - 1), axis=-2)
    right = np.take_along_axis(zero, np.clip(nxt, 0, n - 1), axis=-2)
    has_left, has_right = last >= 0, nxt < n
    span = np.where(has_left & has_right, nxt - last, 1)
    weight = np.where(has_left & has_right, (t - last) / np.maximum(span, 1), 0.0)
    inner = left + weight * (right - left)
    filled = np.where(has_left & has_right, inner, np.where(has_left, left, right))
    return np.where(observed, values, filled)


BASELINE_FILLS = {"mean": fill_mean, "locf": fill_locf, "linear": fill_linear}


def errors(filled: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """MAE, MSE and RMSE of ``filled`` against ``truth`` on the entries of ``mask``."""
    diff = (filled - truth)[mask]
    if diff.size == 0:
        return {"mae": float("nan"), "mse": float("nan"), "rmse": float("nan")}
    mse = float(np.mean(diff ** 2))
    return {"mae": float(np.mean(np.abs(diff))), "mse": mse, "rmse": mse ** 0.5}


def fair_crps(samples: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """CRPS of an ensemble per element with the fair estimator (Ferro 2014; Zamo & Naveau 2018):
    E|X − y| − 1/(2 M (M − 1)) Σ_{i≠j} |X_i − X_j|, for ``samples`` (M, ...) and ``truth`` (...).

    The pair sum uses the sorted members: Σ_{i<j} (x_(j) − x_(i)) = Σ_k (2k − M + 1) x_(k)
    (k from 0), so the cost is O(M log M), not O(M²). Needs M ≥ 2.
    """
    if samples.shape[0] < 2:
        raise ValueError("the fair CRPS needs at least two samples")
    return fair_crps_sorted(np.sort(samples, axis=0), truth)


def fair_crps_sorted(ordered: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """:func:`fair_crps` of members already sorted along axis 0 (a caller that sorts once for
    quantiles too)."""
    m = ordered.shape[0]
    skill = np.mean(np.abs(ordered - truth[None]), axis=0)
    k = np.arange(m, dtype=np.float64).reshape((-1,) + (1,) * truth.ndim)
    pair_sum = np.sum((2 * k - m + 1) * ordered, axis=0)  # Σ_{i<j} |x_i − x_j|
    return skill - pair_sum / (m * (m - 1))


def coverage(lower: np.ndarray, upper: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of ``truth`` inside [lower, upper]."""
    return float(np.mean((truth >= lower) & (truth <= upper))) if truth.size else float("nan")


def score_filling(filled: np.ndarray, truth: np.ndarray, mask: np.ndarray, gappy: np.ndarray,
                  samples: np.ndarray | None = None) -> dict:
    """The report of an imputation judged on the hidden entries ``mask`` (all arrays in z-space).

    ``gappy`` is the input the imputer saw (hidden entries and original gaps NaN), from which
    the baselines are computed; ``samples`` (K, ...) adds CRPS and 90 % coverage when K ≥ 2.
    """
    report = {"hidden": int(mask.sum()), "method": errors(filled, truth, mask),
              "baselines": {name: errors(fill(gappy), truth, mask) for name, fill in BASELINE_FILLS.items()}}
    if samples is not None and samples.shape[0] >= 2:
        hidden_samples = samples[:, mask]
        report["method"]["crps"] = float(np.mean(fair_crps(hidden_samples, truth[mask])))
        lo, hi = np.quantile(hidden_samples, [0.05, 0.95], axis=0)
        report["method"]["coverage90"] = coverage(lo, hi, truth[mask])
        report["samples"] = int(samples.shape[0])
    return report


def format_imputation_report(report: dict, label: str = "imputed") -> str:
    """The report as a small table: method and baselines, MAE / MSE / RMSE (z-space)."""
    rows = [(label, report["method"])] + [(f"baseline: {k}", v) for k, v in report["baselines"].items()]
    extra = "crps" in report["method"]
    head = f"{'':<20} {'MAE':>8} {'MSE':>8} {'RMSE':>8}" + (f" {'CRPS':>8} {'cov90':>7}" if extra else "")
    lines = [f"{report['hidden']} values scored, errors in z-space", head]
    for name, m in rows:
        line = f"{name:<20} {m['mae']:>8.4f} {m['mse']:>8.4f} {m['rmse']:>8.4f}"
        if extra and "crps" in m:
            line += f" {m['crps']:>8.4f} {m['coverage90']:>7.3f}"
        lines.append(line)
    return "\n".join(lines)
