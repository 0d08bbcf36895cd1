"""The one training loop: exact resume for every job that trains, the budget checked every step
with validations counted against it, and a run's status always ending finished, failed or
interrupted (an unexpected exception, Ctrl-C, SIGTERM)."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, write_toml
from test_forecast import TINY_FORECAST, _hourly
from test_impute import SMALL, _small_frame
from timekd_fixture import with_gaps, write_layout
from tsdiff_cli.runs import Run, read_status
from tsdiff_cli.training.loop import Budget, Phase, Position, Task, Trainer, Watch


def _last_checkpoint(run):
    name = json.loads((run / "checkpoints" / "latest.json").read_text())["name"]
    return load_file(str(run / "checkpoints" / f"{name}.safetensors"))


def _assert_same_training_state(a, b):
    ta, tb = _last_checkpoint(a), _last_checkpoint(b)
    assert ta.keys() == tb.keys()
    for key in ta:  # weights, optimizer moments, EMA and the random streams, bit for bit
        assert torch.equal(ta[key], tb[key]), key


def _newest(workdir, command):
    return sorted((workdir / "runs").glob(f"*-{command}-*"))[-1]


def test_forecast_trained_straight_equals_half_then_resumed(cli, workdir):
    _hourly().to_csv(workdir / "load.csv", index=False)
    cfg = write_toml(workdir / "tiny.toml", TINY_FORECAST.format(data="load.csv"))  # 8 steps per epoch
    assert cli("forecast", cfg, "-q", env={"TSDIFF_FORECAST__MAX_STEPS": "12"}).exit_code == 0
    straight = _newest(workdir, "forecast")
    assert cli("forecast", cfg, "-q", env={"TSDIFF_FORECAST__MAX_STEPS": "6"}).exit_code == 0
    half = _newest(workdir, "forecast")
    assert read_status(half)["step"] == 6 and read_status(half)["state"] == "finished"
    r = cli("forecast", "--resume", half, "-q", env={"TSDIFF_FORECAST__MAX_STEPS": "12"})
    assert r.exit_code == 0, r.output
    assert read_status(half)["step"] == 12
    _assert_same_training_state(straight, half)
    assert (half / "report.json").is_file()


def test_embedding_decoder_trained_straight_equals_half_then_resumed(cli, workdir):
    frame = _small_frame()
    write_layout(workdir / "emb", frame, "mydata", **SMALL)
    with_gaps(frame, 0.2).to_csv(workdir / "data.csv", index=False)
    args = ("impute", "--emb-dir", "emb", "--input", "data.csv", "-o", "filled.csv", "--seq-len", "16", "-q")
    assert cli(*args, env={"TSDIFF_IMPUTE__MAX_STEPS": "5"}).exit_code == 0
    straight = _newest(workdir, "impute")
    assert cli(*args, env={"TSDIFF_IMPUTE__MAX_STEPS": "2"}).exit_code == 0
    half = _newest(workdir, "impute")
    assert read_status(half)["step"] == 2
    r = cli("impute", "--resume", half, "-q", env={"TSDIFF_IMPUTE__MAX_STEPS": "5"})
    assert r.exit_code == 0, r.output
    _assert_same_training_state(straight, half)


def test_an_unexpected_exception_leaves_status_failed_with_its_text(cli, workdir, monkeypatch):
    original = Trainer.train_step

    def broken(self, phase, idx):
        if self.pos.step == 2:
            raise RuntimeError("injected fault in step 2")
        return original(self, phase, idx)

    monkeypatch.setattr(Trainer, "train_step", broken)
    with pytest.raises(RuntimeError, match="injected fault"):  # a bug keeps its traceback
        cli("train", write_toml(workdir / "tiny.toml", TINY), "-q")
    status = read_status((workdir / "runs" / "latest").resolve())
    assert status["state"] == "failed" and status["error"] == "RuntimeError: injected fault in step 2"


def test_sigterm_mid_step_checkpoints_a_whole_step_that_resumes_exactly(cli, workdir, monkeypatch):
    from tsdiff_cli.training.generator import GeneratorTask

    tiny = write_toml(workdir / "tiny.toml", TINY)
    assert cli("train", tiny, "-q").exit_code == 0
    straight = (workdir / "runs" / "latest").resolve()
    original, calls = GeneratorTask._diffusion_step, []

    def terminated(self, idx):
        calls.append(1)
        if len(calls) == 2:  # inside the 5th step, as `kill PID` would
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, idx)

    monkeypatch.setattr(GeneratorTask, "_diffusion_step", terminated)
    before = signal.getsignal(signal.SIGTERM)
    result = cli("train", tiny, "-q")
    assert result.exit_code == 143 and "--resume" in result.stderr
    run = (workdir / "runs" / "latest").resolve()
    assert read_status(run)["state"] == "interrupted"
    assert json.loads((run / "checkpoints" / "latest.json").read_text())["step"] == 5  # the step in progress ended
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are the run's only while it is active
    monkeypatch.setattr(GeneratorTask, "_diffusion_step", original)
    calls.clear()
    assert cli("train", "--resume", run, "-q").exit_code == 0
    _assert_same_training_state(straight, run)


# --- the budget, on a task whose clock is ours -----------------------------------------------------

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Counting(Task):
    """One parameter; every step costs ``step_s`` of the fake clock, every validation ``val_s``."""

    def __init__(self, clock: Clock, step_s: float, val_s: float, epochs: int = 100, size: int = 4,
                 growth: float = 1.0):
        self.growth = growth  # each validation this many times as long as the one before
        self.module = torch.nn.Linear(1, 1)
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=0.1)
        self.watch = Watch("val")
        self.clock, self.step_s, self.val_s, self.epochs, self.size = clock, step_s, val_s, epochs, size
        self.validations: list[float] = []  # clock time each one ended

    def phases(self):
        return [Phase("fit", self.epochs, self.size, 2, self._step, validate=self._validate, validate_every=5)]

    def _step(self, idx):
        self.clock.now += self.step_s
        loss = self.module(torch.ones(len(idx), 1)).pow(2).mean()
        return loss, {"loss": loss}

    def _validate(self, check):
        for _ in range(8):  # a check every eighth of the validation
            self.clock.now += self.val_s * self.growth ** len(self.validations) / 8
            check()
        self.validations.append(self.clock.now)
        return {"val": 1.0 / len(self.validations)}

    def signature(self):
        return "counting"

    def export(self, pos: Position):
        return dict(self.module.state_dict()), {"format": "tsdiff-test"}


def _train(tmp_path, task, minutes=0.0):
    """Fit ``task`` on its own fake clock with a time budget of ``minutes`` (0: none)."""
    run = Run.create(tmp_path / "runs", "test", "t", "")
    with run.lifecycle("test"):
        run.begin("test")
        result = Trainer(task, run, seed=0, grad_clip=1.0, budget=Budget(max_minutes=minutes), clock=task.clock).fit()
    return result, run


def _fit(tmp_path, step_s, val_s, minutes, epochs=100, growth=1.0):
    clock = Clock()
    task = Counting(clock, step_s, val_s, epochs, growth=growth)
    start = clock.now
    result, run = _train(tmp_path, task, minutes)
    return result, task, clock.now - start, run


def test_max_minutes_is_never_overshot_by_more_than_a_step(tmp_path):
    # 2 steps of 1 s an epoch, a validation every 5 epochs taking 6 s, 1 minute of budget:
    # validations end at 16 and 32 s; a step and one and a half validations (10 s) are kept free
    # for the last one, so training stops at 50 s and the last validation ends at 56 s, instead of
    # one starting at 58 s and ending at 64 s. The one due at 42 s would have left 2 s of
    # training before that last one: it is skipped and its 6 s trained instead (step 38, not 32)
    result, task, wall, run = _fit(tmp_path, step_s=1.0, val_s=6.0, minutes=1.0)
    assert result.reason == "max_minutes 1" and result.steps == 38
    assert wall <= 60 + 1.0
    assert task.validations == [1016, 1032, 1056]
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in rows if e["kind"] == "eval"] == [10, 20, 38]  # the kept model is the last weights'
    assert [e["step"] for e in rows if "evaluation skipped" in e.get("message", "")] == [30]


def test_the_last_validation_counts_for_patience_in_place_of_the_one_skipped_for_it(tmp_path):
    # the schedule of test_max_minutes_is_never_overshot_by_more_than_a_step, with a metric that
    # never improves and a patience of 2: the validations at steps 10 and 20 (best, then one
    # stale), the one due at 30 skipped, the last at 38 the second stale one: early-stopped, as a
    # run that had made the one at 30 would have been
    class Flat(Counting):
        def _validate(self, check):
            super()._validate(check)
            return {"val": 1.0}

    task = Flat(Clock(), step_s=1.0, val_s=6.0)
    task.watch = Watch("val", patience=2)
    result, _ = _train(tmp_path, task, minutes=1.0)
    assert result.steps == 38 and task.validations == [1016, 1032, 1056]
    assert result.reason.startswith("early-stopped after 2 evaluations")


def test_validations_are_not_skipped_without_a_time_budget_or_at_the_phase_end(tmp_path):
    # 40 steps by epochs (20 of 2), a validation every 5 epochs: all four run, the last at the
    # phase's end, though the clock says nothing of a deadline
    task = Counting(Clock(), step_s=1.0, val_s=6.0, epochs=20)
    result, _ = _train(tmp_path, task)
    assert result.steps == 40 and len(task.validations) == 4
    # with 68 s for a run of 64 (40 steps, 4 validations), the last step starts at 57 s, 11 s
    # before the deadline, and the phase's last validation, due at 58 s with 10 s left, runs:
    # nothing follows it
    result, task, wall, run = _fit(tmp_path / "timed", step_s=1.0, val_s=6.0, minutes=68 / 60, epochs=20)
    assert result.reason == "finished" and result.steps == 40 and len(task.validations) == 4


def test_a_phase_times_its_own_validations_not_the_phase_before_it(tmp_path):
    # a first phase of 2 steps whose one validation takes 30 s, then the schedule of
    # test_max_minutes_is_never_overshot_by_more_than_a_step (validations of 6 s every 10 steps)
    # in the 58 s left of 90: validations at 48 and 64 s, the one due at 74 s skipped, training
    # until 10 s are left and the last at 80-86 s. Timed by the first phase's 30 s, the second
    # would have skipped its first and stopped at 44 s, keeping 46 s for a 6 s validation
    class SlowFirstPhase(Counting):
        def phases(self):
            return [Phase("first", 1, self.size, 2, self._step, validate=lambda check: self._taking(30.0, check)),
                    Phase("second", 100, self.size, 2, self._step, validate=lambda check: self._taking(6.0, check),
                          validate_every=5)]

        def _taking(self, seconds, check):
            self.val_s = seconds
            return self._validate(check)

    task = SlowFirstPhase(Clock(), step_s=1.0, val_s=0.0)
    result, _ = _train(tmp_path, task, minutes=1.5)
    assert task.validations == [1032, 1048, 1064, 1086]
    assert result.reason == "max_minutes 1.5" and result.steps == 2 + 36


def test_the_last_validation_ends_in_time_when_validations_grow_longer(tmp_path, monkeypatch):
    # each validation 20 % longer than the one before (a loaded machine, a slower model): the
    # last one still scores the most-trained weights, within the budget; kept free for exactly
    # one validation's length, as before, it would be abandoned at the deadline
    result, task, wall, run = _fit(tmp_path, step_s=1.0, val_s=6.0, minutes=1.5, growth=1.2)
    evals = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals if e["kind"] == "eval"][-1] == result.steps
    assert "evaluation stopped" not in (run.path / "metrics.jsonl").read_text() and wall <= 90 + 1.0
    monkeypatch.setattr("tsdiff_cli.training.loop.VALIDATION_MARGIN", 1.0)
    result, task, wall, run = _fit(tmp_path / "tight", step_s=1.0, val_s=6.0, minutes=1.5, growth=1.2)
    assert "evaluation stopped" in (run.path / "metrics.jsonl").read_text()


def test_a_validation_running_past_the_deadline_is_abandoned(tmp_path):
    # the first validation (its length unknown beforehand) would end at 10 + 30 s > 20 s
    result, task, wall, run = _fit(tmp_path, step_s=1.0, val_s=30.0, minutes=20 / 60)
    assert task.validations == [] and wall <= 20 + 30 / 8  # stopped at its first check past the deadline
    text = (run.path / "metrics.jsonl").read_text()
    assert "evaluation stopped" in text and read_status(run.path)["state"] == "finished"
    assert (run.path / "model.safetensors").is_file()  # nothing was chosen: the latest weights are written


def test_validations_do_not_change_the_training_random_stream(tmp_path):
    class Noisy(Counting):
        def _step(self, idx):
            loss = (self.module(torch.randn(len(idx), 1)) ** 2).mean()
            return loss, {"loss": loss}

        def _validate(self, check):
            torch.randn(1000)  # a validation that draws from the global stream
            return {"val": 0.0}

    weights = []
    for every in (1, 3):
        torch.manual_seed(0)
        task = Noisy(Clock(), 0, 0, epochs=6)
        task.phases = lambda t=task, e=every: [Phase("fit", 6, 4, 2, t._step, validate=t._validate, validate_every=e)]
        run = Run.create(tmp_path / f"r{every}", "test", "t", "")
        with run.lifecycle("test"):
            run.begin("test")
            Trainer(task, run, seed=0, grad_clip=1.0).fit()
        weights.append(task.module.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_early_stopping_keeps_the_best_weights(tmp_path):
    class Worsening(Counting):
        def _validate(self, check):
            self.validations.append(self.module.weight.detach().clone())
            return {"val": [3.0, 1.0, 2.0, 2.5, 4.0, 0.5][len(self.validations) - 1]}

    task = Worsening(Clock(), 0, 0)
    task.watch = Watch("val", patience=2)
    task.phases = lambda: [Phase("fit", 100, 4, 2, task._step, validate=task._validate)]
    run = Run.create(tmp_path / "runs", "test", "t", "")
    with run.lifecycle("test"):
        run.begin("test")
        result = Trainer(task, run, seed=0, grad_clip=1.0).fit()
    assert result.reason == "early-stopped after 2 evaluations without a better val" and result.best == 1.0
    evals = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in evals if e["kind"] == "eval"]
    assert [e["best"] for e in evals] == [True, True, False, False]
    kept = load_file(str(run.path / "model.safetensors"))
    assert evals[1]["step"] == 4 and torch.equal(kept["weight"], task.validations[1])
    assert not torch.equal(task.module.weight.detach(), task.validations[1])  # training went on past it


def test_a_tolerance_keeps_later_weights_that_tie_with_the_best_within_it(tmp_path):
    # scores 3.0, 1.0, 1.2, 1.5, 0.9, 1.0 with a tolerance of 0.3: 1.2 ties with the best (1.0) and
    # its later weights are kept, 1.5 does not; the best stays the lowest score seen, so ties cannot
    # drift upwards (1.2 is not the bar for the next one), and 1.0 ties with the new best 0.9
    class Noisy(Counting):
        def _validate(self, check):
            self.validations.append(self.module.weight.detach().clone())
            return {"val": [3.0, 1.0, 1.2, 1.5, 0.9, 1.0][len(self.validations) - 1]}

    def fit(tolerance, where):
        task = Noisy(Clock(), 0, 0)
        task.watch = Watch("val", tolerance=tolerance)
        task.phases = lambda: [Phase("fit", 12, 4, 2, task._step, validate=task._validate, validate_every=2)]
        run = Run.create(where, "test", "t", "")
        with run.lifecycle("test"):
            run.begin("test")
            result = Trainer(task, run, seed=0, grad_clip=1.0).fit()
        evals = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
        return task, result, [e for e in evals if e["kind"] == "eval"], load_file(str(run.path / "model.safetensors"))

    task, result, evals, kept = fit(0.3, tmp_path / "tie")
    assert result.best == 0.9 and result.kept == 1.0 and [e["best"] for e in evals] == [True, True, False, False, True, False]
    assert [e.get("kept", e["best"]) for e in evals] == [True, True, True, False, True, True]
    assert torch.equal(kept["weight"], task.validations[5])  # the last, within 0.3 of 0.9
    task, result, evals, kept = fit(0.0, tmp_path / "strict")  # without one: the best score's weights
    assert result.kept == 0.9 and "kept" not in evals[5] and torch.equal(kept["weight"], task.validations[4])
    assert not torch.equal(task.validations[4], task.validations[5])


def test_a_phase_step_limit_ends_it_mid_epoch_and_the_next_phase_begins(tmp_path):
    # phase "warm" has 10 epochs of 3 batches but ends after 4 of its steps; "main" then runs 2 epochs
    class TwoPhases(Counting):
        def __init__(self):
            super().__init__(Clock(), 0, 0)
            self.seen: list[str] = []

        def phases(self):
            return [Phase("warm", 10, 6, 2, lambda idx: self._named("warm", idx), max_steps=4),
                    Phase("main", 2, 6, 2, lambda idx: self._named("main", idx))]

        def _named(self, name, idx):
            self.seen.append(name)
            return self._step(idx)

    task = TwoPhases()
    run = Run.create(tmp_path / "runs", "test", "t", "")
    with run.lifecycle("test"):
        run.begin("test")
        result = Trainer(task, run, seed=0, grad_clip=1.0).fit()
    assert task.seen == ["warm"] * 4 + ["main"] * 6 and result.steps == 10 and result.reason == "finished"
    assert task.phases()[0].planned_epochs == 2  # what the progress bar shows: 2 epochs, the second cut short


def test_an_evaluation_hook_stops_training_with_its_reason_and_keeps_the_best(tmp_path):
    """What a study's pruner uses: after each validation the hook sees its metrics and may stop."""
    seen = []

    def hook(metrics, step):
        seen.append((metrics["val"], step))
        return "pruned by test" if len(seen) == 3 else None

    task = Counting(Clock(), 0, 0)
    task.phases = lambda: [Phase("fit", 100, 4, 2, task._step, validate=task._validate)]
    run = Run.create(tmp_path / "runs", "test", "t", "")
    with run.lifecycle("test"):
        run.begin("test")
        result = Trainer(task, run, seed=0, grad_clip=1.0, on_eval=hook).fit()
    assert result.reason == "pruned by test" and result.steps == 6
    assert seen == [(1.0, 2), (0.5, 4), (1 / 3, 6)]
    assert read_status(run.path)["state"] == "finished" and (run.path / "model.safetensors").is_file()


def _rates(task):
    """The learning rate each optimizer step used."""
    used, step = [], task.optimizer.step

    def recording(*args, **kwargs):
        used.append(task.optimizer.param_groups[0]["lr"])
        return step(*args, **kwargs)

    task.optimizer.step = recording
    return used


@pytest.mark.parametrize("epochs, budget", [(100, {"max_steps": 20}), (10, {})])
def test_cooldown_takes_the_rate_linearly_to_zero_over_the_last_part_of_the_steps(tmp_path, epochs, budget):
    # 20 steps, by the step budget or by the phase's 10 epochs of 2: the last quarter (5 steps) cools
    clock = Clock()
    task = Counting(clock, step_s=1.0, val_s=1.0, epochs=epochs)
    used = _rates(task)
    run = Run.create(tmp_path / "runs", "test", "t", "")
    with run.lifecycle("test"):
        run.begin("test")
        Trainer(task, run, seed=0, grad_clip=1.0, budget=Budget(**budget, cooldown=0.25), clock=clock).fit()
    assert used == pytest.approx([0.1] * 16 + [0.08, 0.06, 0.04, 0.02])
    assert task.optimizer.param_groups[0]["lr"] == 0.1  # the task's own rate (or scheduler's) is left as it was
    logged = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr_scale"] for r in logged if "lr_scale" in r][-1] == pytest.approx(0.2)


def test_cooldown_on_a_time_budget_ends_where_training_ends_before_the_last_validation(tmp_path):
    # as test_max_minutes_is_never_overshot_by_more_than_a_step: training stops at 50 s of the 60,
    # 10 s being kept for the last validation; a cooldown of half the budget (30 s) starts at 20 s
    clock = Clock()
    task = Counting(clock, step_s=1.0, val_s=6.0)
    used = _rates(task)
    run = Run.create(tmp_path / "runs", "test", "t", "")
    with run.lifecycle("test"):
        run.begin("test")
        result = Trainer(task, run, seed=0, grad_clip=1.0, budget=Budget(max_minutes=1.0, cooldown=0.5),
                         clock=clock).fit()
    assert result.steps == 38 and len(used) == 38  # the schedule does not move the stop
    # steps start at 0, 1, …, 9 s, a validation, 16, 17, …: the 15th starts at 20 s, the last at 49 s
    assert used[:15] == [0.1] * 15
    assert all(a > b for a, b in zip(used[14:], used[15:]))
    assert used[-1] == pytest.approx(0.1 / 30)


def test_a_checkpoint_from_the_unfused_optimizer_resumes_into_the_fused_one_with_the_same_moments():
    """Runs written before AdamW became fused (or on a device without the fused kernel) resume:
    the next step is the one the unfused optimizer would have taken, and the optimizer keeps its
    own implementation."""
    import copy

    from tsdiff_cli.training.loop import _load_optimizer, _optimizer_tensors, adamw

    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    old = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(3):  # moments unlike any one step's gradient
        old.zero_grad()
        net(torch.randn(8, 4)).square().mean().backward()
        old.step()
    tensors, groups = _optimizer_tensors(old)
    assert len(groups) == 1 and groups[0]["fused"] is None
    x = torch.randn(8, 4)

    def next_weights(make, resume: bool):
        twin = copy.deepcopy(net)
        opt = make(twin.parameters())
        if resume:
            _load_optimizer(opt, {k: v.clone() for k, v in tensors.items()}, copy.deepcopy(groups))
        twin.zero_grad(set_to_none=True)
        twin(x).square().mean().backward()
        opt.step()
        return opt, [p.detach() for p in twin.parameters()]

    _, unfused = next_weights(lambda p: torch.optim.AdamW(p, lr=1e-2), True)
    opt, fused = next_weights(lambda p: adamw(p, lr=1e-2), True)
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["fused"] is True
    for a, b in zip(unfused, fused):
        torch.testing.assert_close(a, b)
    _, fresh = next_weights(lambda p: adamw(p, lr=1e-2), False)  # without the moments: another step
    assert not all(torch.allclose(a, b) for a, b in zip(unfused, fresh))
