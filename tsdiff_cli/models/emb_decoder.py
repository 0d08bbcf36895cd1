"""A denoising decoder from per-window embeddings to the window's values.

TimeKD embeds each variable of a window separately, so the default ("shared") decodes every
variable's E-dim vector into its own series of L + P values with one network shared by all
variables. The alternative ("flat", the seed design) reads the whole (N_vars · E) vector with
one MLP and writes all variables at once. Embeddings are standardised per dimension with
statistics of the training windows (kept as buffers), so the training noise σ is in units of
each dimension's spread.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class EmbDecoderConfig:
    """Architecture only; values come from ``[impute]`` (tsdiff_cli/jobs/architectures.py)."""

    variables: int
    width: int  # E
    length: int  # L + P
    kind: str  # "shared" | "flat"
    hidden: int
    layers: int  # hidden layers
    dropout: float = 0.0  # not a setting

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> EmbDecoderConfig:
        return cls(**json.loads(text))


def _mlp(inputs: int, hidden: int, layers: int, outputs: int, dropout: float) -> nn.Sequential:
    parts: list[nn.Module] = []
    size = inputs
    for _ in range(layers):
        parts += [nn.Linear(size, hidden), nn.GELU(), nn.Dropout(dropout)]
        size = hidden
    parts.append(nn.Linear(size, outputs))
    return nn.Sequential(*parts)


class EmbDecoder(nn.Module):
    """(B, N_vars, E) embeddings → (B, L + P, N_vars) values in z-space."""

    def __init__(self, cfg: EmbDecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("emb_mean", torch.zeros(cfg.variables, cfg.width))
        self.register_buffer("emb_std", torch.ones(cfg.variables, cfg.width))
        if cfg.kind == "shared":
            self.net = _mlp(cfg.width, cfg.hidden, cfg.layers, cfg.length, cfg.dropout)
        elif cfg.kind == "flat":
            self.net = _mlp(cfg.variables * cfg.width, cfg.hidden, cfg.layers, cfg.length * cfg.variables, cfg.dropout)
        else:
            raise ValueError(f"unknown decoder kind {cfg.kind!r}")

    def set_normalisation(self, embeddings: torch.Tensor) -> None:
        """Mean and std of training embeddings (W, N, E) per dimension, std 0 → 1: over windows and
        variables for "shared" (every variable must look alike to the one network), per variable
        for "flat"."""
        dims = (0, 1) if self.cfg.kind == "shared" else (0,)
        self.emb_mean.copy_(embeddings.mean(dims).expand_as(self.emb_mean))
        std = embeddings.std(dims).expand_as(self.emb_std)
        self.emb_std.copy_(torch.where(std > 0, std, torch.ones_like(std)))

    def normalise(self, embeddings: torch.Tensor) -> torch.Tensor:
        return (embeddings - self.emb_mean) / self.emb_std

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z``: normalised embeddings (B, N, E)."""
        b = z.shape[0]
        if self.cfg.kind == "shared":
            return self.net(z).transpose(1, 2)  # (B, N, L+P) → (B, L+P, N)
        return self.net(z.reshape(b, -1)).view(b, self.cfg.length, self.cfg.variables)
