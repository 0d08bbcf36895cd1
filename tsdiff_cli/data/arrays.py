"""Reading windows (N, T, F) for comparison: npy, a tsdiff HDF5 file, or a CSV / Parquet file of
stacked windows (one row per window and step, with ``window`` and ``step`` columns)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tsdiff_cli.data.scaling import Scaler
from tsdiff_cli.errors import UserError

WINDOW_COLUMN, STEP_COLUMN = "window", "step"


@dataclass
class WindowSet:
    values: np.ndarray  # (N, T, F) float32
    columns: list[str] | None  # feature names, when the file has them
    scaler: Scaler | None  # set when the values are in a tsdiff dataset's scaled space
    path: Path
    what: str  # which part of the file was read


def gap_free(windows: np.ndarray) -> np.ndarray:
    """Mask (N,) of the windows (N, T, F) without a NaN: the ones the metrics score."""
    return ~np.isnan(windows).any(axis=(1, 2))


def read_windows(path: Path | str) -> WindowSet:
    """Read windows from ``path``; any problem is a :class:`UserError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(path, "no such file", "check the path")
    if path.is_dir():
        raise UserError(path, "is a directory", "name a .npy, .h5, .csv or .parquet file")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _from_npy(path)
    if suffix in (".h5", ".hdf5"):
        return _from_h5(path)
    if suffix in (".csv", ".parquet", ".pq"):
        return _from_table(path)
    raise UserError(path, "unknown file type", "use .npy, .h5, .csv or .parquet")


def _as_windows(path: Path, array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise UserError(path, f"holds an array of shape {array.shape}", "expected windows of shape (N, T, F)")
    if array.size == 0:
        raise UserError(path, f"holds no windows (shape {array.shape})", "name a file with data")
    if not np.issubdtype(array.dtype, np.number):
        raise UserError(path, f"holds {array.dtype} values, not numbers", "save a numeric array")
    return np.ascontiguousarray(array, dtype=np.float32)


def _from_npy(path: Path) -> WindowSet:
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(path, f"cannot be read as .npy ({exc})", "save it with numpy.save") from None
    return WindowSet(_as_windows(path, array), None, None, path, "array")


def _from_h5(path: Path) -> WindowSet:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            columns = json.loads(f.attrs["columns"]) if "columns" in f.attrs else None
            if "observed" in f and "scaler" in f.attrs:  # a tsdiff dataset: the ground truth
                name = "target" if "target" in f else "observed"
                return WindowSet(_as_windows(path, f[name][()]), columns, Scaler.from_json(f.attrs["scaler"]), path, name)
            if "samples" in f:
                return WindowSet(_as_windows(path, f["samples"][()]), columns, None, path, "samples")
            arrays = [k for k, v in f.items() if isinstance(v, h5py.Dataset) and v.ndim in (2, 3)]
            if len(arrays) != 1:
                raise UserError(path, f"has datasets {sorted(f.keys())}, none named 'samples' or 'target'",
                                "write the windows as one dataset named 'samples'")
            return WindowSet(_as_windows(path, f[arrays[0]][()]), columns, None, path, arrays[0])
    except OSError as exc:
        raise UserError(path, f"cannot be read as HDF5 ({exc})", "check the file") from None


def _from_table(path: Path) -> WindowSet:
    from tsdiff_cli.data.sources import read_frame

    frame = read_frame(path)
    if WINDOW_COLUMN not in frame or STEP_COLUMN not in frame:
        raise UserError(path, f"has no '{WINDOW_COLUMN}' and '{STEP_COLUMN}' columns",
                        "write stacked windows: one row per window and step (as `tsdiff sample` does)")
    features = [c for c in frame.columns if c not in (WINDOW_COLUMN, STEP_COLUMN)]
    bad = [c for c in features if not np.issubdtype(frame[c].dtype, np.number)]
    if bad or not features:
        raise UserError(path, f"column '{bad[0]}' is not numeric" if bad else "has no value columns",
                        "keep only window, step and numeric feature columns")
    frame = frame.sort_values([WINDOW_COLUMN, STEP_COLUMN], kind="stable")
    counts = frame.groupby(WINDOW_COLUMN, sort=False).size()
    if counts.nunique() != 1:
        raise UserError(path, f"windows have different lengths ({counts.min()} to {counts.max()} steps)",
                        "give every window the same number of steps")
    values = frame[features].to_numpy(dtype=np.float32).reshape(len(counts), int(counts.iloc[0]), len(features))
    return WindowSet(_as_windows(path, values), features, None, path, "stacked windows")


def write_windows(path: Path | str, values: np.ndarray, columns: list[str], attrs: dict | None = None) -> Path:
    """Write windows (N, T, F) atomically as .csv / .parquet (stacked, with ``window`` and ``step``
    columns), .h5 (dataset ``samples``, attribute ``columns``) or .npy, chosen by the suffix."""
    from tsdiff_cli.atomic import atomic_output, ensure_writable

    path = ensure_writable(Path(path), "output")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq", ".h5", ".hdf5", ".npy"):
        raise UserError(path, "unknown output type", "use .csv, .parquet, .h5 or .npy")
    with atomic_output(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, values.astype(np.float32))
        elif suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(tmp, "w") as f:
                f.create_dataset("samples", data=values.astype(np.float32))
                f.attrs["columns"] = json.dumps(columns)
                for k, v in (attrs or {}).items():
                    f.attrs[k] = v
        else:
            import pandas as pd

            n, t, f = values.shape
            frame = pd.DataFrame(values.reshape(n * t, f), columns=columns)
            frame.insert(0, STEP_COLUMN, np.tile(np.arange(t), n))
            frame.insert(0, WINDOW_COLUMN, np.repeat(np.arange(n), t))
            if suffix == ".csv":
                frame.to_csv(tmp, index=False, float_format="%.6g")
            else:
                frame.to_parquet(tmp, index=False)
    return path
