"""The dataset file written by ``tsdiff preprocess``: one HDF5 file (format in DESIGN.md).

Datasets: ``observed`` (N, T, F) float32, NaN where missing; ``target`` (N, T, F) float32, the
ground truth before benchmark missingness (written only when ``missing_rate`` > 0; otherwise it
equals ``observed``); ``split`` (N,) uint8 (0 train, 1 val, 2 test); ``index`` (N,) int64, the
row of the processed series where each window starts. Attributes: ``columns`` and ``scaler``
(JSON), ``seq_len``, ``missing_rate``, ``seed``, ``source``, ``source_sha256``,
``tsdiff_version``, ``revision`` (:data:`REVISION`), ``settings`` (the ``[data]`` section as
JSON) and, for gridded data,
``time_column``, ``freq`` and ``start``. With conditions (conditional generation): datasets
``cond_cats`` (N, K) int64 codes (−1 missing), ``cond_nums`` (N, M) float32 standardised (NaN
missing), ``cond_tokens`` (N, L) int64 caption token ids, ``captions`` (N,) UTF-8 strings, and the
attribute ``conditions`` (JSON: :class:`tsdiff_cli.data.conditions.ConditionSpec`).
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
# Raised whenever preprocessing the same source with the same [data] settings starts giving other
# windows or conditions, so a file made by an older tsdiff is rebuilt rather than reused.
# 2: a .ts file's @classLabel is categorical even when its classes are numbers.
REVISION = 2


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
    #: per-window conditions: ``cats``, ``nums``, ``tokens`` arrays, ``captions`` and ``spec`` (a dict)
    conditions: dict[str, Any] | None = None

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
            f.attrs["revision"] = REVISION
            if ds.conditions is not None:
                c = ds.conditions
                f.create_dataset("cond_cats", data=c["cats"].astype(np.int64))
                f.create_dataset("cond_nums", data=c["nums"].astype(np.float32))
                f.create_dataset("cond_tokens", data=c["tokens"].astype(np.int64))
                if c.get("captions") is not None:
                    f.create_dataset("captions", data=np.asarray(c["captions"], dtype=object),
                                     dtype=h5py.string_dtype("utf-8"))
                f.attrs["conditions"] = json.dumps(c["spec"])


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
            conditions = None
            if "conditions" in f.attrs:
                conditions = {"cats": f["cond_cats"][()], "nums": f["cond_nums"][()], "tokens": f["cond_tokens"][()],
                              "captions": ([s.decode() if isinstance(s, bytes) else s for s in f["captions"][()]]
                                           if "captions" in f else None),
                              "spec": json.loads(attrs.pop("conditions"))}
    except OSError as exc:
        raise UserError(path, f"cannot be read as HDF5 ({exc})", "make it again with `tsdiff preprocess`") from None
    columns = json.loads(attrs.pop("columns"))
    scaler = Scaler.from_json(attrs.pop("scaler"))
    return WindowDataset(observed, target, split, index, columns, scaler, attrs, has_target, conditions)
