"""Shared helpers of the metric functions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

Progress = Callable[[int, int], None] | None  # callback(done, total)

#: Rows per forward pass when scoring held-out data, to bound memory on large datasets.
EVAL_CHUNK = 2048


def as_tensor(x: np.ndarray | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x,
                           dtype=torch.float32, device=device)


def hidden_size(features: int) -> int:
    """TimeGAN's post-hoc networks use ``int(dim / 2)`` hidden units; at least one."""
    return max(1, features // 2)


def member_permutations(members: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """An independent random permutation of ``range(size)`` per member, (R, size)."""
    return torch.rand(members, size, generator=generator).argsort(dim=1)
