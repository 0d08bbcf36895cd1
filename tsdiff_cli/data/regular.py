"""Irregular rows onto a regular time grid, NaN where nothing was observed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tsdiff_cli.errors import UserError

#: Below this observed fraction the grid step is almost surely wrong (e.g. "1s" for hourly data).
MIN_GRID_FILL = 0.01


@dataclass
class Grid:
    values: np.ndarray  # (G, F) float64 on the grid
    start: pd.Timestamp
    freq: str
    merged_rows: int  # rows that fell on an already occupied grid step and were averaged in


def _step(freq: str, where: str) -> pd.Timedelta:
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
        return pd.Timedelta(offset.nanos, unit="ns")
    except (ValueError, TypeError):
        raise UserError(where, f"freq '{freq}' is not a fixed time step",
                        'use a fixed step such as "1h", "15min" or "1D"') from None


def place_on_grid(times: pd.Series, values: np.ndarray, freq: str | None, where: str, column: str) -> Grid:
    """Bin rows to the nearest step of a regular grid from the first to the last timestamp.

    ``freq`` defaults to the most common gap between consecutive timestamps. Rows sharing a
    grid step are averaged per feature (NaN-aware); NaNs already in the data stay missing.
    """
    parsed = pd.to_datetime(times, errors="coerce")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(where, f"time column '{column}' has a value that is not a timestamp "
                        f"({times.iloc[row]!r} on line {row + 2})", "fix or remove that row")
    ns = parsed.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.argsort(ns, kind="stable")
    ns, values = ns[order], values[order]

    if freq is None:
        gaps = np.diff(ns)
        gaps = gaps[gaps > 0]
        if gaps.size == 0:
            raise UserError(where, f"time column '{column}' has a single distinct timestamp",
                            "give rows at different times")
        steps, counts = np.unique(gaps, return_counts=True)
        step = pd.Timedelta(int(steps[np.argmax(counts)]), unit="ns")
        freq = pd.tseries.frequencies.to_offset(step).freqstr
    else:
        step = _step(freq, where)
    step_ns = step.value
    if step_ns <= 0:
        raise UserError(where, f"freq '{freq}' is not a positive time step", 'use e.g. "1h"')

    index = np.rint((ns - ns[0]) / step_ns).astype(np.int64)
    size = int(index[-1]) + 1
    if values.shape[0] / size < MIN_GRID_FILL:
        raise UserError(where, f"freq '{freq}' spreads {values.shape[0]} rows over {size} grid steps "
                        f"({100 * values.shape[0] / size:.2g}% filled)",
                        "set [data] freq to the data's sampling interval")
    observed = ~np.isnan(values)
    sums = np.zeros((size, values.shape[1]))
    counts = np.zeros((size, values.shape[1]))
    np.add.at(sums, index, np.where(observed, values, 0.0))
    np.add.at(counts, index, observed)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    merged = int(index.size - np.unique(index).size)
    return Grid(values=grid, start=pd.Timestamp(ns[0]), freq=freq, merged_rows=merged)
