"""Numbers against steps or epochs, in compact arrays, and what a chart needs from them.

A series keeps two ``array('d')`` (8 bytes a point; a missing value is NaN), so a 200 000-line
log costs a few MB. Charts get at most a few hundred points: :func:`downsample` averages runs
of consecutive points.
"""

from __future__ import annotations

import math
import re
from array import array
from dataclasses import dataclass

import numpy as np


class Series:
    def __init__(self) -> None:
        self.x = array("d")
        self.y = array("d")

    def __len__(self) -> int:
        return len(self.y)

    def append(self, x: float, y: float) -> None:
        self.x.append(x)
        self.y.append(y)

    def last(self) -> tuple[float, float] | None:
        """The latest point with a finite value."""
        for i in range(len(self.y) - 1, -1, -1):
            if math.isfinite(self.y[i]):
                return self.x[i], self.y[i]
        return None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies (a view would stop the arrays from growing while it lives)."""
        return np.array(self.x, dtype=np.float64), np.array(self.y, dtype=np.float64)


def downsample(series: Series, max_points: int = 400, log: bool = False) -> tuple[list[float], list[float]]:
    """The finite points (only positive ones on a ``log`` axis), at most ``max_points``: beyond
    that, runs of consecutive points are averaged (geometrically on a log axis), so a long noisy
    loss is drawn as its trend at the chart's resolution."""
    x, y = series.arrays()
    keep = np.isfinite(y) & np.isfinite(x)
    if log:
        keep &= y > 0
    x, y = x[keep], y[keep]
    if len(y) <= max_points:
        return x.tolist(), y.tolist()
    starts = np.linspace(0, len(y), max_points + 1).astype(np.int64)
    counts = np.diff(starts)
    starts = starts[:-1]
    xs = np.add.reduceat(x, starts) / counts
    if log:
        ys = np.exp(np.add.reduceat(np.log(y), starts) / counts)
    else:
        ys = np.add.reduceat(y, starts) / counts
    return xs.tolist(), ys.tolist()


# --- which value of a score is best ------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """How to rank a score: ``"min"`` (lower is better), ``"max"`` (higher is better: accuracy,
    F1, R²) or ``"target"`` (closest to ``target``)."""

    kind: str = "min"
    target: float = 0.0

    def distance(self, value: float) -> float:
        if self.kind == "max":
            return -value
        return value if self.kind == "min" else abs(value - self.target)

    def describe(self) -> str:
        if self.kind == "max":
            return "higher is better"
        return "lower is better" if self.kind == "min" else f"closest to {self.target:g}"


_COVERAGE = re.compile(r"(?:^|[_\-.])cov(?:erage)?(?=[_\-.\d]|$)")
_LEVEL = re.compile(r"(\d+(?:\.\d+)?)")
_HIGHER = re.compile(r"(?:^|[_\-.])(?:accuracy|acc|f1|r2|auc)$")


def goal_for(name: str) -> Goal | None:
    """Lower is better for errors, distances and scores, higher for accuracies, F1 and R²
    (``val_accuracy``, ``macro_f1``, ``r2``); a coverage field is best at its nominal
    level, read from its name (``coverage_90`` → 0.90, ``cov_0.5`` → 0.5). A coverage field with no
    level in its name is shown but not ranked (``None``)."""
    lowered = name.lower()
    if _COVERAGE.search(lowered):
        level = _LEVEL.search(lowered)
        if not level:
            return None
        value = float(level.group(1))
        return Goal("target", value / 100 if value > 1 else value)
    if _HIGHER.search(lowered):
        return Goal("max")
    return Goal("min")


def best_index(series: Series, goal: Goal | None) -> int | None:
    """Index of the best finite value (the first one on ties), or None."""
    if goal is None:
        return None
    best, where = math.inf, None
    for i, value in enumerate(series.y):
        if math.isfinite(value):
            d = goal.distance(value)
            if d < best:
                best, where = d, i
    return where
