"""Progress display shared by long commands: a rich bar on a terminal, plain periodic lines
otherwise, nothing with --quiet."""

from __future__ import annotations

import sys
import time

from tsdiff_cli.training.distributed import from_env


def _clock(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Reporter:
    """Progress of a long command's tasks: a rich bar with ETA on a terminal, a plain line every
    ``every`` seconds (and when a task completes) otherwise, nothing when ``quiet``.

    ``update(label, done, total)`` may be called as often as wanted; each label is one task.
    ``step(info)`` takes the training loop's per-step progress (phase, epoch, epochs, batch,
    batches, step and the logged values): a bar per epoch with its losses on a terminal, a line
    with the step and losses every ``every`` seconds otherwise.
    """

    def __init__(self, quiet: bool, every: float = 30.0, stream=None):
        # under torchrun only rank 0 shows progress: the others train the same steps
        self.quiet, self.every = quiet or not from_env().main, every
        self.stream = stream if stream is not None else sys.stdout
        self.bar, self._tasks, self._started, self._printed, self._done = None, {}, {}, {}, set()
        self._epoch_task, self._epoch, self._last_step_line = None, None, 0.0

    def __enter__(self) -> Reporter:
        if not self.quiet and self.stream.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                transient=True)
            self.bar.__enter__()
        return self

    def step(self, info: dict) -> None:
        if self.quiet:
            return
        losses = "  ".join(f"{k} {v:.4f}" for k, v in info.items() if k.endswith("loss"))
        label = f"{info['phase']} epoch {info['epoch'] + 1}/{info['epochs']}"
        if self.bar is None:
            now = time.monotonic()
            if now - self._last_step_line >= self.every:
                print(f"{label}  step {info['step']}  {losses}", file=self.stream, flush=True)
                self._last_step_line = now
            return
        if self._epoch_task is None or self._epoch != (info["phase"], info["epoch"]):
            if self._epoch_task is not None:
                self.bar.remove_task(self._epoch_task)
            self._epoch_task = self.bar.add_task(label, total=info["batches"], info="")
            self._epoch = (info["phase"], info["epoch"])
        self.bar.update(self._epoch_task, completed=info["batch"], info=losses)

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
                self._tasks[label] = self.bar.add_task(label, total=total, info="")
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
