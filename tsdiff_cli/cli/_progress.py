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
