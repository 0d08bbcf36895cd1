"""Helpers shared by the dataset benchmarks: ``--set KEY=VALUE`` values and seed-summary cells."""

from __future__ import annotations

import numpy as np


def parse_value(text: str):
    """A ``--set`` value as int, float, bool or string."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def seed_cell(values: list[float], spread_digits: int = 4) -> str:
    """The median over seeds, with ± max − min when there are several."""
    v = np.array(values)
    return f"{np.median(v):.4f}" + (f" ±{v.max() - v.min():.{spread_digits}f}" if len(v) > 1 else "")
