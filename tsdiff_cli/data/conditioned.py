"""Sources with conditions for the conditional generator (``[data] condition_columns``,
``caption_column``, ``caption_template``).

Two layouts:

* **labelled series** — a ``.ts`` file (or a shipped set such as ``"BasicMotions_TRAIN"``) or a
  long table with ``[data] id_column`` (one row per series and time step, as ``tsdiff classify``
  reads it). Conditions are per series (constant within it); windows of ``seq_len`` steps are cut
  inside each series and inherit its conditions; a series shorter than ``seq_len`` gives one
  window padded with *missing* values. Splits are by series, stratified by the first categorical
  condition, so no test window overlaps a training one. A ``.ts`` file has one label: the single
  name in ``condition_columns`` names it.
* **one regular series** (a wide CSV / Parquet, the usual generator source) — each window takes
  the condition values of its first row.

A column whose values all read as numbers is a numeric condition unless it is named in
``categorical_conditions`` or its source declares it a class (a ``.ts`` file's ``@classLabel``,
whose classes are often numbers: JapaneseVowels' speakers 1–9); any other is categorical. The vocabularies, scalers and caption
vocabulary are fitted on the training split only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tsdiff_cli.data.conditions import encode, fill_template, fit_spec, labelled_windows
from tsdiff_cli.data.labelled import SHIPPED_LABELLED, TS_LABEL, read_long, read_ts, resolve_labelled, stratified_split
from tsdiff_cli.data.scaling import Scaler, fit_scaler
from tsdiff_cli.data.sources import file_sha256, read_frame, read_table, resolve_source
from tsdiff_cli.data.store import SPLITS
from tsdiff_cli.data.windows import sliding_windows, window_count
from tsdiff_cli.errors import UserError
from tsdiff_cli.settings import DataSettings


def wants_conditions(cfg: DataSettings) -> bool:
    return bool(cfg.condition_columns or cfg.caption_column or cfg.caption_template)


def is_labelled(cfg: DataSettings) -> bool:
    """Labelled series (many series, conditions per series) rather than one long series."""
    return cfg.id_column is not None or cfg.source in SHIPPED_LABELLED or cfg.source.lower().endswith(".ts")


@dataclass
class ConditionedWindows:
    target: np.ndarray  # (N, T, F) scaled, before the benchmark removal
    observed: np.ndarray  # (N, T, F) scaled, NaN where missing
    split: np.ndarray | None  # (N,) split codes (labelled series: by series), None: split windows as usual
    index: np.ndarray  # (N,) start of each window (labelled series: series × longest length + start)
    columns: list[str]
    scaler: Scaler
    label: str
    sha256: str
    conditions: dict  # raw per-window values: name → array, and "captions" (or None)
    series_length: int | None
    classes: tuple[str, ...] = ()  # conditions the source declares categorical, whatever their values look like


def _by_name(cfg: DataSettings, raw: dict[str, np.ndarray], classes=()) -> tuple[dict, dict]:
    """Split raw condition columns into categorical (text) and numeric (float) ones; ``classes``
    are categorical whatever their values look like."""
    categorical, numeric = {}, {}
    for name, values in raw.items():
        numbers = None if name in classes else _as_numbers(values)
        if numbers is None or name in cfg.categorical_conditions:
            categorical[name] = np.array([None if _absent(v) else _text(v) for v in values], dtype=object)
        else:
            numeric[name] = numbers
    return categorical, numeric


def _absent(v) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _text(v) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v)


def _as_numbers(values: np.ndarray) -> np.ndarray | None:
    try:
        out = np.array([np.nan if _absent(v) else float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out).any() else None


def read_conditioned(cfg: DataSettings, rng_missing: np.random.Generator) -> ConditionedWindows:
    """Windows and their raw condition values from ``cfg.source`` (see the module docstring)."""
    return _labelled(cfg, rng_missing) if is_labelled(cfg) else _wide(cfg, rng_missing)


def _wanted(cfg: DataSettings) -> list[str]:
    return list(dict.fromkeys([*cfg.condition_columns, *([cfg.caption_column] if cfg.caption_column else [])]))


def _labelled(cfg: DataSettings, rng: np.random.Generator) -> ConditionedWindows:
    path = resolve_labelled(cfg.source)
    if path.suffix.lower() == ".ts":
        data = read_ts(path)
        if not data.specs:
            raise UserError(path, "has no class or target label to condition on", "use a labelled .ts file")
        if len(cfg.condition_columns) != 1 or cfg.caption_column:
            raise UserError("[data] condition_columns", "a .ts file has one label; name it with exactly one condition "
                            "column (e.g. condition_columns = [\"activity\"])", "set one name, and no caption_column")
        spec = data.specs[0]
        codes = data.labels[TS_LABEL]
        values = (np.array([spec.classes[c] if c >= 0 else None for c in codes], dtype=object) if spec.kind == "class"
                  else codes.astype(np.float64))
        raw = {cfg.condition_columns[0]: values}
        classes = (cfg.condition_columns[0],) if spec.kind == "class" else ()
    else:
        if cfg.id_column is None:
            raise UserError(cfg.source, "is a table of many series but [data] id_column is unset",
                            "name the series id column with [data] id_column")
        wanted = _wanted(cfg)
        data = read_long(path, cfg.id_column, cfg.time_column, cfg.columns, [], {n: "class" for n in wanted}, [],
                         section="[data]")
        raw = {n: np.array([data.spec(n).classes[c] if c >= 0 else None for c in data.labels[n]], dtype=object)
               for n in wanted}
        classes = ()  # a table's columns are read by their values (categorical_conditions overrides)
    x, lengths = data.x, data.lengths  # (S, C, T), NaN padding
    s, c, t = x.shape
    flat = x.transpose(0, 2, 1).reshape(-1, c)
    scaler = fit_scaler(cfg.scaler, flat)
    scaled = scaler.transform(flat.astype(np.float64)).reshape(s, t, c)
    dropped = scaled.copy()
    if cfg.missing_rate > 0:  # whole time steps of the real (unpadded) steps, as the generator benchmark removes
        real = np.flatnonzero((np.arange(t)[None, :] < lengths[:, None]).ravel())
        gone = rng.permutation(real)[:int(len(real) * cfg.missing_rate)]
        dropped.reshape(-1, c)[gone] = np.nan
    target, series = labelled_windows(scaled.transpose(0, 2, 1), lengths, cfg.seq_len)
    observed, _ = labelled_windows(dropped.transpose(0, 2, 1), lengths, cfg.seq_len)
    categorical, _ = _by_name(cfg, {k: v for k, v in raw.items() if k in cfg.condition_columns}, classes)
    strata = None
    if categorical:
        first = next(iter(categorical.values()))
        names = sorted({v for v in first if v is not None})
        strata = np.array([names.index(v) if v is not None else -1 for v in first])
    split_series = _series_splits(strata, s, cfg.val_fraction, cfg.test_fraction, cfg.seed)
    starts = np.r_[0, np.flatnonzero(np.diff(series)) + 1]
    offset = np.arange(len(series)) - np.repeat(starts, np.diff(np.r_[starts, len(series)]))
    return ConditionedWindows(target, observed, split_series[series], series * max(t, cfg.seq_len) + offset,
                              list(data.channels), scaler, str(cfg.source), file_sha256(path),
                              {k: v[series] for k, v in raw.items()}, None, classes)


def _series_splits(strata: np.ndarray | None, n: int, val: float, test: float, seed: int) -> np.ndarray:
    """Split codes per series, stratified by ``strata``: test first, then validation from the rest."""
    split = np.full(n, SPLITS["train"], dtype=np.uint8)
    rest, taken = stratified_split(strata, n, test, seed) if test > 0 else (np.arange(n), np.zeros(0, int))
    split[taken] = SPLITS["test"]
    if val > 0 and len(rest) > 1:
        sub = None if strata is None else strata[rest]
        _, v = stratified_split(sub, len(rest), val / (1 - test), seed + 1)
        split[rest[v]] = SPLITS["val"]
    return split


def _wide(cfg: DataSettings, rng: np.random.Generator) -> ConditionedWindows:
    if cfg.time_column is not None:
        raise UserError("[data] condition_columns", "are read per window from the rows of a regular series, and "
                        "placing rows on a time grid (time_column) would have to average them",
                        "drop time_column (give a regular series), or give labelled series with id_column")
    from tsdiff_cli.data.missing import drop_series_steps

    path = resolve_source(cfg.source)
    frame = read_frame(path)
    wanted = _wanted(cfg)
    missing = [n for n in wanted if n not in frame.columns]
    if missing:
        raise UserError(path, f"has no condition column {', '.join(repr(n) for n in missing)} "
                        f"(columns: {', '.join(map(str, frame.columns))})", "fix [data] condition_columns / caption_column")
    columns = cfg.columns or [c for c in frame.columns if c not in wanted]
    table = read_table(cfg.source, columns)
    values = table.values[::-1] if cfg.reverse_rows else table.values
    raw = {n: frame[n].to_numpy(dtype=object)[::-1] if cfg.reverse_rows else frame[n].to_numpy(dtype=object)
           for n in wanted}
    if window_count(values.shape[0], cfg.seq_len) < 1:
        raise UserError(table.label, f"has {values.shape[0]} time steps, too few for seq_len {cfg.seq_len}",
                        "lower [data] seq_len or use a longer series")
    scaler = fit_scaler(cfg.scaler, values)
    scaled = scaler.transform(values)
    dropped = drop_series_steps(scaled, cfg.missing_rate, rng)
    target, observed = sliding_windows(scaled, cfg.seq_len), sliding_windows(dropped, cfg.seq_len)
    index = np.arange(target.shape[0])
    return ConditionedWindows(target, observed, None, index, table.columns, scaler, table.label, table.sha256,
                              {k: v[index] for k, v in raw.items()}, values.shape[0])


def encode_conditions(cfg: DataSettings, raw: dict[str, np.ndarray], train: np.ndarray, classes=()) -> dict:
    """Per-window model inputs and the spec (fitted on the ``train`` windows), ready for the
    dataset file: ``cats``, ``nums``, ``tokens``, ``captions``, ``spec``; ``classes``: conditions
    the source declares categorical."""
    categorical, numeric = _by_name(cfg, {k: v for k, v in raw.items() if k in cfg.condition_columns}, classes)
    captions = None
    if cfg.caption_column:
        captions = np.array([None if _absent(v) else str(v) for v in raw[cfg.caption_column]], dtype=object)
    elif cfg.caption_template:
        captions = fill_template(cfg.caption_template, {**categorical, **numeric})
    spec = fit_spec({k: v[train] for k, v in categorical.items()}, {k: v[train] for k, v in numeric.items()},
                    None if captions is None else captions[train])
    for name, values in spec.categorical.items():
        if len(values) < 2:
            raise UserError(f"condition '{name}'", f"has {len(values)} value(s) in the training windows",
                            "condition on a column with at least two values")
    codes = encode(spec, categorical, numeric, captions, "data", strict=False)
    return {**codes, "captions": None if captions is None else [c or "" for c in captions], "spec": spec.to_dict()}
