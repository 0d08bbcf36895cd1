"""Following metrics.jsonl while a run writes it, and what the monitor makes of the lines:
no Textual here, only the reader, the run state and ``tsdiff monitor --once``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tsdiff_cli.monitor.locate import resolve_run, summarize
from tsdiff_cli.monitor.model import RunState
from tsdiff_cli.monitor.series import Series, downsample, goal_for
from tsdiff_cli.monitor.tail import JsonlTail
from tsdiff_cli.errors import UserError


def line(**fields) -> str:
    return json.dumps(fields) + "\n"


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


# --- the reader --------------------------------------------------------------------------------


def test_reads_only_what_was_added(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, line(step=1) + line(step=2))
    tail = JsonlTail(path)
    assert [r["step"] for r in tail.read().records] == [1, 2]
    assert tail.read().records == []
    append(path, line(step=3))
    batch = tail.read()
    assert [r["step"] for r in batch.records] == [3] and not batch.reset
    assert tail.offset == path.stat().st_size


def test_a_partial_last_line_waits_for_its_newline(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, line(step=1) + '{"step": 2, "loss"')
    tail = JsonlTail(path)
    assert [r["step"] for r in tail.read().records] == [1]
    assert tail.pending == len('{"step": 2, "loss"')
    assert tail.read().records == [] and tail.bad_lines == 0
    append(path, ": 0.5}\n")
    assert tail.read().records == [{"step": 2, "loss": 0.5}]
    assert tail.pending == 0 and tail.bad_lines == 0


def test_waits_for_a_file_that_does_not_exist_yet(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = JsonlTail(path)
    assert tail.read().records == [] and not tail.exists
    append(path, line(step=1))
    assert tail.read().records == [{"step": 1}] and tail.exists


def test_truncated_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, line(step=1) + line(step=2) + line(step=3))
    tail = JsonlTail(path)
    tail.read()
    path.write_text(line(step=10))  # same inode, smaller
    batch = tail.read()
    assert batch.reset and batch.records == [{"step": 10}]


def test_replaced_file_is_read_again_from_the_start(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, line(step=1))
    tail = JsonlTail(path)
    tail.read()
    new = tmp_path / "new.jsonl"
    new.write_text(line(step=7) + line(step=8) + line(step=9))  # larger: only the inode tells
    os.replace(new, path)
    batch = tail.read()
    assert batch.reset and [r["step"] for r in batch.records] == [7, 8, 9]


def test_rewritten_in_place_and_grown_is_read_again(tmp_path):
    """Truncated and rewritten between two reads to more than before: same inode, larger size;
    the bytes where the last read stopped differ."""
    path = tmp_path / "metrics.jsonl"
    append(path, line(step=1, tag="a"))
    tail = JsonlTail(path)
    tail.read()
    path.write_text(line(step=5, tag="bb") + line(step=6, tag="c"))
    batch = tail.read()
    assert batch.reset and [r["step"] for r in batch.records] == [5, 6]


def test_garbage_lines_are_counted_not_fatal(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, line(step=1) + "Traceback (most recent call last):\n" + "\n" + line(step=2)
           + "[1, 2]\n" + '{"step": 3}, {"step": 4}\n' + '{"step": 5, "x": \n' + line(step=6))
    tail = JsonlTail(path)
    assert [r["step"] for r in tail.read().records] == [1, 2, 6]
    assert tail.bad_lines == 4
    assert tail.last_bad == (7, '{"step": 5, "x":')


def test_small_chunks_give_the_same_records(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, "".join(line(step=i, loss=i / 7) for i in range(300)) + "oops\n" + line(step=300, note="x" * 500))
    tail = JsonlTail(path, chunk_bytes=256)  # one line is longer than a chunk
    records, reads = [], 0
    while True:
        records += tail.read().records
        reads += 1
        if not tail.more:
            break
    assert reads > 10
    assert [r["step"] for r in records] == list(range(301)) and tail.bad_lines == 1


def test_nan_and_null_values(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append(path, '{"step": 1, "a": NaN, "b": null, "c": Infinity}\n')
    (record,) = JsonlTail(path).read().records
    assert math.isnan(record["a"]) and record["b"] is None and record["c"] == math.inf


# --- from lines to a run state -----------------------------------------------------------------


def make_run(folder: Path, name: str = "20260101-120000-train-sine", status: dict | None = None,
             rows: list[dict] = (), config: str = "[train]\nepochs = 10\n") -> Path:
    run = folder / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text(config)
    if status is not None:
        (run / "status.json").write_text(json.dumps(status))
    if rows:
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run


def test_losses_scores_and_best_from_any_run(tmp_path):
    t = 1_000_000.0
    rows = [
        {"time": t, "kind": "train", "phase": "forecast", "step": 10, "epoch": 0, "flow_loss": 0.9, "lr": 1e-3},
        {"time": t + 1, "kind": "train", "phase": "forecast", "step": 20, "epoch": 0, "flow_loss": None, "aux_loss": 0.5},
        {"time": t + 2, "kind": "eval", "phase": "forecast", "step": 20, "epoch": 1, "crps": 0.40, "coverage_90": 0.70,
         "minutes": 0.1, "best": True, "profile": "quick"},
        {"time": t + 3, "kind": "eval", "phase": "forecast", "step": 40, "epoch": 2, "crps": 0.35, "coverage_90": 0.95},
        {"time": t + 4, "kind": "eval", "phase": "forecast", "step": 60, "epoch": 3, "crps": None, "coverage_90": 0.88},
        {"time": t + 5, "kind": "event", "phase": "forecast", "step": 60, "epoch": 3, "message": "stopped: max_minutes 1"},
        {"kind": "train"},  # no step: skipped, counted
    ]
    run = RunState(make_run(tmp_path, "20260101-120000-forecast-etth1", {"state": "finished"}, rows))
    run.refresh()
    assert set(run.losses) == {"flow_loss", "aux_loss"}  # lr is not a loss
    assert list(run.losses["flow_loss"].x) == [10, 20] and math.isnan(run.losses["flow_loss"].y[1])
    assert run.latest_losses() == {"flow_loss": 0.9, "aux_loss": 0.5}
    assert set(run.scores) == {"crps", "coverage_90"}  # not minutes, best or profile
    rows_by_name = {r.name: r for r in run.score_rows()}
    crps = rows_by_name["crps"]
    assert (crps.latest, crps.latest_at, crps.best, crps.best_at) == (0.35, 2, 0.35, 2)  # null skipped
    cover = rows_by_name["coverage_90"]
    assert (cover.best, cover.best_at) == (0.88, 3)  # nearest 0.90, not the highest or lowest
    assert run.score_notes == {}  # the text fields of the latest eval row: it has none
    assert run.skipped == 1
    assert (run.command, run.config_name, run.state()) == ("forecast", "etth1", "finished")
    assert run.detail() == "stopped: max_minutes 1"


def test_score_goals():
    assert goal_for("discriminative").kind == "min"
    assert goal_for("coverage_90").target == 0.9 and goal_for("cov50").target == 0.5
    assert goal_for("covariance_error").kind == "min"
    assert goal_for("coverage") is None


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_state_running_stale_and_starting(tmp_path):
    now = time.time()
    alive = make_run(tmp_path, "a", {"state": "running", "pid": os.getpid(), "updated": now - 600})
    run = RunState(alive)
    run.refresh()
    assert run.state() == "running"  # an old heartbeat, but the process is there
    gone = RunState(make_run(tmp_path, "b", {"state": "running", "pid": dead_pid(), "updated": now - 600}))
    gone.refresh()
    assert gone.state() == "stale"
    recent = RunState(make_run(tmp_path, "c", {"state": "running", "pid": dead_pid(), "updated": now - 5}))
    recent.refresh()
    assert recent.state() == "running"  # less than a minute: it may just be between heartbeats
    fresh = RunState(make_run(tmp_path, "d"))
    fresh.refresh()
    assert fresh.state() == "starting" and not fresh.tail.exists


def test_progress_eta_and_rate(tmp_path):
    now = time.time()
    rows = []
    for epoch in range(4):  # 10 steps an epoch, one step a second, logged every 5 steps
        for step in (epoch * 10 + 5, epoch * 10 + 10):
            rows.append({"time": now - 40 + step, "kind": "train", "phase": "diffusion", "step": step, "epoch": epoch,
                         "diffusion_loss": 1 / step})
    status = {"state": "running", "pid": os.getpid(), "phase": "diffusion", "epoch": 3, "epochs": 10,
              "started": now - 40, "updated": now}
    run = RunState(make_run(tmp_path, status=status, rows=rows, config="[train]\nmax_minutes = 60\n"))
    run.refresh()
    run.clock = lambda: now  # the run's "now", not the test machine's
    p = run.progress()
    assert (p.phase, p.epoch, p.epochs, p.step) == ("diffusion", 4, 10, 40)
    assert p.rate == pytest.approx(1.0)
    assert p.eta_basis == "diffusion epochs"  # 60 epochs' worth of steps left before the hour is up
    assert p.eta == pytest.approx(60, abs=1) and p.fraction == pytest.approx(0.4)
    assert p.elapsed == pytest.approx(40)


def test_a_200000_line_log_opens_in_chunks(tmp_path):
    """A large log is read a chunk per refresh (the screen keeps drawing in between), and every
    line arrives in the end."""
    path = tmp_path / "20260101-120000-train-big"
    path.mkdir()
    template = ('{"time": %d.5, "kind": "train", "phase": "diffusion", "step": %d, "epoch": %d, '
                '"tst_loss": 0.00%d, "diffusion_loss": 0.%d}\n')
    with open(path / "metrics.jsonl", "w") as f:
        f.write("".join(template % (1_000_000 + i, i, i // 100, 1 + i % 9, 1 + i % 97) for i in range(199_990)))
        f.write("".join('{"time": 1.0, "kind": "eval", "phase": "diffusion", "step": %d, "epoch": %d, '
                        '"discriminative": 0.%d}\n' % (i, i, 5 - i % 5) for i in range(10)))
    run = RunState(path)
    run.refresh(budget=0.0)
    assert run.loading and 0 < run.records < 200_000  # one chunk, then back to the screen
    refreshes = 1
    while run.loading:
        run.refresh(budget=0.0)
        refreshes += 1
    assert refreshes > 2
    assert len(run.losses["tst_loss"]) == 199_990 and len(run.scores["discriminative"]) == 10
    assert run.records == 200_000 and run.tail.bad_lines == 0
    xs, ys = downsample(run.losses["diffusion_loss"], max_points=300)
    assert len(xs) == 300 and xs[0] < xs[-1]


def test_downsample_drops_missing_and_keeps_the_trend():
    s = Series()
    for i in range(1000):
        s.append(i, math.nan if i % 10 == 0 else 1.0 + i)
    xs, ys = downsample(s, max_points=100)
    assert len(xs) == 100 and all(math.isfinite(y) for y in ys)
    assert ys == sorted(ys)  # a rising series stays rising
    s.append(1000, -1.0)
    _, ys = downsample(s, max_points=5000, log=True)
    assert min(ys) > 0  # a log axis gets only positive values


# --- RUN arguments and tsdiff monitor --once -----------------------------------------------------


def test_resolve_run_follows_links_and_folders(tmp_path):
    runs = tmp_path / "runs"
    old = make_run(runs, "20260101-120000-train-a")
    new = make_run(runs, "20260102-120000-train-b")
    assert resolve_run(old) == old
    assert resolve_run(runs) == new  # a runs folder without a latest link: its newest run
    os.symlink(old.name, runs / "latest")
    assert resolve_run(runs) == runs / "latest"
    with pytest.raises(UserError, match="no such run directory"):
        resolve_run(tmp_path / "nope")
    with pytest.raises(UserError, match="does not exist"):
        resolve_run(tmp_path / "empty" / "latest")
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="not a run directory"):
        resolve_run(tmp_path / "plain")


def test_summarize_reads_state_and_best_score_cheaply(tmp_path):
    rows = [{"time": 5.0, "kind": "eval", "step": s, "epoch": e, "discriminative": d}
            for s, e, d in ((10, 1, 0.3), (20, 2, 0.1), (30, 3, 0.2))]
    s = summarize(make_run(tmp_path, status={"state": "failed", "updated": 9.0}, rows=rows))
    assert s.state == "failed" and s.score == "discriminative 0.1 (epoch 2)" and s.updated == 9.0


def test_once_prints_a_summary(cli, tmp_path):
    t = time.time()
    rows = [{"time": t, "kind": "train", "phase": "tst", "step": 10, "epoch": 0, "tst_loss": 0.25},
            {"time": t, "kind": "eval", "phase": "tst", "step": 10, "epoch": 1, "discriminative": 0.125},
            "not json"]
    run = make_run(tmp_path / "runs", status={"state": "interrupted", "step": 10}, rows=rows[:2])
    append(run / "metrics.jsonl", "not json\n")
    result = cli("monitor", run, "--once")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "interrupted" in out and "step 10" in out and "tst_loss 0.25" in out
    assert "discriminative" in out and "0.125 @ 1" in out
    assert "1 line not JSON objects (last: line 3: not json)" in out


def test_monitor_missing_run_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tsdiff_cli", "monitor", str(tmp_path / "runs" / "latest")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "runs/latest" in lines[0] and "tsdiff train" in lines[0]
    assert "Traceback" not in proc.stderr


def test_a_series_keeps_growing_after_being_charted():
    s = Series()
    s.append(1, 0.5)
    x, y = s.arrays()  # still referenced below
    s.append(2, 0.25)
    assert len(s) == 2 and list(x) == [1.0] and list(downsample(s)[1]) == [0.5, 0.25]
