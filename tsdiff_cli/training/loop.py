"""The one training loop: every model tsdiff trains goes through :class:`Trainer`.

A job hands the trainer a :class:`Task`: the module, its optimizer (and scheduler, EMA), the
phases it trains in — each a ``step(batch indices) -> (objective, logged values)`` and,
optionally, a ``validate(check) -> metrics`` — and the inference file it exports. The trainer
owns the rest:

- the batch order (a seeded permutation per epoch: a function of (seed, epoch) alone);
- the optimizer step: bf16 autocast around the step when asked, a finite-loss check, backward,
  gradient-norm clipping per parameter group, the optimizer and scheduler steps, the EMA update;
  stochastic weight averaging (torch's ``AveragedModel``) at the end of each epoch of a phase
  that ``average``s;
- the budget: epochs, ``max_steps`` and ``max_minutes`` checked before every step. Validations
  count against the time: once the trainer knows how long one takes it stops training early
  enough for the last one to end by the deadline (with half a validation to spare), skips a
  periodic one that would leave less training before that last one than it takes itself, and a
  validation still running at the deadline is abandoned (tasks call ``check()`` in their long
  loops). So a run ends within its minutes plus one step and one checkpoint write. With a
  ``cooldown`` the learning rates fall linearly to 0 over the budget's last part (rank 0's
  clock decides the factor under torchrun, as it decides the stop);
- validation cadence, keeping the weights with the best value of a named metric (``Watch``) in
  the run's inference file, early stopping after ``patience`` validations without one;
- checkpoints: every ``checkpoint_minutes``, at the end of each phase, at the end and on Ctrl-C /
  SIGTERM; weights, optimizer moments, EMA and RNG states as safetensors, the position as JSON,
  so a run stopped after k steps and resumed gives the weights of one that never stopped (which
  weights a validation keeps can differ: one skipped near the first budget's end is not made up);
- metrics logging (``train`` rows every ``log_every`` steps and at each epoch's end, ``eval``
  rows), the status heartbeat, and a progress callback.

The run's lifecycle (running → finished / failed / interrupted) is
:meth:`tsdiff_cli.runs.Run.lifecycle`, which the job wraps around training and what follows it.

Data parallel under torchrun (``world``, see :mod:`tsdiff_cli.training.distributed`):
``task.module`` is the module that is saved and EMA'd; the trainer steps through
``self.trained``, a thin module whose forward is the task's step (Lightning's arrangement),
wrapped in ``DistributedDataParallel`` when there are several processes, so gradients are
averaged without the task knowing. The batch size of a phase is the *global* batch: a
``DistributedSampler`` (seeded, ``set_epoch`` every epoch) gives each rank every N-th example of
it, and a task's random draws are made for the whole global batch and cut to the rank's rows
(:class:`Shard`), so N processes train the weights one process would (up to float rounding;
dropout masks and batch-norm statistics stay per process). Rank 0 decides when to stop (budget,
Ctrl-C on any rank: one all-reduce per step), runs the validations and broadcasts their outcome,
and alone writes run files: every write is one of :meth:`_log`, :meth:`_status`,
:meth:`checkpoint`, :meth:`_export`, through a run that on other ranks is a read-only
:class:`tsdiff_cli.runs.Follower`. Positions count global batches, so a checkpoint written by
any number of processes resumes with any other.
"""

from __future__ import annotations

import abc
import json
import math
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from tsdiff_cli.errors import UserError
from tsdiff_cli.runs import CHECKPOINTS, MODEL_FILE, Run, Terminated, model_path, model_readable
from tsdiff_cli.training.distributed import SINGLE, Released, World

StepOutput = tuple[torch.Tensor, dict[str, Any]]  # (objective to minimise, values to log)
OnStep = Callable[[dict], None]  # progress: phase, epoch, epochs, batch, batches, step and the logged values
# after each validation (rank 0): its metrics and the step; returns a reason to stop (e.g. a study's pruner) or None
OnEval = Callable[[dict, int], "str | None"]
HEARTBEAT = 30.0  # seconds between status.json updates within an epoch
VALIDATION_MARGIN = 1.5  # the time kept free for the last validation, in lengths of the one before
SCALE_UNITS = 10**9  # the cooldown factor travels between ranks as an integer of these units


class Diverged(RuntimeError):
    """A loss or the watched metric stopped being finite."""


class OutOfTime(Exception):
    """Raised by a validation's ``check()`` once the time budget is spent."""


@dataclass
class Phase:
    """A stretch of training with one step function: ``epochs`` passes over ``size`` examples."""

    name: str
    epochs: int
    size: int
    batch_size: int
    step: Callable[[torch.Tensor], StepOutput]
    validate: Callable[[Callable[[], None]], dict | None] | None = None  # called with check(); None: skipped
    validate_every: int = 1  # epochs; the phase's last epoch always validates
    ema: bool = False  # update the task's EMA after every step
    log_every: int = 10  # steps between train rows (and the last batch of every epoch)
    max_steps: int = 0  # the phase also ends after this many of its own steps (0: epochs alone)
    average: bool = False  # fold the weights into the task's ``swa`` average after each of its epochs
    model_file: str | None = None  # where this phase's kept weights go (default: the task's model_file)

    @property
    def batches(self) -> int:
        """Batches (steps) in one epoch; the last may be short."""
        return -(-self.size // self.batch_size)

    @property
    def planned_epochs(self) -> int:
        """Epochs this phase starts, the last one perhaps cut short by ``max_steps``."""
        return min(self.epochs, -(-self.max_steps // self.batches)) if self.max_steps else self.epochs

    @property
    def planned_steps(self) -> int:
        """Steps this phase trains if no other budget ends it first."""
        planned = self.epochs * self.batches
        return min(planned, self.max_steps) if self.max_steps else planned

    def done(self, epoch: int, batch: int) -> bool:
        """Whether a phase standing at (``epoch``, next ``batch``) has nothing left to train."""
        return epoch >= self.epochs or bool(self.max_steps) and epoch * self.batches + batch >= self.max_steps


@dataclass
class Watch:
    """Keep the weights with the lowest ``metric``; stop after ``patience`` validations without a
    value below ``best − min_delta``. A validation without the metric keeps the latest weights.
    With ``tolerance`` a later value no more than that above the best also keeps the later weights
    (a noisy metric's ties go to the longer-trained weights); the best stays the lowest value seen.
    ``key`` says what makes two values comparable: a resumed run with another key forgets its best."""

    metric: str
    patience: int | None = None
    min_delta: float = 0.0
    key: Any = None
    tolerance: float = 0.0


@dataclass
class Budget:
    max_steps: int = 0  # 0: no limit
    max_minutes: float = 0.0
    since: float | None = None  # when this session's clock started (the trainer's clock); default: fit()
    # the learning rate falls linearly to 0 over this last fraction of the budget (0: constant)
    cooldown: float = 0.0


@dataclass
class Position:
    """Where training stands; checkpointed as JSON."""

    phase: int = 0  # index into the task's phases; len(phases) when done
    epoch: int = 0  # epochs completed in this phase
    batch: int = 0  # next batch within the epoch
    step: int = 0  # optimizer steps, all phases
    elapsed: float = 0.0  # seconds of earlier sessions
    best: float | None = None
    stale: int = 0  # validations since the best
    validated_at: int | None = None  # step of the last validation
    validation_seconds: float | None = None  # how long the last one took
    kept_at: int | None = None  # step whose weights the watch put in the inference file
    kept: float | None = None  # their watched value (above best by at most the watch's tolerance)
    stopped: str | None = None  # why training ended early (the run is complete)
    validate_due: bool = False  # the epoch just ended wants a validation that has not happened yet
    skipped: bool = False  # a periodic validation gave way to the budget's last one, which then counts


@dataclass
class FitResult:
    reason: str
    steps: int
    epochs: int  # epochs completed in the last phase trained
    minutes: float
    best: float | None
    kept: float | None = None  # the watched value of the weights in the inference file


class EMA:
    """Exponential moving average of a module's weights with a warm-up: decay_t = min(decay,
    (1 + t) / (warmup + t)), so early averages forget the random initialisation quickly."""

    def __init__(self, module: nn.Module, decay: float, warmup: int):
        self.module, self.decay, self.warmup, self.updates = module, decay, warmup, 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (self.warmup + self.updates))
        state = self.module.state_dict()
        floats = [k for k, v in state.items() if v.dtype.is_floating_point]
        if floats:  # one multi-tensor kernel for all weights (a step 1 % faster than a lerp per tensor on the CPU)
            torch._foreach_lerp_([self.shadow[k] for k in floats], [state[k].detach() for k in floats], 1 - d)
        for k, v in state.items():
            if not v.dtype.is_floating_point:
                self.shadow[k].copy_(v)


@dataclass(frozen=True)
class Shard:
    """Which rows of each global batch this process computes: every ``size``-th from ``rank``
    (as ``DistributedSampler`` deals them). A task draws its random numbers for the whole global
    batch (:meth:`whole` rows) and keeps its own with :meth:`rows`, so the draws, and so the
    trained weights, do not depend on how many processes share the batch."""

    rank: int = 0
    size: int = 1

    def whole(self, local: int) -> int:
        """The global batch's size, from this rank's share of it."""
        return local * self.size

    def rows(self, t: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """This rank's rows (along ``dim``) of a tensor made for the global batch."""
        return t if self.size == 1 else t[(slice(None),) * dim + (slice(self.rank, None, self.size),)]

    def _draw(self, fn, batch: int, generator: torch.Generator, lead: tuple, tail: tuple) -> torch.Tensor:
        return self.rows(fn((*lead, self.whole(batch), *tail), generator=generator), dim=len(lead))

    def rand(self, batch: int, generator: torch.Generator, lead: tuple = (), tail: tuple = ()) -> torch.Tensor:
        """Uniform draws of shape (*lead, batch, *tail) for this rank's ``batch`` rows."""
        return self._draw(torch.rand, batch, generator, lead, tail)

    def randn(self, batch: int, generator: torch.Generator, lead: tuple = (), tail: tuple = ()) -> torch.Tensor:
        """Normal draws of shape (*lead, batch, *tail) for this rank's ``batch`` rows."""
        return self._draw(torch.randn, batch, generator, lead, tail)


class Task(abc.ABC):
    """What a job gives the trainer. Set ``module`` and ``optimizer`` (and, as needed, the other
    attributes) and define :meth:`phases`, :meth:`signature` and :meth:`export`."""

    module: nn.Module  # everything trained and checkpointed (unwrapped)
    optimizer: torch.optim.Optimizer
    scheduler: Any = None  # stepped after every optimizer step
    ema: EMA | None = None
    swa: Any = None  # a torch.optim.swa_utils.AveragedModel of ``module``, for phases that ``average``
    watch: Watch | None = None
    model_file: str = MODEL_FILE  # the run file :meth:`export` fills
    diverged_fix: str = "lower the learning rate and start again"
    shard: Shard = Shard()  # set by the trainer: the rows of each global batch this process computes

    def generators(self) -> dict[str, torch.Generator]:
        """Random generators the steps draw from; checkpointed with the weights."""
        return {}

    @abc.abstractmethod
    def phases(self) -> list[Phase]:
        """The phases in order."""

    @abc.abstractmethod
    def signature(self) -> str:
        """The architecture as text; a checkpoint made with another one is not resumed."""

    def same_architecture(self, saved: str) -> bool:
        """Whether a checkpoint's ``signature`` is this architecture. A task whose config gained a
        field with a default reads older signatures through its config class instead."""
        return saved == self.signature()

    @abc.abstractmethod
    def export(self, pos: Position) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        """The inference file's tensors and string metadata at ``pos``."""


class _Stepper(nn.Module):
    """The trained module: its forward is a task's step, so that a data-parallel wrapper around
    it sees every parameter the step uses (the task's module is a submodule)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, step: Callable[[torch.Tensor], StepOutput], batch: torch.Tensor) -> StepOutput:
        return step(batch)


def adamw(params, **options) -> torch.optim.AdamW:
    """AdamW with torch's fused kernel where every parameter can use it (floating point, on the
    CPU or CUDA: the energy preset's diffusion step 4 % faster on the CPU), else torch's default
    implementation; the same update either way. (torch checks the devices only at the first step.)"""
    params = list(params)
    groups = [dict(g) for g in params] if params and isinstance(params[0], dict) else [{"params": params}]
    for g in groups:  # read twice below: a generator or a lone tensor becomes a list
        g["params"] = [g["params"]] if torch.is_tensor(g["params"]) else list(g["params"])
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, fused=fused or None, **options)


# the implementation flags stay those of the optimizer being resumed into, not the checkpoint's:
# a run written on one device may be resumed on another
_IMPLEMENTATION = ("fused", "foreach", "capturable", "differentiable")


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, list]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"opt.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, sd["param_groups"]


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    if len(groups) == len(opt.param_groups):  # (otherwise torch refuses the state, as it should)
        groups = [{**saved, **{k: now[k] for k in _IMPLEMENTATION if k in now}}
                  for saved, now in zip(groups, opt.param_groups)]
    opt.load_state_dict({"state": state, "param_groups": groups})


class Trainer:
    def __init__(self, task: Task, run: Run, *, seed: int, grad_clip: float, budget: Budget | None = None,
                 checkpoint_minutes: float = 5.0, bf16: bool = False, device: torch.device | None = None,
                 on_step: OnStep | None = None, clock: Callable[[], float] = time.monotonic,
                 world: World = SINGLE, on_eval: OnEval | None = None):
        self.task, self.run = task, run
        self.seed, self.grad_clip, self.budget = seed, grad_clip, budget or Budget()
        self.checkpoint_minutes, self.bf16 = checkpoint_minutes, bf16
        self.device = device or torch.device("cpu")
        self.on_step, self.on_eval, self.clock = on_step, on_eval, clock
        self.world = world
        self.phases = task.phases()
        self.pos = Position()
        self.trained: nn.Module = _Stepper(task.module)
        if world.size > 1:
            self._go_parallel()
        self._session: float | None = None  # monotonic start of this session's training
        self._saved: dict | None = None  # the position the last checkpoint holds
        self._step_seconds = 0.0  # how long the last optimizer step took
        self._scale = 1.0  # the learning rates' factor for the next step (budget.cooldown)
        self._signal: int | None = None  # SIGINT / SIGTERM received: stop after the step in progress
        self._last_checkpoint = self._last_status = clock()

    def _go_parallel(self) -> None:
        """Several processes: the global batch splits evenly, each task draws for the global batch
        and keeps its rows, gradients are averaged by DistributedDataParallel."""
        from torch.nn.parallel import DistributedDataParallel

        w = self.world
        for phase in self.phases:
            if phase.batch_size % w.size:
                raise UserError("batch_size", f"is {phase.batch_size} (the global batch of phase {phase.name}), which "
                                f"does not split evenly over {w.size} processes",
                                f"use a multiple of {w.size}, or another --nproc-per-node")
        self.task.shard = Shard(w.rank, w.size)
        ids = [self.device.index] if self.device.type == "cuda" else None
        # a phase may leave parameters without gradients (the TST phase of the generator, a frozen
        # encoder): DDP must not wait for them
        self.trained = w.collective("wrapping the model", lambda: DistributedDataParallel(
            self.trained, device_ids=ids, find_unused_parameters=True))
        # torch's own generator (dropout) differs per rank; the tasks' generators do not (Shard)
        torch.manual_seed(self.seed * 7919 + w.rank)

    # --- time --------------------------------------------------------------------------------

    def elapsed(self) -> float:
        """Seconds of training, earlier sessions included (validations and checkpoints count)."""
        return self.pos.elapsed + (self.clock() - self._session if self._session is not None else 0.0)

    def _time_left(self) -> float:
        return 60 * self.budget.max_minutes - self.elapsed() if self.budget.max_minutes else math.inf

    def _check(self) -> None:
        """Called by validations in their long loops: stops them at a signal or at the deadline."""
        self._stop_if_asked()
        if self._time_left() < 0:
            raise OutOfTime()

    def _out_of_budget(self, phase: Phase) -> str | None:
        b = self.budget
        if b.max_steps and self.pos.step >= b.max_steps:
            return f"max_steps {b.max_steps}"
        # once a validation's duration is known, stop early enough for one more step and the
        # last validation to end by the deadline, with half a validation to spare: the last one
        # scores the most-trained weights, and one that ran a few seconds longer than the one
        # before was abandoned, its weights never scored (ETTh1 70 %: 1900 of 5633 steps; energy 30 %: 1270 of 3041)
        if b.max_minutes and self._time_left() <= self._reserve(phase):
            return f"max_minutes {b.max_minutes:g}"
        return None

    def _last_follows_soon(self, phase: Phase) -> bool:
        """Whether a validation now would leave less training before the time budget's last
        validation than it costs itself: two validations of almost the same weights, the earlier
        one's time better spent training the weights the last one scores (energy 30 %: 85 s, 4.7 %
        of the 30 minutes, for 45 steps between the two). Not at a phase's end: nothing follows."""
        v = self.pos.validation_seconds
        if not (self.budget.max_minutes and v) or phase.done(self.pos.epoch, self.pos.batch):
            return False
        return self._time_left() - v - self._reserve(phase) < v

    def _reserve(self, phase: Phase) -> float:
        """Seconds kept free at the end of the time budget for the last validation."""
        return (VALIDATION_MARGIN * self.pos.validation_seconds + self._step_seconds
                if phase.validate and self.pos.validation_seconds else 0.0)

    def lr_scale(self, phase: Phase) -> float:
        """The learning rates' factor under ``budget.cooldown`` = c: 1 until the budget nearest its end
        (as a fraction of itself: the training minutes before the last validation's reserve,
        ``max_steps``, the phase's own epochs or steps) has a fraction c left, then falling linearly to 0 at its end (the decay
        phase of warmup-stable-decay schedules: Hu et al. 2024, "MiniCPM"; Hägele et al. 2024, "Scaling
        laws and compute-optimal training beyond fixed training durations").
        A time budget makes the schedule follow the clock, so it adapts to the machine's speed."""
        c, b, pos = self.budget.cooldown, self.budget, self.pos
        if not c:
            return 1.0
        left = []
        if b.max_minutes:
            left.append((self._time_left() - self._reserve(phase)) / (60 * b.max_minutes))
        if b.max_steps:
            left.append((b.max_steps - pos.step) / b.max_steps)
        planned = phase.planned_steps
        if planned:
            left.append((planned - pos.epoch * phase.batches - pos.batch) / planned)
        return min(1.0, max(0.0, min(left)) / c)

    # --- signals: the step in progress ends, then a checkpoint ------------------------------------

    def _on_signal(self, signum, frame) -> None:
        if self._signal is not None:  # asked twice: stop now
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        self._signal = signum

    def _stop_if_asked(self) -> None:
        if self._signal is not None:
            raise Terminated() if self._signal == signal.SIGTERM else KeyboardInterrupt()

    _BUDGETS = ("max_steps", "max_minutes")

    def _agreed_stop(self, phase: Phase) -> str | None:
        """Before each step: a signal on any rank stops every rank; rank 0's clock and step count
        decide the budget, so all ranks stop at the same step."""
        if self.world.size == 1:
            self._stop_if_asked()
            self._scale = self.lr_scale(phase)
            return self._out_of_budget(phase)
        reason = self._out_of_budget(phase) if self.world.main else None
        code = 0 if reason is None else 1 + self._BUDGETS.index(reason.split()[0])
        sig = {None: 0, signal.SIGINT: 1, signal.SIGTERM: 2}.get(self._signal, 1)
        # rank 0's clock sets the learning rates' cooldown too: every replica steps alike
        scale = round(self.lr_scale(phase) * SCALE_UNITS) if self.world.main else 0
        sig, code, scale = self.world.agree([sig, code, scale])
        self._scale = scale / SCALE_UNITS
        if sig:
            self._signal = signal.SIGTERM if sig == 2 else signal.SIGINT
            self._stop_if_asked()
        if code == 0:
            return None
        b = self.budget
        return f"max_steps {b.max_steps}" if code == 1 else f"max_minutes {b.max_minutes:g}"

    def _catch_signals(self) -> dict:
        """Ctrl-C and SIGTERM set a flag the loop reads between steps, so that the checkpoint
        written on the way out holds a whole step (main thread only)."""
        previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: signals stay as they are
                break
        return previous

    # --- one optimizer step --------------------------------------------------------------------

    def train_step(self, phase: Phase, batch: torch.Tensor) -> dict[str, float]:
        """Forward (the task's step), backward, clip, step; returns the logged values as floats."""
        task = self.task
        task.module.train()
        scale = self._scale  # where the budget stood as the step began (_agreed_stop)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss, logs = self.trained(phase.step, batch)
        values = {k: v.item() if torch.is_tensor(v) else float(v) for k, v in logs.items()}
        if not torch.isfinite(loss):
            bad = next((k for k, v in values.items() if not math.isfinite(v)), "loss")
            raise Diverged(f"{bad} became {values.get(bad, loss.item())} at step {self.pos.step}")
        task.optimizer.zero_grad(set_to_none=True)
        if self.world.size > 1:  # the gradients' all-reduce runs inside backward
            self.world.collective("averaging gradients", loss.backward)
        else:
            loss.backward()
        for group in task.optimizer.param_groups:  # each group clipped on its own
            torch.nn.utils.clip_grad_norm_(group["params"], self.grad_clip)
        if scale < 1.0:  # on top of any scheduler's rate, which is put back after the step
            rates = [g["lr"] for g in task.optimizer.param_groups]
            for g in task.optimizer.param_groups:
                g["lr"] *= scale
            values["lr_scale"] = scale
        task.optimizer.step()
        if scale < 1.0:
            for g, lr in zip(task.optimizer.param_groups, rates):
                g["lr"] = lr
        if task.scheduler is not None:
            task.scheduler.step()
        if phase.ema and task.ema is not None:
            task.ema.update()
        return values

    def _batches(self, phase: Phase, epoch: int) -> list[torch.Tensor]:
        """This rank's batches of the epoch: a seeded permutation (the same on every rank, a
        function of (seed, epoch) alone), every N-th index to each of N ranks, cut into the global
        batch ÷ N. With one process: the permutation cut into global batches."""
        from torch.utils.data import DistributedSampler

        w = self.world
        sampler = DistributedSampler(range(phase.size), num_replicas=w.size, rank=w.rank, shuffle=True,
                                     seed=self.seed * 1_000_003)
        sampler.set_epoch(epoch)
        return list(torch.tensor(list(sampler), dtype=torch.int64).split(phase.batch_size // w.size))

    # --- the loop ------------------------------------------------------------------------------

    def start_at(self, name: str) -> None:
        """Begin a fresh run at phase ``name`` (the earlier ones were done elsewhere)."""
        self.pos.phase = [p.name for p in self.phases].index(name)

    def fit(self) -> FitResult:
        """Train until every phase is done, the budget is spent or early stopping; write the last
        checkpoint and the inference file (unless the watch already keeps a better one)."""
        self._session = self.budget.since if self.budget.since is not None else self.clock()
        self._last_checkpoint = self._last_status = self.clock()
        previous = self._catch_signals()
        try:
            reason = self._last_validation(self._train())
            if self._saved != _snapshot(self.pos):
                self.checkpoint()
            if self.pos.kept_at is None:  # nothing chosen by a validation: the latest weights
                self._export()
            self._check_export()
        except KeyboardInterrupt:
            self.checkpoint()
            raise
        except Diverged as exc:
            raise UserError(self.run.path, f"{exc}; the last good checkpoint is kept in {self.run.path / CHECKPOINTS}",
                            self.task.diverged_fix) from None
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        minutes = self.elapsed() / 60
        self._status(reason=reason, minutes=round(minutes, 2))
        self.world.barrier()  # every rank leaves training once rank 0's files are written
        if not self.world.main:
            raise Released()
        return FitResult(reason, self.pos.step, self.pos.epoch, minutes, self.pos.best, self.pos.kept)

    def _train(self) -> str:
        pos = self.pos
        if pos.stopped:
            return pos.stopped
        for i in range(pos.phase, len(self.phases)):
            phase = self.phases[i]
            pos.phase = i
            while True:
                if pos.validate_due and self._validate(phase):
                    return self._stop_early()
                if phase.done(pos.epoch, pos.batch):
                    break
                batches = self._batches(phase, pos.epoch)
                while pos.batch < len(batches) and not phase.done(pos.epoch, pos.batch):
                    reason = self._agreed_stop(phase)
                    if reason:
                        return reason
                    started = self.clock()
                    values = self.train_step(phase, batches[pos.batch])
                    pos.batch += 1
                    pos.step += 1
                    self._step_seconds = self.clock() - started
                    if pos.step % phase.log_every == 0 or pos.batch == len(batches):
                        self._log("train", phase.name, **values)
                    if self.on_step is not None:
                        self.on_step({"phase": phase.name, "epoch": pos.epoch, "epochs": phase.planned_epochs,
                                      "batch": pos.batch, "batches": len(batches), "step": pos.step, **values})
                    now = self.clock()
                    if now - self._last_checkpoint > 60 * self.checkpoint_minutes:
                        self.checkpoint()
                    elif now - self._last_status > HEARTBEAT:
                        self._status()
                if pos.batch < len(batches):  # the phase's step limit ended it mid-epoch
                    pos.validate_due = phase.validate is not None
                    continue
                pos.epoch += 1
                pos.batch = 0
                if phase.average and self.task.swa is not None:
                    self.task.swa.update_parameters(self.task.module)
                pos.validate_due = phase.validate is not None and (pos.epoch % phase.validate_every == 0
                                                                    or phase.done(pos.epoch, 0))
                self._status()
            # the phase is complete: a checkpoint from here on resumes with the next one, whose
            # validations (if any) start afresh, their length too (another phase's validation is
            # no measure of this one's reserve)
            pos.phase = i + 1
            if pos.phase < len(self.phases):
                pos.epoch, pos.batch, pos.best, pos.stale, pos.kept_at, pos.kept = 0, 0, None, 0, None, None
                pos.validated_at, pos.validation_seconds, pos.skipped = None, None, False
            self.checkpoint()
        return "finished"

    def _stop_early(self) -> str:
        w = self.task.watch
        self.pos.stopped = self.pos.stopped or f"early-stopped after {w.patience} evaluations without a better {w.metric}"
        self.pos.phase = len(self.phases)
        return self.pos.stopped

    def _last_validation(self, reason: str) -> str:
        """A budget-stopped phase that validates ends with a validated model (unless it just was).
        It counts for patience and a pruner only in place of a periodic one skipped for it."""
        pos = self.pos
        if reason.startswith(("max_steps", "max_minutes")) and pos.phase < len(self.phases):
            phase = self.phases[pos.phase]
            trained = pos.epoch > 0 or pos.batch > 0
            if phase.validate is not None and trained and pos.validated_at != pos.step:
                counts = pos.skipped  # (the validation clears it)
                if self._validate(phase, last=True) and counts:
                    return self._stop_early()
        return reason

    def _validate(self, phase: Phase, last: bool = False) -> bool:
        """Run the phase's validation, log it, keep the weights if they are the best; True when
        patience has run out. The ``last`` one (made because the budget stopped the run) may keep
        weights but spends patience only in place of a periodic one skipped for it; only a
        periodic one may be skipped.
        With several processes rank 0 validates and the others take its outcome and position."""
        if self.world.size == 1:
            return self._validate_here(phase, last)
        stop = self._validate_here(phase, last) if self.world.main else None
        stop, position = self.world.broadcast([stop, asdict(self.pos)])
        for name, value in position.items():  # in place: the loop holds this object
            setattr(self.pos, name, value)
        return bool(stop)

    def _validate_here(self, phase: Phase, last: bool) -> bool:
        pos = self.pos
        counts = not last or pos.skipped
        if self._time_left() <= 0:
            self._log("event", phase.name, message="evaluation skipped: the time budget is spent")
            pos.validate_due, pos.validated_at = False, pos.step
            return False
        if not last and self._last_follows_soon(phase):
            # validated_at stays: the budget's last validation scores the weights trained instead
            self._log("event", phase.name, message="evaluation skipped: the last one, at the end of the time "
                                                   "budget, follows within one evaluation's length of training")
            pos.validate_due, pos.skipped = False, True
            return False
        started = self.clock()
        self.task.module.eval()
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):  # validation never moves the training's random stream
                metrics = phase.validate(self._check)
        except OutOfTime:
            self._log("event", phase.name, message=f"evaluation stopped after {self.clock() - started:.0f} s: "
                                                   "the time budget is spent")
            pos.validate_due, pos.validated_at = False, pos.step
            return False
        pos.validation_seconds = self.clock() - started
        pos.validate_due, pos.validated_at, pos.skipped = False, pos.step, False
        if metrics is None:
            return False
        watch = self.task.watch
        improved = keep = True  # without the watched metric, the latest weights are kept
        value = None
        if watch is not None and metrics.get(watch.metric) is not None:
            value = float(metrics[watch.metric])
            if not math.isfinite(value):
                raise Diverged(f"{watch.metric} became {value} after epoch {pos.epoch}")
            improved = pos.best is None or value < pos.best - watch.min_delta
            keep = improved or (watch.tolerance > 0 and value <= pos.best + watch.tolerance)  # 0: strictly the best
            if improved:
                pos.best, pos.stale = value, 0
            elif counts:
                pos.stale += 1
        extra = {"kept": keep} if keep != improved else {}
        self._log("eval", phase.name, **metrics, best=improved, **extra, minutes=round(self.elapsed() / 60, 2))
        if keep:
            pos.kept = value  # before the export, whose metadata may carry it
            self._export()
            pos.kept_at = pos.step
        if watch is not None and pos.best is not None:
            self._status(**{f"best_{watch.metric}": pos.best})
        stop = self.on_eval(metrics, pos.step) if self.on_eval is not None else None
        if stop:  # e.g. a study's pruner: the run ends complete, its best weights kept
            pos.stopped = stop
            return True
        return bool(watch is not None and watch.patience and pos.stale >= watch.patience)

    # --- run files (rank 0's side effects) --------------------------------------------------------

    def _log(self, kind: str, phase: str, **values: Any) -> None:
        self.run.log(kind, phase, self.pos.step, self.pos.epoch, **values)

    def _status(self, **fields: Any) -> None:
        pos = self.pos
        phase = self.phases[min(pos.phase, len(self.phases) - 1)] if self.phases else None
        self.run.set_status(state="running", phase=phase.name if phase else None, epoch=pos.epoch,
                            epochs=phase.planned_epochs if phase else None, step=pos.step, **fields)
        self._last_status = self.clock()

    def _model_file(self) -> str:
        phase = self.phases[min(self.pos.phase, len(self.phases) - 1)] if self.phases else None
        return phase.model_file if phase is not None and phase.model_file else self.task.model_file

    def _export(self) -> None:
        if not self.run.writes:
            return
        tensors, metadata = self.task.export(self.pos)
        self.run.save_model(tensors, metadata, self._model_file())

    def _check_export(self) -> None:
        """A run never ends with inference weights that do not read back: written again from the
        current state when they do not (the kept best is then lost, and the log says so)."""
        path = model_path(self.run.path, self._model_file())
        if not self.run.writes or model_readable(path):
            return
        self.run.note(f"{path.name} did not read back; written again from the weights at step {self.pos.step}")
        self.pos.kept_at, self.pos.best, self.pos.kept = None, None, None
        self._export()
        if not model_readable(path):
            raise UserError(path, "was written but does not read back", "check the disk, then resume the run")

    def checkpoint(self) -> None:
        task, pos = self.task, self.pos
        if not self.run.writes:  # another rank of a torchrun job: rank 0 writes the checkpoint
            self._saved, self._last_checkpoint = _snapshot(pos), self.clock()
            return
        tensors = {f"model.{k}": v for k, v in task.module.state_dict().items()}
        if task.ema is not None:
            tensors.update({f"ema.{k}": v for k, v in task.ema.shadow.items()})
        if task.swa is not None:
            tensors.update({f"swa.{k}": v for k, v in task.swa.state_dict().items()})
        opt_tensors, groups = _optimizer_tensors(task.optimizer)
        tensors.update(opt_tensors)
        tensors["rng.torch"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        for name, gen in task.generators().items():
            tensors[f"rng.{name}"] = gen.get_state()
        state = {"position": asdict(replace(pos, elapsed=self.elapsed())), "phases": [p.name for p in self.phases],
                 "optimizer": groups,
                 "scheduler": task.scheduler.state_dict() if task.scheduler is not None else None,
                 "ema_updates": task.ema.updates if task.ema is not None else None,
                 "signature": task.signature(), "watch_key": task.watch.key if task.watch else None}
        self.run.save_checkpoint(pos.step, tensors, state)
        self._saved = _snapshot(pos)
        self._last_checkpoint = self.clock()
        self._status()

    def restore(self) -> None:
        """Continue from the run's latest checkpoint: weights, optimizer, scheduler, EMA, RNGs and
        position, exactly as they were. A run stopped before its first checkpoint starts again
        from step 0 (its weights are initialised from the same seed, so nothing differs)."""
        task = self.task
        self.world.barrier()  # rank 0 has cleared what an earlier process left half-written
        if not self.run.has_checkpoint():
            self.run.note("it stopped before its first checkpoint: training starts again from step 0")
            return
        tensors, state = self.run.load_checkpoint()
        if "position" not in state:
            raise UserError(self.run.path, "has a checkpoint from an older tsdiff, which this version cannot resume",
                            "start a new run with the same settings")
        if not task.same_architecture(state["signature"]):
            raise UserError(self.run.path, "was trained with another architecture than these settings",
                            "resume with its own config.toml")
        phases = [p.name for p in self.phases]
        if state.get("phases", phases) != phases:
            raise UserError(self.run.path, f"trains the phases {', '.join(state['phases'])}; this command trains "
                            f"{', '.join(phases)}", "resume it with the command that started it")
        task.module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        if task.ema is not None:
            for k in task.ema.shadow:
                task.ema.shadow[k].copy_(tensors[f"ema.{k}"])
            task.ema.updates = state["ema_updates"]
        if task.swa is not None:
            task.swa.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("swa.")})
        _load_optimizer(task.optimizer, tensors, state["optimizer"])
        if task.scheduler is not None:
            task.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        for name, gen in task.generators().items():
            gen.set_state(tensors[f"rng.{name}"])
        self.pos = Position(**state["position"])
        self._saved = _snapshot(self.pos)
        if self.pos.kept_at is not None and not model_readable(model_path(self.run.path, self._model_file())):
            # the weights a validation kept are gone: the next validation (or the end) writes new ones
            self.run.note(f"{task.model_file} is missing or unreadable; the best kept so far is forgotten and it "
                          "will be written again from the resumed training")
            self.pos.kept_at, self.pos.best, self.pos.kept = None, None, None
        watch = task.watch
        if watch is not None and self.pos.best is not None and state.get("watch_key") != _jsonable(watch.key):
            # the best so far was measured another way: not comparable, the next validation decides
            self.pos.best = None
            self._log("event", self.phases[min(self.pos.phase, len(self.phases) - 1)].name,
                      message=f"{watch.metric} is now measured on other data; the best score so far is reset")


def _snapshot(pos: Position) -> dict:
    """The position without the clock, to tell whether a checkpoint is still up to date."""
    return asdict(replace(pos, elapsed=0.0))


def _jsonable(value: Any) -> Any:
    """``value`` as it comes back from the checkpoint's JSON (tuples become lists)."""
    return json.loads(json.dumps(value))
