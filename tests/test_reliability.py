"""Reliability, one class of failure at a time, each tried with several inputs: bad data refused
(not silently accepted), settings never silently ignored on resume, sizes checked up front,
write errors (a full disk) as one line with the run failed and its last checkpoint kept, what a
killed process leaves behind cleaned up, corrupt saved state noticed with a fallback, and a run
folder held by one process at a time."""

from __future__ import annotations

import errno
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import TINY, data_file, write_toml
from tsdiff_cli.data.arrays import WindowWriter, read_windows
from tsdiff_cli.errors import UserError
from tsdiff_cli.runs import Run, read_status


def _latest(workdir):
    return (workdir / "runs" / "latest").resolve()


def _one_line(result):
    line = result.stderr.strip()
    assert result.exit_code == 2 and "\n" not in line and line.startswith("tsdiff: error:"), result.output
    return line


# --- 1. bad data is refused, not accepted silently ------------------------------------------------

def _table(workdir, text, name="d.csv"):
    (workdir / name).write_text(text)
    return write_toml(workdir / "d.toml", f'[data]\nsource = "{name}"\nseq_len = 4\n')


@pytest.mark.parametrize("text, words", [
    ("a,b\n1,2\n3,inf\n5,6\n7,8\n9,1\n", ["column 'b'", "infinite", "line 3"]),
    ("a,b\n1,-inf\n3,4\n5,6\n7,8\n9,1\n", ["column 'b'", "infinite", "line 2"]),
    ("a,b\n1,2\n3,Infinity\n5,6\n7,8\n9,1\n", ["column 'b'", "infinite"]),
    ("a,b,a\n1,2,3\n4,5,6\n", ["duplicate column names", "'a' (columns 1, 3)"]),
    ("x;y\n1,5;2\n2,5;3\n", ["decimal comma", "1.5"]),
])
def test_bad_tables_are_one_line_errors_without_warnings(cli, workdir, text, words):
    cfg = _table(workdir, text)
    line = _one_line(cli("preprocess", cfg))
    for word in words:
        assert word in line, line
    assert not (workdir / "data").exists()


def test_no_python_warning_reaches_the_terminal(workdir):
    _table(workdir, "a,b\n1,2\n3,inf\n5,6\n7,8\n9,1\n")
    proc = subprocess.run([sys.executable, "-m", "tsdiff_cli", "preprocess", "d.toml"], capture_output=True, text=True)
    assert proc.returncode == 2 and "Warning" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("sep", [";", "\t", "|"])
def test_other_separators_are_detected(cli, workdir, sep):
    rows = "\n".join(sep.join(str(v) for v in (i, i * 2.5, 10 - i)) for i in range(30))
    cfg = _table(workdir, sep.join("abc") + "\n" + rows + "\n")
    result = cli("preprocess", cfg, "-q")
    assert result.exit_code == 0, result.output
    from tsdiff_cli.data.store import read_dataset

    assert read_dataset(workdir / "data" / "d.h5").columns == ["a", "b", "c"]


def test_duplicate_names_in_parquet_are_refused(workdir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_arrays([pa.array([1.0, 2.0]), pa.array([3.0, 4.0])], names=["v", "v"]), workdir / "d.parquet")
    from tsdiff_cli.data.sources import read_frame

    with pytest.raises(UserError, match="duplicate column names: 'v'"):
        read_frame(workdir / "d.parquet")


@pytest.fixture
def stock(workdir):
    from tsdiff_cli.data.preprocess import preprocess
    from tsdiff_cli.settings import DataSettings

    return preprocess(DataSettings(source="stock", reverse_rows=True, output="stock.h5")).dataset


FAST = {"TSDIFF_EVAL__REPEATS": "1", "TSDIFF_EVAL__DISC_ITERATIONS": "50", "TSDIFF_EVAL__METRICS": '["discriminative"]'}


def test_samples_in_original_units_meet_a_scaled_dataset_or_are_refused(cli, workdir, stock):
    original = stock.scaler.inverse(stock.target[:600].astype(np.float64))
    for name in ("s.npy", "s.h5"):  # written as `tsdiff sample` writes them: the scaler travels along
        with WindowWriter(workdir / name, len(original), 24, stock.columns, stock.scaler) as out:
            out.write(original)
        result = cli("evaluate", "--real", "stock.h5", "--generated", name, env=FAST)
        assert result.exit_code == 0, result.output
        report = json.loads((workdir / "report.json").read_text())
        assert "scaler" in report["inputs"]["scaling"] and report["metrics"]["discriminative"]["mean"] < 0.2
    np.save(workdir / "bare.npy", original.astype(np.float32))  # no record of its units
    line = _one_line(cli("evaluate", "--real", "stock.h5", "--generated", "bare.npy", env=FAST))
    assert "bare.npy" in line and "not in the same units" in line
    np.save(workdir / "scaled.npy", (stock.target[:600] * 1000).astype(np.float32))
    assert "not in the same units" in _one_line(cli("evaluate", "--real", "stock.h5", "--generated", "scaled.npy", env=FAST))


# --- 2. a setting is never ignored silently on resume ------------------------------------------------

@pytest.fixture
def stopped_run(cli, workdir):
    tiny = write_toml(workdir / "tiny.toml", TINY)
    assert cli("train", tiny, "-q", env={"TSDIFF_TRAIN__MAX_STEPS": "4"}).exit_code == 0
    return _latest(workdir), tiny


@pytest.mark.parametrize("change, key", [
    ("[train]\nlr = 0.5\n", "[train] lr"),
    ("[data]\nseq_len = 12\n", "[data] seq_len"),
    ("[model]\nchannels = 16\n", "[model] channels"),
])
def test_resume_refuses_a_config_that_changes_what_the_run_is(cli, workdir, stopped_run, change, key):
    run, tiny = stopped_run
    before = (run / "log.txt").read_text()
    other = write_toml(workdir / "other.toml", _merge(TINY, change))
    line = _one_line(cli("train", other, "--resume", run))
    assert key in line and "other.toml" in line
    assert (run / "log.txt").read_text() == before and read_status(run)["state"] == "finished"  # untouched


def _merge(base: str, change: str) -> str:
    import tomllib

    import tomli_w

    merged = tomllib.loads(base)
    for section, values in tomllib.loads(change).items():
        merged.setdefault(section, {}).update(values)
    return tomli_w.dumps(merged)


def test_resume_takes_budget_changes_and_says_so(cli, workdir, stopped_run):
    run, _ = stopped_run
    line = _one_line(cli("train", "--resume", run, env={"TSDIFF_TRAIN__SEED": "3"}))
    assert "[train] seed" in line and "environment" in line
    bigger = write_toml(workdir / "more.toml", _merge(TINY, "[train]\nmax_steps = 6\n"))
    result = cli("train", bigger, "--resume", run, "-q")
    assert result.exit_code == 0, result.output
    assert read_status(run)["step"] == 6
    assert "settings changed on resume: [train] max_steps 4 → 6" in (run / "log.txt").read_text()
    assert "max_steps = 6" in (run / "config.toml").read_text()


# --- 3. sizes are checked up front; large outputs stream ---------------------------------------------

@pytest.mark.parametrize("name", ["w.csv", "w.parquet", "w.h5", "w.npy"])
def test_windows_are_written_in_batches_and_read_back_whole(workdir, name):
    values = np.random.default_rng(0).random((10, 5, 2))
    with WindowWriter(workdir / name, 10, 5, ["a", "b"]) as out:
        for lo in range(0, 10, 4):
            out.write(values[lo:lo + 4])
    back = read_windows(workdir / name)
    np.testing.assert_allclose(back.values, values, rtol=1e-5)
    assert back.columns == ["a", "b"]


@pytest.mark.parametrize("name", ["w.csv", "w.h5", "w.npy"])
def test_an_interrupted_writer_leaves_nothing(workdir, name):
    with pytest.raises(KeyboardInterrupt):
        with WindowWriter(workdir / name, 10, 5, ["a", "b"]) as out:
            out.write(np.zeros((4, 5, 2)))
            raise KeyboardInterrupt
    assert list(workdir.iterdir()) == []


def test_huge_requests_are_refused_with_the_figure(cli, workdir, stopped_run, monkeypatch):
    line = _one_line(cli("sample", "runs/latest", "-n", str(10 ** 12), "-o", "big.h5"))
    assert "big.h5" in line and "TB" in line and "free" in line and not (workdir / "big.h5").exists()
    from tsdiff_cli import resources

    monkeypatch.setattr(resources, "available_memory", lambda: 10 ** 6)  # 1 MB
    stock = pd.read_csv(data_file("stock_data.csv")).iloc[:60]
    stock.iloc[5, 1] = np.nan
    stock.to_csv(workdir / "gaps.csv", index=False)
    line = _one_line(cli("impute", "--model", "runs/latest", "--input", "gaps.csv", "-o", "f.csv", "--samples", "1000"))
    assert "--samples" in line and "memory" in line and not (workdir / "f.csv").exists()


# --- 4. a full disk is one line; the run ends failed; the last checkpoint is kept --------------------

@pytest.mark.parametrize("failing_call, what", [(2, "ckpt-000000009"), (3, "model.safetensors")])
def test_a_full_disk_fails_the_run_cleanly_and_it_resumes(cli, workdir, monkeypatch, failing_call, what):
    import safetensors.torch as st

    original, calls = st.save_file, []

    def save_file(*args, **kwargs):
        calls.append(1)
        if len(calls) == failing_call:  # 1: after the TST phase, 2: the final checkpoint, 3: the model
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(st, "save_file", save_file)
    tiny = write_toml(workdir / "tiny.toml", TINY)
    line = _one_line(cli("train", tiny, "-q"))
    assert what in line and "No space left on device" in line and "--resume" in line
    run = _latest(workdir)
    status = read_status(run)
    assert status["state"] == "failed" and "No space left" in status["error"]
    assert not list(run.rglob("*.tmp"))
    monkeypatch.setattr(st, "save_file", original)
    assert cli("train", "--resume", run, "-q").exit_code == 0
    assert read_status(run)["state"] == "finished" and read_status(run)["step"] == 9


# --- 5. leftovers of a killed process are removed; the log says only what happened --------------------

def test_leftovers_are_removed_and_said(cli, workdir, stopped_run):
    run, _ = stopped_run
    ckpts = run / "checkpoints"
    (ckpts / ".ckpt-000000005.safetensors.4242.tmp").write_bytes(b"x" * 1000)  # killed mid-write
    (run / ".status.json.4242.tmp").write_text("{")
    (ckpts / "ckpt-000000001.json").write_text("{}")  # killed while removing an old checkpoint
    assert cli("train", "--resume", run, "-q", env={"TSDIFF_TRAIN__MAX_STEPS": "5"}).exit_code == 0
    assert not list(run.rglob("*.tmp")) and not (ckpts / "ckpt-000000001.json").exists()
    log = (run / "log.txt").read_text()
    assert "removed what an earlier process left unfinished" in log and "ckpt-000000001.json" in log


# --- 6. corrupt saved state is noticed, with a fallback ----------------------------------------------

def test_a_truncated_model_file_is_written_again_on_resume(cli, workdir, stopped_run):
    run, _ = stopped_run
    model = run / "model.safetensors"
    model.write_bytes(model.read_bytes()[:200])
    assert cli("train", "--resume", run, "-q", env={"TSDIFF_TRAIN__MAX_STEPS": "5"}).exit_code == 0
    assert read_status(run)["state"] == "finished"
    assert cli("sample", run, "-n", "2", "-o", "s.csv", "-q").exit_code == 0  # readable again


def test_a_truncated_latest_checkpoint_falls_back_to_the_one_before(cli, workdir, stopped_run):
    run, _ = stopped_run
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.safetensors"))
    assert len(ckpts) == 2  # after the TST phase (3) and at the stop (4)
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:100])
    result = cli("train", "--resume", run, "-q", env={"TSDIFF_TRAIN__MAX_STEPS": "5"})
    assert result.exit_code == 0, result.output
    assert "resuming from ckpt-000000003" in (run / "log.txt").read_text()
    for path in (run / "checkpoints").glob("ckpt-*.safetensors"):
        path.write_bytes(b"garbage")
    line = _one_line(cli("train", "--resume", run))
    assert "no readable checkpoint" in line


# --- 7. one process per run folder; readers notice a folder vanishing ----------------------------------

def test_a_run_folder_is_held_by_one_process(cli, workdir, stopped_run):
    run, _ = stopped_run
    holder = Run.open(run)
    holder.lock()
    try:
        line = _one_line(cli("train", "--resume", run))
        assert "is in use by pid" in line
    finally:
        holder.unlock()
    assert cli("train", "--resume", run, "-q", env={"TSDIFF_TRAIN__MAX_STEPS": "5"}).exit_code == 0


def test_the_monitor_never_prints_control_bytes_and_notices_a_deleted_run(cli, workdir, stopped_run, monkeypatch):
    run, _ = stopped_run
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"time": 1, "kind": "event", "phase": "x", "step": 1, "epoch": 0, "message": "\\u001b[2J\\u0007boom"}\n')
        f.write("garbage \x1b[31m red \x07\n")
    result = cli("monitor", run, "--once")
    assert result.exit_code == 0 and "\x1b" not in result.output and "\x07" not in result.output
    from tsdiff_cli.monitor import model

    refresh = model.RunState.refresh

    def vanish(self, *args, **kwargs):
        import shutil

        changed = refresh(self, *args, **kwargs)
        shutil.rmtree(self.path)  # deleted while being read
        return changed

    monkeypatch.setattr(model.RunState, "refresh", vanish)
    result = cli("monitor", run, "--once")
    assert result.exit_code != 0 and "deleted" in result.stderr


def test_an_output_killed_mid_write_leaves_a_temporary_file_the_next_write_removes(workdir):
    from tsdiff_cli.atomic import write_text

    dead = workdir / ".out.txt.999999.tmp"  # left by `kill -9` of a writer (no such pid now)
    dead.write_text("half")
    write_text(workdir / "out.txt", "whole")
    assert not dead.exists() and (workdir / "out.txt").read_text() == "whole"
