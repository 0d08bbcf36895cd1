"""Time Series Transformer completion (Zerveas et al., KDD 2021, as the first step of ImagenI2R).

Encoder: a linear input projection, a fixed (sinusoidal) or learnable positional encoding, and
a transformer encoder whose attention ignores time steps where every feature is missing (a
key-padding mask), normalised with BatchNorm (the TST paper's choice for time series) or
LayerNorm. Decoder: a bidirectional GRU, a linear layer and a sigmoid, giving a value for every
step and feature. Inputs have their gaps filled by forward then backward propagation (zeros
where a feature is never seen); with ``mask_channel`` each feature is joined by its missingness
indicator. Trained with MSE on the observed values only.

Residual mode (``residual``, tsdiff's imputation choice, not the paper's): the input gaps are
filled by linear interpolation, each window is standardised per feature by its observed values'
mean and standard deviation (the per-window normalisation of TimesNet, Wu et al. ICLR 2023, §4,
and of the non-stationary transformers, Liu et al. NeurIPS 2022, §3.1), and the network's
output (zero at initialisation) is a correction to the interpolation in those units, with no
sigmoid. A window whose level lies outside the training range is then no harder than any other,
and an untrained network is exactly linear interpolation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tsdiff_cli.models.layers import Dropout


@dataclass
class TSTConfig:
    """Architecture only; values come from ``[tst]`` (tsdiff_cli/jobs/architectures.py)."""

    features: int
    seq_len: int
    d_model: int
    heads: int
    layers: int
    ff: int
    dropout: float
    norm: str  # "batch" | "layer"
    positional: str  # "learnable" | "fixed"
    decoder_hidden: int
    mask_channel: bool
    residual: bool = False  # False for checkpoints from before the field existed

    def to_dict(self) -> dict:
        return asdict(self)


def _neighbours(x: torch.Tensor):
    """For (B, T, F) with NaNs: observed mask, the step of the last observation at or before each
    step (−1: none), of the next at or after (T: none), and the values there (0 where none)."""
    observed = ~torch.isnan(x)
    t = torch.arange(x.shape[1], device=x.device).view(1, -1, 1)
    last = torch.where(observed, t, torch.zeros_like(t) - 1).cummax(dim=1).values
    nxt = torch.where(observed, t, torch.full_like(t, x.shape[1])).flip(1).cummin(dim=1).values.flip(1)
    zero = torch.nan_to_num(x, nan=0.0)
    fwd = torch.gather(zero, 1, last.clamp_min(0).expand_as(x))
    bwd = torch.gather(zero, 1, nxt.clamp_max(x.shape[1] - 1).expand_as(x))
    return observed, last, nxt, fwd, bwd


def fill_tst_inputs(x: torch.Tensor) -> torch.Tensor:
    """NaNs filled by the last observation, then by the next one, then zeros; (B, T, F), vectorised."""
    observed, last, nxt, fwd, bwd = _neighbours(x)
    zero = torch.nan_to_num(x, nan=0.0)
    return torch.where(observed, zero, torch.where(last >= 0, fwd, torch.where(nxt < x.shape[1], bwd, 0.0)))


def interpolate(x: torch.Tensor) -> torch.Tensor:
    """NaNs filled by linear interpolation between the observations either side (the nearest one
    at the ends, zeros where a feature has none); (B, T, F), vectorised. Agrees with
    metrics.imputation.fill_linear."""
    observed, last, nxt, fwd, bwd = _neighbours(x)
    n = x.shape[1]
    has_left, has_right = last >= 0, nxt < n
    t = torch.arange(n, device=x.device).view(1, -1, 1).to(x.dtype)
    span = torch.where(has_left & has_right, nxt - last, torch.ones_like(nxt)).to(x.dtype)
    between = fwd + (bwd - fwd) * (t - last.to(x.dtype)) / span
    inner = torch.where(has_left & has_right, between, torch.where(has_left, fwd, torch.where(has_right, bwd, 0.0)))
    return torch.where(observed, torch.nan_to_num(x, nan=0.0), inner)


def window_stats(x: torch.Tensor, floor: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (floored) of each window's observed values per feature, (B, 1, F);
    a feature with no observed value gets mean 0.5 (the middle of the generator's [0, 1] space)
    and deviation 0.25, so the network predicts it from the other features."""
    observed = ~torch.isnan(x)
    count = observed.sum(1, keepdim=True)
    zero = torch.nan_to_num(x, nan=0.0)
    mean = zero.sum(1, keepdim=True) / count.clamp_min(1)
    var = (torch.where(observed, zero - mean, 0.0) ** 2).sum(1, keepdim=True) / count.clamp_min(1)
    none = count == 0
    mean = torch.where(none, torch.full_like(mean, 0.5), mean)
    std = torch.where(none, torch.full_like(var, 0.25), (var + floor ** 2).sqrt())
    return mean, std


class _Norm(nn.Module):
    def __init__(self, kind: str, dim: int):
        super().__init__()
        self.batch = kind == "batch"
        self.norm = nn.BatchNorm1d(dim) if self.batch else nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D)
        return self.norm(x.transpose(1, 2)).transpose(1, 2) if self.batch else self.norm(x)


class _EncoderLayer(nn.Module):
    """Post-norm transformer layer: x + attention → norm → x + feed-forward → norm."""

    def __init__(self, cfg: TSTConfig):
        super().__init__()
        self.attn = nn.MultiheadAttention(cfg.d_model, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(cfg.d_model, cfg.ff), nn.GELU(), Dropout(cfg.dropout), nn.Linear(cfg.ff, cfg.d_model))
        self.norm1, self.norm2 = _Norm(cfg.norm, cfg.d_model), _Norm(cfg.norm, cfg.d_model)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        a, _ = self.attn(x, x, x, key_padding_mask=padding, need_weights=False)
        x = self.norm1(x + self.drop(a))
        return self.norm2(x + self.drop(self.ff(x)))


class TST(nn.Module):
    def __init__(self, cfg: TSTConfig):
        super().__init__()
        self.cfg = cfg
        inputs = cfg.features * (2 if cfg.mask_channel else 1)
        self.project = nn.Linear(inputs, cfg.d_model)
        if cfg.positional == "learnable":
            self.position = nn.Parameter(torch.empty(1, cfg.seq_len, cfg.d_model).uniform_(-0.02, 0.02))
        else:
            pos = torch.arange(cfg.seq_len).unsqueeze(1)
            freq = torch.exp(torch.arange(0, cfg.d_model, 2) * (-math.log(10000.0) / cfg.d_model))
            table = torch.zeros(1, cfg.seq_len, cfg.d_model)
            table[0, :, 0::2] = torch.sin(pos * freq)
            table[0, :, 1::2] = torch.cos(pos * freq)[:, : cfg.d_model // 2]
            self.register_buffer("position", table)
        self.layers = nn.ModuleList(_EncoderLayer(cfg) for _ in range(cfg.layers))
        self.decoder = nn.GRU(cfg.d_model, cfg.decoder_hidden, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.decoder_hidden, cfg.features)
        if cfg.residual:  # an untrained network is linear interpolation
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, observed: torch.Tensor) -> torch.Tensor:
        """(B, T, F) with NaN where missing → a complete (B, T, F) reconstruction (in (0, 1)
        unless ``residual``)."""
        mask = ~torch.isnan(observed)
        if self.cfg.residual:
            mean, std = window_stats(observed)
            base = (interpolate(observed) - mean) / std
            x = base
        else:
            x = fill_tst_inputs(observed)
        if self.cfg.mask_channel:
            x = torch.cat([x, mask.to(x.dtype)], dim=-1)
        h = self.project(x) + self.position
        padding = ~mask.any(dim=-1)  # steps with nothing observed: no attention to them
        padding = padding & ~padding.all(dim=1, keepdim=True)  # a fully empty window attends to all
        for layer in self.layers:
            h = layer(h, padding)
        h, _ = self.decoder(F.gelu(h))
        if self.cfg.residual:
            return (base + self.out(h)) * std + mean
        return torch.sigmoid(self.out(h))


def masked_inputs(observed: torch.Tensor, rate: float, generator: torch.Generator,
                  shard=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The masking objective of Zerveas et al. (KDD 2021, §3.1), with independent point masks:
    a fraction ``rate`` of the observed values is hidden from the input and only they are scored.
    Returns (inputs, targets); targets are NaN except at the hidden values. ``rate`` 0 gives the
    plain objective (inputs = targets = observed). ``shard`` (the training loop's): draws made
    for the global batch, cut to this process's rows."""
    if rate <= 0:
        return observed, observed
    b, *rest = observed.shape
    draw = (torch.rand(observed.shape, generator=generator) if shard is None
            else shard.rand(b, generator, tail=tuple(rest))).to(observed.device)
    hidden = (draw < rate) & ~torch.isnan(observed)
    nan = torch.full_like(observed, float("nan"))
    return torch.where(hidden, nan, observed), torch.where(hidden, observed, nan)


def complete(prediction: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Observed values kept, gaps taken from the TST's prediction."""
    return torch.where(torch.isnan(observed), prediction, observed)
