"""tsdiff impute: the TimeKD layout, the embedding decoder, the generator path, and judging."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY, write_toml
from timekd_fixture import with_gaps, write_layout
from tsdiff_cli.data.sources import shipped_path
from tsdiff_cli.data.timekd import locate, read_embeddings
from tsdiff_cli.errors import UserError
from tsdiff_cli.metrics.imputation import fair_crps, fill_linear, fill_locf, hide


def _small_frame(rows: int = 200, variables: int = 3, seed: int = 0) -> pd.DataFrame:
    t = np.arange(rows)
    rng = np.random.default_rng(seed)
    values = np.stack([np.sin(t / (5 + 3 * j)) + 0.1 * rng.standard_normal(rows) for j in range(variables)], 1)
    frame = pd.DataFrame(values * 10 + 50, columns=[f"v{j}" for j in range(variables)])
    frame.insert(0, "date", pd.date_range("2020-01-01", periods=rows, freq="h").astype(str))
    return frame


def _newest_impute_run(workdir):
    return sorted((workdir / "runs").glob("*-impute-*"))[-1]


SMALL = dict(seq_len=16, pred_len=8, flag="train", width=16)  # custom 70/10/20: 140 train rows → 117 windows


# --- the TimeKD layout ---------------------------------------------------------------------------

@pytest.mark.parametrize("shape,batch,csv_suffix", [("2d", 1, False), ("3d", 1, False), ("3d", 5, False), ("2d", 1, True)])
def test_every_file_shape_and_name_spelling_reads_the_same_windows(tmp_path, shape, batch, csv_suffix):
    frame = _small_frame()
    reference = write_layout(tmp_path / "ref", frame, "mydata", **SMALL)
    leaf = write_layout(tmp_path / "emb", frame, "mydata", shape=shape, batch=batch, csv_suffix=csv_suffix, **SMALL)
    expected, _ = read_embeddings(locate(reference))
    layout = locate(tmp_path / "emb")  # the root: the single folder below it is found
    assert (layout.leaf, layout.name, layout.pred_len, layout.flag) == (leaf, "mydata", 8, "train")
    got, cached = read_embeddings(layout)
    assert got.shape == (117, 3, 16) and not cached
    np.testing.assert_array_equal(got, expected)


def test_files_are_sorted_numerically_and_cached(tmp_path):
    frame = _small_frame()
    write_layout(tmp_path / "emb", frame, "mydata", **SMALL)
    layout = locate(tmp_path / "emb" / "mydata" / "8" / "train")  # the leaf itself
    assert [p.name for p in layout.files[:12]] == [f"{i}.h5" for i in range(12)]  # 10.h5 after 9.h5
    first, cached1 = read_embeddings(layout, tmp_path / "cache")
    second, cached2 = read_embeddings(layout, tmp_path / "cache")
    assert (cached1, cached2) == (False, True)
    np.testing.assert_array_equal(first, second)
    with h5py.File(layout.files[3], "a") as f:  # a changed file invalidates the cache
        f["embeddings"][0, 0] = 123.0
    third, cached3 = read_embeddings(layout, tmp_path / "cache")
    assert not cached3 and third[3, 0, 0] == 123.0


def test_tslib_borders_are_those_of_the_tslib_loaders():
    from tsdiff_cli.data.timekd import tslib_borders, embedding_window_count

    assert tslib_borders("ett_hour", 17420, 96) == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    assert tslib_borders("ett_minute", 69680, 96) == {"train": (0, 34560), "val": (34464, 46080), "test": (45984, 57600)}
    # custom 70/10/20 with int(): 1000 rows → 700 / 100 / 200
    assert tslib_borders("custom", 1000, 24) == {"train": (0, 700), "val": (676, 800), "test": (776, 1000)}
    assert embedding_window_count(11424, 14400, 96, 96) == 2785  # the 2 785 test windows of ETTh1 96→96


def test_custom_data_reads_embeddings_in_tslib_order_with_the_target_last(cli, workdir):
    frame = _small_frame(variables=3).rename(columns={"v0": "OT"})  # OT first in the file
    tslib = frame[["date", "v1", "v2", "OT"]]  # TSLib's Dataset_Custom moves the target last
    write_layout(workdir / "emb", tslib, "mydata", noise=0.0, **SMALL)
    gaps = with_gaps(frame, 0.2)
    gaps.to_csv(workdir / "data.csv", index=False)
    env = {"TSDIFF_IMPUTE__EPOCHS": "150", "TSDIFF_IMPUTE__PATIENCE": "150"}
    r = cli("impute", "--emb-dir", "emb", "--input", "data.csv", "-o", "filled.csv", "--seq-len", "16", env=env)
    assert r.exit_code == 0, r.output
    filled = pd.read_csv("filled.csv")
    assert list(filled.columns) == ["date", "OT", "v1", "v2"]
    covered = slice(0, 140)
    missing = gaps.iloc[covered, 1:].isna().to_numpy()
    err = np.abs(filled.iloc[covered, 1:].to_numpy() - frame.iloc[covered, 1:].to_numpy())[missing]
    spread = frame.iloc[covered, 1:].to_numpy().std()
    assert err.mean() < 0.3 * spread  # each column filled from its own embeddings, not a neighbour's


def test_several_folders_ask_for_pred_len_and_flag(tmp_path):
    frame = _small_frame()
    write_layout(tmp_path / "emb", frame, "mydata", **SMALL)
    write_layout(tmp_path / "emb", frame, "mydata", seq_len=16, pred_len=4, flag="train", width=16)
    with pytest.raises(UserError, match="--pred-len and --flag"):
        locate(tmp_path / "emb")
    assert locate(tmp_path / "emb", pred_len=4).pred_len == 4


def test_bad_embedding_folders_are_clear_errors(cli, workdir):
    frame = _small_frame()
    frame.to_csv(workdir / "data.csv", index=False)
    r = cli("impute", "--emb-dir", "nope", "--input", "data.csv", "-o", "f.csv")
    assert r.exit_code == 2 and "no such embedding folder" in r.output
    (workdir / "empty").mkdir()
    r = cli("impute", "--emb-dir", "empty", "--input", "data.csv", "-o", "f.csv")
    assert r.exit_code == 2 and "holds no embedding files" in r.output

    leaf = write_layout(workdir / "emb", frame, "mydata", **SMALL)
    with_gaps(frame, 0.2).to_csv(workdir / "data.csv", index=False)
    r = cli("impute", "--emb-dir", "emb", "--input", "data.csv", "-o", "f.csv", "--seq-len", "12")
    assert r.exit_code == 2 and "holds 117 windows" in r.output and "give 121" in r.output  # expected vs found
    assert "seq_len 16 would give 117" in r.output

    with_gaps(frame, 0.2)[["date", "v0", "v1"]].to_csv(workdir / "two.csv", index=False)
    r = cli("impute", "--emb-dir", "emb", "--input", "two.csv", "-o", "f.csv", "--seq-len", "16")
    assert r.exit_code == 2 and "3 variables" in r.output and "2 value columns" in r.output

    with h5py.File(leaf / "5.h5", "a") as f:
        f["embeddings"][0, 0] = np.nan
    r = cli("impute", "--emb-dir", "emb", "--input", "data.csv", "-o", "f.csv", "--seq-len", "16")
    assert r.exit_code == 2 and "5.h5" in r.output and "NaN" in r.output
    with h5py.File(leaf / "5.h5", "w") as f:
        f.create_dataset("emb", data=np.zeros((3, 16), np.float32))
    r = cli("impute", "--emb-dir", "emb", "--input", "data.csv", "-o", "f.csv", "--seq-len", "16")
    assert r.exit_code == 2 and "no dataset 'embeddings'" in r.output
    (leaf / "5.h5").unlink()
    r = cli("impute", "--emb-dir", "emb", "--input", "data.csv", "-o", "f.csv", "--seq-len", "16")
    assert r.exit_code == 2 and "5.h5 is missing" in r.output
    assert not (workdir / "f.csv").exists()


# --- from embeddings, end to end -----------------------------------------------------------------

@pytest.fixture(scope="module")
def etth1_layout(tmp_path_factory):
    """ETTh1-sized: val split, seq_len 96, pred_len 24 → 2 857 files of float32 (7, 768)."""
    root = tmp_path_factory.mktemp("timekd")
    frame = pd.read_csv(shipped_path("etth1"))
    write_layout(root / "emb_out", frame, "ETTh1", seq_len=96, pred_len=24, flag="val")
    with_gaps(frame, 0.2).to_csv(root / "data.csv", index=False)
    return root


def test_embeddings_fill_the_covered_rows_and_beat_linear_interpolation(cli, workdir, etth1_layout):
    root = etth1_layout
    fast = {"TSDIFF_IMPUTE__EPOCHS": "20"}  # a test-sized budget; the decoder beats interpolation well before
    r = cli("impute", "--emb-dir", root / "emb_out", "--input", root / "data.csv", "-o", "filled.csv", env=fast)
    assert r.exit_code == 0, r.output
    assert "outside rows 8544–11519" in r.output  # the val embeddings cover only those rows
    gaps = pd.read_csv(root / "data.csv")
    filled = pd.read_csv(workdir / "filled.csv")
    assert list(filled.columns) == list(gaps.columns) and (filled["date"] == gaps["date"]).all()
    values, before = filled.iloc[:, 1:].to_numpy(), gaps.iloc[:, 1:].to_numpy()
    observed = ~np.isnan(before)
    np.testing.assert_array_equal(values[observed], before[observed])  # observed values untouched
    assert not np.isnan(values[8544:11520]).any()
    assert np.isnan(values[:8544]).sum() == np.isnan(before[:8544]).sum()  # outside: left missing
    run = _newest_impute_run(workdir)
    assert (run / "model.safetensors").is_file() and (run / "metrics.jsonl").is_file()

    r = cli("impute", "--emb-dir", root / "emb_out", "--input", root / "data.csv", "--holdout", "0.1", env=fast)
    assert r.exit_code == 0, r.output
    report = json.loads((_newest_impute_run(workdir) / "report.json").read_text())
    assert report["method"]["mse"] < report["baselines"]["linear"]["mse"]
    assert report["method"]["mae"] < report["baselines"]["linear"]["mae"]


# --- from a generator run ------------------------------------------------------------------------

@pytest.fixture
def generator_run(cli, workdir):
    # the TST learns by masking, as config/etth1-impute.toml does
    assert cli("train", write_toml(workdir / "tiny.toml", TINY), "-q", env={"TSDIFF_TST__MASK_RATE": "0.2"}).exit_code == 0
    stock = pd.read_csv(shipped_path("stock")).iloc[:100]
    stock.to_csv(workdir / "truth.csv", index=False)
    values = stock.to_numpy(copy=True)
    values[np.random.default_rng(0).random(values.shape) < 0.2] = np.nan
    pd.DataFrame(values, columns=stock.columns).to_csv(workdir / "gaps.csv", index=False)
    return (workdir / "runs" / "latest").resolve()


def test_generator_fills_with_median_and_interval_columns(cli, workdir, generator_run):
    r = cli("impute", "--model", generator_run, "--input", "gaps.csv", "-o", "filled.csv", "--samples", "10", "--steps", "3", "-q")
    assert r.exit_code == 0, r.output
    gaps, filled = pd.read_csv("gaps.csv"), pd.read_csv("filled.csv")
    cols = list(gaps.columns)
    assert list(filled.columns) == cols + [f"{c}_q05" for c in cols] + [f"{c}_q95" for c in cols]
    v, before = filled[cols].to_numpy(), gaps.to_numpy()
    missing = np.isnan(before)
    np.testing.assert_array_equal(v[~missing], before[~missing])
    assert not np.isnan(v).any()
    lo, hi = filled[[f"{c}_q05" for c in cols]].to_numpy(), filled[[f"{c}_q95" for c in cols]].to_numpy()
    assert (lo[missing] <= v[missing] + 1e-9).all() and (v[missing] <= hi[missing] + 1e-9).all()
    assert (hi[missing] > lo[missing]).mean() > 0.9  # real intervals where values were drawn
    np.testing.assert_array_equal(lo[~missing], before[~missing])

    r = cli("impute", "--model", generator_run, "--input", "gaps.csv", "-o", "tst.csv")
    assert r.exit_code == 0 and "TST completion" in r.output
    assert list(pd.read_csv("tst.csv").columns) == cols

    r = cli("evaluate", "--real", "truth.csv", "--gaps", "gaps.csv", "--imputed", "filled.csv", "-o", "rep.json")
    assert r.exit_code == 0, r.output
    rep = json.loads((workdir / "rep.json").read_text())
    truth = pd.read_csv("truth.csv").to_numpy()
    inside = (lo[missing] <= truth[missing]) & (truth[missing] <= hi[missing])
    assert rep["hidden"] == int(missing.sum()) and rep["method"]["coverage90"] == pytest.approx(inside.mean())
    assert set(rep["baselines"]) == {"mean", "locf", "linear"}


def test_generator_holdout_reports_crps_and_coverage(cli, workdir, generator_run):
    r = cli("impute", "--model", workdir / "runs" / "latest", "--input", "gaps.csv", "--holdout", "0.2", "--samples", "10",
            "--steps", "2")
    assert r.exit_code == 0, r.output
    assert (workdir / "runs" / "latest").resolve() == generator_run  # impute runs leave runs/latest alone
    report = json.loads((_newest_impute_run(workdir) / "report.json").read_text())
    assert {"mae", "mse", "rmse", "crps", "coverage90"} <= set(report["method"])
    assert report["hidden"] == round(0.2 * np.count_nonzero(~np.isnan(pd.read_csv("gaps.csv").to_numpy())))


def test_bad_inputs_for_the_generator_path(cli, workdir, generator_run):
    r = cli("impute", "--model", generator_run, "--input", "absent.csv", "-o", "out.csv")
    assert r.exit_code == 2 and "absent.csv: no such file" in r.output and "check --input" in r.output
    assert "[data] source" not in r.output  # the user named the file with --input, not in a config
    stock = pd.read_csv("gaps.csv")
    stock.drop(columns=["Volume"]).to_csv("fewer.csv", index=False)
    r = cli("impute", "--model", generator_run, "--input", "fewer.csv", "-o", "out.csv")
    assert r.exit_code == 2 and "lacks 'Volume'" in r.output and not (workdir / "out.csv").exists()
    stock.assign(Volume=np.nan).to_csv("empty_col.csv", index=False)
    r = cli("impute", "--model", generator_run, "--input", "empty_col.csv", "-o", "out.csv")
    assert r.exit_code == 2 and "'Volume' has no values" in r.output and not (workdir / "out.csv").exists()
    pd.read_csv("truth.csv").to_csv("complete.csv", index=False)
    r = cli("impute", "--model", generator_run, "--input", "complete.csv", "-o", "out.csv")
    assert r.exit_code == 0 and "no missing values" in r.output
    assert (workdir / "out.csv").read_bytes() == (workdir / "complete.csv").read_bytes()
    r = cli("impute", "--model", generator_run, "--input", "gaps.csv", "-o", "x.csv", "--samples", "5")
    assert r.exit_code == 2 and "samples" in r.output and "at least 10" in r.output
    r = cli("impute", "--model", generator_run, "--input", "gaps.csv", "--holdout", "0.1", "--seed", "-1")
    assert r.exit_code == 2 and "seed" in r.output
    r = cli("impute", "--model", generator_run, "--input", "gaps.csv", "-o", "x.tsv")
    assert r.exit_code == 2 and "unknown output type" in r.output
    r = cli("impute", "--model", generator_run, "--emb-dir", "e", "--input", "gaps.csv", "-o", "x.csv")
    assert r.exit_code == 2 and "exactly one of" in r.output
    r = cli("impute", "--model", workdir / "nope", "--input", "gaps.csv", "-o", "x.csv")
    assert r.exit_code == 2 and "no such run directory" in r.output
    assert not list(workdir.glob("x.csv")) and not list(workdir.glob(".*.tmp"))


# --- parts ---------------------------------------------------------------------------------------

def test_fair_crps_matches_the_gaussian_closed_form():
    # CRPS(N(μ, σ²), y) = σ [ z (2Φ(z) − 1) + 2 φ(z) − 1/√π ],  z = (y − μ)/σ  (Gneiting & Raftery 2007)
    rng = np.random.default_rng(0)
    y = np.array([-2.0, -0.3, 0.0, 0.7, 2.5])
    sigma = 1.5
    z = y / sigma
    phi = np.exp(-z ** 2 / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + np.vectorize(math.erf)(z / math.sqrt(2)))
    exact = sigma * (z * (2 * cdf - 1) + 2 * phi - 1 / math.sqrt(math.pi))
    big = fair_crps(rng.normal(0, sigma, (20000, 5)), y)
    np.testing.assert_allclose(big, exact, rtol=0.02)
    # fair: unbiased even for a tiny ensemble (averaged over many ensembles of 3)
    small = fair_crps(rng.normal(0, sigma, (3, 200000, 5)).reshape(3, -1), np.tile(y, 200000)).reshape(-1, 5).mean(0)
    np.testing.assert_allclose(small, exact, rtol=0.02)
    naive = np.abs(rng.normal(0, sigma, (3, 5)) - y).mean(0)  # not the same thing
    assert not np.allclose(naive, exact, rtol=0.02)


def test_baselines_and_hiding():
    line = np.arange(10, dtype=float).reshape(-1, 1) * 2.0
    gappy = line.copy()
    gappy[[0, 3, 4, 9]] = np.nan
    np.testing.assert_allclose(fill_linear(gappy)[1:9], line[1:9])  # exact inside
    assert fill_linear(gappy)[0, 0] == 2.0 and fill_linear(gappy)[9, 0] == 16.0  # nearest at the ends
    np.testing.assert_allclose(fill_locf(gappy)[[0, 3, 4, 9], 0], [2.0, 4.0, 4.0, 16.0])
    values = np.where(np.random.default_rng(1).random((50, 4)) < 0.3, np.nan, 1.0)
    out, mask = hide(values, 0.25, seed=3)
    assert mask.sum() == round(0.25 * np.count_nonzero(~np.isnan(values)))
    assert not np.isnan(values[mask]).any() and np.isnan(out[mask]).all()
    np.testing.assert_array_equal(hide(values, 0.25, seed=3)[1], mask)  # seeded


def test_overlap_mean_and_inpainting_keep_observed_values():
    from tsdiff_cli.models.generator import Generator, GeneratorConfig
    from tsdiff_cli.models.inpaint import inpaint, overlap_mean, tile_starts, tst_fill
    from tsdiff_cli.models.tst import TSTConfig
    from tsdiff_cli.models.unet import UNetConfig

    windows = torch.randn(2, 5, 4, 3)
    starts = torch.tensor([0, 1, 2, 3, 4])
    mean, count = overlap_mean(windows, starts, 8)
    slow = torch.zeros(2, 8, 3)
    for j in range(5):
        slow[:, j:j + 4] += windows[:, j]
    np.testing.assert_allclose(mean, slow / count.view(1, -1, 1), atol=1e-6)
    assert tile_starts(50, 24).tolist() == [0, 24, 26]

    cfg = GeneratorConfig(24, 2, 3, 8, TSTConfig(features=2, seq_len=24, d_model=8, heads=2, layers=1, ff=8, decoder_hidden=4,
                                                 dropout=0.1, norm="batch", positional="learnable", mask_channel=False),
                          UNetConfig(image_size=8, in_channels=2, channels=8, channel_mult=[1, 2], num_blocks=1,
                                     attn_resolutions=[4], dropout=0.0), project=False)
    model = Generator(cfg)
    series = torch.rand(3, 50, 2)
    series[torch.rand(3, 50, 2) < 0.3] = float("nan")
    known = ~torch.isnan(series)
    filled = tst_fill(model, series)
    assert filled.shape == series.shape and not torch.isnan(filled).any()
    assert torch.equal(filled[known], series[known])
    # one window long: the gaps hold the TST's own completion of the window
    model.eval()
    one = series[:, :24]
    with torch.inference_mode():
        expected = torch.where(torch.isnan(one), model.tst(one).float(), one)
    torch.testing.assert_close(tst_fill(model, one), expected)
    draws = inpaint(model, series, 2, steps=2, seed=0)
    assert draws.shape == (2, 3, 50, 2) and not torch.isnan(draws).any()
    assert torch.equal(draws[:, known], series[known].expand(2, -1))
    assert torch.equal(draws, inpaint(model, series, 2, steps=2, seed=0))  # seeded
    assert not torch.equal(draws[0][~known], draws[1][~known])  # two draws, not one copied
    assert not torch.equal(draws, inpaint(model, series, 2, steps=2, seed=1))


def test_masking_objective_hides_and_scores_only_hidden_values():
    from tsdiff_cli.models.tst import masked_inputs

    obs = torch.rand(64, 24, 3)
    obs[:, ::4] = float("nan")
    inputs, targets = masked_inputs(obs, 0.3, torch.Generator().manual_seed(0))
    hidden = ~torch.isnan(targets)
    assert torch.isnan(inputs[hidden]).all() and torch.equal(targets[hidden], obs[hidden])
    assert not hidden[:, ::4].any()  # only observed values are hidden
    assert 0.25 < hidden.sum() / (~torch.isnan(obs)).sum() < 0.35
    same = masked_inputs(obs, 0.0, torch.Generator())
    assert same[0] is obs and same[1] is obs
