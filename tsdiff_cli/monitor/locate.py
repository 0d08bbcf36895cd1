"""Which run directory RUN names, the runs beside it, and a cheap summary of each.

RUN is a run directory, a link to one (``runs/latest``: the monitor follows it when it moves
to a newer run), or a runs folder (its ``latest``, else its newest run).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from tsdiff_cli.errors import UserError
from tsdiff_cli.monitor.model import NOT_SCORES, as_number, run_state
from tsdiff_cli.monitor.series import Series, best_index, goal_for
from tsdiff_cli.runs import MARKERS, is_run, latest_link, list_runs, metrics_path, read_status

_FIX = "name a run directory, e.g. runs/latest or runs/<name> (start one with `tsdiff train CONFIG`)"


def resolve_run(path: Path) -> Path:
    """The path to watch: a run directory or a link to one. Raises UserError when there is none."""
    path = Path(path)
    if not path.exists():
        if path.is_symlink():
            raise UserError(path, f"points to {os.readlink(path)}, which does not exist", _FIX)
        if path.name == latest_link(path.parent).name:
            raise UserError(path, "does not exist: no run has been started in this folder", _FIX)
        raise UserError(path, "no such run directory", _FIX)
    if not path.is_dir():
        raise UserError(path, "is a file, not a run directory", _FIX)
    if is_run(path):
        return path
    if is_run(latest_link(path)):
        return latest_link(path)
    runs = list_runs(path)
    if runs:
        return runs[-1]
    raise UserError(path, f"is not a run directory (it has no {', '.join(MARKERS[:-1])} or {MARKERS[-1]})", _FIX)

@dataclass
class RunSummary:
    path: Path
    state: str
    updated: float | None
    score: str | None  # "discriminative 0.0248 (epoch 60)": the best of the first score logged


def summarize(path: Path, now: float | None = None) -> RunSummary:
    """State and headline best score of a run without ingesting its whole log: only the lines
    that mention "eval" are decoded."""
    now = time.time() if now is None else now
    status = read_status(path) or {}
    metrics = metrics_path(path)
    scores: dict[str, Series] = {}
    units: dict[str, str] = {}
    last_time = None
    try:
        data = metrics.read_bytes()
    except OSError:
        data = None
    if data:
        for line in data.split(b"\n"):
            if b'"eval"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict) or rec.get("kind") != "eval":
                continue
            unit = "epoch" if type(rec.get("epoch")) is int else "step"
            x = rec.get(unit)
            for name, value in rec.items():
                number = as_number(value)
                if name not in NOT_SCORES and number is not None and type(x) is int:
                    scores.setdefault(name, Series()).append(x, number)
                    units.setdefault(name, unit)
        end = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            t = json.loads(end).get("time")
            last_time = t if type(t) in (int, float) else None
        except (ValueError, AttributeError):
            pass
    updated = status.get("updated") if type(status.get("updated")) in (int, float) else None
    seen = max([t for t in (updated, last_time) if t is not None], default=None)
    headline = None
    for name, series in scores.items():
        goal = goal_for(name)
        i = best_index(series, goal)
        if i is not None:
            headline = f"{name} {series.y[i]:.4g} ({units[name]} {series.x[i]:g})"
            break
    return RunSummary(path, run_state(status, seen, now, metrics.exists()), seen, headline)
