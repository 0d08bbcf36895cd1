"""tsdiff preprocess on real and synthetic data: shapes, missingness, scaling, windows, seeds."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from tsdiff_cli.data.preprocess import preprocess
from tsdiff_cli.data.regular import place_on_grid
from tsdiff_cli.data.scaling import fit_scaler
from tsdiff_cli.data.store import read_dataset
from tsdiff_cli.settings import DataSettings
from conftest import REPO, data_file, write_toml

STOCK_COLUMNS = ["Open", "High", "Low", "Close", "Adj_Close", "Volume"]


def test_stock_preset_at_half_missing(cli, workdir):
    result = cli("preprocess", REPO / "config" / "stock.toml", env={"TSDIFF_DATA__MISSING_RATE": "0.5"})
    assert result.exit_code == 0, result.output
    assert "3661" in result.stdout and "data/stock.h5" in result.stdout
    ds = read_dataset(workdir / "data" / "stock.h5")
    assert ds.observed.shape == (3661, 24, 6) and ds.observed.dtype == np.float32
    assert abs(np.isnan(ds.observed).mean() - 0.5) <= 0.01
    assert np.nanmin(ds.observed) >= 0.0 and np.nanmax(ds.observed) <= 1.0
    assert not np.isnan(ds.target).any()
    assert ds.columns == STOCK_COLUMNS
    for key in ("seq_len", "missing_rate", "seed", "source", "source_sha256", "tsdiff_version"):
        assert key in ds.attrs
    assert ds.attrs["missing_rate"] == 0.5 and ds.attrs["seq_len"] == 24
    assert ds.attrs["source_sha256"] == "134b8a00eb4eefa3242dd7ae85144082da80dedf75a1a656d5d08f97cd95277a"


def test_windows_return_to_original_units_in_paper_order(workdir):
    """Each target window, unscaled, is the reversed CSV's rows [index, index + seq_len)."""
    cfg = DataSettings(source=str(data_file("stock_data.csv")), seq_len=24, reverse_rows=True, missing_rate=0.3)
    ds = preprocess(cfg).dataset
    raw = pd.read_csv(data_file("stock_data.csv")).to_numpy()[::-1]
    assert len(ds.index) == len(raw) - 24  # the paper's loader: range(0, len - seq_len)
    assert sorted(ds.index.tolist()) == list(range(len(raw) - 24))
    picks = [0, 17, 3660]
    expected = np.stack([raw[i: i + 24] for i in ds.index[picks]])
    np.testing.assert_allclose(ds.scaler.inverse(ds.target[picks].astype(np.float64)), expected, rtol=1e-5)
    # minmax exactly as TimeGAN: (x - min) / (max - min + 1e-7)
    np.testing.assert_allclose(ds.scaler.offset, raw.min(0))
    np.testing.assert_allclose(ds.scaler.scale, raw.max(0) - raw.min(0) + 1e-7)


def test_benchmark_removes_whole_time_steps_before_windowing(workdir):
    cfg = DataSettings(source="stock", missing_rate=0.3, seed=5)
    ds = preprocess(cfg).dataset
    missing = np.isnan(ds.observed)
    # a time step is missing in every feature or in none
    assert (missing.all(axis=2) == missing.any(axis=2)).all()
    # the same series row is missing in every window that contains it
    rows = ds.index[:, None] + np.arange(cfg.seq_len)[None, :]
    flags = np.zeros(rows.max() + 1)
    counts = np.zeros(rows.max() + 1)
    np.add.at(flags, rows.ravel(), missing[:, :, 0].ravel())
    np.add.at(counts, rows.ravel(), 1)
    share = flags[counts > 0] / counts[counts > 0]
    assert set(np.unique(share)) <= {0.0, 1.0}
    assert abs(share.mean() - 0.3) < 0.01
    # observed values are the ground truth where kept
    np.testing.assert_array_equal(ds.observed[~missing], ds.target[~missing])


def test_same_seed_same_file_different_seed_different(workdir):
    a = preprocess(DataSettings(source="stock", missing_rate=0.3, seed=1, output="a.h5")).dataset
    b = preprocess(DataSettings(source="stock", missing_rate=0.3, seed=1, output="b.h5")).dataset
    c = preprocess(DataSettings(source="stock", missing_rate=0.3, seed=2, output="c.h5")).dataset
    np.testing.assert_array_equal(a.observed, b.observed)
    np.testing.assert_array_equal(a.index, b.index)
    assert not np.array_equal(np.isnan(a.observed), np.isnan(c.observed))
    assert not np.array_equal(a.index, c.index)


def test_sine_is_timegan_sine_with_per_window_missingness(workdir):
    cfg = DataSettings(source="sine", sine_samples=400, sine_features=3, seq_len=24, missing_rate=0.5, scaler="none")
    ds = preprocess(cfg).dataset
    assert ds.observed.shape == (400, 24, 3)
    # every window loses exactly int(24 * 0.5) whole steps
    step_missing = np.isnan(ds.observed).all(axis=2)
    assert (step_missing.sum(axis=1) == 12).all()
    assert (np.isnan(ds.observed).any(axis=2) == step_missing).all()
    # values are (sin(f t + p) + 1) / 2 with f, p ~ U[0, 0.1]
    x = 2.0 * ds.target.astype(np.float64) - 1.0
    assert (x[:, 0] >= -1e-6).all() and (x[:, 0] <= np.sin(0.1) + 1e-6).all()  # sin(p), p in [0, 0.1]
    # sin satisfies x[t+1] + x[t-1] = 2 cos(f) x[t]; recover cos(f) per series by least squares
    num = ((x[:, 2:] + x[:, :-2]) * x[:, 1:-1]).sum(axis=1)
    den = 2.0 * (x[:, 1:-1] ** 2).sum(axis=1)
    freq = np.arccos(np.clip(num / den, -1, 1))
    assert freq.min() >= -1e-3 and freq.max() <= 0.1 + 1e-3
    assert freq.std() > 0.02  # drawn, not fixed


def test_irregular_rows_are_placed_on_a_regular_grid(workdir):
    times = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 04:00", "2024-01-01 05:00",
             "2024-01-01 05:58", "2024-01-01 07:00", "2024-01-01 08:00", "2024-01-01 09:00"]
    values = np.array([[1.0, 10], [2, 20], [5, 50], [6, np.nan], [7, 70], [8, 80], [9, 90], [10, 100]])
    grid = place_on_grid(pd.Series(times), values, None, "t.csv", "time")
    assert grid.freq in ("h", "1h", "60min")
    assert grid.values.shape == (10, 2)
    assert np.isnan(grid.values[[2, 3]]).all()  # 02:00 and 03:00 were never observed
    assert grid.values[4, 0] == 5 and np.isnan(grid.values[5, 1])  # existing NaN kept
    assert grid.values[6, 0] == 7  # 05:58 snaps to 06:00
    # through the command, unsorted input and a given freq
    frame = pd.DataFrame({"time": times, "a": values[:, 0], "b": values[:, 1]}).iloc[::-1]
    frame.to_csv(workdir / "irr.csv", index=False)
    cfg = DataSettings(source="irr.csv", time_column="time", freq="30min", seq_len=4, scaler="none",
                       val_fraction=0, test_fraction=0)
    ds = preprocess(cfg).dataset
    assert ds.columns == ["a", "b"] and ds.attrs["freq"] == "30min" and ds.attrs["time_column"] == "time"
    assert ds.observed.shape == (19 - 4, 4, 2)
    first = ds.observed[np.argsort(ds.index)][0]
    np.testing.assert_array_equal(first[[0, 2]], [[1, 10], [2, 20]])
    assert np.isnan(first[[1, 3]]).all()


def test_standard_scaler_is_nan_aware_with_zero_std_as_one():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [np.nan, 5.0]])
    s = fit_scaler("standard", x)
    np.testing.assert_allclose(s.offset, [2.0, 5.0])
    np.testing.assert_allclose(s.scale, [1.0, 1.0])
    np.testing.assert_allclose(s.inverse(s.transform(x)), x)
    z = fit_scaler("standard", np.array([[0.0, 1.0], [4.0, 3.0]]))
    np.testing.assert_allclose(z.transform(np.array([[4.0, 3.0]])), [[1.0, 1.0]])
    restored = type(s).from_json(s.to_json())
    np.testing.assert_array_equal(restored.offset, s.offset)


def test_columns_splits_and_parquet(workdir):
    frame = pd.read_csv(data_file("stock_data.csv"))
    frame.to_parquet(workdir / "stock.parquet")
    cfg = DataSettings(source="stock.parquet", columns=["Close", "Open"], scaler="standard",
                       val_fraction=0.1, test_fraction=0.2, seq_len=12)
    result = preprocess(cfg)
    ds = result.dataset
    assert ds.columns == ["Close", "Open"]
    assert result.split_sizes() == {"train": 2571, "val": 367, "test": 735}
    assert json.loads(read_dataset(result.path).attrs["settings"])["columns"] == ["Close", "Open"]
    np.testing.assert_allclose(np.nanmean(ds.target.reshape(-1, 2), axis=0), 0.0, atol=0.05)


def test_cli_options_override_settings(cli, workdir):
    cfg = write_toml(workdir / "s.toml", '[data]\nsource = "stock"\nseq_len = 24\n')
    result = cli("preprocess", cfg, "-o", "out/x.h5", "--seq-len", "10", "--missing-rate", "0.2", "-q")
    assert result.exit_code == 0 and result.stdout == ""
    ds = read_dataset(workdir / "out" / "x.h5")
    assert ds.observed.shape == (3675, 10, 6)
    assert abs(np.isnan(ds.observed).mean() - 0.2) < 0.01


def test_a_dataset_is_reused_only_while_it_is_what_preprocess_would_make(workdir):
    """`tsdiff train` reuses the dataset file only for the same settings, the same source bytes and
    this tsdiff's preprocessing revision; an edited source or an older file is rebuilt."""
    import h5py

    from tsdiff_cli.jobs.generate import ensure_dataset
    from tsdiff_cli.settings import Settings

    rows = pd.read_csv(data_file("stock_data.csv")).iloc[:200]
    rows.to_csv(workdir / "mine.csv", index=False)
    settings = Settings(data=DataSettings(source="mine.csv", seq_len=12, output="data/mine.h5"))
    first = ensure_dataset(settings)
    marker = workdir / "data" / "mine.h5"
    with h5py.File(marker, "a") as f:  # tag the file: a reused file keeps the tag, a rebuilt one loses it
        f.attrs["tag"] = 1
    assert ensure_dataset(settings).attrs.get("tag") == 1

    rows.assign(Close=rows["Close"] * 2).to_csv(workdir / "mine.csv", index=False)  # the user edits the data
    edited = ensure_dataset(settings)
    assert "tag" not in edited.attrs
    assert edited.scaler.to_json() != first.scaler.to_json()  # fitted on the edited values

    with h5py.File(marker, "a") as f:  # a file from before the current preprocessing revision
        f.attrs["tag"] = 1
        f.attrs["revision"] = 1
    assert "tag" not in ensure_dataset(settings).attrs

    with h5py.File(marker, "a") as f:
        f.attrs["tag"] = 1
    (workdir / "mine.csv").unlink()  # the source moved away: the file is all there is, and is used
    assert ensure_dataset(settings).attrs.get("tag") == 1
