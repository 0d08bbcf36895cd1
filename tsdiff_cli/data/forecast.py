"""Forecast data: a CSV becomes a z-scored series split the TSLib way, and windows are index
gathers into it (stride 1, nothing dropped).

Splits (DESIGN "Forecast"): ETTh* / ETTm* files take the TSLib borders (12 / 4 / 4 months); any
other file 70 / 10 / 20 %; validation and test start ``seq_len`` rows early so their first window
has a full lookback. The StandardScaler is fitted on the training rows only.

Gaps: a missing cell is filled with the last value before it (then the first value after it, at
the start), in training and at forecast time alike; how many were filled is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsdiff_cli.data.gappy import _looks_like_time
from tsdiff_cli.data.sources import _numeric_column, read_frame, resolve_source
from tsdiff_cli.data.timekd import scheme_for, tslib_borders
from tsdiff_cli.errors import UserError
from tsdiff_cli.metrics.imputation import fill_locf


@dataclass
class ForecastSeries:
    values: np.ndarray  # (rows, V) float64, original units, gaps filled
    columns: list[str]
    times: pd.DatetimeIndex | None
    time_column: str | None
    filled: int  # cells that were missing and got filled
    path: Path
    missing: np.ndarray  # (rows, V) bool: where the file had no value


def read_series(source: str | Path, columns: list[str] | None = None, time_column: str | None = None,
                where: str = "[forecast] data", frame: pd.DataFrame | None = None) -> ForecastSeries:
    """Read a CSV / Parquet file (or a shipped dataset name) with an optional date column; a
    caller that has already read the file passes its ``frame``.

    The date column defaults to the first column of timestamps; it must increase strictly.
    """
    path = resolve_source(str(source))
    frame = read_frame(path) if frame is None else frame
    names = list(frame.columns)
    if time_column is not None and time_column not in names:
        raise UserError(path, f"has no date column '{time_column}' (columns: {', '.join(names)})", f"fix {where} time_column")
    if time_column is None:
        time_column = next((c for c in names if not pd.api.types.is_numeric_dtype(frame[c]) and _looks_like_time(frame[c])), None)
    if columns is None:
        columns = [c for c in names if c != time_column]
    else:
        absent = [c for c in columns if c not in names]
        if absent:
            raise UserError(path, f"has no column {', '.join(map(repr, absent))} (columns: {', '.join(names)})",
                            f"fix {where} columns")
    if not columns:
        raise UserError(path, "has no value columns", "add numeric columns")
    values = np.stack([_numeric_column(path, frame, c) for c in columns], axis=1)
    for j, name in enumerate(columns):
        if np.isnan(values[:, j]).all():
            raise UserError(path, f"column '{name}' has no values", f"drop it with {where} columns = [...]")
    times = None
    if time_column is not None:
        parsed = pd.to_datetime(frame[time_column].astype(str), errors="coerce", format="mixed")
        if parsed.isna().any():
            row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise UserError(path, f"date column '{time_column}' has no date on line {row + 2} "
                            f"({frame[time_column].iloc[row]!r})", "fix or remove that row")
        times = pd.DatetimeIndex(parsed)
        steps = np.diff(times.as_unit("ns").asi8)
        if (steps <= 0).any():
            row = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise UserError(path, f"date column '{time_column}' does not increase at line {row + 2} "
                            f"({times[row - 1]} then {times[row]})", "sort the rows by date and drop duplicates")
    missing = np.isnan(values)
    return ForecastSeries(fill_locf(values), list(columns), times, time_column, int(missing.sum()), path, missing)


def split_borders(name: str, rows: int, seq_len: int, pred_len: int, split: str = "auto") -> dict[str, tuple[int, int]]:
    """TSLib row borders of train / val / test for a file called ``name`` (see module docstring)."""
    scheme = scheme_for(name) if split == "auto" else split
    borders = tslib_borders(scheme, rows, seq_len)
    test_end = borders["test"][1]
    if test_end > rows:
        raise UserError(name, f"has {rows} rows but the {scheme} split needs {test_end}",
                        'set [forecast] split = "custom" (70 / 10 / 20 %)')
    for flag, (b1, b2) in borders.items():
        if b2 - b1 < seq_len + pred_len:
            need = _minimum_rows(scheme, seq_len, pred_len)
            raise UserError(name, f"is too short: its {flag} part has {b2 - b1} rows, fewer than seq_len + pred_len = "
                            f"{seq_len + pred_len}", f"give at least {need} rows, or shorten seq_len / pred_len")
    return borders


def _minimum_rows(scheme: str, seq_len: int, pred_len: int) -> int:
    """The fewest rows whose every split part holds one window."""
    rows = seq_len + pred_len
    while any(b2 - b1 < seq_len + pred_len or b2 > rows for b1, b2 in tslib_borders(scheme, rows, seq_len).values()):
        rows += 1
    return rows


def infer_freq(times: pd.DatetimeIndex) -> pd.Timedelta:
    """The most common step between consecutive timestamps."""
    steps = pd.Series(np.diff(times.as_unit("ns").asi8))
    return pd.Timedelta(int(steps.mode().iloc[0]), unit="ns")


class ForecastWindows:
    """Windows of a (rows, V) float32 tensor: lookback rows [s, s + L) and horizon [s + L, s + L + H)
    for every start s in [begin, end − L − H]; ``batch(idx)`` gathers them in one indexing op."""

    def __init__(self, series: torch.Tensor, begin: int, end: int, seq_len: int, pred_len: int):
        self.series, self.seq_len, self.pred_len = series, seq_len, pred_len
        self.starts = torch.arange(begin, end - seq_len - pred_len + 1)
        self._offsets = torch.arange(seq_len + pred_len)

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lookback (B, L, V), future (B, H, V), start row (B,)) of windows ``idx``."""
        start = self.starts[idx]
        rows = self.series[start[:, None] + self._offsets]
        return rows[:, :self.seq_len], rows[:, self.seq_len:], start


def row_phase(times: pd.DatetimeIndex | None, t0: pd.Timestamp | None, freq: pd.Timedelta | None, cycle: int,
              rows: int) -> np.ndarray:
    """Each row's position in a learnt cycle: whole ``freq`` steps since ``t0`` modulo ``cycle``
    (zeros when there is no cycle)."""
    if not cycle:
        return np.zeros(rows, dtype=np.int64)
    steps = np.round(((times - t0) / freq).to_numpy(dtype=np.float64)).astype(np.int64)
    return steps % cycle


def calendar_freq(times: pd.DatetimeIndex | None) -> str | None:
    """The pandas offset alias of the dates' rhythm ("h", "ME", "B", …) when pandas can name it,
    so that future dates follow the calendar (month ends, business days), not a fixed span."""
    if times is None or len(times) < 3:
        return None
    import warnings

    with warnings.catch_warnings():  # pandas 3.1 announces infer_freq returning offsets; either is read below
        warnings.simplefilter("ignore")
        found = pd.infer_freq(times[-50:])
    return None if found is None else pd.tseries.frequencies.to_offset(found).freqstr
