"""Windows (N, T, F) in files: reading them for comparison (npy, a tsdiff HDF5 file, or a CSV /
Parquet file of stacked windows: one row per window and step, with ``window`` and ``step``
columns) and writing them batch by batch, so that memory stays bounded whatever their number.

Samples written by tsdiff record the scaler of the data they imitate (HDF5 attribute ``scaler``;
for .npy a sidecar ``<file>.npy.json``), so that a comparison with a scaled dataset file can
bring both into one space."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np

from tsdiff_cli.data.scaling import Scaler
from tsdiff_cli.errors import UserError

WINDOW_COLUMN, STEP_COLUMN = "window", "step"
OUTPUT_SUFFIXES = (".csv", ".parquet", ".pq", ".h5", ".hdf5", ".npy")


@dataclass
class WindowSet:
    values: np.ndarray  # (N, T, F) float32
    columns: list[str] | None  # feature names, when the file has them
    scaler: Scaler | None  # the scaler of the data these windows are (or imitate), when known
    path: Path
    what: str  # which part of the file was read
    scaled: bool = False  # values in ``scaler``'s scaled space (a dataset file) rather than original units

    @property
    def units_known(self) -> bool:
        """Original units that can be scaled: named columns, or a recorded scaler."""
        return not self.scaled and (self.scaler is not None or self.columns is not None)


def sidecar(path: Path) -> Path:
    """Where the scaler and columns of an .npy file of windows are recorded."""
    return path.with_name(path.name + ".json")


def gap_free(windows: np.ndarray) -> np.ndarray:
    """Mask (N,) of the windows (N, T, F) without a NaN: the ones the metrics score."""
    return ~np.isnan(windows).any(axis=(1, 2))


def read_windows(path: Path | str, labels: tuple[str, ...] = ()) -> WindowSet:
    """Read windows from ``path``; any problem is a :class:`UserError` naming the file. ``labels``
    are per-window columns of a table that are not features (a conditional sample's conditions)."""
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
        return _from_table(path, labels)
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
    columns, scaler = None, None
    if sidecar(path).is_file():
        try:
            info = json.loads(sidecar(path).read_text())
            columns, scaler = info.get("columns"), Scaler.from_json(info["scaler"]) if info.get("scaler") else None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UserError(sidecar(path), f"cannot be read ({exc})", "delete it, or write the samples again") from None
    return WindowSet(_as_windows(path, array), columns, scaler, path, "array")


def _from_h5(path: Path) -> WindowSet:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            columns = json.loads(f.attrs["columns"]) if "columns" in f.attrs else None
            scaler = Scaler.from_json(f.attrs["scaler"]) if "scaler" in f.attrs else None
            if "observed" in f and scaler is not None:  # a tsdiff dataset: the ground truth
                name = "target" if "target" in f else "observed"
                return WindowSet(_as_windows(path, f[name][()]), columns, scaler, path, name, scaled=True)
            if "samples" in f:  # tsdiff samples are in original units, with the scaler of their data
                return WindowSet(_as_windows(path, f["samples"][()]), columns, scaler, path, "samples")
            arrays = [k for k, v in f.items() if isinstance(v, h5py.Dataset) and v.ndim in (2, 3)]
            if len(arrays) != 1:
                raise UserError(path, f"has datasets {sorted(f.keys())}, none named 'samples' or 'target'",
                                "write the windows as one dataset named 'samples'")
            return WindowSet(_as_windows(path, f[arrays[0]][()]), columns, None, path, arrays[0])
    except OSError as exc:
        raise UserError(path, f"cannot be read as HDF5 ({exc})", "check the file") from None


def _from_table(path: Path, labels: tuple[str, ...] = ()) -> WindowSet:
    from tsdiff_cli.data.sources import read_frame

    frame = read_frame(path, "--real / --generated")
    if WINDOW_COLUMN not in frame or STEP_COLUMN not in frame:
        raise UserError(path, f"has no '{WINDOW_COLUMN}' and '{STEP_COLUMN}' columns",
                        "write stacked windows: one row per window and step (as `tsdiff sample` does)")
    features = [c for c in frame.columns if c not in (WINDOW_COLUMN, STEP_COLUMN, *labels)]
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


def estimated_bytes(suffix: str, n: int, t: int, f: int) -> int:
    """About how many bytes ``n`` windows of (t, f) take as a file of type ``suffix`` (generous)."""
    if suffix in (".npy", ".h5", ".hdf5"):
        return 4 * n * t * f + 4096
    if suffix == ".csv":
        return n * t * (13 * f + 12) + 4096  # %.6g values, window and step numbers
    return n * t * (5 * f + 16) + 4096  # parquet: float32 values, compressed window and step columns


class WindowWriter:
    """Write ``n`` windows of (t, features) to ``path`` batch by batch: memory holds one batch,
    the file appears only when every window is in it (a temporary file renamed at the end), and
    a request the disk cannot hold is refused before anything is written.

    .csv / .parquet: stacked windows (``window``, ``step``, then the columns); .h5: dataset
    ``samples`` with attributes ``columns``, ``scaler`` and ``attrs``; .npy: the array, with the
    columns and scaler in ``<file>.npy.json``. ``labels`` name per-window values (the conditions
    of conditional samples): columns after ``step`` in a table, datasets ``label_<name>`` in .h5,
    lists under ``labels`` in the .npy sidecar."""

    def __init__(self, path: Path, n: int, t: int, columns: list[str], scaler: Scaler | None = None,
                 attrs: dict | None = None, labels: list[str] | None = None):
        from tsdiff_cli.atomic import ensure_writable

        self.path = ensure_writable(Path(path), "output")
        self.suffix = self.path.suffix.lower()
        if self.suffix not in OUTPUT_SUFFIXES:
            raise UserError(self.path, "unknown output type", "use .csv, .parquet, .h5 or .npy")
        self.n, self.t, self.columns, self.scaler, self.attrs = n, t, columns, scaler, attrs or {}
        self.labels = list(labels or [])  # per-window columns (a conditional sample's conditions)
        self._label_values: dict[str, list] = {name: [] for name in self.labels}
        from tsdiff_cli.resources import require_disk

        require_disk(self.path, estimated_bytes(self.suffix, n, t, len(columns)), f"{n} windows as {self.suffix}",
                     "ask for fewer windows (-n) or write to a disk with room")
        self.done = 0

    def __enter__(self) -> WindowWriter:
        from tsdiff_cli.atomic import atomic_output

        self._atomic = atomic_output(self.path)
        self.tmp = self._atomic.__enter__()
        f = len(self.columns)
        if self.suffix == ".npy":
            self._out = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=np.float32, shape=(self.n, self.t, f))
        elif self.suffix in (".h5", ".hdf5"):
            import h5py

            self._file = h5py.File(self.tmp, "w")
            self._out = self._file.create_dataset("samples", shape=(self.n, self.t, f), dtype=np.float32,
                                                  chunks=(max(1, min(self.n, 1024)), self.t, f))
            self._file.attrs["columns"] = json.dumps(self.columns)
            if self.scaler is not None:
                self._file.attrs["scaler"] = self.scaler.to_json()
            for k, v in self.attrs.items():
                self._file.attrs[k] = v
        elif self.suffix == ".csv":
            self._file = open(self.tmp, "w", encoding="utf-8", newline="")
            self._file.write(",".join([WINDOW_COLUMN, STEP_COLUMN, *self.labels, *self.columns]) + "\n")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            fields = [pa.field(WINDOW_COLUMN, pa.int64()), pa.field(STEP_COLUMN, pa.int64())]
            fields += [pa.field(c, pa.string()) for c in self.labels]
            fields += [pa.field(c, pa.float32()) for c in self.columns]
            self._schema = pa.schema(fields)
            self._file = pq.ParquetWriter(self.tmp, self._schema)
        return self

    def write(self, batch: np.ndarray, labels: dict[str, np.ndarray] | None = None) -> None:
        b = len(batch)
        lo = self.done
        labels = {name: [str(v) for v in labels[name]] for name in self.labels} if self.labels else {}
        for name, values in labels.items():
            self._label_values[name].extend(values)
        if self.suffix in (".npy", ".h5", ".hdf5"):
            self._out[lo:lo + b] = batch.astype(np.float32)
        else:
            import pandas as pd

            rows = batch.reshape(b * self.t, -1)
            frame = pd.DataFrame(rows if self.suffix == ".csv" else rows.astype(np.float32), columns=self.columns)
            for name in reversed(self.labels):
                frame.insert(0, name, np.repeat(np.array(labels[name], dtype=object), self.t))
            frame.insert(0, STEP_COLUMN, np.tile(np.arange(self.t), b))
            frame.insert(0, WINDOW_COLUMN, np.repeat(np.arange(lo, lo + b), self.t))
            if self.suffix == ".csv":
                frame.to_csv(self._file, index=False, header=False, float_format="%.6g")
            else:
                import pyarrow as pa

                self._file.write_table(pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False))
        self.done += b

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        outcome = (kind, exc, tb)
        try:
            if self.suffix == ".npy":
                self._out.flush()
                del self._out
            else:
                if self.suffix in (".h5", ".hdf5") and kind is None:
                    import h5py

                    for name, values in self._label_values.items():
                        self._file.create_dataset(f"label_{name}", data=np.array(values, dtype=object),
                                                  dtype=h5py.string_dtype("utf-8"))
                self._file.close()
            if kind is None and self.done != self.n:
                raise RuntimeError(f"{self.done} of {self.n} windows were written")
        except BaseException as err:
            self._atomic.__exit__(*(outcome if kind else (type(err), err, err.__traceback__)))
            raise
        self._atomic.__exit__(*outcome)  # renames on success, removes the temporary file otherwise
        if kind is None and self.suffix == ".npy":
            from tsdiff_cli.atomic import write_text

            write_text(sidecar(self.path), json.dumps({"columns": self.columns, "units": "original",
                                                      "scaler": self.scaler.to_json() if self.scaler else None,
                                                      **({"labels": self._label_values} if self.labels else {}),
                                                      **self.attrs}) + "\n")


def write_windows(path: Path | str, values: np.ndarray, columns: list[str], attrs: dict | None = None,
                  scaler: Scaler | None = None) -> Path:
    """Write windows (N, T, F) in one go (see :class:`WindowWriter`)."""
    n, t, _ = values.shape
    with WindowWriter(Path(path), n, t, columns, scaler, attrs) as out:
        out.write(values)
    return out.path
