"""pretrain-tst / train / sample / evaluate RUN through the CLI, on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tsdiff_cli.data.store import read_dataset
from tsdiff_cli.settings import load_settings
from conftest import TINY, write_toml


@pytest.fixture
def tiny(workdir):
    return write_toml(workdir / "tiny.toml", TINY)


def _latest(workdir):
    return (workdir / "runs" / "latest").resolve()


def test_train_makes_a_complete_run_and_samples_in_original_units(cli, workdir, tiny):
    result = cli("train", tiny, "-q")
    assert result.exit_code == 0, result.output
    run = _latest(workdir)
    assert (workdir / "data" / "tiny.h5").is_file()  # preprocessed on the way
    for name in ("config.toml", "metrics.jsonl", "status.json", "model.safetensors", "checkpoints/latest.json"):
        assert (run / name).exists(), name
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == 3 + 2 * 3
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"tst", "diffusion"} <= {line["phase"] for line in lines if line["kind"] == "train"}
    assert all({"time", "kind", "phase", "step", "epoch"} <= set(line) for line in lines)
    story = (run / "log.txt").read_text()  # the human-readable log of the run
    assert " train tiny: started on cpu" in story and "train diffusion epoch" in story and "stopped: finished" in story

    ds = read_dataset(workdir / "data" / "tiny.h5")
    for name in ("s.csv", "s.parquet", "s.h5", "s.npy"):
        result = cli("sample", "runs/latest", "-n", "7", "-o", name, "--seed", "4", "-q")
        assert result.exit_code == 0 and result.output == "", result.output  # --quiet: silent
    # not a terminal: plain progress lines instead of a bar
    plain = cli("sample", "runs/latest", "-n", "7", "-o", "plain.csv")
    assert "sampling 7 windows: 3/3 (100 %)" in plain.output and "wrote 7 windows" in plain.output
    frame = pd.read_csv(workdir / "s.csv")
    assert list(frame.columns) == ["window", "step"] + ds.columns and len(frame) == 7 * 24
    values = frame[ds.columns].to_numpy().reshape(7, 24, 6)
    lo, hi = ds.scaler.offset, ds.scaler.offset + ds.scaler.scale
    assert (values >= lo - 1e-3 * abs(lo)).all() and (values <= hi * 1.001).all()  # original units, within range
    np.testing.assert_allclose(np.load(workdir / "s.npy"), values, rtol=1e-5)
    np.testing.assert_allclose(pd.read_parquet(workdir / "s.parquet")[ds.columns].to_numpy(), frame[ds.columns].to_numpy(), rtol=1e-5)
    again = cli("sample", "runs/latest", "-n", "7", "-o", "again.csv", "--seed", "4", "-q")
    assert again.exit_code == 0 and (workdir / "again.csv").read_text() == (workdir / "s.csv").read_text()

    # bf16 sampling (the default where the CPU has bf16 instructions) stays close to fp32
    for precision in ("fp32", "bf16"):
        result = cli("sample", "runs/latest", "-n", "7", "-o", f"{precision}.npy", "--seed", "4", "--precision", precision, "-q")
        assert result.exit_code == 0, result.output
    gap = np.abs(np.load(workdir / "bf16.npy") - np.load(workdir / "fp32.npy")).max(axis=(0, 1))
    assert (gap < 0.01 * (hi - lo)).all(), gap / (hi - lo)

    env = {"TSDIFF_EVAL__REPEATS": "1", "TSDIFF_EVAL__DISC_ITERATIONS": "20"}
    result = cli("evaluate", "runs/latest", "--quick", "-q", env=env)
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())
    assert report["sizes"]["generated"] == report["sizes"]["real"] == len(ds.target)
    refused = cli("evaluate", "runs/latest", "--quick", "--sweep", "0,2", "-o", "sweep.json", env=env)
    assert refused.exit_code == 2 and "trained without conditions" in refused.stderr
    assert not (workdir / "sweep.json").exists()


@pytest.mark.parametrize("refine", ["true", "false"])
def test_resume_continues_exactly(cli, workdir, tiny, refine):
    env = {"TSDIFF_TST__REFINE": refine}
    straight = cli("train", tiny, "-q", env={**env, "TSDIFF_TRAIN__MAX_STEPS": "6"})
    assert straight.exit_code == 0, straight.output
    a = _latest(workdir)
    first = cli("train", tiny, "-q", env={**env, "TSDIFF_TRAIN__MAX_STEPS": "4"})
    assert first.exit_code == 0, first.output
    b = _latest(workdir)
    assert a != b and json.loads((b / "status.json").read_text())["step"] == 4
    resumed = cli("train", "--resume", b, "-q", env={**env, "TSDIFF_TRAIN__MAX_STEPS": "6"})
    assert resumed.exit_code == 0, resumed.output

    def final(run):
        name = json.loads((run / "checkpoints" / "latest.json").read_text())["name"]
        return load_file(str(run / "checkpoints" / f"{name}.safetensors"))

    ta, tb = final(a), final(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        if not key.startswith("rng."):
            assert np.array_equal(ta[key].numpy(), tb[key].numpy()), key


def test_a_checkpoint_from_before_a_config_field_existed_resumes(cli, workdir, tiny):
    """A run checkpointed before ``[model] resample`` existed (its architecture text lacks the key)
    resumes: the field's default is the network it trained; another architecture is still refused."""
    assert cli("train", tiny, "-q", env={"TSDIFF_TRAIN__MAX_STEPS": "4"}).exit_code == 0
    run = _latest(workdir)
    name = json.loads((run / "checkpoints" / "latest.json").read_text())["name"]
    path = run / "checkpoints" / f"{name}.json"
    state = json.loads(path.read_text())
    signature = json.loads(state["signature"])
    assert signature["unet"].pop("resample") == "pool"
    path.write_text(json.dumps({**state, "signature": json.dumps(signature)}))
    resumed = cli("train", "--resume", run, "-q", env={"TSDIFF_TRAIN__MAX_STEPS": "6"})
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "status.json").read_text())["step"] == 6
    signature["unet"]["channels"] = 16  # now a real difference, in the newest checkpoint
    name = json.loads((run / "checkpoints" / "latest.json").read_text())["name"]
    other = run / "checkpoints" / f"{name}.json"
    latest = json.loads(other.read_text())
    other.write_text(json.dumps({**latest, "signature": json.dumps(signature)}))
    refused = cli("train", "--resume", run, "-q", env={"TSDIFF_TRAIN__MAX_STEPS": "8"})
    assert refused.exit_code == 2 and "another architecture" in refused.output


def test_the_kept_model_is_the_best_quick_evaluation_on_equal_numbers_of_windows(cli, workdir, tiny):
    env = {"TSDIFF_TRAIN__EVAL_EVERY": "1", "TSDIFF_TRAIN__EPOCHS": "4", "TSDIFF_TRAIN__EVAL_SAMPLES": "16",
           "TSDIFF_EVAL__QUICK_REPEATS": "1", "TSDIFF_EVAL__QUICK_DISC_ITERATIONS": "5"}
    result = cli("train", tiny, "-q", env=env)
    assert result.exit_code == 0, result.output
    run = _latest(workdir)
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in evals if line["kind"] == "eval"]
    assert [line["epoch"] for line in evals] == [1, 2, 3, 4]
    assert all(line["profile"] == "selection" and line["windows"] == 16 for line in evals)  # 16 real against 16 sampled
    best = min(evals, key=lambda line: line["discriminative"])  # the first of equal scores stays
    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert int(meta["step"]) == best["step"] and float(meta["best_disc"]) == best["discriminative"]
    assert float(meta["kept_disc"]) == best["discriminative"]  # no keep_within: the kept weights are the best
    assert [line["best"] for line in evals].count(True) >= 1 and best["best"]


def test_selection_reads_no_ground_truth_and_evaluation_draws_fresh_seeds(cli, workdir, tiny):
    """The kept model is chosen from observed values alone: deleting the dataset's ``target`` (the
    values the benchmark removed) changes no selection score and no weight. ``evaluate RUN``
    scores in benchmark mode only when ``target`` is there, and its seeds are never selection's."""
    import h5py

    env = {"TSDIFF_TRAIN__EVAL_EVERY": "1", "TSDIFF_TRAIN__EPOCHS": "3", "TSDIFF_TRAIN__EVAL_SAMPLES": "16",
           "TSDIFF_EVAL__QUICK_REPEATS": "1", "TSDIFF_EVAL__QUICK_DISC_ITERATIONS": "5"}

    def train():
        assert cli("train", tiny, "-q", env=env).exit_code == 0
        run = _latest(workdir)
        scores = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        return run, [(s["step"], s["discriminative"]) for s in scores if s["kind"] == "eval"], load_file(str(run / "model.safetensors"))

    quick = {"TSDIFF_EVAL__QUICK_REPEATS": "1", "TSDIFF_EVAL__QUICK_DISC_ITERATIONS": "5"}
    run, scores_a, weights_a = train()
    data = workdir / "data" / "tiny.h5"
    assert read_dataset(data).has_target
    assert cli("evaluate", run, "--quick", "-q", env=quick).exit_code == 0
    report = json.loads((run / "report.json").read_text())
    assert report["inputs"]["real"]["read"] == "target" and "benchmark" in report["inputs"]["real"]["mode"]
    run_sample = load_settings(run / "config.toml").sample
    assert report["inputs"]["generated"]["sampler"] == {"steps": run_sample.steps, "churn": run_sample.churn,
                                                        "precision": run_sample.precision}
    seeds = report["seeds"]
    assert seeds["base"] == 0 and seeds["sample"] != seeds["selection"]["sample"]
    assert seeds["metric"] != seeds["selection"]["metric"] and report["seed"] == seeds["metric"]
    assert cli("evaluate", run, "--quick", "-q", "--seed", "5", env=quick).exit_code == 0
    other = json.loads((run / "report.json").read_text())["seeds"]
    assert other["base"] == 5 and other["sample"] != seeds["sample"] and other["metric"] != seeds["metric"]
    assert other["selection"] == seeds["selection"]  # training's seeds are the run's, whatever evaluate is asked

    with h5py.File(data, "a") as f:
        f["target"][...] = np.random.default_rng(0).random(f["target"].shape)  # a leak would now change the scores
    _, scores_b, weights_b = train()
    with h5py.File(data, "a") as f:
        del f["target"]
    without_target, scores_c, weights_c = train()
    assert not read_dataset(data).has_target and len(scores_a) == 3
    assert scores_a == scores_b == scores_c
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]) and torch.equal(weights_a[key], weights_c[key]), key
    # without ground truth and with no complete window there is nothing to score the full protocol on
    refused = cli("evaluate", without_target, "--quick", "-q", env=quick)
    assert refused.exit_code == 2 and "windows without gaps" in refused.output


def test_a_resume_scoring_other_quick_windows_does_not_compare_with_the_old_best(cli, workdir, tiny):
    env = {"TSDIFF_TRAIN__EVAL_EVERY": "1", "TSDIFF_TRAIN__EPOCHS": "3", "TSDIFF_TRAIN__EVAL_SAMPLES": "16",
           "TSDIFF_EVAL__QUICK_REPEATS": "1", "TSDIFF_EVAL__QUICK_DISC_ITERATIONS": "5"}
    first = cli("train", tiny, "-q", env={**env, "TSDIFF_TRAIN__MAX_STEPS": "9"})  # TST 3 steps + 2 epochs of 3
    assert first.exit_code == 0, first.output
    run = _latest(workdir)
    other = {**env, "TSDIFF_TRAIN__EVAL_SAMPLES": "12", "TSDIFF_TRAIN__MAX_STEPS": "0"}
    resumed = cli("train", "--resume", run, "-q", env=other)
    assert resumed.exit_code == 0, resumed.output
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [line for line in lines if line["kind"] == "eval"]
    assert [(line["epoch"], line["windows"]) for line in evals] == [(1, 16), (2, 16), (3, 12)]
    assert any("best score so far is reset" in line.get("message", "") for line in lines)
    assert evals[-1]["best"]  # judged on its own windows, not against the 16-window scores


def test_pretrained_tst_is_reused(cli, workdir, tiny):
    result = cli("pretrain-tst", tiny, "-q")
    assert result.exit_code == 0, result.output
    tst_run = _latest(workdir)
    assert (tst_run / "tst.safetensors").is_file() and not (tst_run / "model.safetensors").exists()
    assert cli("evaluate", tst_run).exit_code == 2  # a TST alone is no generator
    result = cli("train", tiny, "--tst", tst_run, "-q")
    assert result.exit_code == 0, result.output
    status = json.loads((_latest(workdir) / "status.json").read_text())
    assert status["step"] == 2 * 3  # diffusion only


def test_a_frozen_tst_keeps_its_pretrained_weights_while_the_diffusion_model_learns(cli, workdir, tiny):
    assert cli("pretrain-tst", tiny, "-q").exit_code == 0
    tst_run = _latest(workdir)
    pretrained = load_file(str(tst_run / "tst.safetensors"))
    kept = {}
    for refine in ("false", "true"):
        result = cli("train", tiny, "--tst", tst_run, "-q", env={"TSDIFF_TST__REFINE": refine})
        assert result.exit_code == 0, result.output
        kept[refine] = load_file(str(_latest(workdir) / "model.safetensors"))
    for key, value in pretrained.items():
        if key != "knots":
            assert torch.equal(kept["false"][f"tst.{key}"], value), key
    assert any(not torch.equal(kept["true"][f"tst.{k}"], v) for k, v in pretrained.items() if k != "knots")
    assert any(not torch.equal(kept["false"][k], kept["true"][k]) for k in kept["true"] if k.startswith("denoiser."))


def test_ctrl_c_writes_a_checkpoint_and_exits_130(cli, workdir, tiny, monkeypatch):
    from tsdiff_cli.training.loop import Trainer

    original = Trainer.train_step

    def interrupted(self, phase, idx):
        if self.pos.step == 4:
            raise KeyboardInterrupt
        return original(self, phase, idx)

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    result = cli("train", tiny, "-q")
    assert result.exit_code == 130
    assert "--resume" in result.stderr
    run = _latest(workdir)
    assert json.loads((run / "status.json").read_text())["state"] == "interrupted"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 4


def test_nan_loss_stops_with_a_clear_error(cli, workdir, tiny):
    result = cli("train", tiny, "-q", env={"TSDIFF_TRAIN__LR": "1e30", "TSDIFF_TST__LR": "1e30"})
    assert result.exit_code == 2
    assert "loss became" in result.stderr and "last good checkpoint" in result.stderr
    assert json.loads((_latest(workdir) / "status.json").read_text())["state"] == "failed"


def test_bad_runs_and_requests_exit_2(cli, workdir, tiny):
    (workdir / "runs" / "empty").mkdir(parents=True)
    (workdir / "runs" / "empty" / "config.toml").write_text(TINY)
    assert "has no generator" in cli("sample", "runs/empty").stderr
    for args in (("sample", "runs/nothing"), ("train", "--resume", "runs/nothing")):
        result = cli(*args)
        assert result.exit_code == 2 and "no such run directory" in result.stderr, args
    assert cli("train", tiny, "-q", env={"TSDIFF_TRAIN__MAX_STEPS": "4"}).exit_code == 0
    result = cli("sample", "runs/latest", "-n", "0")
    assert result.exit_code == 2 and "-n" in result.stderr
    (workdir / "blocker").write_text("")
    result = cli("sample", "runs/latest", "-o", "blocker/s.csv")
    assert result.exit_code == 2 and "blocker" in result.stderr
    model = _latest(workdir) / "model.safetensors"
    model.write_bytes(model.read_bytes()[:100])  # truncated
    result = cli("sample", "runs/latest", "-n", "2")
    assert result.exit_code == 2 and "model.safetensors" in result.stderr
    result = cli("train", tiny, env={"TSDIFF_MODEL__EMBEDDING": "30"})
    assert result.exit_code == 2 and "embedding" in result.stderr and "e.g." in result.stderr


def test_a_run_stopped_before_its_model_was_written_says_how_to_continue_it(cli, workdir):
    # an interrupted or failed run has checkpoints but no model yet: the fix is --resume, not a new run
    from tsdiff_cli.runs import Run

    for ending, state in ((KeyboardInterrupt, "interrupted"), (RuntimeError, "failed")):
        run = Run.create(workdir / "runs", "train", state, TINY)
        with pytest.raises(BaseException):
            with run.lifecycle("train", resume_hint=f"tsdiff train --resume {run.path}"):
                run.begin("training")
                raise ending()
        assert json.loads((run.path / "status.json").read_text())["state"] == state
        for args in (("sample", run.path), ("evaluate", run.path)):
            result = cli(*args)
            assert result.exit_code == 2, args
            assert f"continue it with `tsdiff train --resume {run.path}`" in result.stderr, (args, result.stderr)
