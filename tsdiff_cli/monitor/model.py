"""A run directory as the monitor sees it: state, progress, losses, scores and settings.

Works for any run that writes the DESIGN metrics protocol (``time, kind, phase, step, epoch``
plus named values): every numeric field of a ``train`` row whose name ends in ``loss`` is a loss
(charted against step), every numeric field of an ``eval`` row is a score (charted against
epoch), ``event`` rows carry a ``message``. Nothing here knows which command made the run.
"""

from __future__ import annotations

import math
import os
import re
import time
import tomllib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from tsdiff_cli.monitor.series import Goal, Series, best_index, goal_for
from tsdiff_cli.monitor.tail import JsonlTail, visible, visible_values
from tsdiff_cli.runs import config_path, metrics_path, read_config_text, read_status, status_path

STALE_AFTER = 60.0  # seconds without a heartbeat (and no process) before "running" reads "stale"
RATE_WINDOW = 60.0  # seconds of train rows that steps/s is measured over
# bookkeeping fields of eval rows that are not scores
NOT_SCORES = frozenset({"time", "kind", "phase", "step", "epoch", "minutes", "seconds", "elapsed", "best", "windows"})
_NAME = re.compile(r"^\d{8}-\d{6}-(?P<rest>.+)$")
_COMMANDS = ("pretrain-tst", "train", "forecast", "impute", "evaluate", "sample")  # for names only


def as_number(value) -> float | None:
    """A JSON number as float (null and NaN → NaN); None for anything else (bools, text)."""
    if value is None:
        return math.nan
    if type(value) is int or type(value) is float:
        return float(value)
    return None


def _int(value) -> int | None:
    return value if type(value) is int else None


def pid_alive(pid) -> bool:
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def run_state(status: dict, last_seen: float | None, now: float, has_metrics: bool) -> str:
    """running / finished / failed / interrupted from status.json; "stale" when it says running
    but there has been no sign of life for a minute and its process is gone; "starting" before
    anything was written."""
    state = status.get("state")
    if not isinstance(state, str):
        return "running" if has_metrics else "starting"
    if state == "running" and (last_seen is None or now - last_seen > STALE_AFTER) and not pid_alive(status.get("pid")):
        return "stale"
    return state


def split_name(name: str) -> tuple[str | None, str | None]:
    """(command, config) from ``<YYYYmmdd-HHMMSS>-<command>-<config>``; (None, None) otherwise."""
    m = _NAME.match(name)
    if not m:
        return None, None
    rest = m.group("rest")
    for command in _COMMANDS:
        if rest.startswith(command + "-"):
            return command, rest[len(command) + 1:]
    command, _, config = rest.partition("-")
    return command, config or None


@dataclass
class RunProgress:
    phase: str | None = None
    epoch: int | None = None  # 1-based epoch in progress (or the last one, when stopped)
    epochs: int | None = None  # epochs of this phase, when the run says
    step: int | None = None
    steps: int | None = None  # a step budget, when the settings have one
    elapsed: float | None = None  # seconds
    rate: float | None = None  # steps per second, over the last minute of train rows
    eta: float | None = None  # seconds left, when it can be told
    eta_basis: str | None = None  # what the ETA is the end of ("diffusion epochs", "max_minutes 15")
    fraction: float | None = None  # done, in [0, 1], of the same thing


@dataclass
class ScoreRow:
    name: str
    latest: float
    latest_at: float  # epoch (or step when the rows carry no epoch)
    best: float | None
    best_at: float | None
    goal: Goal | None


class RunState:
    """Everything the monitor shows about one run; :meth:`refresh` brings it up to date."""

    def __init__(self, path: Path, clock=time.time):
        self.path = Path(path).resolve()  # a link such as runs/latest is followed by the caller
        self.clock = clock
        self.tail = JsonlTail(metrics_path(self.path))
        self.status: dict = {}
        self.config_text: str | None = None
        self.config: dict = {}
        self.config_error: str | None = None
        self.version = 0  # bumped whenever something shown may have changed
        self._stamps: dict[str, tuple] = {}
        self._clear()

    def _clear(self) -> None:
        self.losses: dict[str, Series] = {}
        self.scores: dict[str, Series] = {}
        self.score_notes: dict[str, str] = {}  # text fields of the latest eval row (e.g. profile)
        self.score_axis = "epoch"  # "step" when eval rows carry no epoch
        self.events: deque[dict] = deque(maxlen=100)
        self.last_train: dict | None = None
        self.step: int | None = None  # of the latest row
        self.phase: str | None = None
        self.first_time: float | None = None
        self.last_time: float | None = None
        self.records = 0
        self.skipped = 0  # JSON objects without a kind or an integer step
        self._loss_fields: dict[tuple, list[str]] = {}
        self._recent: deque[tuple[float, int]] = deque(maxlen=256)  # (time, step) of train rows
        self._epoch_end: dict[int, int] = {}  # last step seen in each epoch of the current phase

    # --- reading -----------------------------------------------------------------------------

    def refresh(self, budget: float = 0.25) -> bool:
        """Read what changed (status, config, new metric lines) for up to ``budget`` seconds;
        True when anything did. Call again while :attr:`loading`."""
        changed = self._read_status()
        changed |= self._read_config()
        deadline = time.perf_counter() + budget
        while True:
            batch = self.tail.read()
            if batch.reset:
                self._clear()
                changed = True
            if batch.records:
                self._ingest(batch.records)
                changed = True
            if not self.tail.more or time.perf_counter() > deadline:
                break
        if changed:
            self.version += 1
        return changed

    @property
    def loading(self) -> bool:
        """Lines are waiting to be read (a large file being opened)."""
        return self.tail.more

    @staticmethod
    def _stamp(path: Path) -> tuple | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _read_status(self) -> bool:
        stamp = self._stamp(status_path(self.path))
        if stamp == self._stamps.get("status"):
            return False
        self._stamps["status"] = stamp
        status = read_status(self.path)
        if status is None:
            return False  # missing, or caught mid-write by a writer that is not atomic: next time
        self.status = visible_values(status)
        return True

    def _read_config(self) -> bool:
        stamp = self._stamp(config_path(self.path))
        if stamp == self._stamps.get("config"):
            return False
        self._stamps["config"] = stamp
        self.config_text = read_config_text(self.path)
        if self.config_text is None:
            self.config = {}
            return True
        try:
            self.config, self.config_error = tomllib.loads(self.config_text), None
        except tomllib.TOMLDecodeError as exc:
            self.config, self.config_error = {}, visible(str(exc))
        self.config_text = "\n".join(visible(line) for line in self.config_text.split("\n"))
        return True

    @property
    def gone(self) -> bool:
        """The run folder no longer exists (deleted while being watched)."""
        return not self.path.is_dir()

    def _ingest(self, records: list[dict]) -> None:
        for rec in records:
            kind, step = rec.get("kind"), rec.get("step")
            if not isinstance(kind, str) or type(step) is not int:
                self.skipped += 1
                continue
            self.records += 1
            t = rec.get("time")
            if type(t) is float or type(t) is int:
                if self.first_time is None:
                    self.first_time = t
                self.last_time = t
            epoch = _int(rec.get("epoch"))
            phase = rec.get("phase") if isinstance(rec.get("phase"), str) else None
            if kind == "train":
                self._train_row(rec, step, epoch, phase, t)
            elif kind == "eval":
                self._eval_row(rec, step, epoch)
            elif kind == "event":
                self.events.append({"time": t, "phase": phase, "step": step, "message": str(rec.get("message", ""))})
            self.step = step
            if phase is not None:
                self.phase = phase

    def _train_row(self, rec: dict, step: int, epoch: int | None, phase: str | None, t) -> None:
        signature = tuple(rec)
        fields = self._loss_fields.get(signature)
        if fields is None:
            fields = self._loss_fields[signature] = [k for k in signature if k.endswith("loss")]
        for name in fields:
            value = rec[name]
            value = math.nan if value is None else value
            if type(value) is not float and type(value) is not int:
                continue
            series = self.losses.get(name)
            if series is None:
                series = self.losses[name] = Series()
            series.append(step, value)
        if phase != (self.last_train or {}).get("phase"):
            self._recent.clear()
            self._epoch_end.clear()
        if type(t) is float or type(t) is int:
            self._recent.append((t, step))
        if epoch is not None:
            self._epoch_end[epoch] = step
        self.last_train = rec

    def _eval_row(self, rec: dict, step: int, epoch: int | None) -> None:
        x = epoch if epoch is not None else step
        if epoch is None:
            self.score_axis = "step"
        notes = {}
        for name, value in rec.items():
            if name in NOT_SCORES:
                continue
            number = as_number(value)
            if number is None:
                if isinstance(value, str):
                    notes[name] = value
                continue
            series = self.scores.get(name)
            if series is None:
                series = self.scores[name] = Series()
            series.append(x, number)
        self.score_notes = notes

    # --- what is shown -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def command(self) -> str | None:
        command = self.status.get("command")
        return command if isinstance(command, str) else split_name(self.name)[0]

    @property
    def config_name(self) -> str | None:
        return split_name(self.name)[1]

    def last_seen(self) -> float | None:
        times = [t for t in (self.status.get("updated"), self.last_time) if type(t) in (int, float)]
        return max(times) if times else None

    def state(self) -> str:
        if self.gone:
            return "gone"
        return run_state(self.status, self.last_seen(), self.clock(), self.tail.exists)

    def detail(self) -> str:
        """Why it stopped or failed, or the latest event."""
        for key in ("error", "reason"):
            if isinstance(self.status.get(key), str):
                return self.status[key]
        return self.events[-1]["message"] if self.events else ""

    def progress(self) -> RunProgress:
        state = self.state()
        p = RunProgress(phase=self.phase or self.status.get("phase"), step=self.step)
        if p.step is None and type(self.status.get("step")) is int:
            p.step = self.status["step"]
        if self.last_train is not None and _int(self.last_train.get("epoch")) is not None:
            p.epoch = self.last_train["epoch"] + 1
        elif _int(self.status.get("epoch")) is not None:
            p.epoch = self.status["epoch"]
        if _int(self.status.get("epochs")) and self.status.get("phase") in (None, p.phase):
            p.epochs = self.status["epochs"]
        p.elapsed = self._elapsed(state)
        p.rate = self._rate()
        max_steps = self._budget("max_steps")
        if max_steps:
            p.steps = int(max_steps)
        if state == "finished":
            p.fraction = 1.0
        candidates = self._etas(p, max_steps) if state == "running" else []
        if candidates:
            p.eta, p.eta_basis, p.fraction = min(candidates)
        return p

    def _elapsed(self, state: str) -> float | None:
        started = self.status.get("started")
        if type(started) not in (int, float):
            started = self.first_time
        if started is None:
            return None
        end = self.clock() if state == "running" else self.last_seen()
        return max(0.0, (end or started) - started)

    def _rate(self) -> float | None:
        if len(self._recent) < 2:
            return None
        t_end, s_end = self._recent[-1]
        window = [p for p in self._recent if p[0] >= t_end - RATE_WINDOW]
        if len(window) < 2:
            window = list(self._recent)[-2:]
        (t0, s0), (t1, s1) = window[0], window[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 >= s0 else None

    def _budget(self, key: str) -> float | None:
        """A positive ``key`` from the run's settings: its command's section, then [train]."""
        for section in (self.command, "train"):
            value = self.config.get(section, {}) if section else {}
            value = value.get(key) if isinstance(value, dict) else None
            if type(value) in (int, float) and value > 0:
                return float(value)
        return None

    def _etas(self, p: RunProgress, max_steps: float | None) -> list[tuple[float, str, float]]:
        """(seconds left, what ends then, fraction done) for each limit the run has."""
        out = []
        if max_steps and p.rate and p.step is not None:
            out.append((max(0.0, (max_steps - p.step) / p.rate), f"max_steps {max_steps:g}", min(1.0, p.step / max_steps)))
        minutes = self._budget("max_minutes")
        if minutes and p.elapsed is not None:
            out.append((max(0.0, minutes * 60 - p.elapsed), f"max_minutes {minutes:g}", min(1.0, p.elapsed / (minutes * 60))))
        per_epoch = self._steps_per_epoch()
        if p.epochs and p.epoch and per_epoch and p.rate and p.step is not None:
            done_before = self._epoch_end.get(p.epoch - 2)  # last step of the previous epoch
            into = (p.step - done_before) if done_before is not None else 0
            left = max(0.0, (p.epochs - p.epoch + 1) * per_epoch - into)
            done = min(1.0, ((p.epoch - 1) * per_epoch + into) / (p.epochs * per_epoch))
            out.append((left / p.rate, f"{p.phase or 'phase'} epochs", done))
        return out

    def _steps_per_epoch(self) -> float | None:
        complete = sorted(self._epoch_end)[:-1]  # the last one may be in progress
        if len(complete) < 2:
            return None
        first, last = complete[0], complete[-1]
        return (self._epoch_end[last] - self._epoch_end[first]) / (last - first)

    def latest_losses(self) -> dict[str, float]:
        out = {}
        for name, series in self.losses.items():
            last = series.last()
            if last is not None:
                out[name] = last[1]
        return out

    def score_rows(self) -> list[ScoreRow]:
        rows = []
        for name, series in self.scores.items():
            last = series.last()
            if last is None:
                continue
            goal = goal_for(name)
            i = best_index(series, goal)
            rows.append(ScoreRow(name, last[1], last[0], series.y[i] if i is not None else None,
                                 series.x[i] if i is not None else None, goal))
        return rows
