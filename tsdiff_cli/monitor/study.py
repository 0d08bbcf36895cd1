"""A study's trials as the monitor shows them, read from files alone (no Optuna, no torch): the
study folder's ``trials/NNNN`` links to ordinary runs, each run's status (a pruned run ends
"finished" with a reason that says so), its validation rows (the study's metric, best of them)
and its config.toml (the values of the searched settings)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from tsdiff_cli.runs import CONFIG_FILE, LATEST, STUDY_FILE, TRIALS, metrics_path, read_status


@dataclass
class TrialRow:
    number: int
    state: str  # running, finished, pruned, failed, interrupted
    value: float | None
    params: dict


def study_of(target: Path) -> Path | None:
    """The study folder when ``target`` is one, or its ``latest`` link (the newest trial's run)."""
    target = Path(target)
    for folder in (target, target.parent if target.name == LATEST else None):
        if folder is not None and (folder / STUDY_FILE).is_file():
            return folder
    return None


def _space_keys(study: dict) -> list[str]:
    try:
        with open(study["config"], "rb") as fh:
            return list(tomllib.load(fh).get("tune", {}).get("space", {}))
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return []


def _setting(config: dict, key: str):
    section, _, name = key.partition(".")
    return config.get(section, {}).get(name)


def trial_rows(folder: Path) -> tuple[dict, list[TrialRow]]:
    """The study's description and one row per trial, in trial order."""
    study = json.loads((Path(folder) / STUDY_FILE).read_text())
    keys, metric, sign = _space_keys(study), study["metric"], 1 if study["direction"] == "minimize" else -1
    rows = []
    links = sorted((Path(folder) / TRIALS).iterdir(), key=lambda p: p.name) if (Path(folder) / TRIALS).is_dir() else []
    for link in links:
        run = link.resolve()
        status = read_status(run) or {}
        state = status.get("state", "starting")
        if state == "finished" and str(status.get("reason", "")).startswith("pruned"):
            state = "pruned"
        values = []
        try:
            for line in metrics_path(run).read_text().splitlines():
                row = json.loads(line)
                if row.get("kind") == "eval" and isinstance(row.get(metric), (int, float)):
                    values.append(float(row[metric]))
        except (OSError, ValueError):
            pass
        try:
            config = tomllib.loads((run / CONFIG_FILE).read_text())
        except (OSError, tomllib.TOMLDecodeError):
            config = {}
        best = min(v * sign for v in values) * sign if values else None
        rows.append(TrialRow(int(link.name) if link.name.isdigit() else len(rows), state, best,
                             {k: _setting(config, k) for k in keys}))
    return study, rows
