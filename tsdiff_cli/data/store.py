"""The dataset file written by ``tsdiff preprocess``: one HDF5 file (format in DESIGN.md).

Datasets: ``observed`` (N, T, F) float32, NaN where missing; ``target`` (N, T, F) float32, the
ground truth before benchmark missingness (written only when ``missing_rate`` > 0; otherwise it
equals ``observed``); ``split`` (N,) uint8 (0 train, 1 val, 2 test); ``index`` (N,) int64, the
row of the processed series where each window starts. Attributes: ``columns`` and ``scaler``
(JSON), ``seq_len``, ``missing_rate``, ``seed``, ``source``, ``source_sha256``,
``tsdiff_version``, ``settings`` (the ``[data]`` section as JSON) and, for gridded data,
``time_column``, ``freq`` and ``start``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tsdiff_cli import __version__
from tsdiff_cli.atomic import atomic_output
from tsdiff_cli.data.scaling import Scaler
from tsdiff_cli.errors import UserError

SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass
class WindowDataset:
    observed: np.ndarray
    target: np.ndarray
    split: np.ndarray
    index: np.ndarray
    columns: list[str]
    scaler: Scaler
    attrs: dict[str, Any] = field(default_factory=dict)
    #: the file holds a ``target`` apart from ``observed`` (benchmark mode: values were removed)
    has_target: bool = True

    @property
    def observed_fraction(self) -> float:
        return float(np.mean(~np.isnan(self.observed)))


def write_dataset(path: Path, ds: WindowDataset) -> None:
    """Write ``ds`` to ``path`` atomically (temporary file, then rename)."""
    import h5py

    with atomic_output(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("observed", data=ds.observed.astype(np.float32))
            if not np.array_equal(ds.target, ds.observed, equal_nan=True):
                f.create_dataset("target", data=ds.target.astype(np.float32))
            f.create_dataset("split", data=ds.split.astype(np.uint8))
            f.create_dataset("index", data=ds.index.astype(np.int64))
            f.attrs["columns"] = json.dumps(ds.columns)
            f.attrs["scaler"] = ds.scaler.to_json()
            f.attrs["tsdiff_version"] = __version__
            for key, value in ds.attrs.items():
                f.attrs[key] = value


def read_dataset(path: Path) -> WindowDataset:
    """Read a dataset file; a file that is missing or not a tsdiff dataset is a :class:`UserError`."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise UserError(path, "no such dataset file", "run `tsdiff preprocess CONFIG` first")
    try:
        with h5py.File(path, "r") as f:
            if "observed" not in f or "columns" not in f.attrs:
                raise UserError(path, "is not a tsdiff dataset file", "make one with `tsdiff preprocess`")
            observed = f["observed"][()]
            has_target = "target" in f
            target = f["target"][()] if has_target else observed.copy()
            split = f["split"][()]
            index = f["index"][()]
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
    except OSError as exc:
        raise UserError(path, f"cannot be read as HDF5 ({exc})", "make it again with `tsdiff preprocess`") from None
    columns = json.loads(attrs.pop("columns"))
    scaler = Scaler.from_json(attrs.pop("scaler"))
    return WindowDataset(observed, target, split, index, columns, scaler, attrs, has_target)
