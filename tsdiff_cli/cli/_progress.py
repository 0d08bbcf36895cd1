"""Progress display shared by long commands: a rich bar on a terminal, plain periodic lines
otherwise, nothing with --quiet."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


class StepProgress:
    """Call with a dict of ``phase, epoch, epochs, batch, batches`` and named losses."""

    def __init__(self, bar, plain_every: float = 30.0):
        self.bar, self.task, self.phase, self.plain_every, self._last = bar, None, None, plain_every, 0.0

    def __call__(self, info: dict) -> None:
        losses = "  ".join(f"{k} {v:.4f}" for k, v in info.items() if k.endswith("loss"))
        label = f"{info['phase']} epoch {info['epoch'] + 1}/{info['epochs']}"
        if self.bar is None:
            now = time.monotonic()
            if now - self._last >= self.plain_every:
                print(f"{label}  step {info['step']}  {losses}", flush=True)
                self._last = now
            return
        if self.task is None or self.phase != (info["phase"], info["epoch"]):
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(label, total=info["batches"])
            self.phase = (info["phase"], info["epoch"])
        self.bar.update(self.task, completed=info["batch"], info=losses)


@contextmanager
def progress_bar(quiet: bool, columns: str = "{task.fields[info]}"):
    """Yields a rich Progress on a terminal, ``None`` otherwise (or when quiet: the caller checks)."""
    if quiet or not sys.stdout.isatty():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn(columns)) as bar:
        yield bar


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Reporter:
    """Progress of a long command's tasks: a rich bar with ETA on a terminal, a plain line every
    ``every`` seconds (and when a task completes) otherwise, nothing when ``quiet``.

    ``update(label, done, total)`` may be called as often as wanted; each label is one task.
    """

    def __init__(self, quiet: bool, every: float = 30.0, stream=None):
        self.quiet, self.every = quiet, every
        self.stream = stream if stream is not None else sys.stdout
        self.bar, self._tasks, self._started, self._printed, self._done = None, {}, {}, {}, set()

    def __enter__(self) -> Reporter:
        if not self.quiet and self.stream.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), transient=True)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def update(self, label: str, done: int, total: int) -> None:
        if self.quiet or label in self._done:
            return
        now = time.monotonic()
        if label not in self._started:
            self._started[label] = now
            self._printed[label] = now
            if self.bar is not None:
                self._tasks[label] = self.bar.add_task(label, total=total)
        if self.bar is not None:
            self.bar.update(self._tasks[label], completed=done, total=total)
            return
        finished = done >= total
        if finished or now - self._printed[label] >= self.every:
            elapsed = now - self._started[label]
            eta = "" if finished or done == 0 else f", ETA {_clock(elapsed * (total - done) / done)}"
            print(f"{label}: {done}/{total} ({100 * done / max(total, 1):.0f} %), {_clock(elapsed)} elapsed{eta}",
                  file=self.stream, flush=True)
            self._printed[label] = now
            if finished:
                self._done.add(label)  # one final line per task
