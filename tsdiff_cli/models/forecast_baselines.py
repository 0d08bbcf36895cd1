"""Forecast baselines computed beside the model in every evaluation (DESIGN "Forecast").

- Seasonal naive: the last season of the lookback repeated (24 rows: yesterday for hourly data).
- Closed-form linear ridge: one map from the lookback to the horizon shared by all variates,
  on lookbacks centred by their own mean (the mean is added back), solved in closed form:
  W = (XᵀX + αI)⁻¹ XᵀY. On ETTh1 96→96 it gives MSE 0.383 / MAE 0.392, as DESIGN lists.
- Gaussian spread for point forecasts: the standard deviation of validation residuals per
  horizon step and variate, so that point baselines get a CRPS and intervals too.
"""

from __future__ import annotations

import numpy as np


def seasonal_naive(x: np.ndarray, pred_len: int, season: int = 24) -> np.ndarray:
    """x (N, L, V) → (N, pred_len, V): row h of the forecast is row L − season + (h mod season)."""
    season = min(season, x.shape[1])
    idx = x.shape[1] - season + np.arange(pred_len) % season
    return x[:, idx]


class Ridge:
    def __init__(self, alpha: float = 1.0, weights: np.ndarray | None = None):
        self.alpha, self.weights = alpha, weights

    @staticmethod
    def _design(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = x.transpose(0, 2, 1).reshape(-1, x.shape[1]).astype(np.float64)  # (N·V, L)
        level = rows.mean(1, keepdims=True)
        return np.hstack([rows - level, np.ones((len(rows), 1))]), level

    def fit(self, x: np.ndarray, y: np.ndarray) -> Ridge:
        design, level = self._design(x)
        target = y.transpose(0, 2, 1).reshape(-1, y.shape[1]) - level
        gram = design.T @ design + self.alpha * np.eye(design.shape[1])
        self.weights = np.linalg.solve(gram, design.T @ target)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        design, level = self._design(x)
        out = design @ self.weights + level  # (N·V, H)
        return out.reshape(x.shape[0], x.shape[2], -1).transpose(0, 2, 1)


def residual_spread(forecast: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Root mean square residual per horizon step and variate, (H, V), from validation windows."""
    return np.sqrt(np.mean((y - forecast) ** 2, axis=0))
