"""The synthetic sine dataset, as defined by TimeGAN (Yoon et al. 2019, §5.1) and reused by
ImagenTime and ImagenI2R: per window and feature, frequency and phase drawn uniformly from
[0, 0.1], ``x_t = sin(freq * t + phase)`` for t = 0..T-1, mapped to [0, 1] by (x + 1) / 2."""

from __future__ import annotations

import numpy as np


def sine_windows(samples: int, seq_len: int, features: int, rng: np.random.Generator) -> np.ndarray:
    freq = rng.uniform(0.0, 0.1, size=(samples, 1, features))
    phase = rng.uniform(0.0, 0.1, size=(samples, 1, features))
    t = np.arange(seq_len, dtype=np.float64)[None, :, None]
    return (np.sin(freq * t + phase) + 1.0) * 0.5
