"""Readers: a CSV / Parquet file or a shipped dataset becomes a numeric (L, F) series.

Every problem a user can fix (no file, empty file, text in a value column, an all-NaN or
constant column, a missing time column) is a :class:`UserError` naming the file and the column.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from tsdiff_cli.errors import UserError
from tsdiff_cli.settings import SHIPPED_DATASETS

TABLE_SUFFIXES = (".csv", ".csv.gz", ".txt", ".tsv", ".parquet", ".pq")


@dataclass
class Table:
    """A numeric series read from a file, before any gridding, scaling or windowing."""

    values: np.ndarray  # (L, F) float64, NaN where missing
    columns: list[str]
    times: pd.Series | None  # raw timestamps of the rows when a time column was named
    label: str  # how to name the source in messages
    sha256: str


def shipped_path(name: str) -> Path:
    """The path of a dataset shipped inside the package (see ``data/shipped/PROVENANCE.md``)."""
    return Path(str(resources.files("tsdiff_cli.data") / "shipped" / SHIPPED_DATASETS[name]))


def resolve_source(source: str) -> Path:
    """A shipped dataset name or a user path, as a file path (not checked for existence)."""
    return shipped_path(source) if source in SHIPPED_DATASETS else Path(source).expanduser()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_frame(path: Path, given_as: str = "[data] source") -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame, with one-line errors for every way it can fail;
    ``given_as`` is the setting or option that named the file (what a missing file's fix names)."""
    if not path.exists():
        shipped = f" (a path, \"sine\", or one of: {', '.join(SHIPPED_DATASETS)})" if given_as == "[data] source" else ""
        raise UserError(path, "no such file", f"check {given_as}{shipped}")
    if path.is_dir():
        raise UserError(path, "is a directory", "name a CSV or Parquet file")
    name = path.name.lower()
    if not name.endswith(TABLE_SUFFIXES):
        raise UserError(path, "unknown file type", "use a .csv or .parquet file")
    if path.stat().st_size == 0:
        raise UserError(path, "the file is empty", "name a file with a header row and data rows")
    parquet = name.endswith((".parquet", ".pq"))
    try:
        if parquet:
            _check_names(path, _parquet_names(path))
            frame = pd.read_parquet(path)
        else:
            sep = "\t" if name.endswith(".tsv") else _delimiter(path)
            _check_names(path, _header(path, sep))
            frame = pd.read_csv(path, sep=sep)
    except pd.errors.EmptyDataError:
        raise UserError(path, "the file is empty", "name a file with a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(path, f"cannot be read ({detail})", "check that it is a valid CSV or Parquet file") from None
    if frame.shape[0] == 0:
        raise UserError(path, "has a header but no data rows", "name a file with data")
    frame.columns = [str(c) for c in frame.columns]
    return frame


_SEPARATORS = (",", ";", "\t", "|")


def _first_line(path: Path) -> str:
    import gzip

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        return fh.readline()


def _delimiter(path: Path) -> str:
    """The column separator: a comma, unless the header holds none and another separator
    (";", tab, "|") splits it into columns."""
    header = _first_line(path)
    counts = {sep: header.count(sep) for sep in _SEPARATORS}
    if counts[","] == 0 and max(counts.values()) > 0:
        return max(counts, key=counts.get)
    return ","


def _header(path: Path, sep: str) -> list[str]:
    return next(csv.reader([_first_line(path).rstrip("\r\n")], delimiter=sep), [])


def _parquet_names(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def _check_names(path: Path, names: list[str]) -> None:
    """Two columns of one name would be renamed silently ("a", "a.1"): refused, naming them."""
    twice = [n for n, k in Counter(n.strip() for n in names).items() if k > 1 and n.strip()]
    if twice:
        where = "; ".join(f"'{n}' (columns {', '.join(str(i + 1) for i, m in enumerate(names) if m.strip() == n)})"
                          for n in twice)
        raise UserError(path, f"has duplicate column names: {where}", "give every column its own name")


def _line(path: Path, row: int) -> str:
    return f"line {row + 2}" if not path.name.lower().endswith((".parquet", ".pq")) else f"row {row}"


def _check_finite(path: Path, name: str, values: np.ndarray, raw: pd.Series) -> np.ndarray:
    """Infinite values would make an infinite scaler and corrupt every window they touch."""
    bad = np.isinf(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = raw.iloc[row]
        shown = repr(shown) if isinstance(shown, str) else f"{float(shown):g}"
        raise UserError(path, f"column '{name}' holds {int(bad.sum())} infinite value(s) (e.g. {shown} on "
                        f"{_line(path, row)})", "replace them with empty cells to mark them missing, or fix the values")
    return values


def _numeric_column(path: Path, frame: pd.DataFrame, name: str) -> np.ndarray:
    column = frame[name]
    if pd.api.types.is_bool_dtype(column) or not (
        pd.api.types.is_numeric_dtype(column) or column.dtype == object or pd.api.types.is_string_dtype(column)
    ):
        raise UserError(path, f"column '{name}' is not numeric ({column.dtype})",
                        "drop it with [data] columns = [...] or name it as [data] time_column")
    if pd.api.types.is_numeric_dtype(column):
        return _check_finite(path, name, column.to_numpy(dtype=np.float64, na_value=np.nan), column)
    converted = pd.to_numeric(column, errors="coerce")
    text = column.astype("string").str.strip()
    bad = converted.isna() & column.notna() & (text != "")
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = str(column.iloc[row]).strip()
        if re.fullmatch(r"[-+]?\d+,\d+", value):
            fix = "it is written with a decimal comma; write decimal points (e.g. " + value.replace(",", ".") + ")"
        else:
            fix = f"if it holds timestamps set [data] time_column = \"{name}\", otherwise drop it with [data] columns = [...]"
        raise UserError(path, f"column '{name}' is not numeric (e.g. {column.iloc[row]!r} on {_line(path, row)})", fix)
    return _check_finite(path, name, converted.to_numpy(dtype=np.float64, na_value=np.nan), column)


def read_table(source: str, columns: list[str] | None = None, time_column: str | None = None) -> Table:
    """Read ``source`` (a shipped dataset name or a file) into a numeric :class:`Table`.

    Keeps the named ``columns`` (default: all but ``time_column``) in the given order; rejects
    non-numeric, all-NaN and constant value columns with a message that says how to drop them.
    """
    path = resolve_source(source)
    frame = read_frame(path)
    available = list(frame.columns)
    if time_column is not None and time_column not in available:
        raise UserError(path, f"has no time column '{time_column}' (columns: {', '.join(available)})",
                        "fix [data] time_column")
    if columns is None:
        columns = [c for c in available if c != time_column]
    else:
        missing = [c for c in columns if c not in available]
        if missing:
            raise UserError(path, f"has no column {', '.join(repr(c) for c in missing)} "
                            f"(columns: {', '.join(available)})", "fix [data] columns")
        if time_column in columns:
            raise UserError(path, f"'{time_column}' is both the time column and a value column",
                            "remove it from [data] columns")
    if not columns:
        raise UserError(path, "has no value columns", "add numeric columns or fix [data] columns")

    values = np.stack([_numeric_column(path, frame, c) for c in columns], axis=1)
    observed = ~np.isnan(values)
    for j, name in enumerate(columns):
        if not observed[:, j].any():
            raise UserError(path, f"column '{name}' has no values (all NaN)",
                            "drop it with [data] columns = [...]")
    lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
    for j in np.flatnonzero(lo == hi):
        # Rejected, not scaled to 0: a constant carries nothing to learn and leaves the
        # correlation metrics undefined (zero variance).
        raise UserError(path, f"column '{columns[j]}' is constant ({lo[j]:g} in every row)",
                        "drop it with [data] columns = [...]")
    times = frame[time_column] if time_column is not None else None
    label = source if source in SHIPPED_DATASETS else str(path)
    return Table(values=values, columns=list(columns), times=times, label=label, sha256=file_sha256(path))
