"""Reading precomputed per-window embeddings in the TimeKD layout (DESIGN "Formats").

    {root}/{name}/{pred_len}/{flag}/{i}.h5      (also {root}/{name}.csv/{pred_len}/{flag}/...)

Each file holds one dataset ``embeddings``: (N_vars, E), (1, N_vars, E), or (B, N_vars, E) when
the store script ran with batch B (file i then holds windows i·B … i·B + B − 1). Window k covers
rows ``[border1 + k, border1 + k + L + P)`` of the CSV with the TSLib borders of the split
``flag``. All small files are read once into one consolidated HDF5 cache, keyed by the folder's
file names, sizes and modification times, so later runs read one file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tsdiff_cli.errors import UserError

SCHEMES = ("ett_hour", "ett_minute", "custom")
FLAGS = ("train", "val", "test")
_NUMBERED = re.compile(r"^(\d+)\.h5$")


def scheme_for(name: str) -> str:
    """The TSLib border scheme a dataset name implies: ETTh* hourly, ETTm* minutely, else custom."""
    if name.upper().startswith("ETTH"):
        return "ett_hour"
    if name.upper().startswith("ETTM"):
        return "ett_minute"
    return "custom"


def tslib_borders(scheme: str, rows: int, seq_len: int) -> dict[str, tuple[int, int]]:
    """``{flag: (border1, border2)}`` of the TSLib data loaders (Dataset_ETT_hour / _minute /
    Dataset_Custom): ETT 12 / 4 / 4 months (hourly 30·24 rows a month, minutely ×4), custom
    data 70 / 10 / 20 % with ``int()`` rounding; val and test start ``seq_len`` rows early so
    their first window has a full lookback."""
    if scheme in ("ett_hour", "ett_minute"):
        month = 30 * 24 * (4 if scheme == "ett_minute" else 1)
        train, val, test = 12 * month, 16 * month, 20 * month
        return {"train": (0, train), "val": (train - seq_len, val), "test": (val - seq_len, test)}
    n_train, n_test = int(rows * 0.7), int(rows * 0.2)
    n_val = rows - n_train - n_test
    return {"train": (0, n_train), "val": (n_train - seq_len, n_train + n_val), "test": (rows - n_test - seq_len, rows)}


def embedding_window_count(border1: int, border2: int, seq_len: int, pred_len: int) -> int:
    return max(border2 - border1 - seq_len - pred_len + 1, 0)


@dataclass
class Layout:
    leaf: Path  # the folder holding 0.h5, 1.h5, …
    name: str  # dataset name (".csv" removed)
    pred_len: int
    flag: str
    files: list[Path]  # sorted numerically


def _numbered(folder: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NUMBERED.match(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def _leaf_parts(leaf: Path) -> tuple[str, int | None, str]:
    pred = leaf.parent.name
    return leaf.parent.parent.name.removesuffix(".csv"), int(pred) if pred.isdigit() else None, leaf.name


def locate(emb_dir: Path, pred_len: int | None = None, flag: str | None = None) -> Layout:
    """Find the leaf folder under ``emb_dir`` (the root, any level below it, or the leaf itself).

    Where several ``{name}/{pred_len}/{flag}`` folders match, the error lists them and asks for
    ``--pred-len`` / ``--flag``.
    """
    emb_dir = Path(emb_dir)
    if not emb_dir.exists():
        raise UserError(emb_dir, "no such embedding folder", "name the TimeKD output root or a {name}/{pred_len}/{flag} folder")
    if not emb_dir.is_dir():
        raise UserError(emb_dir, "is a file, not an embedding folder", "name the folder that holds {name}/{pred_len}/{flag}/")
    if _numbered(emb_dir):
        leaves = [emb_dir]
    else:
        leaves = [d for depth in ("*", "*/*", "*/*/*") for d in sorted(emb_dir.glob(depth))
                  if d.is_dir() and _numbered(d)]
    if not leaves:
        raise UserError(emb_dir, "holds no embedding files (expected {name}/{pred_len}/{flag}/0.h5, 1.h5, …)",
                        "point --emb-dir at the folder TimeKD's store script wrote")
    candidates = []
    for leaf in leaves:
        name, p, f = _leaf_parts(leaf)
        # a folder that does not name its pred_len / split matches any asked for (they are then taken from the options)
        if (pred_len is None or p is None or p == pred_len) and (flag is None or f not in FLAGS or f == flag):
            candidates.append((leaf, name, p, f))
    if not candidates:
        found = ", ".join(str(leaf.relative_to(emb_dir)) or "." for leaf in leaves)
        raise UserError(emb_dir, f"has no embeddings for pred_len {pred_len}, flag {flag} (found: {found})",
                        "fix --pred-len / --flag")
    if len(candidates) > 1:
        found = ", ".join(str(c[0].relative_to(emb_dir)) for c in candidates)
        raise UserError(emb_dir, f"holds several embedding folders ({found})", "choose one with --pred-len and --flag")
    leaf, name, p, f = candidates[0]
    if p is None:
        if pred_len is None:
            raise UserError(leaf, f"does not say its pred_len (parent folder '{leaf.parent.name}')", "give --pred-len")
        p = pred_len
    if f not in FLAGS:
        if flag is None:
            raise UserError(leaf, f"folder name '{f}' is not a split (train, val, test)", "give --flag")
        f = flag
    files = _numbered(leaf)
    numbers = [int(_NUMBERED.match(x.name).group(1)) for x in files]
    if numbers != list(range(len(numbers))):
        gap = next(i for i, k in enumerate(numbers) if k != i)
        raise UserError(leaf, f"file {gap}.h5 is missing (files must be numbered 0 … {len(numbers) - 1} without gaps)",
                        "store the embeddings again")
    return Layout(leaf, name, p, f, files)


def _fingerprint(files: list[Path]) -> str:
    """The folder, and every file's name, size and modification time, and the first file's bytes."""
    digest = hashlib.sha256(str(files[0].parent.resolve()).encode())
    digest.update(files[0].read_bytes())
    for p in files:
        st = p.stat()
        digest.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def _read_one(path: Path):
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "embeddings" not in f:
                raise UserError(path, f"has no dataset 'embeddings' (found: {', '.join(f.keys()) or 'nothing'})",
                                "name a folder written by TimeKD's store script")
            array = f["embeddings"][()]
    except OSError as exc:
        raise UserError(path, f"cannot be read as HDF5 ({exc})", "store the embeddings again") from None
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[0] == 0:
        raise UserError(path, f"'embeddings' has shape {array.shape}", "expected (N_vars, E), (1, N_vars, E) or (B, N_vars, E)")
    return array


def read_embeddings(layout: Layout, cache_dir: Path | None = None,
                    progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, bool]:
    """All windows' embeddings (W, N_vars, E) float32, and whether they came from the cache.

    NaN inside an embedding and files that disagree in shape are errors naming the file.
    """
    import h5py

    from tsdiff_cli.atomic import atomic_output

    cache = None
    if cache_dir is not None:
        key = _fingerprint(layout.files)
        cache = Path(cache_dir) / f"timekd-{layout.name}-{layout.pred_len}-{layout.flag}-{key}.h5"
        if cache.is_file():
            try:
                with h5py.File(cache, "r") as f:
                    return f["embeddings"][()], True
            except (OSError, KeyError):
                cache.unlink(missing_ok=True)  # a damaged cache is rebuilt
    parts, shape = [], None
    for k, path in enumerate(layout.files):
        array = _read_one(path)
        if shape is None:
            shape = array.shape[1:]
        elif array.shape[1:] != shape:
            raise UserError(path, f"holds embeddings of shape {array.shape[1:]}, but {layout.files[0].name} holds {shape}",
                            "every file must have the same number of variables and width")
        if not np.isfinite(array).all():
            raise UserError(path, "holds NaN or infinite values in 'embeddings'", "store the embeddings again")
        parts.append(array.astype(np.float32, copy=False))
        if progress is not None and (k % 256 == 255 or k + 1 == len(layout.files)):
            progress(k + 1, len(layout.files))
    embeddings = np.concatenate(parts)
    if cache is not None:
        try:
            with atomic_output(cache) as tmp:
                with h5py.File(tmp, "w") as f:
                    f.create_dataset("embeddings", data=embeddings)
                    f.attrs["source"] = str(layout.leaf.resolve())
                    f.attrs["files"] = len(layout.files)
        except (OSError, UserError):
            pass  # the cache is an optimisation: an unwritable runs folder only costs speed
    return embeddings, False


def check_count(layout: Layout, windows: int, rows: int, seq_len: int, scheme: str, where: str) -> tuple[int, int]:
    """Check that ``windows`` embeddings fit the CSV's ``rows`` under the TSLib borders;
    returns the (border1, border2) of the layout's split."""
    borders = tslib_borders(scheme, rows, seq_len)
    b1, b2 = borders[layout.flag]
    if b1 < 0 or b2 > rows:
        need = f"{b2} rows" if b2 > rows else f"seq_len {seq_len} to fit before row {b1 + seq_len}"
        raise UserError(where, f"has {rows} rows, but the {scheme} borders of the {layout.flag} split need {need}",
                        "name the CSV the embeddings were made from, or set --borders")
    expected = embedding_window_count(b1, b2, seq_len, layout.pred_len)
    if windows != expected:
        hint = ""
        if layout.flag == "train" and b2 - b1 - layout.pred_len + 1 - windows > 0:
            hint = f" (seq_len {b2 - b1 - layout.pred_len + 1 - windows} would give {windows})"
        raise UserError(layout.leaf, f"holds {windows} windows, but {scheme} borders with seq_len {seq_len} and pred_len "
                        f"{layout.pred_len} give {expected} for the {layout.flag} split (rows {b1}–{b2}){hint}",
                        "check --seq-len, --pred-len, --borders and the CSV")
    return b1, b2
