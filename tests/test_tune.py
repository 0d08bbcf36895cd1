"""tsdiff tune: Optuna studies over a job's settings, their trials as ordinary runs, best.toml."""

from __future__ import annotations

import json
import os

import pytest

from conftest import TINY_CLASSIFY, write_toml
from tsdiff_cli.settings import load_settings

STUDY = TINY_CLASSIFY + """
[tune]
trials = {trials}

[tune.space]
"classify.lr" = {{low = 1e-4, high = 1e-2, log = true}}
"classify.d_model" = {{choices = [16, 32]}}
"""


def _study(workdir, trials=3, extra=""):
    return write_toml(workdir / "s.toml", STUDY.format(trials=trials) + extra)


def _evals(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "eval" and r.get("profile") == "validation"]


def _trials(folder, storage=None):
    import optuna

    from tsdiff_cli.jobs.tune import load

    study, _ = load(folder, storage)
    return [t for t in study.get_trials() if t.state != optuna.trial.TrialState.RUNNING]


def test_a_study_scores_trials_on_validation_links_their_runs_and_writes_best_settings(cli, workdir):
    config = _study(workdir)
    out = cli("tune", config)
    assert out.exit_code == 0, out.output
    assert "best settings:" in out.output and "importance" in out.output
    folder = workdir / "studies" / "s"
    trials = _trials(folder)
    assert len(trials) == 3 and json.loads((folder / "study.json").read_text())["metric"] == "val_accuracy"
    for t in trials:
        run = (folder / "trials" / f"{t.number:04d}").resolve()
        assert run.is_dir() and json.loads((run / "status.json").read_text())["state"] == "finished"
        evals = _evals(run)
        # the pruner was fed every validation, and the trial's value is its best one (never a test score)
        assert [v for _, v in sorted(t.intermediate_values.items())] == [e["val_accuracy"] for e in evals]
        if t.value is not None:
            assert t.value == max(e["val_accuracy"] for e in evals)
        assert load_settings(run / "config.toml").classify.lr == pytest.approx(t.params["classify.lr"])
    best = max((t for t in trials if t.value is not None), key=lambda t: t.value)
    settings = load_settings(folder / "best.toml")
    assert settings.classify.lr == pytest.approx(best.params["classify.lr"])
    assert settings.classify.d_model == best.params["classify.d_model"]
    again = cli("classify", "train", folder / "best.toml", "-q")  # best.toml is a config the job accepts
    assert again.exit_code == 0, again.output

    shown = cli("tune", "show", folder)
    assert shown.exit_code == 0 and f"{best.number:>6}" in shown.output.splitlines()[2]

    more = cli("tune", config, "--trials", "4", "-q")  # the same study, continued to 4 trials
    assert more.exit_code == 0 and len(_trials(folder)) == 4

    watched = cli("monitor", folder, "--once")  # the trials from their runs' files, then the newest trial's run
    assert watched.exit_code == 0, watched.output
    lines = watched.output.splitlines()
    assert "study s: val_accuracy (maximize)" in lines[0]
    for t in _trials(folder):
        state = "pruned" if t.state.name == "PRUNED" else "finished"
        assert any(line.split("│")[1:3] and line.split("│")[1].strip() == str(t.number) and state in line for line in lines)
    assert "newest trial:" in watched.output and (folder / "latest").resolve().name in watched.output


@pytest.mark.parametrize("extra, message", [
    ('"classify.nope" = {low = 1, high = 2}', '[tune.space] "classify.nope": is not a setting'),
    ('"classify.ff" = {low = 64, high = 8}', "must be a number below high"),
])
def test_a_bad_search_space_is_one_line_and_exit_2(cli, workdir, extra, message):
    out = cli("tune", _study(workdir, extra=extra))
    assert out.exit_code == 2 and message in out.output and not (workdir / "runs").exists()


def test_a_test_split_metric_is_refused(cli, workdir):
    out = cli("tune", _study(workdir), "--metric", "test_accuracy")
    assert out.exit_code == 2 and "test-split score" in out.output


def test_resume_runs_an_interrupted_trial_again_with_its_values(cli, workdir):
    from tsdiff_cli.jobs.tune import open_study

    config = _study(workdir, trials=2)
    s = load_settings(config)
    study, _ = open_study(s, config, "s", None)
    orphan = study.ask()  # a trial whose worker was killed: RUNNING forever
    orphan.suggest_float("classify.lr", 1e-4, 1e-2, log=True)
    orphan.suggest_categorical("classify.d_model", [16, 32])
    out = cli("tune", config, "--resume")
    assert out.exit_code == 0, out.output
    assert "1 interrupted trial(s) marked failed and queued again" in out.output
    trials = _trials(workdir / "studies" / "s")
    again = [t for t in trials if t.user_attrs.get("retry_of") == orphan.number]
    assert len(again) == 1 and again[0].params == orphan.params
    assert [t.state.name for t in trials if t.number == orphan.number] == ["FAIL"]


def test_two_workers_share_the_study_journal(cli, workdir):
    out = cli("tune", _study(workdir, trials=4), "--workers", "2")
    assert out.exit_code == 0, out.output
    assert "2 workers started" in out.output
    trials = _trials(workdir / "studies" / "s")
    assert 4 <= len(trials) <= 5 and len({t.number for t in trials}) == len(trials)  # a worker may start one more
    links = list((workdir / "studies" / "s" / "trials").iterdir())
    assert len(links) == len(trials)
    pids = {json.loads((link.resolve() / "status.json").read_text())["pid"] for link in links}
    assert len(pids) == 2 and os.getpid() not in pids  # the trials ran in the two worker processes


@pytest.mark.skipif("TUNE_TEST_POSTGRES" not in os.environ,
                    reason="needs a PostgreSQL URL in TUNE_TEST_POSTGRES (.ci/run starts one)")
def test_workers_share_a_study_in_postgresql(cli, workdir):
    url = os.environ["TUNE_TEST_POSTGRES"]
    name = f"pg{os.getpid()}"
    config = _study(workdir, trials=3)
    out = cli("tune", config, "--study", name, "--storage", url, "--workers", "2")
    assert out.exit_code == 0, out.output
    folder = workdir / "studies" / name
    assert "journal.log" not in os.listdir(folder)
    trials = _trials(folder, url)
    assert len(trials) >= 3
    # another machine joins by name: here, one more worker in this process
    more = cli("tune", config, "--study", name, "--storage", url, "--trials", str(len(trials) + 1), "-q")
    assert more.exit_code == 0 and len(_trials(folder, url)) == len(trials) + 1
    refused = cli("tune", "show", folder)
    assert refused.exit_code == 2 and "--storage" in refused.output


def test_a_metric_the_job_does_not_log_stops_the_study_with_exit_2(cli, workdir):
    out = cli("tune", _study(workdir), "--metric", "val_nonsense")
    assert out.exit_code == 2
    assert "'val_nonsense' is not among the classify job's validation metrics" in out.output and "val_accuracy" in out.output
    assert len(_trials(workdir / "studies" / "s")) == 1  # stopped at the first trial, not tried on every one


def test_a_database_that_cannot_be_reached_is_one_line(cli, workdir):
    out = cli("tune", _study(workdir), "--storage", "postgresql://me:secret@127.0.0.1:1/nowhere")
    assert out.exit_code == 2 and "127.0.0.1:1" in out.output and "secret" not in out.output
    assert len(out.output.strip().splitlines()) == 1
