"""Words and rich tables for a run's state, shared by ``--once`` and the dashboard."""

from __future__ import annotations

import math

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from tsdiff_cli.monitor.model import RunProgress, RunState, ScoreRow
from tsdiff_cli.runs import METRICS_FILE, STATUS_FILE

STATE_STYLE = {
    "running": "bold green", "finished": "bold blue", "failed": "bold red", "interrupted": "bold yellow", "pruned": "yellow",
    "stale": "bold magenta", "starting": "bold cyan", "gone": "bold red",
}


def duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def state_text(run: RunState) -> Text:
    state = run.state()
    text = Text(state, style=STATE_STYLE.get(state, "bold"))
    detail = run.detail()
    if state == "stale":
        detail = "no heartbeat for over a minute and its process is gone"
    elif state == "gone":
        detail = "the run folder was deleted"
    elif state == "starting":
        detail = f"waiting for the run to write {STATUS_FILE} or {METRICS_FILE}"
    if detail:
        text.append(f" ({detail})", style="default")
    return text


def progress_line(p: RunProgress) -> str:
    parts = [p.phase or "no phase yet"]
    if p.epoch is not None:
        parts.append(f"epoch {p.epoch}/{p.epochs}" if p.epochs else f"epoch {p.epoch}")
    if p.step is not None:
        parts.append(f"step {p.step}/{p.steps}" if p.steps else f"step {p.step}")
    parts.append(f"elapsed {duration(p.elapsed)}")
    if p.eta is not None:
        parts.append(f"ETA {duration(p.eta)} (end of {p.eta_basis})")
    if p.rate is not None:
        parts.append(f"{p.rate:.3g} steps/s")
    return " · ".join(parts)


def best_cell(row: ScoreRow) -> str:
    if row.goal is None:
        return "not ranked"
    target = f" (→{row.goal.target:g})" if row.goal.kind == "target" else ""
    return f"{number(row.best)} @ {row.best_at:g}{target}"


def scores_table(run: RunState, title: bool = True) -> Table:
    notes = ", ".join(f"{k} {v}" for k, v in run.score_notes.items())
    table = Table(title=("evaluation" + (f" ({notes})" if notes else "")) if title else None,
                  title_justify="left", expand=False)
    table.add_column("score")
    table.add_column(f"latest @ {run.score_axis}", justify="right")
    table.add_column(f"best @ {run.score_axis}", justify="right")
    table.add_column("ranked by")
    for row in run.score_rows():
        table.add_row(row.name, f"{number(row.latest)} @ {row.latest_at:g}", best_cell(row),
                      row.goal.describe() if row.goal else "not ranked")
    return table


def problems(run: RunState) -> str | None:
    """Lines of metrics.jsonl that could not be used, said once."""
    tail = run.tail
    if not tail.bad_lines and not run.skipped:
        return None
    parts = []
    if tail.bad_lines:
        line, text = tail.last_bad
        parts.append(f"{tail.bad_lines} line{'s' * (tail.bad_lines != 1)} not JSON objects (last: line {line}: {text})")
    if run.skipped:
        parts.append(f"{run.skipped} object{'s' * (run.skipped != 1)} without a kind or an integer step")
    return f"{METRICS_FILE}: " + "; ".join(parts)


def summary(run: RunState) -> Group:
    """Everything ``tsdiff monitor --once`` prints."""
    head = Text(run.name, style="bold")
    head.append("  ")
    head.append_text(state_text(run))
    about = Text(f"command {run.command or '—'} · config {run.config_name or '—'} · {run.path}", style="dim")
    lines = [head, about, Text("progress: " + progress_line(run.progress()))]
    losses = run.latest_losses()
    if losses:
        lines.append(Text("losses:   " + "  ".join(f"{k} {number(v)}" for k, v in losses.items())))
    if not run.tail.exists:
        lines.append(Text(f"{METRICS_FILE} does not exist yet", style="yellow"))
    if run.scores:
        lines.append(Text(""))
        lines.append(scores_table(run))
    else:
        lines.append(Text("no evaluation yet", style="dim"))
    issue = problems(run)
    if issue:
        lines.append(Text(issue, style="yellow"))
    return Group(*lines)


def trials_table(folder) -> Table:
    """A study's trials (tsdiff tune): state, the study's metric (best of each run), the values tried."""
    from tsdiff_cli.monitor.study import trial_rows

    study, rows = trial_rows(folder)
    table = Table(title=f"study {study['name']}: {study['metric']} ({study['direction']})", title_justify="left")
    table.add_column("trial", justify="right")
    table.add_column("state")
    table.add_column(study["metric"], justify="right")
    table.add_column("settings")
    for r in rows:
        table.add_row(str(r.number), Text(r.state, style=STATE_STYLE.get(r.state, "")), number(r.value),
                      "  ".join(f"{k}={number(v) if isinstance(v, float) else v}" for k, v in r.params.items()))
    return table


def print_summary(run: RunState, console: Console | None = None, study=None) -> None:
    """``--once``: the run's summary, after its study's trials when it is a study's latest trial."""
    console = console or Console(highlight=False)
    if study is not None:
        console.print(trials_table(study))
        console.print(Text("newest trial:", style="dim"))
    console.print(summary(run))
