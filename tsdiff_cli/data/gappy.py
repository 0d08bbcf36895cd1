"""A user's table with gaps: read it keeping every column as it is, write it back filled.

The value columns become a (rows, F) float array with NaN for empty cells; the time column (and
any column not imputed) travels through unchanged, so the output has the input's columns in the
input's order, plus interval columns when the filling was sampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tsdiff_cli.data.sources import _numeric_column, read_frame
from tsdiff_cli.errors import UserError


@dataclass
class GappyTable:
    frame: pd.DataFrame
    columns: list[str]  # the value columns, in file order
    values: np.ndarray  # (rows, F) float64, NaN where missing
    time_column: str | None
    path: Path


def _looks_like_time(column: pd.Series) -> bool:
    if pd.api.types.is_datetime64_any_dtype(column):
        return True
    if pd.api.types.is_numeric_dtype(column):
        return False
    present = column.dropna()
    if present.empty:
        return False
    parsed = pd.to_datetime(present.astype(str), errors="coerce", format="mixed")
    return bool(parsed.notna().all())


def read_gappy(path: Path, columns: list[str] | None = None, time_column: str | None = None,
               given_as: str = "--input") -> GappyTable:
    """Read ``path``; the value columns are ``columns`` or every column but the time column.

    The time column defaults to the first column whose values are all timestamps. A value column
    with no value at all is an error (nothing to learn its scale from).
    """
    path = Path(path)
    frame = read_frame(path, given_as)
    names = list(frame.columns)
    if time_column is not None and time_column not in names:
        raise UserError(path, f"has no time column '{time_column}' (columns: {', '.join(names)})", "fix [impute] time_column")
    if time_column is None and columns is None:
        time_column = next((c for c in names if _looks_like_time(frame[c])), None)
    if columns is None:
        columns = [c for c in names if c != time_column]
    else:
        missing = [c for c in columns if c not in names]
        if missing:
            raise UserError(path, f"has no column {', '.join(map(repr, missing))} (columns: {', '.join(names)})",
                            "fix [impute] columns")
    if not columns:
        raise UserError(path, "has no value columns", "add numeric columns")
    values = np.stack([_numeric_column(path, frame, c) for c in columns], axis=1)
    for j, name in enumerate(columns):
        if np.isnan(values[:, j]).all():
            raise UserError(path, f"column '{name}' has no values (all missing)",
                            "drop it, or give only the other columns with [impute] columns")
    return GappyTable(frame, list(columns), values, time_column, path)


def write_filled(path: Path, table: GappyTable, filled: np.ndarray,
                 bands: dict[str, np.ndarray] | None = None) -> Path:
    """Write the table with its value columns replaced by ``filled`` (rows, F), plus one column
    ``{name}_{suffix}`` per value column for each entry of ``bands`` (e.g. q05, q95), atomically."""
    from tsdiff_cli.atomic import atomic_output, ensure_writable

    path = ensure_writable(Path(path), "output")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(path, "unknown output type", "use .csv or .parquet")
    out = table.frame.copy()
    for j, name in enumerate(table.columns):
        out[name] = filled[:, j]
    for tag, band in (bands or {}).items():
        for j, name in enumerate(table.columns):
            out[f"{name}_{tag}"] = band[:, j]
    with atomic_output(path) as tmp:
        if suffix == ".csv":
            out.to_csv(tmp, index=False)
        else:
            out.to_parquet(tmp, index=False)
    return path
