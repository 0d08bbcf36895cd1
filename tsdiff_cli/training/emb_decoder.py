"""The embedding decoder as a training task: Gaussian noise on the standardised embeddings, MSE on
the observed values only, early stopping on the last windows (a contiguous block, so validation
windows are not near-copies of training windows' neighbours on both sides)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from tsdiff_cli.models.emb_decoder import EmbDecoder
from tsdiff_cli.models.layers import masked_mse
from tsdiff_cli.training.loop import Phase, Position, StepOutput, Task, Watch, adamw


class EmbDecoderTask(Task):
    """Fit ``model`` on ``embeddings`` (W, N, E) → ``targets`` (W, L+P, N) (NaN where unobserved);
    the last ``n_val`` windows are the validation block."""

    diverged_fix = "lower [impute] lr and start again"

    def __init__(self, model: EmbDecoder, embeddings: torch.Tensor, targets: torch.Tensor, n_val: int, *, noise: float,
                 epochs: int, patience: int, lr: float, batch_size: int, seed: int, metadata: dict[str, str]):
        w = embeddings.shape[0]
        if not 1 <= n_val < w:
            raise ValueError("too few windows to hold out a validation block")
        model.set_normalisation(embeddings[: w - n_val])
        z = model.normalise(embeddings)
        self.z_train, self.y_train, self.z_val, self.y_val = z[: w - n_val], targets[: w - n_val], z[w - n_val:], targets[w - n_val:]
        self.module, self.noise_std, self.epochs, self.batch_size = model, noise, epochs, batch_size
        self.metadata = metadata
        self.noise = torch.Generator().manual_seed(seed)
        self.optimizer = adamw(model.parameters(), lr=lr, weight_decay=1e-4)
        self.watch = Watch("val_loss", patience=patience, min_delta=1e-6)

    def generators(self) -> dict[str, torch.Generator]:
        return {"noise": self.noise}

    def signature(self) -> str:
        return self.module.cfg.to_json()

    def phases(self) -> list[Phase]:
        return [Phase("impute", self.epochs, len(self.z_train), self.batch_size, self._step, validate=self._validate)]

    def _step(self, idx: torch.Tensor) -> StepOutput:
        x = self.z_train[idx]
        x = x + self.noise_std * self.shard.randn(len(idx), self.noise, tail=tuple(x.shape[1:]))
        loss = masked_mse(self.module(x), self.y_train[idx])
        return loss, {"loss": loss}

    def _validate(self, check: Callable[[], None]) -> dict:
        with torch.inference_mode():
            return {"val_loss": float(masked_mse(self.module(self.z_val), self.y_val))}

    def export(self, pos: Position) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        return dict(self.module.state_dict()), self.metadata


@torch.inference_mode()
def decode(model: EmbDecoder, embeddings: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """(W, N, E) raw embeddings → (W, L+P, N) values in z-space."""
    model.eval()
    return torch.cat([model(model.normalise(embeddings[i:i + batch_size]))
                      for i in range(0, embeddings.shape[0], batch_size)])
