"""Conditions of windows for the conditional generator: categorical codes with their vocabulary,
standardised numbers with their scaler, captions as token ids over a vocabulary built from the
training captions, and captions built from metadata by a template.

Everything here is JSON-ready so that a run's model.safetensors metadata carries it and
``tsdiff sample`` needs nothing else.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tsdiff_cli.errors import UserError

WORD = re.compile(r"[a-z0-9]+(?:[.'][a-z0-9]+)*")
PAD, UNKNOWN = 0, 1  # caption token ids (tsdiff_cli.models.condition.PAD is the same 0)


def words(caption: str) -> list[str]:
    """Lower-cased words and numbers (``3.5``, ``don't`` stay whole); punctuation dropped."""
    return WORD.findall(caption.lower())


@dataclass
class ConditionSpec:
    """What the conditions of a dataset are: categorical columns and their values, numeric
    columns with their mean and spread, and the caption vocabulary (ids from 2 on)."""

    categorical: dict[str, list[str]] = field(default_factory=dict)
    numeric: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)  # mean, std, min, max
    vocabulary: list[str] = field(default_factory=list)
    caption_len: int = 0  # tokens per caption (longer captions are cut)

    def to_dict(self) -> dict:
        return {"categorical": self.categorical, "numeric": {k: list(v) for k, v in self.numeric.items()},
                "vocabulary": self.vocabulary, "caption_len": self.caption_len}

    @classmethod
    def from_dict(cls, d: dict) -> ConditionSpec:
        return cls(d["categorical"], {k: tuple(v) for k, v in d["numeric"].items()}, d["vocabulary"], d["caption_len"])


def fit_spec(categorical: dict[str, np.ndarray], numeric: dict[str, np.ndarray], captions: np.ndarray | None,
             max_caption_len: int = 32) -> ConditionSpec:
    """The vocabularies and scalers of the training conditions (missing values left out)."""
    spec = ConditionSpec()
    for name, values in categorical.items():
        present = [str(v) for v in values if v is not None and v == v]
        spec.categorical[name] = sorted(set(present))
    for name, values in numeric.items():
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if not len(v):
            raise UserError(f"condition '{name}'", "has no numeric value", "check the column")
        spread = float(v.std())
        spec.numeric[name] = (float(v.mean()), spread if spread > 0 else 1.0, float(v.min()), float(v.max()))
    if captions is not None:
        tokens = [words(str(c)) for c in captions if c is not None and c == c]
        counts = Counter(w for t in tokens for w in t)
        spec.vocabulary = sorted(counts)
        spec.caption_len = min(max_caption_len, max((len(t) for t in tokens), default=1)) or 1
    return spec


def encode(spec: ConditionSpec, categorical: dict[str, np.ndarray], numeric: dict[str, np.ndarray],
           captions: np.ndarray | None, where: str, strict: bool = True) -> dict[str, np.ndarray]:
    """Arrays the model reads: ``cats`` (N, K) codes (−1 missing), ``nums`` (N, M) standardised
    (NaN missing), ``tokens`` (N, L) ids. With ``strict`` (sampling) an unknown category is an
    error naming the valid values, and so is a number more than one standard deviation outside the
    training range (the model never saw such a condition: refused rather than clamped, so the
    samples never silently answer another question); otherwise (data the spec was not fitted on)
    an unknown category becomes missing."""
    n = _length(categorical, numeric, captions)
    cats = np.full((n, len(spec.categorical)), -1, dtype=np.int64)
    for k, (name, values) in enumerate(spec.categorical.items()):
        if name not in categorical:
            raise UserError(where, f"has no condition '{name}'", f"give it (the model knows {', '.join(spec.categorical)})")
        lookup = {v: i for i, v in enumerate(values)}
        for i, v in enumerate(categorical[name]):
            if v is None or v != v:
                continue
            code = lookup.get(str(v))
            if code is None and strict:
                raise UserError(where, f"{name} = {str(v)!r} was never seen in training",
                                f"use one of: {', '.join(values)}")
            cats[i, k] = -1 if code is None else code
    nums = np.full((n, len(spec.numeric)), np.nan, dtype=np.float32)
    for k, (name, (mean, std, lo, hi)) in enumerate(spec.numeric.items()):
        if name not in numeric:
            raise UserError(where, f"has no condition '{name}'", f"give it (the model knows {', '.join(spec.numeric)})")
        values = np.asarray(numeric[name], dtype=np.float64)
        outside = np.isfinite(values) & ((values < lo - std) | (values > hi + std))
        if strict and outside.any():
            raise UserError(where, f"{name} = {values[outside][0]:g} is far outside the training range "
                            f"[{lo:g}, {hi:g}]", f"ask for a value within [{lo - std:g}, {hi + std:g}]")
        nums[:, k] = (values - mean) / std
    tokens = np.zeros((n, spec.caption_len), dtype=np.int64)
    if spec.vocabulary and captions is not None:
        lookup = {w: i + 2 for i, w in enumerate(spec.vocabulary)}
        for i, c in enumerate(captions):
            if c is None or c != c:
                continue
            ids = [lookup.get(w, UNKNOWN) for w in words(str(c))][:spec.caption_len]
            tokens[i, :len(ids)] = ids
    return {"cats": cats, "nums": nums, "tokens": tokens}


def _length(*groups) -> int:
    for g in groups:
        if isinstance(g, dict):
            for v in g.values():
                return len(v)
        elif g is not None:
            return len(g)
    raise UserError("conditions", "none were given", "name condition_columns or a caption_column")


def fill_template(template: str, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Captions from metadata: ``"a {activity} recording of a {age} year old {sex} subject"``
    with each ``{name}`` replaced by that column's value (whole numbers without ``.0``)."""
    names = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    missing = [f for f in names if f not in columns]
    if missing:
        raise UserError("caption_template", f"names {', '.join(missing)}, which are not columns of the data",
                        f"use {{...}} with one of: {', '.join(columns)}")
    n = len(next(iter(columns.values())))

    def text(v) -> str:
        if isinstance(v, (float, np.floating)) and np.isfinite(v) and float(v).is_integer():
            return str(int(v))
        return str(v)

    return np.array([template.format(**{f: text(columns[f][i]) for f in names}) for i in range(n)], dtype=object)


def labelled_windows(x: np.ndarray, lengths: np.ndarray, seq_len: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Windows of ``seq_len`` steps inside each labelled series (B, C, T) — never across two
    series, so each window inherits its series' conditions: (windows (N, seq_len, C), the series
    each came from (N,)). A series shorter than ``seq_len`` gives one window, padded with missing
    values (as its padding already is). Vectorised: one gather for all windows."""
    x = np.asarray(x)
    n, c, t = x.shape
    if t < seq_len:
        x = np.pad(x, ((0, 0), (0, 0), (0, seq_len - t)), constant_values=np.nan)
        t = seq_len
    starts_per = np.maximum((np.maximum(lengths, seq_len) - seq_len) // stride + 1, 1)
    series = np.repeat(np.arange(n), starts_per)
    first = np.r_[0, np.cumsum(starts_per)[:-1]]
    starts = (np.arange(len(series)) - np.repeat(first, starts_per)) * stride
    steps = starts[:, None] + np.arange(seq_len)[None, :]
    windows = x.transpose(0, 2, 1)[series[:, None], steps]  # (N, seq_len, C)
    return windows.astype(np.float32), series
