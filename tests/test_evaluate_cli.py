"""tsdiff evaluate from the command line: files in every format, the report, plots, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tsdiff_cli.data.preprocess import preprocess
from tsdiff_cli.settings import DataSettings

# reduced iterations through the environment, as a user would shorten a run
FAST_ENV = {
    "TSDIFF_EVAL__REPEATS": "2",
    "TSDIFF_EVAL__DISC_ITERATIONS": "300",
    "TSDIFF_EVAL__PRED_ITERATIONS": "200",
    "TSDIFF_EVAL__FID_REPEATS": "1",
    "TSDIFF_EVAL__FID_ITERATIONS": "20",
}


@pytest.fixture
def stock_files(workdir):
    ds = preprocess(DataSettings(source="stock", reverse_rows=True, output="stock.h5")).dataset
    x = ds.target
    half = len(x) // 2
    np.save(workdir / "a.npy", x[:half])
    np.save(workdir / "b.npy", x[half:])
    np.save(workdir / "noise.npy", np.random.default_rng(0).random(x.shape).astype(np.float32))
    return ds


def _stacked(values, columns):
    n, t, f = values.shape
    frame = pd.DataFrame(values.reshape(n * t, f), columns=columns)
    frame.insert(0, "step", np.tile(np.arange(t), n))
    frame.insert(0, "window", np.repeat(np.arange(n), t))
    return frame


def test_halves_score_near_zero_with_report_and_plots(cli, workdir, stock_files):
    result = cli("evaluate", "--real", "a.npy", "--generated", "b.npy", "--plots", "plots", "-o", "out/report.json", env=FAST_ENV)
    assert result.exit_code == 0, result.output
    assert "discriminative score" in result.stdout and "full protocol" in result.stdout
    report = json.loads((workdir / "out" / "report.json").read_text())
    assert report["profile"] == "full" and report["tsdiff_version"]
    assert set(report["metrics"]) == {"discriminative", "predictive", "context_fid", "correlation"}
    disc = report["metrics"]["discriminative"]
    assert disc["mean"] <= 0.05 and disc["repeats"] == 2 and disc["iterations"] == 300 and len(disc["values"]) == 2
    assert report["sizes"] == {"real": 1830, "generated": 1831, "seq_len": 24, "features": 6}
    assert report["seed"] == 0
    for name in ("pca.png", "tsne.png", "series.png"):
        assert (workdir / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_noise_scores_high_and_quick_profile_is_labelled(cli, workdir, stock_files):
    result = cli("evaluate", "--real", "stock.h5", "--generated", "noise.npy", "--quick", env=FAST_ENV)
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "report.json").read_text())
    assert report["profile"] == "quick" and "not comparable" in report["protocol"]
    assert list(report["metrics"]) == ["discriminative"]
    assert report["metrics"]["discriminative"]["mean"] >= 0.45
    assert report["metrics"]["discriminative"]["iterations"] == 2000
    assert "QUICK" in result.stdout


def test_unequal_numbers_of_windows_are_said_not_comparable(cli, workdir, stock_files):
    np.save(workdir / "few.npy", np.load(workdir / "b.npy")[:500])
    env = {**FAST_ENV, "TSDIFF_EVAL__METRICS": '["discriminative"]'}
    result = cli("evaluate", "--real", "a.npy", "--generated", "few.npy", env=env)
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "report.json").read_text())
    assert report["profile"] == "full" and "500 generated vs 1830 real" in report["protocol"]
    assert "not comparable" in report["protocol"] and "not comparable" in " ".join(result.stdout.split())


def test_stacked_windows_in_original_units_meet_the_dataset_scaler(cli, workdir, stock_files):
    ds = stock_files
    original = ds.scaler.inverse(ds.target[:1500].astype(np.float64))
    frame = _stacked(original, ds.columns)
    frame = frame[["window", "step"] + ds.columns[::-1]]  # columns in another order: matched by name
    frame.to_csv(workdir / "gen.csv", index=False)
    frame.to_parquet(workdir / "gen.parquet")
    for name in ("gen.csv", "gen.parquet"):
        result = cli("evaluate", "--real", "stock.h5", "--generated", name, "--quick", env=FAST_ENV)
        assert result.exit_code == 0, result.output
        report = json.loads((workdir / "report.json").read_text())
        assert "scaler" in report["inputs"]["scaling"]
        assert report["metrics"]["discriminative"]["mean"] <= 0.1  # the same data, so close to 0


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda w, x: np.save(w / "g.npy", x[:, :12]), ["g.npy", "(12, 6)", "(24, 6)"]),
        (lambda w, x: np.save(w / "g.npy", x[:, :, :4]), ["g.npy", "(24, 4)"]),
        (lambda w, x: np.save(w / "g.npy", np.where(np.arange(24)[None, :, None] == 3, np.nan, x)), ["g.npy", "NaN"]),
        (lambda w, x: np.save(w / "g.npy", np.zeros((0, 24, 6), np.float32)), ["g.npy", "no windows"]),
        (lambda w, x: (w / "g.npy").write_bytes(b"not an array"), ["g.npy", "cannot be read"]),
        (lambda w, x: None, ["g.npy", "no such file"]),
        (lambda w, x: (w / "g.npy").write_text(""), ["g.npy", "cannot be read"]),
        (lambda w, x: pd.DataFrame({"a": [1.0]}).to_csv(w / "g.csv"), ["g.csv", "'window'"]),
    ],
)
def test_bad_generated_input_exits_2(cli, workdir, stock_files, make, words):
    make(workdir, np.load(workdir / "a.npy"))
    target = "g.csv" if "g.csv" in words else "g.npy"
    result = cli("evaluate", "--real", "a.npy", "--generated", target, env=FAST_ENV)
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("tsdiff: error:")
    for word in words:
        assert word in line
    assert not (workdir / "report.json").exists()


def test_run_and_argument_errors(cli, workdir):
    (workdir / "runs" / "r1").mkdir(parents=True)
    cases = [
        (["evaluate", "runs/nope"], "no such run"),
        (["evaluate", "runs/r1"], "has no generator"),
        (["evaluate", "--real", "a.npy"], "--generated is missing"),
        (["evaluate"], "nothing to compare"),
        (["evaluate", "runs/r1", "--real", "a.npy", "--generated", "b.npy"], "not both"),
    ]
    for args, words in cases:
        result = cli(*args)
        assert result.exit_code == 2, args
        assert words in result.stderr, (args, result.stderr)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_metrics_on_a_missing_gpu_are_refused_before_any_work(cli, workdir, stock_files):
    result = cli("evaluate", "--real", "a.npy", "--generated", "b.npy", env={**FAST_ENV, "TSDIFF_EVAL__DEVICE": "cuda"})
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "\n" not in line and "device" in line and "no CUDA GPU" in line
    assert not (workdir / "report.json").exists()
