"""``tsdiff monitor [RUN]``: a live dashboard of a run, or a one-off summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from tsdiff_cli.runs import latest_link


def monitor_command(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory, runs/latest (followed to each newer run), a runs folder, or a study folder of `tsdiff tune` (its trials, and the newest trial's run live).")] = latest_link(Path("runs")),
    once: Annotated[bool, typer.Option("--once", help="Print a summary (state, progress, latest and best scores) and exit; the default when stdout is not a terminal.")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between looks at the run's files (0.1 to 60).")] = 1.0,
    linear: Annotated[bool, typer.Option("--linear", help="Start with linear chart axes (default: log; press l to switch).")] = False,
    screenshot: Annotated[Optional[Path], typer.Option(help="Write an SVG picture of the dashboard to this file and exit (no terminal needed).", show_default=False)] = None,
) -> None:
    """Watch a run live: state, progress, loss and score charts, best scores, settings.

    Works for every run that writes metrics.jsonl (train, pretrain-tst, and later forecast and
    impute runs). Keys: q quit, r pick another run, l log/linear axes, ? help.
    """
    from tsdiff_cli.errors import UserError
    from tsdiff_cli.monitor.locate import resolve_run
    from tsdiff_cli.monitor.model import RunState
    from tsdiff_cli.monitor.study import study_of

    if not 0.1 <= interval <= 60:
        raise UserError("--interval", f"{interval:g} seconds is out of range", "use 0.1 to 60")
    target = resolve_run(run)
    if screenshot is not None:
        from tsdiff_cli.atomic import ensure_writable
        from tsdiff_cli.monitor.app import save_screenshot

        ensure_writable(screenshot, "screenshot")
        save_screenshot(target, screenshot, log_scale=not linear)
        print(f"wrote {screenshot}")
        return
    if once or not sys.stdout.isatty():
        from tsdiff_cli.monitor.summary import print_summary

        state = RunState(target)
        state.refresh(budget=float("inf"))
        if state.gone:  # deleted while being read: what was read is not the run's state
            raise UserError(run, "was deleted while it was being read", "check the path; there is no run to show")
        print_summary(state, study=study_of(target))
        return
    from tsdiff_cli.monitor.app import MonitorApp

    MonitorApp(target, interval=interval, log_scale=not linear).run()
