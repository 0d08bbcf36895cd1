"""Per-feature scalers, NaN-aware, stored as JSON so every command can return to original units."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

#: TimeGAN's MinMaxScaler adds this to the range (utils.py), so values lie in [0, 1).
MINMAX_EPS = 1e-7


@dataclass(frozen=True)
class Scaler:
    """``z = (x - offset) / scale`` per feature; ``inverse`` returns to original units."""

    kind: str
    offset: np.ndarray
    scale: np.ndarray

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x - self.offset) / self.scale

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * self.scale + self.offset

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "offset": self.offset.tolist(), "scale": self.scale.tolist()})

    @classmethod
    def from_json(cls, text: str) -> Scaler:
        spec = json.loads(text)
        return cls(spec["kind"], np.asarray(spec["offset"], dtype=np.float64), np.asarray(spec["scale"], dtype=np.float64))


def fit_scaler(kind: str, values: np.ndarray) -> Scaler:
    """Fit on ``values`` (..., F), ignoring NaNs.

    "minmax": (x - min) / (max - min + 1e-7), the paper's (TimeGAN) normalisation;
    "standard": (x - mean) / std with std 0 replaced by 1; "none": identity.
    """
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    features = flat.shape[1]
    if kind == "none":
        return Scaler(kind, np.zeros(features), np.ones(features))
    if kind == "minmax":
        lo, hi = np.nanmin(flat, axis=0), np.nanmax(flat, axis=0)
        return Scaler(kind, lo, hi - lo + MINMAX_EPS)
    if kind == "standard":
        mean, std = np.nanmean(flat, axis=0), np.nanstd(flat, axis=0)
        return Scaler(kind, mean, np.where(std > 0, std, 1.0))
    raise ValueError(f"unknown scaler {kind!r}")
