"""Labelled series for ``tsdiff classify``: the sktime/aeon ``.ts`` text format and long tables.

Both readers return a :class:`LabelledSet`: numeric channels (N, C, T) with NaN wherever nothing
was observed — a ``?`` in the file, a gap in a long table, and the padding after a short case
(padding is *missing*, never zero) —, time-varying categorical channels (N, K, T) as integer
codes (0 = unknown or absent), and one array per label: per series (N,) or per time step (N, T),
class codes (−1 = no label) or numbers (NaN = no label).

The ``.ts`` reader is our own (about 60 lines): the format is simple (an ``@`` header, then one
case per line, dimensions split by ``:``, values by ``,``, the label last, ``?`` missing), and
reading it ourselves keeps aeon — a large package with numba — out of the runtime dependencies
and lets every malformed line get a one-line error naming the file and line.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np

from tsdiff_cli.errors import UserError

LabelKind = Literal["class", "numeric"]
TS_LABEL = "label"  # the name a .ts file's class / target label gets
UEA_SETS = ("JapaneseVowels", "BasicMotions", "Covid3Month")
SHIPPED_LABELLED = {f"{name}_{split}": f"{name}_{split}.ts" for name in UEA_SETS for split in ("TRAIN", "TEST")}


@dataclass
class LabelSpec:
    """One target: its column name, kind, whether it is given per time step, and its classes."""

    name: str
    kind: LabelKind
    per_step: bool = False
    classes: list[str] = field(default_factory=list)  # class kind: code i is classes[i]


@dataclass
class LabelledSet:
    x: np.ndarray  # (N, C, T) float32, NaN where missing (padding included)
    cat: np.ndarray  # (N, K, T) int64 codes, 0 = unknown / missing, i ≥ 1 is vocab[name][i − 1]
    lengths: np.ndarray  # (N,) steps before the padding
    ids: list[str]
    channels: list[str]
    categoricals: list[str]
    vocab: dict[str, list[str]]
    labels: dict[str, np.ndarray]  # class: int64 codes, −1 = none; numeric: float64, NaN = none
    specs: list[LabelSpec]
    source: str
    unknown_codes: int = 0  # categorical values mapped to "unknown" by :meth:`conform`

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, idx: np.ndarray) -> LabelledSet:
        idx = np.asarray(idx)
        return replace(self, x=self.x[idx], cat=self.cat[idx], lengths=self.lengths[idx],
                       ids=[self.ids[i] for i in idx], labels={k: v[idx] for k, v in self.labels.items()})

    def spec(self, name: str) -> LabelSpec:
        return next(s for s in self.specs if s.name == name)


def shipped_labelled(name: str) -> Path:
    return Path(str(resources.files("tsdiff_cli.data") / "shipped" / "uea" / SHIPPED_LABELLED[name]))


def resolve_labelled(source: str | Path) -> Path:
    """A shipped set's stem (``"JapaneseVowels_TRAIN"``) or a path."""
    return shipped_labelled(str(source)) if str(source) in SHIPPED_LABELLED else Path(source).expanduser()


# --- the .ts format ------------------------------------------------------------------------------


def read_ts(path: Path) -> LabelledSet:
    """Read a ``.ts`` file (equal or variable length, class or regression label, ``?`` missing)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(path, "no such file", "check the path (shipped sets: " + ", ".join(SHIPPED_LABELLED) + ")")
    header: dict[str, str] = {}
    cases: list[list[np.ndarray]] = []
    raw_labels: list[str] = []
    in_data = False
    with path.open(encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if not in_data:
                if not line.startswith("@"):
                    raise UserError(path, f"line {number} is neither a @ header line nor after @data", "is it a .ts file?")
                key, _, rest = line[1:].partition(" ")
                key = key.lower()
                if key == "data":
                    in_data = True
                else:
                    header[key] = rest.strip()
                continue
            parts = line.split(":")
            labelled = _true(header.get("classlabel", "false")) or _true(header.get("targetlabel", "false"))
            if labelled:
                parts, label = parts[:-1], parts[-1].strip()
                raw_labels.append(label)
            if _true(header.get("timestamps", "false")):
                raise UserError(path, "uses @timeStamps true, which tsdiff does not read",
                                "convert it to a long table (id, time, values, label) and name its columns in [classify]")
            dims = []
            for d, text in enumerate(parts):
                try:
                    dims.append(np.array([np.nan if v.strip() == "?" else float(v) for v in text.split(",")],
                                         dtype=np.float64))
                except ValueError:
                    raise UserError(path, f"line {number}, dimension {d + 1} holds a value that is not a number",
                                    "fix the file (write ? for a missing value)") from None
            if not dims:
                raise UserError(path, f"line {number} has no dimensions before its label",
                                "separate dimensions and the label by ':'")
            if cases and len(dims) != len(cases[0]):
                raise UserError(path, f"line {number} has {len(dims)} dimensions where the first case has {len(cases[0])}",
                                "every case needs the same dimensions (separated by ':')")
            cases.append(dims)
    if not cases:
        raise UserError(path, "has no cases after @data", "is it a .ts file?")
    n, c = len(cases), len(cases[0])
    lengths = np.array([max(len(d) for d in dims) for dims in cases])
    t = int(lengths.max())
    x = np.full((n, c, t), np.nan, dtype=np.float32)
    for i, dims in enumerate(cases):  # reading, not a hot path: one copy per case and dimension
        for j, d in enumerate(dims):
            x[i, j, :len(d)] = d
    specs, labels = [], {}
    if _true(header.get("classlabel", "false")):
        classes = header["classlabel"].split()[1:]
        unknown = sorted(set(raw_labels) - set(classes))
        if unknown:
            raise UserError(path, f"has labels {', '.join(unknown[:5])} that @classLabel does not list", "fix the header")
        specs.append(LabelSpec(TS_LABEL, "class", False, classes))
        lookup = {name: i for i, name in enumerate(classes)}
        labels[TS_LABEL] = np.array([lookup[v] for v in raw_labels], dtype=np.int64)
    elif _true(header.get("targetlabel", "false")):
        try:
            labels[TS_LABEL] = np.array([np.nan if v == "?" else float(v) for v in raw_labels], dtype=np.float64)
        except ValueError:
            raise UserError(path, "has a regression target that is not a number", "fix the file") from None
        specs.append(LabelSpec(TS_LABEL, "numeric"))
    names = [f"dim_{j}" for j in range(c)]
    return LabelledSet(x, np.zeros((n, 0, t), dtype=np.int64), lengths, [str(i) for i in range(n)], names, [], {},
                       labels, specs, str(path))


def _true(text: str) -> bool:
    return text.split()[0].lower() == "true" if text.split() else False


# --- long tables ---------------------------------------------------------------------------------


def read_long(path: Path, id_column: str, time_column: str | None, value_columns: list[str] | None,
              categorical_columns: list[str], label_kinds: dict[str, LabelKind], step_labels: list[str],
              labels_optional: bool = False, section: str = "[classify]") -> LabelledSet:
    """One row per (series id, time step): value columns, categorical columns and label columns.
    Rows are ordered by ``time_column`` within a series (file order without one) and are its
    consecutive steps: a step where nothing was measured is a row with empty values. With
    ``labels_optional`` (files to predict) absent label columns are skipped. ``section`` is the
    settings section that names the columns (for the fix a message suggests)."""
    from tsdiff_cli.data.sources import read_frame

    path = Path(path)
    frame = read_frame(path)
    columns = list(frame.columns)
    if labels_optional:
        label_kinds = {k: v for k, v in label_kinds.items() if k in columns}
        step_labels = [k for k in step_labels if k in label_kinds]
    wanted = [id_column, *([time_column] if time_column else []), *categorical_columns, *label_kinds]
    for name in wanted + list(value_columns or []):
        if name not in columns:
            raise UserError(path, f"has no column '{name}' (columns: {', '.join(map(str, columns))})",
                            f"fix the column names in {section}")
    for name in step_labels:
        if name not in label_kinds:
            raise UserError(path, f"step label '{name}' is not one of [classify] labels", "add it to labels")
    if value_columns is None:
        value_columns = [c for c in columns if c not in wanted]
    if not value_columns:
        raise UserError(path, "has no value columns", f"name them in {section}")
    order = [id_column] + ([time_column] if time_column else [])
    frame = frame.sort_values(order, kind="stable").reset_index(drop=True)
    ids, inverse = np.unique(frame[id_column].astype(str).to_numpy(), return_inverse=True)
    first = np.r_[0, np.flatnonzero(np.diff(inverse)) + 1] if len(inverse) else np.zeros(0, dtype=int)
    step = np.arange(len(frame)) - np.repeat(first, np.diff(np.r_[first, len(frame)]))
    lengths = np.bincount(inverse, minlength=len(ids))
    n, t = len(ids), int(lengths.max())

    def grid(values: np.ndarray, fill, dtype) -> np.ndarray:
        out = np.full((n, t), fill, dtype=dtype)
        out[inverse, step] = values
        return out

    x = np.stack([grid(_numbers(path, frame, name, section), np.nan, np.float32) for name in value_columns], axis=1)
    vocab, cats = {}, []
    for name in categorical_columns:
        raw = frame[name]
        present = raw.notna().to_numpy()
        values = _text(raw)
        vocab[name] = sorted(set(values[present]))
        lookup = {v: i + 1 for i, v in enumerate(vocab[name])}
        codes = np.array([lookup[v] if ok else 0 for v, ok in zip(values, present)], dtype=np.int64)
        cats.append(grid(codes, 0, np.int64))
    cat = np.stack(cats, axis=1) if cats else np.zeros((n, 0, t), dtype=np.int64)
    specs, labels = [], {}
    for name, kind in label_kinds.items():
        per_step = name in step_labels
        raw = frame[name]
        if kind == "class":
            present = raw.notna().to_numpy()
            values = _text(raw)
            classes = sorted(set(values[present]), key=_natural)
            lookup = {v: i for i, v in enumerate(classes)}
            codes = np.array([lookup[v] if ok else -1 for v, ok in zip(values, present)], dtype=np.int64)
            per_row, fill, spec = codes, -1, LabelSpec(name, "class", per_step, classes)
        else:
            per_row, fill, spec = _numbers(path, frame, name, section), np.nan, LabelSpec(name, "numeric", per_step)
        stepwise = grid(per_row, fill, per_row.dtype)
        if per_step:
            labels[name] = stepwise
        else:
            labels[name] = _per_series(path, name, id_column, ids, stepwise, fill, section)
        specs.append(spec)
    return LabelledSet(x, cat, lengths, [str(i) for i in ids], list(value_columns), list(categorical_columns), vocab,
                       labels, specs, str(path))


def _text(column) -> np.ndarray:
    """A label or category column as text, the same whichever way pandas typed it: a column of
    whole numbers reads "3" whether it came as integers or (with a gap) as floats."""
    import pandas as pd

    if pd.api.types.is_float_dtype(column):
        finite = column.dropna()
        if len(finite) and (finite == finite.round()).all():
            return np.array([str(int(v)) if v == v else "nan" for v in column], dtype=object)
    return column.astype(str).to_numpy()


def _natural(text: str):
    """Sort "2" before "10" when every class is a number."""
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def _numbers(path: Path, frame, name: str, section: str = "[classify]") -> np.ndarray:
    import pandas as pd

    values = pd.to_numeric(frame[name], errors="coerce")
    bad = values.isna() & frame[name].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(path, f"column '{name}' is not numeric (e.g. {frame[name].iloc[row]!r})",
                        f"declare it categorical or as a class label in {section}" if section == "[classify]"
                        else f"keep only numeric value columns in {section} columns")
    return values.to_numpy(dtype=np.float64)


def _per_series(path: Path, name: str, id_column: str, ids: np.ndarray, stepwise: np.ndarray, fill,
                section: str = "[classify]") -> np.ndarray:
    """A per-series label from its per-row values: the one value each series holds (or none)."""
    present = ~np.isnan(stepwise) if stepwise.dtype.kind == "f" else stepwise != fill
    big = np.iinfo(np.int64).max if stepwise.dtype.kind != "f" else np.inf
    lo = np.where(present, stepwise, big).min(axis=1)
    hi = np.where(present, stepwise, -big).max(axis=1)
    varies = present.any(axis=1) & (lo != hi)
    if varies.any():
        fix = ("a per-series label must be constant within a series; list it in [classify] step_labels if it is "
               "given per time step" if section == "[classify]" else "a condition must be constant within a series")
        what = "label" if section == "[classify]" else "condition"
        raise UserError(path, f"{what} '{name}' changes within series {id_column} = {ids[np.flatnonzero(varies)[0]]!r}", fix)
    return np.where(present.any(axis=1), lo, fill).astype(stepwise.dtype)


# --- conforming a second file to the first -------------------------------------------------------


def conform(data: LabelledSet, like: dict, where: str) -> LabelledSet:
    """``data`` laid out as the training set described by ``like`` (see :func:`layout`): the same
    channels, length (shorter cases padded as missing), categorical codes (unseen values become
    unknown, counted) and class codes (an unseen class is an error)."""
    if data.channels != like["channels"]:
        raise UserError(where, f"has the channels {', '.join(data.channels)} where the model was trained on "
                        f"{', '.join(like['channels'])}", "give a file with the training data's channels")
    if data.categoricals != like["categoricals"]:
        raise UserError(where, f"has the categorical columns {data.categoricals} where the model has {like['categoricals']}",
                        "give a file with the training data's columns")
    t = like["length"]
    if data.x.shape[2] > t:
        raise UserError(where, f"has series of {data.x.shape[2]} steps; the model reads at most {t}",
                        f"cut them to {t} steps, or train with [classify] length = {data.x.shape[2]} or more")
    pad = t - data.x.shape[2]
    x = np.pad(data.x, ((0, 0), (0, 0), (0, pad)), constant_values=np.nan)
    cat = np.pad(data.cat, ((0, 0), (0, 0), (0, pad)), constant_values=0)
    unknown = 0
    for k, name in enumerate(data.categoricals):
        mine, theirs = data.vocab[name], like["vocab"][name]
        lookup = np.array([0] + [theirs.index(v) + 1 if v in theirs else 0 for v in mine], dtype=np.int64)
        known = cat[:, k] > 0
        cat[:, k] = lookup[cat[:, k]]
        unknown += int((known & (cat[:, k] == 0)).sum())
    labels = {}
    specs = {s["name"]: s for s in like["specs"]}
    for spec in data.specs:
        if spec.name not in specs:
            continue
        target = specs[spec.name]
        if spec.kind != target["kind"]:
            raise UserError(where, f"label '{spec.name}' is {spec.kind} here but {target['kind']} in training",
                            "check the file")
        values = data.labels[spec.name]
        if spec.per_step:
            values = np.pad(values, ((0, 0), (0, pad)), constant_values=-1 if spec.kind == "class" else np.nan)
        if spec.kind == "class":
            unseen = [c for c in spec.classes if c not in target["classes"]
                      and (values == spec.classes.index(c)).any()]
            if unseen:
                raise UserError(where, f"has classes of '{spec.name}' the model never saw: {', '.join(unseen[:5])} "
                                f"(it knows {', '.join(target['classes'])})", "give data with the training classes")
            lookup = np.array([target["classes"].index(c) if c in target["classes"] else -1 for c in spec.classes] + [-1])
            values = lookup[values]  # −1 indexes the appended −1
        labels[spec.name] = values
    specs_out = [LabelSpec(s["name"], s["kind"], s["per_step"], list(s["classes"])) for s in like["specs"]]
    return replace(data, x=x, cat=cat, labels=labels, specs=specs_out, vocab=like["vocab"], unknown_codes=unknown)


def layout(data: LabelledSet) -> dict:
    """What :func:`conform` needs to lay another file out like ``data`` (JSON-ready)."""
    return {"channels": data.channels, "categoricals": data.categoricals, "vocab": data.vocab,
            "length": int(data.x.shape[2]),
            "specs": [{"name": s.name, "kind": s.kind, "per_step": s.per_step, "classes": s.classes} for s in data.specs]}


# --- splits, label fractions and benchmark gaps ----------------------------------------------------


def strata(data: LabelledSet) -> np.ndarray | None:
    """The codes of the first per-series class label (stratifies splits), or None."""
    spec = next((s for s in data.specs if s.kind == "class" and not s.per_step), None)
    return None if spec is None else data.labels[spec.name]


def _share(fraction: float, m: int, leave_one: bool) -> int:
    """How many of ``m`` items a ``fraction`` takes: rounded half up, at least one, and with
    ``leave_one`` at most m − 1 (a validation carve never empties a class of the training side)."""
    k = max(int(np.floor(fraction * m + 0.5)), 1 if fraction > 0 else 0)
    return min(k, m - 1) if leave_one else min(k, m)


def stratified_split(codes: np.ndarray | None, n: int, fraction: float, seed: int,
                     leave_one: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(kept, taken): ``fraction`` of the ``n`` items taken, in each class of ``codes`` alike (at
    least one of each class, and with ``leave_one`` never all of one); random when ``codes`` is
    None (unlabelled items: class −1, are split alike). Seeded, sorted."""
    rng = np.random.default_rng(seed)
    if codes is None:
        order = rng.permutation(n)
        k = _share(fraction, n, leave_one) if n else 0
        return np.sort(order[k:]), np.sort(order[:k])
    taken = []
    for c in np.unique(codes):
        members = rng.permutation(np.flatnonzero(codes == c))
        taken.append(members[:_share(fraction, len(members), leave_one)])
    taken = np.sort(np.concatenate(taken)) if taken else np.zeros(0, dtype=np.int64)
    return np.setdiff1d(np.arange(n), taken), taken


def remove_values(x: np.ndarray, rate: float, seed: int) -> np.ndarray:
    """A copy of ``x`` with ``rate`` of its observed values set to NaN at random (seeded)."""
    rng = np.random.default_rng(seed)
    out = x.copy()
    observed = np.flatnonzero(~np.isnan(out))
    out.reshape(-1)[rng.choice(observed, int(round(rate * len(observed))), replace=False)] = np.nan
    return out
