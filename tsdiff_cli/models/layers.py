"""Small layers shared by the models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def masked_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries where ``target`` is not NaN (the observed values)."""
    mask = ~torch.isnan(target)
    diff = torch.where(mask, prediction - torch.nan_to_num(target), torch.zeros_like(prediction))
    return diff.pow(2).sum() / mask.sum().clamp_min(1)


class Dropout(nn.Module):
    """Inverted dropout (Srivastava et al. 2014): zero each value with probability ``p``, scale the
    rest by 1 / (1 − p). On CPU the mask is drawn with ``torch.rand``, about twice as fast as
    torch's Bernoulli sampling (a (128, 256, 8, 8) tensor: 10 ms against 20 ms on 2 cores), which
    made dropout 16 % of a paper-preset training step; on a GPU torch's fused kernel is used.
    Draws come from torch's global generator, so checkpointed RNG state still resumes exactly."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if x.device.type != "cpu":
            return F.dropout(x, self.p, True)
        return x * ((torch.rand_like(x) >= self.p).to(x.dtype) * (1 / (1 - self.p)))

    def extra_repr(self) -> str:
        return f"p={self.p}"
