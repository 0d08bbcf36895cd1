"""``tsdiff preprocess``: a source becomes the windowed, scaled dataset file.

The order of operations follows the paper's loaders (TimeGAN ``real_data_loading``, reused by
KoVAE and ImagenI2R) so the numbers compare: read → (optional) regular grid → (optional) reverse
rows → fit the scaler on the series → scale → remove whole time steps (benchmark missingness) →
stride-1 windows, ``len - seq_len`` of them → shuffle with the seed → split. The scaler is fitted
before the benchmark removal, as the paper normalises the full series first; gaps already in the
data are ignored by the NaN-aware fit.
"""

from __future__ import annotations

from collections.abc import Callable

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tsdiff_cli.atomic import ensure_writable
from tsdiff_cli.data.conditioned import encode_conditions, is_labelled, read_conditioned, wants_conditions
from tsdiff_cli.data.labelled import resolve_labelled
from tsdiff_cli.data.missing import drop_series_steps, drop_window_steps
from tsdiff_cli.data.regular import place_on_grid
from tsdiff_cli.data.scaling import fit_scaler
from tsdiff_cli.data.sources import file_sha256, read_table, resolve_source
from tsdiff_cli.data.store import REVISION, SPLITS, WindowDataset, read_dataset, write_dataset
from tsdiff_cli.data.synthetic import sine_windows
from tsdiff_cli.data.windows import sliding_windows, window_count
from tsdiff_cli.errors import UserError
from tsdiff_cli.settings import DataSettings

# Independent random streams per purpose, so changing one step never reshuffles another.
_SINE, _MISSING, _SHUFFLE = 0, 1, 2


@dataclass
class PreprocessResult:
    path: Path
    dataset: WindowDataset
    source: str
    series_length: int | None  # time steps of the processed series (None for sine)
    merged_rows: int  # rows averaged into an occupied grid step

    def split_sizes(self) -> dict[str, int]:
        return {name: int(np.sum(self.dataset.split == code)) for name, code in SPLITS.items()}


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream])


def assign_splits(count: int, val_fraction: float, test_fraction: float) -> np.ndarray:
    """Split codes for already shuffled windows: train first, then val, then test."""
    n_val, n_test = round(count * val_fraction), round(count * test_fraction)
    split = np.zeros(count, dtype=np.uint8)
    split[count - n_val - n_test: count - n_test] = SPLITS["val"]
    split[count - n_test:] = SPLITS["test"]
    return split


def source_file(cfg: DataSettings) -> Path | None:
    """The file ``cfg.source`` reads (None for the synthetic sines)."""
    if cfg.source == "sine":
        return None
    return resolve_labelled(cfg.source) if wants_conditions(cfg) and is_labelled(cfg) else resolve_source(cfg.source)


def current_dataset(cfg: DataSettings) -> WindowDataset | None:
    """The dataset at ``cfg.output`` when preprocessing ``cfg`` again would give the same file: the
    same [data] settings, the same source bytes (sha256; a source no longer on disk cannot be
    compared, and the file is all there is) and this tsdiff's :data:`REVISION`; otherwise None
    (also when there is none)."""
    if not Path(cfg.output).is_file():
        return None
    ds = read_dataset(cfg.output)  # a file that is not a tsdiff dataset is an error, never overwritten
    if ds.attrs.get("revision") != REVISION or json.loads(ds.attrs.get("settings", "{}")) != cfg.model_dump(mode="json"):
        return None
    path = source_file(cfg)
    if path is not None and path.is_file() and file_sha256(path) != ds.attrs.get("source_sha256"):
        return None
    return ds


def preprocess(cfg: DataSettings, progress: Callable[[int, int], None] | None = None) -> PreprocessResult:
    """Build the dataset described by ``cfg`` and write it to ``cfg.output`` atomically;
    ``progress(done, 3)`` after reading, after windowing and after writing."""
    report = progress or (lambda done, total: None)
    output = ensure_writable(cfg.output, "dataset")
    attrs: dict = {}
    merged_rows, series_length = 0, None

    conditions = None
    if wants_conditions(cfg):
        got = read_conditioned(cfg, _rng(cfg.seed, _MISSING))
        target, observed, index, columns, scaler = got.target, got.observed, got.index, got.columns, got.scaler
        label, sha, series_length = got.label, got.sha256, got.series_length
        report(1, 3)
    elif cfg.source == "sine":
        clean = sine_windows(cfg.sine_samples, cfg.seq_len, cfg.sine_features, _rng(cfg.seed, _SINE))
        scaler = fit_scaler(cfg.scaler, clean)
        target = scaler.transform(clean)
        observed = drop_window_steps(target, cfg.missing_rate, _rng(cfg.seed, _MISSING))
        index = np.arange(target.shape[0])
        columns = [f"sine_{j}" for j in range(cfg.sine_features)]
        label, sha = "sine", hashlib.sha256(clean.tobytes()).hexdigest()
    else:
        table = read_table(cfg.source, cfg.columns, cfg.time_column)
        report(1, 3)
        values = table.values
        if cfg.time_column is not None:
            grid = place_on_grid(table.times, values, cfg.freq, table.label, cfg.time_column)
            values, merged_rows = grid.values, grid.merged_rows
            attrs.update(time_column=cfg.time_column, freq=grid.freq, start=grid.start.isoformat())
        if cfg.reverse_rows:
            values = values[::-1]
        series_length = values.shape[0]
        if window_count(series_length, cfg.seq_len) < 1:
            raise UserError(table.label, f"has {series_length} time steps, too few for seq_len "
                            f"{cfg.seq_len} (at least {cfg.seq_len + 1} are needed)",
                            "lower [data] seq_len or use a longer series")
        scaler = fit_scaler(cfg.scaler, values)
        scaled = scaler.transform(values)
        dropped = drop_series_steps(scaled, cfg.missing_rate, _rng(cfg.seed, _MISSING))
        target, observed = sliding_windows(scaled, cfg.seq_len), sliding_windows(dropped, cfg.seq_len)
        index = np.arange(target.shape[0])
        columns, label, sha = table.columns, table.label, table.sha256

    report(2, 3)
    order = _rng(cfg.seed, _SHUFFLE).permutation(target.shape[0])
    split = assign_splits(target.shape[0], cfg.val_fraction, cfg.test_fraction)
    if wants_conditions(cfg):
        if got.split is not None:  # labelled series: split by series, kept with each window
            split = got.split[order]
        raw = {k: v[order] for k, v in got.conditions.items()}
        conditions = encode_conditions(cfg, raw, split == SPLITS["train"], got.classes)
    attrs.update(
        seq_len=cfg.seq_len,
        missing_rate=cfg.missing_rate,
        seed=cfg.seed,
        source=label,
        source_sha256=sha,
        reverse_rows=cfg.reverse_rows,
        settings=json.dumps(cfg.model_dump(mode="json")),
    )
    dataset = WindowDataset(
        observed=observed[order].astype(np.float32),
        target=target[order].astype(np.float32),
        split=split,
        index=index[order],
        columns=columns,
        scaler=scaler,
        attrs=attrs,
        conditions=conditions,
    )
    write_dataset(output, dataset)
    report(3, 3)
    return PreprocessResult(output, dataset, label, series_length, merged_rows)
