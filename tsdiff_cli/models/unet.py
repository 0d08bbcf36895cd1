"""An ADM-style U-Net (Dhariwal & Nichol 2021, the architecture EDM and ImagenTime build on).

Residual blocks of GroupNorm → SiLU → 3×3 conv, with the noise-level embedding applied as a
scale and shift after the second normalisation; self-attention at the configured resolutions;
skip connections from every encoder block to the decoder. Between resolutions either a residual
block that resamples (``resample = "residual"``: ADM's BigGAN-style up/down blocks, as EDM's
DhariwalUNet and the paper's reference build; their skip is the resampled input), or a
parameter-free average-pool down / nearest up (``"pool"``, cheaper, the CPU presets).
The network knows nothing of σ beyond the ``noise_label`` it is given: the EDM
preconditioning lives in :mod:`tsdiff_cli.models.edm`. Conditions arrive already encoded
(:mod:`tsdiff_cli.models.condition`): an embedding added to the noise-level embedding, and, when
``context_dim`` is set, caption tokens that a cross-attention layer after each self-attention
attends to (Rombach et al. 2022, §3.3).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tsdiff_cli.models.layers import Dropout


@dataclass
class UNetConfig:
    """Architecture only; values come from ``[model]`` (tsdiff_cli/jobs/architectures.py)."""

    image_size: int
    in_channels: int
    channels: int
    channel_mult: list[int]
    num_blocks: int
    attn_resolutions: list[int]
    dropout: float
    heads_channels: int = 64  # channels per attention head (not a setting)
    resample: str = "pool"  # "pool" or "residual" (see the module docstring)
    context_dim: int = 0  # width of caption tokens to cross-attend to at the attention resolutions (0: none)

    def to_dict(self) -> dict:
        return asdict(self)


def _groups(ch: int) -> int:
    for g in (32, 16, 8, 4, 2, 1):
        if ch % g == 0 and ch // g >= 2:
            return g
    return 1


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class NoiseEmbedding(nn.Module):
    """Sinusoidal features of the noise label, then an MLP (as ADM's timestep embedding)."""

    def __init__(self, channels: int, dim: int):
        super().__init__()
        self.channels = channels
        self.mlp = nn.Sequential(nn.Linear(channels, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, label: torch.Tensor) -> torch.Tensor:
        half = self.channels // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=label.device, dtype=torch.float32) / half)
        angles = label.float().view(-1, 1) * freqs.view(1, -1)
        return self.mlp(torch.cat([angles.cos(), angles.sin()], dim=1))


class ResBlock(nn.Module):
    """GroupNorm → SiLU → (resample) → conv, embedding scale/shift, GroupNorm → SiLU → dropout → conv,
    plus the input, resampled, and projected by a 1×1 convolution when the channels change. ``resample``: None, "up" (nearest ×2)
    or "down" (2×2 average), ADM's up/down residual blocks (Dhariwal & Nichol 2021, §3)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, resample: str | None = None):
        super().__init__()
        self.resample = resample
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.drop = Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def _resampled(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return F.avg_pool2d(x, 2) if self.resample == "down" else x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self._resampled(F.silu(self.norm1(x))))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(self._resampled(x)) + h


class SpatialAttention(nn.Module):
    def __init__(self, ch: int, head_channels: int):
        super().__init__()
        self.heads = max(1, ch // head_channels)
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hh, ww = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, hh * ww).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, hh, ww))


class CrossAttention(nn.Module):
    """Image positions attend to context tokens (B, L, context_dim); padding tokens are masked."""

    def __init__(self, ch: int, context_dim: int, head_channels: int):
        super().__init__()
        self.heads = max(1, ch // head_channels)
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.kv = nn.Linear(context_dim, 2 * ch)
        self.proj = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor, context: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        b, c, hh, ww = x.shape
        h = self.heads
        q = self.q(self.norm(x)).reshape(b, h, c // h, hh * ww).transpose(-1, -2)  # (B, h, HW, d)
        k, v = self.kv(context).reshape(b, -1, 2, h, c // h).permute(2, 0, 3, 1, 4)  # each (B, h, L, d)
        mask = None if pad is None else ~pad[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, hh, ww))


class UNet(nn.Module):
    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        ch0 = cfg.channels
        emb_dim = 4 * ch0
        self.embed = NoiseEmbedding(ch0, emb_dim)
        self.stem = nn.Conv2d(cfg.in_channels, ch0, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch, res = [ch0], ch0, cfg.image_size
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_blocks):
                self.down.append(nn.ModuleList([ResBlock(ch, ch0 * mult, emb_dim, cfg.dropout)]
                                                + (self._attention(ch0 * mult) if res in cfg.attn_resolutions else [])))
                ch = ch0 * mult
                skips.append(ch)
            if level < len(cfg.channel_mult) - 1:
                residual = cfg.resample == "residual"
                self.down.append(nn.ModuleList([ResBlock(ch, ch, emb_dim, cfg.dropout, "down") if residual
                                                else nn.AvgPool2d(2)]))
                skips.append(ch)
                res //= 2
        self.mid = nn.ModuleList([ResBlock(ch, ch, emb_dim, cfg.dropout), *self._attention(ch),
                                  ResBlock(ch, ch, emb_dim, cfg.dropout)])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_blocks + 1):
                block = [ResBlock(ch + skips.pop(), ch0 * mult, emb_dim, cfg.dropout)]
                ch = ch0 * mult
                if res in cfg.attn_resolutions:
                    block.extend(self._attention(ch))
                if level > 0 and i == cfg.num_blocks:
                    block.append(ResBlock(ch, ch, emb_dim, cfg.dropout, "up") if cfg.resample == "residual"
                                 else nn.Upsample(scale_factor=2, mode="nearest"))
                    res *= 2
                self.up.append(nn.ModuleList(block))
        self.head = nn.Sequential(nn.GroupNorm(_groups(ch), ch), nn.SiLU(), _zero(nn.Conv2d(ch, cfg.in_channels, 3, padding=1)))

    def _attention(self, ch: int) -> list[nn.Module]:
        cfg = self.cfg
        return [SpatialAttention(ch, cfg.heads_channels)] + (
            [CrossAttention(ch, cfg.context_dim, cfg.heads_channels)] if cfg.context_dim else [])

    @property
    def emb_dim(self) -> int:
        """Width of the noise-level embedding (and of a condition embedding added to it)."""
        return 4 * self.cfg.channels

    def forward(self, x: torch.Tensor, noise_label: torch.Tensor, cond: torch.Tensor | None = None,
                context: torch.Tensor | None = None, context_pad: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(noise_label)
        if cond is not None:
            emb = emb + cond

        def apply(layer, h):
            if isinstance(layer, ResBlock):
                return layer(h, emb)
            if isinstance(layer, CrossAttention):
                return layer(h, context, context_pad)
            return layer(h)

        h = self.stem(x)
        stack = [h]
        for block in self.down:
            for layer in block:
                h = apply(layer, h)
            stack.append(h)
        for layer in self.mid:
            h = apply(layer, h)
        for block in self.up:
            h = torch.cat([h, stack.pop()], dim=1)
            for layer in block:
                h = apply(layer, h)
        return self.head(h)
