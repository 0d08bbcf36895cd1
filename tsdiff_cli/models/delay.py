"""Delay embedding: a window (T steps) ↔ a square image, as in ImagenTime (Naiman et al. 2024).

Column j of the image holds steps ``[j·delay, j·delay + embedding)`` as its rows; columns start
every ``delay`` steps while a full column fits, then one last, partial column keeps the remaining
steps; the image is zero-padded to a square (and further to ``multiple`` for the U-Net). The
inverse *averages every pixel* that maps to a time step. Both directions use index maps built
once (a gather and a scatter-add), with no Python loop per call.
"""

from __future__ import annotations

import torch

from tsdiff_cli.errors import UserError


def delay_layout(seq_len: int, delay: int, embedding: int, multiple: int = 1) -> tuple[torch.Tensor, int]:
    """The time index of every pixel (−1 for padding) as a flat (S·S,) tensor, and the side S.

    Raises :class:`UserError` when the values cannot form an image that covers every step.
    """
    where = f"delay embedding (seq_len {seq_len}, delay {delay}, embedding {embedding})"
    if delay < 1 or embedding < 1 or embedding > seq_len:
        raise UserError(where, "needs 1 ≤ delay and 1 ≤ embedding ≤ seq_len",
                        f"e.g. [model] delay = 3, embedding = 8 for seq_len 24 (embedding ≤ {seq_len})")
    if delay > embedding:
        raise UserError(where, "delay > embedding leaves time steps in no pixel",
                        f"use delay ≤ embedding ({embedding})")
    starts = list(range(0, seq_len - embedding + 1, delay))
    if starts[-1] + embedding < seq_len:
        starts.append(starts[-1] + delay)  # the last, partial column
    side = max(embedding, len(starts))
    side = -(-side // multiple) * multiple
    index = torch.full((side, side), -1, dtype=torch.long)
    for col, start in enumerate(starts):
        rows = torch.arange(embedding)
        steps = start + rows
        keep = steps < seq_len
        index[rows[keep], col] = steps[keep]
    return index.flatten(), side


class DelayEmbedding:
    """Series (B, T, F) ↔ images (B, F, S, S); device-agnostic (the maps follow the input)."""

    def __init__(self, seq_len: int, delay: int, embedding: int, multiple: int = 1):
        self.seq_len, self.delay, self.embedding = seq_len, delay, embedding
        index, self.side = delay_layout(seq_len, delay, embedding, multiple)
        self._valid = index >= 0
        self._gather = index.clamp_min(0)  # padding pixels read step 0, then are zeroed
        self._count = torch.bincount(index[self._valid], minlength=seq_len).float()

    def _maps(self, device):
        if self._gather.device != device:
            self._gather, self._valid, self._count = (t.to(device) for t in (self._gather, self._valid, self._count))
        return self._gather, self._valid, self._count

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        gather, valid, _ = self._maps(x.device)
        b, _, f = x.shape
        pixels = x.transpose(1, 2)[:, :, gather] * valid.to(x.dtype)  # (B, F, S·S)
        return pixels.view(b, f, self.side, self.side)

    def to_series(self, image: torch.Tensor) -> torch.Tensor:
        gather, valid, count = self._maps(image.device)
        b, f = image.shape[:2]
        flat = image.reshape(b, f, -1)[:, :, valid]
        sums = flat.new_zeros(b, f, self.seq_len).index_add_(2, gather[valid], flat)
        return (sums / count.to(image.dtype)).transpose(1, 2)

    def project(self, image: torch.Tensor) -> torch.Tensor:
        """The orthogonal projection onto delay-consistent images: every pixel of a time step
        takes their mean, padding pixels become 0 (``to_image(to_series(image))``)."""
        return self.to_image(self.to_series(image))
