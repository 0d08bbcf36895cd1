"""Training the embedding decoder: Gaussian noise on the standardised embeddings, MSE on the
observed values only, early stopping on the last windows (a contiguous block, so validation
windows are not near-copies of training windows' neighbours on both sides)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch

from tsdiff_cli.models.emb_decoder import EmbDecoder


def masked_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries where ``target`` is not NaN."""
    mask = ~torch.isnan(target)
    diff = torch.where(mask, prediction - torch.nan_to_num(target), torch.zeros_like(prediction))
    return diff.pow(2).sum() / mask.sum().clamp_min(1)


@dataclass
class FitResult:
    epochs: int
    best_epoch: int
    best_val: float
    stopped: str  # "early" | "epochs"


def fit_decoder(model: EmbDecoder, embeddings: torch.Tensor, targets: torch.Tensor, *, noise: float, epochs: int,
                patience: int, lr: float, batch_size: int, val_fraction: float, seed: int,
                on_epoch: Callable[[int, float, float], None] | None = None) -> FitResult:
    """Fit ``model`` on ``embeddings`` (W, N, E) → ``targets`` (W, L+P, N) (NaN where unobserved);
    the model ends with the weights of its best validation epoch."""
    w = embeddings.shape[0]
    n_val = max(1, int(round(w * val_fraction)))
    if w - n_val < 1:
        raise ValueError("too few windows to hold out a validation block")
    model.set_normalisation(embeddings[: w - n_val])
    z = model.normalise(embeddings)
    z_train, y_train, z_val, y_val = z[: w - n_val], targets[: w - n_val], z[w - n_val:], targets[w - n_val:]
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    best, best_epoch, best_state, stale = float("inf"), 0, copy.deepcopy(model.state_dict()), 0
    epoch = 0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(z_train.shape[0], generator=gen)
        total, count = 0.0, 0
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            x = z_train[idx]
            x = x + noise * torch.randn(x.shape, generator=gen)
            loss = masked_mse(model(x), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total, count = total + loss.item() * len(idx), count + len(idx)
        model.eval()
        with torch.inference_mode():
            val = float(masked_mse(model(z_val), y_val))
        if on_epoch is not None:
            on_epoch(epoch, total / max(count, 1), val)
        if val < best - 1e-6:
            best, best_epoch, stale = val, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
            if stale >= patience:
                model.load_state_dict(best_state)
                return FitResult(epoch, best_epoch, best, "early")
    model.load_state_dict(best_state)
    return FitResult(epoch, best_epoch, best, "epochs")


@torch.inference_mode()
def decode(model: EmbDecoder, embeddings: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """(W, N, E) raw embeddings → (W, L+P, N) values in z-space."""
    model.eval()
    return torch.cat([model(model.normalise(embeddings[i:i + batch_size]))
                      for i in range(0, embeddings.shape[0], batch_size)])
