"""The Textual dashboard driven headless with Pilot: it follows a run while lines are appended,
shows a partial line only once complete, lists runs in the picker, follows runs/latest."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

from textual.widgets import DataTable, Static

from tsdiff_cli.monitor.app import HelpScreen, MonitorApp, RunPicker
from tsdiff_cli.monitor.chart import Chart, log_ticks, round_ticks

NOW = time.time()


def row(kind: str, step: int, epoch: int, **values) -> str:
    return json.dumps({"time": NOW + step / 10, "kind": kind, "phase": "diffusion", "step": step, "epoch": epoch,
                       **values}) + "\n"


def make_run(folder: Path, name: str, lines: str = "", state: str = "running", disc: float | None = None) -> Path:
    run = folder / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text('[train]\nepochs = 50\nmax_minutes = 30\n')
    (run / "status.json").write_text(json.dumps({"state": state, "pid": os.getpid(), "phase": "diffusion", "epoch": 1,
                                                 "epochs": 50, "step": 20, "started": NOW - 60, "updated": NOW}))
    if disc is not None:
        lines += row("eval", 20, 1, discriminative=disc, profile="quick")
    (run / "metrics.jsonl").write_text(lines)
    return run


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def drive(app: MonitorApp, scenario) -> None:
    async def main():
        async with app.run_test(size=(130, 40)) as pilot:
            await scenario(pilot)

    asyncio.run(main())


async def until(pilot, condition, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "the dashboard did not update in time"
        await pilot.pause(0.05)


def text_of(app: MonitorApp, selector: str) -> str:
    return str(app.query_one(selector, Static).content)


def table_rows(app: MonitorApp) -> dict[str, list[str]]:
    table = app.query_one("#scores-table", DataTable)
    return {str(key.value): [str(c) for c in table.get_row(key)] for key in table.rows}


def test_dashboard_follows_appended_lines(tmp_path):
    first = row("train", 10, 0, tst_loss=0.5, diffusion_loss=0.9) + row("train", 20, 0, tst_loss=0.4, diffusion_loss=0.8)
    run = make_run(tmp_path, "20260101-120000-train-stock", first, disc=0.3)
    metrics = run / "metrics.jsonl"
    app = MonitorApp(run, interval=0.05)

    async def scenario(pilot):
        losses = app.query_one("#losses", Chart)
        scores = app.query_one("#scores", Chart)
        await until(pilot, lambda: len(losses.plotted.get("tst_loss", ([], []))[0]) == 2)
        assert "step 20" in text_of(app, "#progress-text")
        assert "train-stock" in text_of(app, "#header") and "running" in text_of(app, "#header")
        assert table_rows(app)["discriminative"] == ["discriminative", "0.3 @ 1", "0.3 @ 1"]

        append(metrics, row("train", 30, 1, tst_loss=0.3, diffusion_loss=0.7)
               + row("train", 40, 1, tst_loss=0.2, diffusion_loss=0.6)
               + row("eval", 40, 2, discriminative=0.1) + row("eval", 50, 3, discriminative=0.2))
        await until(pilot, lambda: "step 50" in text_of(app, "#progress-text"))
        await until(pilot, lambda: len(losses.plotted["diffusion_loss"][0]) == 4)
        assert losses.plotted["diffusion_loss"] == ([10, 20, 30, 40], [0.9, 0.8, 0.7, 0.6])
        assert "epoch 2/50" in text_of(app, "#progress-text")
        await until(pilot, lambda: table_rows(app)["discriminative"][1] == "0.2 @ 3")
        assert table_rows(app)["discriminative"][2] == "0.1 @ 2"  # lower is better
        await until(pilot, lambda: scores.marked.get("discriminative") == (2, 0.1))
        assert scores.plotted["discriminative"][0] == [1, 2, 3]

        # a line written in two pieces: nothing until its newline
        piece = row("train", 60, 2, tst_loss=0.1, diffusion_loss=0.5)
        append(metrics, piece[:25])
        await pilot.pause(0.3)
        assert "step 50" in text_of(app, "#progress-text") and len(losses.plotted["tst_loss"][0]) == 4
        assert app.run_state.tail.bad_lines == 0
        append(metrics, piece[25:])
        await until(pilot, lambda: "step 60" in text_of(app, "#progress-text"))
        await until(pilot, lambda: len(losses.plotted["tst_loss"][0]) == 5)

        # garbage is counted and shown, not fatal
        append(metrics, "Traceback (most recent call last):\n" + row("train", 70, 2, tst_loss=0.05))
        await until(pilot, lambda: "not JSON" in text_of(app, "#notice"))
        assert "step 70" in text_of(app, "#progress-text")

    drive(app, scenario)


def test_truncated_log_starts_the_charts_again(tmp_path):
    lines = "".join(row("train", s, 0, tst_loss=1 / s) for s in range(10, 60, 10))
    run = make_run(tmp_path, "20260101-120000-train-stock", lines)
    app = MonitorApp(run, interval=0.05)

    async def scenario(pilot):
        losses = app.query_one("#losses", Chart)
        await until(pilot, lambda: len(losses.plotted.get("tst_loss", ([], []))[0]) == 5)
        (run / "metrics.jsonl").write_text(row("train", 10, 0, tst_loss=0.9))
        await until(pilot, lambda: losses.plotted.get("tst_loss") == ([10], [0.9]))

    drive(app, scenario)


def test_picker_lists_runs_and_opens_one(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "20260101-120000-train-a", state="finished", disc=0.25)
    make_run(runs, "20260102-120000-train-b", state="failed", disc=0.125)
    newest = make_run(runs, "20260103-120000-train-c", disc=0.5)
    os.symlink(newest.name, runs / "latest")
    app = MonitorApp(runs / "latest", interval=0.05)

    async def scenario(pilot):
        await until(pilot, lambda: app.run_state.records > 0)
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, RunPicker))
        table = app.screen.query_one(DataTable)
        listed = [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
        assert [r[0] for r in listed] == ["20260103-120000-train-c", "20260102-120000-train-b", "20260101-120000-train-a"]
        assert [r[1] for r in listed] == ["running", "failed", "finished"]
        assert listed[1][2] == "discriminative 0.125 (epoch 1)"
        assert table.cursor_row == 0  # on the run being watched
        await pilot.press("down", "enter")
        await until(pilot, lambda: app.run_state.name == "20260102-120000-train-b")
        assert not app.follow  # a run picked by hand is kept
        await until(pilot, lambda: "failed" in text_of(app, "#header"))

    drive(app, scenario)


def test_latest_link_moves_to_a_newer_run(tmp_path):
    runs = tmp_path / "runs"
    old = make_run(runs, "20260101-120000-train-a", row("train", 10, 0, tst_loss=0.5))
    os.symlink(old.name, runs / "latest")
    app = MonitorApp(runs / "latest", interval=0.05)

    async def scenario(pilot):
        await until(pilot, lambda: app.run_state.name == old.name and app.run_state.records == 1)
        new = make_run(runs, "20260102-120000-train-b", row("train", 10, 0, tst_loss=0.5) + row("train", 20, 0, tst_loss=0.4))
        tmp = runs / "latest.tmp"
        os.symlink(new.name, tmp)
        os.replace(tmp, runs / "latest")
        await until(pilot, lambda: app.run_state.name == new.name and app.run_state.records == 2)

    drive(app, scenario)


def test_keys_log_help_quit(tmp_path):
    run = make_run(tmp_path, "20260101-120000-train-a", row("train", 10, 0, tst_loss=0.5) + row("train", 20, 0, tst_loss=0.05))
    app = MonitorApp(run, interval=0.05)

    async def scenario(pilot):
        losses = app.query_one("#losses", Chart)
        await until(pilot, lambda: "tst_loss" in losses.plotted)
        assert losses.log_scale
        await pilot.press("l")
        await until(pilot, lambda: not losses.log_scale)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None)

    drive(app, scenario)


def test_axis_ticks_are_round_numbers():
    assert round_ticks(10, 6755) == [2000, 4000, 6000]
    assert round_ticks(20, 202) == [50, 100, 150, 200]
    assert log_ticks([1.2e-4, 0.9]) == [1e-3, 1e-2, 1e-1]
    assert log_ticks([0.025, 0.084]) == [0.03, 0.05, 0.07]
