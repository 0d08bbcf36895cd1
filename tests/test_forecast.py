"""tsdiff forecast: windows and splits, baselines, samplers, the model's pieces, metrics, the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import write_toml
from tsdiff_cli.data.forecast import ForecastWindows, read_series, split_borders
from tsdiff_cli.errors import UserError
from tsdiff_cli.metrics.forecast import forecast_scores, gaussian_crps, gaussian_scores
from tsdiff_cli.metrics.imputation import fair_crps
from tsdiff_cli.models.flow import ddim_v_sample, euler_flow_sample
from tsdiff_cli.models.forecast_baselines import Ridge, seasonal_naive
from tsdiff_cli.models.forecaster import Attention, ForecastConfig, Forecaster


def _hourly(rows: int = 400, variables: int = 3, seed: int = 0, start: str = "2021-03-01") -> pd.DataFrame:
    t = np.arange(rows)
    rng = np.random.default_rng(seed)
    values = np.stack([np.sin(2 * np.pi * t / 24 + j) + 0.1 * rng.standard_normal(rows) for j in range(variables)], 1)
    frame = pd.DataFrame(values * 5 + 20, columns=[f"load{j}" for j in range(variables)])
    frame.insert(0, "date", pd.date_range(start, periods=rows, freq="h").strftime("%Y-%m-%d %H:%M:%S"))
    return frame


TINY_FORECAST = """
[forecast]
data = "{data}"
seq_len = 24
pred_len = 8
d_model = 16
heads = 2
layers = 1
ff = 32
head_dim = 16
head_heads = 2
head_layers = 1
patch = 4
batch_size = 32
epochs = 2
warmup_steps = 5
samples = 20
steps = 2
"""


@pytest.fixture
def trained(workdir, cli):
    """A tiny forecaster trained on 400 hourly rows (custom split 70 / 10 / 20 %)."""
    _hourly().to_csv(workdir / "load.csv", index=False)
    cfg = write_toml(workdir / "tiny.toml", TINY_FORECAST.format(data="load.csv"))
    r = cli("forecast", cfg)
    assert r.exit_code == 0, r.output
    return workdir / "runs" / "latest", r


# --- data -----------------------------------------------------------------------------------------

def test_windows_gather_the_rows_that_slicing_gives():
    series = torch.arange(50 * 2, dtype=torch.float32).reshape(50, 2)
    w = ForecastWindows(series, 10, 40, seq_len=6, pred_len=3)
    assert len(w) == 40 - 10 - 9 + 1  # stride 1, nothing dropped
    x, y, start = w.batch(torch.tensor([0, 5, len(w) - 1]))
    for k, s in enumerate(start.tolist()):
        assert torch.equal(x[k], series[s:s + 6]) and torch.equal(y[k], series[s + 6:s + 9])
    assert start.tolist() == [10, 15, 40 - 9]


def test_ett_files_take_the_tslib_borders_and_give_2785_test_windows():
    b = split_borders("ETTh1", 17420, 96, 96)
    assert b == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    assert b["test"][1] - b["test"][0] - 96 - 96 + 1 == 2785
    custom = split_borders("load", 1000, 24, 8)
    assert custom == {"train": (0, 700), "val": (676, 800), "test": (776, 1000)}


def test_a_file_too_short_for_its_split_names_the_minimum():
    with pytest.raises(UserError, match="fewer than seq_len \\+ pred_len = 32.*at least 64 rows"):
        split_borders("load", 50, 24, 8)
    split_borders("load", 64, 24, 8)  # the minimum itself is enough


def test_dates_must_increase(tmp_path):
    frame = _hourly(50)
    frame.loc[[10, 11], "date"] = frame.loc[[11, 10], "date"].to_numpy()
    frame.to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(UserError, match="does not increase at line 13"):
        read_series(tmp_path / "x.csv")


def test_gaps_are_filled_with_the_last_value_and_counted(tmp_path):
    frame = _hourly(30)
    frame.loc[5:7, "load1"] = np.nan
    frame.loc[0, "load2"] = np.nan
    frame.to_csv(tmp_path / "x.csv", index=False)
    s = read_series(tmp_path / "x.csv")
    assert s.filled == 4 and s.missing.sum() == 4
    assert np.all(s.values[5:8, 1] == frame.loc[4, "load1"])  # carried forward
    assert s.values[0, 2] == frame.loc[1, "load2"]  # nothing before: carried back


# --- baselines and metrics ------------------------------------------------------------------------

def test_seasonal_naive_repeats_the_last_season():
    x = np.arange(48, dtype=float).reshape(1, 48, 1)
    out = seasonal_naive(x, 30, season=24)
    assert out[0, :, 0].tolist() == list(range(24, 48)) + list(range(24, 30))


def test_ridge_recovers_a_linear_process():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 12, 2))
    w = rng.standard_normal((12, 4))
    centred = x - x.mean(1, keepdims=True)
    y = np.einsum("nlv,lh->nhv", centred, w) + x.mean(1, keepdims=True)
    pred = Ridge(alpha=1e-8).fit(x, y).predict(x)
    np.testing.assert_allclose(pred, y, atol=1e-6)


def test_gaussian_scores_agree_with_a_large_gaussian_ensemble():
    rng = np.random.default_rng(1)
    mu, sigma = rng.standard_normal((40, 5)), rng.uniform(0.5, 2.0, (40, 5))
    y = mu + sigma * rng.standard_normal((40, 5))
    draws = mu + sigma * rng.standard_normal((4000, 40, 5))
    exact = gaussian_scores(mu, sigma, y, np.zeros(5), np.ones(5))
    sampled = forecast_scores(draws, y)
    assert abs(exact["crps"] - np.mean(fair_crps(draws, y))) < 0.02
    # at the mean of N(0, 1): 2 φ(0) − 1/√π = (√2 − 1) / √π
    assert gaussian_crps(np.zeros(1), np.ones(1), np.zeros(1))[0] == pytest.approx((2 ** 0.5 - 1) / np.pi ** 0.5)
    for key in ("crps_probts", "coverage50", "coverage90", "mse_median"):
        assert abs(exact[key] - sampled[key]) < 0.05, key


def test_scores_accumulated_over_chunks_equal_one_pass():
    rng = np.random.default_rng(3)
    draws, y = rng.standard_normal((30, 50, 6, 2)), rng.standard_normal((50, 6, 2))
    whole = forecast_scores(draws, y, draws * 3 + 10, y * 3 + 10, chunk=50)
    chunked = forecast_scores(draws, y, draws * 3 + 10, y * 3 + 10, chunk=7)
    assert whole.keys() == chunked.keys()
    for key in whole:
        assert whole[key] == pytest.approx(chunked[key], rel=1e-12), key
    assert whole["crps"] == pytest.approx(np.mean(fair_crps(draws, y)), rel=1e-12)


def test_crps_rewards_a_calibrated_spread_over_an_overconfident_one():
    rng = np.random.default_rng(2)
    y = rng.standard_normal(5000)
    right = rng.standard_normal((200, 5000))
    narrow = 0.1 * rng.standard_normal((200, 5000))
    assert forecast_scores(right, y)["crps"] < forecast_scores(narrow, y)["crps"]
    assert abs(forecast_scores(right, y)["coverage90"] - 0.9) < 0.02
    assert forecast_scores(narrow, y)["coverage90"] < 0.2


# --- samplers and model ---------------------------------------------------------------------------

def test_euler_flow_with_the_exact_field_lands_on_the_data():
    """For data that is a point c, the flow-matching field is u(z, t) = (c − z) / (1 − t); Euler's
    last step has dt = 1 − t, so any number of steps ends exactly at c."""
    c = torch.tensor([[1.5, -2.0, 0.25]])
    for steps in (1, 3, 7):
        z = euler_flow_sample(lambda z, t: (c - z) / (1 - t[:, None]), torch.randn(4, 3), steps)
        torch.testing.assert_close(z, c.expand(4, 3))


def test_ddim_with_the_exact_v_lands_on_the_data():
    c = torch.tensor([[0.5, 3.0]])

    def v(z, t):  # v = α ε − σ x with ε recovered from z = α x + σ ε
        a, s = torch.cos(torch.pi * t / 2)[:, None], torch.sin(torch.pi * t / 2)[:, None]
        return a * (z - a * c) / s - s * c

    torch.testing.assert_close(ddim_v_sample(v, torch.randn(6, 2), 4), c.expand(6, 2), atol=1e-5, rtol=0)


def test_grouped_cross_attention_equals_attention_to_a_repeated_context():
    torch.manual_seed(0)
    att = Attention(16, 4, context_dim=8)
    context = torch.randn(3, 5, 8)
    x = torch.randn(3 * 4, 6, 16)  # 4 samples per context row
    grouped = att(x, context)
    repeated = torch.stack([att(x[i:i + 1], context[i // 4:i // 4 + 1])[0] for i in range(12)])
    torch.testing.assert_close(grouped, repeated, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head", ["flow", "vdiff"])
def test_samples_come_in_the_right_shape_and_are_repeatable(head):
    cfg = ForecastConfig(seq_len=24, pred_len=8, n_vars=3, d_model=16, heads=2, layers=1, ff=32, dropout=0.1, cycle=24,
                         head=head, head_dim=16, head_heads=2, head_layers=1, patch=4, residual=True)
    model = Forecaster(cfg).eval()
    x, phase = torch.randn(5, 24, 3), torch.arange(5)
    a, det = model.sample(x, 7, 3, phase, generator=torch.Generator().manual_seed(0))
    b, _ = model.sample(x, 7, 3, phase, generator=torch.Generator().manual_seed(0))
    assert a.shape == (7, 5, 8, 3) and det.shape == (5, 8, 3)
    torch.testing.assert_close(a, b)
    mse, gen = model.losses(x, torch.randn(5, 8, 3), phase)
    assert mse.ndim == gen.ndim == 0 and torch.isfinite(mse + gen)


def test_the_residual_head_is_trained_end_to_end_through_the_encoder():
    """The generative loss reaches the encoder (cross-attention and global condition), but not
    the deterministic forecast it is the residual of."""
    cfg = ForecastConfig(seq_len=24, pred_len=8, n_vars=2, d_model=16, heads=2, layers=1, ff=32, dropout=0.1, cycle=0,
                         head="flow", head_dim=16, head_heads=2, head_layers=1, patch=4, residual=True)
    model = Forecaster(cfg)
    for p in model.head.parameters():  # leave adaLN-Zero's zero init so gradients reach the inputs
        torch.nn.init.normal_(p, std=0.1)
    _, gen = model.losses(torch.randn(4, 24, 2), torch.randn(4, 8, 2))
    gen.backward()
    assert model.encoder.embed.weight.grad.abs().sum() > 0
    assert model.encoder.project.weight.grad is None or model.encoder.project.weight.grad.abs().sum() == 0


# --- the CLI --------------------------------------------------------------------------------------

def test_forecast_trains_evaluates_and_prints_the_baselines(trained):
    run, r = trained
    for name in ("linear ridge", "seasonal naive", "deterministic head", "tsdiff forecaster", "CRPS ProbTS"):
        assert name in r.output
    report = json.loads((run / "report.json").read_text())
    assert report["protocol"]["windows"] == 400 - 296 - 32 + 1  # test rows [400 − 80 − 24, 400), stride 1, none dropped
    assert set(report["baselines"]) == {"deterministic head", "linear ridge", "seasonal naive"}
    assert 0 <= report["model"]["coverage90"] <= 1 and report["model"]["crps"] > 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {rec["phase"] for rec in lines} == {"forecast"} and any(rec.get("profile") == "test" for rec in lines)
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    from tsdiff_cli.monitor.model import RunState

    view = RunState(run.resolve())
    view.refresh(budget=5)
    assert {"loss", "gen_loss"} <= set(view.losses) and {"val_loss", "crps"} <= set(view.scores)
    assert view.state() == "finished"


def test_forecast_from_a_run_writes_quantiles_with_future_dates(trained, workdir, cli):
    run, _ = trained
    tail = _hourly(60, seed=5, start="2022-01-01")
    tail.to_csv(workdir / "tail.csv", index=False)
    r = cli("forecast", "--run", run, "--input", "tail.csv", "-o", "fc.csv", "--all-samples", "all.h5", "--seed", "3")
    assert r.exit_code == 0, r.output
    fc = pd.read_csv(workdir / "fc.csv")
    last = pd.Timestamp(tail["date"].iloc[-1])
    assert pd.to_datetime(fc["date"]).tolist() == list(pd.date_range(last + pd.Timedelta("1h"), periods=8, freq="h"))
    for name in ("load0", "load1", "load2"):
        q = fc[[f"{name}_q05", f"{name}_q25", f"{name}_median", f"{name}_q75", f"{name}_q95"]].to_numpy()
        assert np.all(np.diff(q, axis=1) >= 0)
        assert 5 < fc[f"{name}_mean"].mean() < 35  # original units (the data lie in 15–25)
    with h5py.File(workdir / "all.h5") as f:
        assert f["samples"].shape == (20, 8, 3)
        assert json.loads(f.attrs["columns"]) == ["load0", "load1", "load2"]
        draws = f["samples"][:]
    np.testing.assert_allclose(fc["load1_median"], np.median(draws[:, :, 1], axis=0), rtol=1e-5)
    np.testing.assert_allclose(fc["load2_q95"], np.quantile(draws[:, :, 2], 0.95, axis=0), rtol=1e-5)
    r2 = cli("forecast", "--run", run, "--input", "tail.csv", "-o", "fc2.csv", "--seed", "3")
    assert r2.exit_code == 0
    pd.testing.assert_frame_equal(fc, pd.read_csv(workdir / "fc2.csv"))


def test_bad_forecast_inputs_exit_2_with_one_line_and_no_output(trained, workdir, cli):
    run, _ = trained
    short = _hourly(10)
    short.to_csv(workdir / "short.csv", index=False)
    _hourly(60).drop(columns=["load2"]).to_csv(workdir / "fewer.csv", index=False)
    shuffled = _hourly(60)
    shuffled.loc[[20, 21], "date"] = shuffled.loc[[21, 20], "date"].to_numpy()
    shuffled.to_csv(workdir / "unsorted.csv", index=False)
    halfhour = _hourly(60)
    halfhour["date"] = pd.date_range("2022-01-01", periods=60, freq="30min").strftime("%Y-%m-%d %H:%M:%S")
    halfhour.to_csv(workdir / "halfhour.csv", index=False)
    holes = _hourly(60).drop(index=[50])
    holes.to_csv(workdir / "holes.csv", index=False)
    nodate = _hourly(60).drop(columns=["date"])
    nodate.to_csv(workdir / "nodate.csv", index=False)
    cases = [
        (["--input", "short.csv"], "has 10 rows; the model reads the last seq_len = 24"),
        (["--input", "fewer.csv"], "columns differ from the training run's (lacks 'load2')"),
        (["--input", "unsorted.csv"], "does not increase"),
        (["--input", "nodate.csv"], "no date column"),
        (["--input", "halfhour.csv"], "not one every h as in the training data"),
        (["--input", "holes.csv"], "not one every h as in the training data"),
        (["--input", "short.csv", "--samples", "0"], "samples"),
    ]
    for args, message in cases:
        r = cli("forecast", "--run", run, *args, "-o", "out.csv")
        assert r.exit_code == 2, (args, r.output)
        assert message in r.output and "Traceback" not in r.output, (args, r.output)
        assert not (workdir / "out.csv").exists()
    r = cli("forecast", "--run", workdir / "nowhere", "--input", "short.csv", "-o", "out.csv")
    assert r.exit_code == 2 and "no such run directory" in r.output
    from safetensors.torch import save_file

    (workdir / "gen").mkdir()
    save_file({"w": torch.zeros(2)}, str(workdir / "gen" / "model.safetensors"), metadata={"format": "tsdiff-generator"})
    r = cli("forecast", "--run", workdir / "gen", "--input", "short.csv", "-o", "out.csv")
    assert r.exit_code == 2 and "is not a tsdiff forecaster" in r.output
    r = cli("forecast", "tiny.toml", "--run", run, "--input", "short.csv", "-o", "out.csv")
    assert r.exit_code == 2 and "not both" in r.output
    assert not (workdir / "out.csv").exists()
    _hourly(50).to_csv(workdir / "tiny.csv", index=False)
    cfg = write_toml(workdir / "short.toml", TINY_FORECAST.format(data="tiny.csv"))
    r = cli("forecast", cfg)
    assert r.exit_code == 2 and "too short" in r.output and "at least 64 rows" in r.output


def test_gaps_in_the_lookback_are_filled_and_reported(trained, workdir, cli):
    run, _ = trained
    tail = _hourly(40)
    tail.loc[35:37, "load0"] = np.nan
    tail.to_csv(workdir / "gappy.csv", index=False)
    r = cli("forecast", "--run", run, "--input", "gappy.csv", "-o", "fc.csv")
    assert r.exit_code == 0, r.output
    assert "3 missing values in the lookback were filled" in r.output
    assert not pd.read_csv(workdir / "fc.csv").isna().any().any()
