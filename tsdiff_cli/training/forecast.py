"""The forecaster as a training task: AdamW, linear warm-up then cosine decay over the configured
epochs, λ · MSE + (1 − λ) · generative loss. After every epoch the same objective on the
validation windows (with fixed noise) is the validation; the trainer keeps the weights with the
lowest one and stops after ``patience`` epochs without a better one."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from tsdiff_cli.data.forecast import ForecastWindows
from tsdiff_cli.models.forecaster import Forecaster
from tsdiff_cli.settings import ForecastSettings
from tsdiff_cli.training.loop import Phase, Position, StepOutput, Task, Watch, adamw

VAL_BATCH = 512


class ForecastTask(Task):
    diverged_fix = "lower [forecast] lr and start again"

    def __init__(self, model: Forecaster, windows: dict[str, ForecastWindows], phase: torch.Tensor, p: ForecastSettings,
                 device: torch.device, metadata: dict[str, str]):
        self.module, self.windows, self.row_phase, self.p = model, windows, phase, p
        self.device, self.metadata = device, metadata
        self.optimizer = adamw(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        total = math.ceil(len(windows["train"]) / p.batch_size) * p.epochs

        def rate(step: int) -> float:  # linear warm-up, then cosine decay to 0 over all epochs
            warm = min(1.0, (step + 1) / p.warmup_steps) if p.warmup_steps else 1.0
            return warm * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, rate)
        self.watch = Watch("val_loss", patience=p.patience)

    def signature(self) -> str:
        return self.module.c.to_json()

    def phases(self) -> list[Phase]:
        return [Phase("forecast", self.p.epochs, len(self.windows["train"]), self.p.batch_size, self._step,
                      validate=self._validate, log_every=50)]

    def _losses(self, windows: ForecastWindows, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y, start = windows.batch(idx)
        d = self.device
        return self.module.losses(x.to(d), y.to(d), self.row_phase[start].to(d))

    def _step(self, idx: torch.Tensor) -> StepOutput:
        lam = self.p.mse_weight
        mse, gen = self._losses(self.windows["train"], idx)
        loss = lam * mse + (1 - lam) * gen
        return loss, {"loss": loss, "mse": mse, "gen_loss": gen, "lr": self.scheduler.get_last_lr()[0]}

    def _validate(self, check: Callable[[], None]) -> dict:
        """The training objective on every validation window, with noise fixed by the seed."""
        windows, lam = self.windows["val"], self.p.mse_weight
        mse = gen = 0.0
        torch.manual_seed(self.p.seed)  # the trainer restores the training's random state afterwards
        with torch.inference_mode():
            for i in range(0, len(windows), VAL_BATCH):
                idx = torch.arange(i, min(i + VAL_BATCH, len(windows)))
                a, b = self._losses(windows, idx)
                mse += a.item() * len(idx)
                gen += b.item() * len(idx)
                check()
        mse, gen = mse / len(windows), gen / len(windows)
        return {"profile": "validation", "val_loss": lam * mse + (1 - lam) * gen, "val_mse": mse, "val_gen_loss": gen}

    def export(self, pos: Position) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        return dict(self.module.state_dict()), self.metadata
