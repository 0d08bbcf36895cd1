"""The Dual-Patch Transformer: classification and regression of multivariate series with gaps.

Two kinds of tokens describe a series of C numeric channels (and K time-varying categorical
channels) over T steps:

- **temporal patches** (PatchTST: Nie et al. 2023, "A Time Series is Worth 64 Words", ICLR
  2023, §3.1, patching): windows of ``patch_len`` steps every ``patch_stride`` steps across all
  channels, each flattened and projected to one token, plus a learnt position embedding;
- **variate tokens** (iTransformer: Liu et al. 2024, ICLR 2024, §3, "inverted" embedding): one
  token per channel from its whole series, projected by one map shared by the channels, plus a
  learnt identity per channel.

Gaps are input, not noise: every numeric channel is doubled into its values (missing → 0, or with
``fill = "linear"`` interpolated linearly between the observations either side) and a
missing-mask channel (1 where missing) before either projection — the "mask channel" of GRU-D
(Che et al. 2018, §3) and of BRITS-style imputers —, and padding after a short series is
missing like any other gap. Each categorical channel has its own embedding table (code 0 =
unknown); per step the embeddings are summed over channels, averaged within each temporal patch
and added to that token, and each categorical channel also gets a variate token (its embeddings
averaged over time). A type embedding tells the two kinds apart.

``streams = "joint"`` runs one transformer encoder over all tokens (each kind attends to the
other); ``"separate"`` runs one encoder per kind and fuses them only at the end. Either way the
pooled representation is [mean temporal token, mean variate token] (2·d_model). One head per task:
a linear classifier or regressor on the pooled vector for per-series labels, or a per-step head
on the temporal tokens, whose outputs are spread back over the steps each patch covers (overlaps
averaged). A reconstruction head of the same shape predicts every channel's values from the
temporal tokens: the masked-patch pretraining objective (PatchTST §3.2; loss on hidden observed
values only).

With ``instance_norm`` each series' channel is first scaled by its own observed mean and spread
(RevIN: Kim et al. 2022, ICLR, eq. 1, on observed values only), and the channel's variate token
receives the two (mean, log spread), so levels stay visible.

``DualPatchConfig`` is architecture only (it travels in model.safetensors' metadata); the global
scaling of inputs and targets is the job's.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from tsdiff_cli.models.tst import interpolate


@dataclass
class HeadConfig:
    name: str
    kind: Literal["class", "numeric"]
    out: int  # classes, or 1
    per_step: bool = False


@dataclass
class DualPatchConfig:
    channels: int
    length: int  # steps of the longest series (shorter ones are padded with missing values)
    patch_len: int
    patch_stride: int
    d_model: int
    heads: int
    layers: int
    ff: int
    dropout: float
    streams: Literal["joint", "separate"]
    categories: list[int] = field(default_factory=list)  # codes per categorical channel, 0 (unknown) included
    mask_channel: bool = True  # False: values only (inputs arrive without gaps, e.g. interpolated)
    fill: Literal["zero", "linear"] = "zero"  # what the value channel holds where a value is missing
    instance_norm: bool = False  # each series' channel scaled by its own observed mean and spread (RevIN), which
    # the channel's variate token still receives (mean and log spread) so that levels are not lost
    tasks: list[HeadConfig] = field(default_factory=list)

    @property
    def patches(self) -> int:
        """Temporal patches over the series padded to :attr:`padded`."""
        return 1 + max(0, -(-(self.length - self.patch_len) // self.patch_stride))

    @property
    def padded(self) -> int:
        return self.patch_len + (self.patches - 1) * self.patch_stride

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> DualPatchConfig:
        raw = json.loads(text)
        raw["tasks"] = [HeadConfig(**t) for t in raw.get("tasks", [])]
        return cls(**raw)


def _encoder(c: DualPatchConfig) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(c.d_model, c.heads, c.ff, c.dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, c.layers, norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False)


class DualPatchTransformer(nn.Module):
    def __init__(self, c: DualPatchConfig):
        super().__init__()
        self.c = c
        d, L = c.d_model, c.patch_len
        k = 2 if c.mask_channel else 1
        self.temporal = nn.Linear(k * c.channels * L, d)
        self.variate = nn.Linear(k * c.padded + 2 * c.instance_norm, d)
        self.position = nn.Parameter(torch.randn(c.patches, d) * 0.02)
        self.identity = nn.Parameter(torch.randn(c.channels + len(c.categories), d) * 0.02)
        self.kind = nn.Parameter(torch.randn(2, d) * 0.02)
        self.embeddings = nn.ModuleList(nn.Embedding(n, d) for n in c.categories)
        self.encoders = nn.ModuleList([_encoder(c)] if c.streams == "joint" else [_encoder(c), _encoder(c)])
        self.dropout = nn.Dropout(c.dropout)
        self.heads = nn.ModuleDict()
        for t in c.tasks:
            width = d if t.per_step else 2 * d
            self.heads[t.name] = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, t.out * (L if t.per_step else 1)))
        self.reconstruct = nn.Linear(d, c.channels * L)

    # --- tokens and encoder --------------------------------------------------------------------

    def encode(self, x: torch.Tensor, cat: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, C, T) standardised, NaN where missing; ``cat`` (B, K, T) codes. Returns the
        pooled representation (B, 2·d) and the temporal tokens (B, P, d)."""
        c = self.c
        B, T = x.shape[0], x.shape[2]
        pad = c.padded - T
        missing = torch.isnan(x)
        if c.instance_norm:  # Kim et al. 2022 (RevIN) on observed values only
            observed = torch.where(missing, torch.zeros_like(x), x)
            count = (~missing).sum(2, keepdim=True).clamp_min(1)
            mean = observed.sum(2, keepdim=True) / count
            std = ((((observed - mean) * ~missing) ** 2).sum(2, keepdim=True) / count + 1e-5).sqrt()
            x = (x - mean) / std  # gaps stay NaN
        if c.fill == "linear":  # the value channel interpolated across gaps; the mask still says where they are
            values = interpolate(x.transpose(1, 2)).transpose(1, 2)
        else:
            values = torch.where(missing, torch.zeros_like(x), x)
        values = F.pad(values, (0, pad))
        missing = F.pad(missing.to(x.dtype), (0, pad), value=1.0)
        doubled = torch.cat([values, missing], dim=1) if c.mask_channel else values  # (B, 2C, Tp)
        patches = doubled.unfold(2, c.patch_len, c.patch_stride)  # (B, 2C, P, L)
        patches = patches.permute(0, 2, 1, 3).reshape(B, c.patches, -1)
        tokens_t = self.temporal(patches) + self.position + self.kind[0]
        series = torch.cat([values, missing], dim=2) if c.mask_channel else values
        if c.instance_norm:
            series = torch.cat([series, mean, std.log()], dim=2)
        tokens_v = self.variate(series) + self.identity[:c.channels] + self.kind[1]
        if self.embeddings:
            cat = F.pad(cat, (0, pad))  # padding: code 0, unknown
            steps = torch.stack([emb(cat[:, k]) for k, emb in enumerate(self.embeddings)], dim=1)  # (B, K, Tp, d)
            per_patch = steps.sum(1).unfold(1, c.patch_len, c.patch_stride).mean(-1)  # (B, P, d)
            tokens_t = tokens_t + per_patch
            tokens_c = steps.mean(2) + self.identity[c.channels:] + self.kind[1]
            tokens_v = torch.cat([tokens_v, tokens_c], dim=1)
        tokens_t, tokens_v = self.dropout(tokens_t), self.dropout(tokens_v)
        if len(self.encoders) == 1:
            h = self.encoders[0](torch.cat([tokens_t, tokens_v], dim=1))
            h_t, h_v = h[:, :c.patches], h[:, c.patches:]
        else:
            h_t, h_v = self.encoders[0](tokens_t), self.encoders[1](tokens_v)
        return torch.cat([h_t.mean(1), h_v.mean(1)], dim=-1), h_t

    def _spread(self, per_patch: torch.Tensor, out: int, length: int) -> torch.Tensor:
        """(B, P, L·out) patch outputs → (B, out, length) per step, overlapping patches averaged."""
        c = self.c
        B = per_patch.shape[0]
        cols = per_patch.reshape(B, c.patches, c.patch_len, out).permute(0, 3, 2, 1).reshape(B, out * c.patch_len, c.patches)
        kw = {"output_size": (1, c.padded), "kernel_size": (1, c.patch_len), "stride": (1, c.patch_stride)}
        summed = F.fold(cols, **kw)
        counts = F.fold(torch.ones_like(cols[:1, :c.patch_len]), **kw)
        return (summed / counts).reshape(B, out, c.padded)[..., :length]

    # --- outputs ---------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, cat: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Per task: logits (B, classes) / value (B,) per series, or (B, classes, T) / (B, T) per step."""
        pooled, h_t = self.encode(x, cat)
        return self.heads_of(pooled, h_t, x.shape[2])

    def heads_of(self, pooled: torch.Tensor, h_t: torch.Tensor, length: int) -> dict[str, torch.Tensor]:
        outs = {}
        for t in self.c.tasks:
            if t.per_step:
                y = self._spread(self.heads[t.name](h_t), t.out, length)
            else:
                y = self.heads[t.name](pooled)
            outs[t.name] = y.squeeze(1) if t.kind == "numeric" else y
        return outs

    def reconstruction(self, x: torch.Tensor, cat: torch.Tensor | None = None) -> torch.Tensor:
        """Every channel's values (B, C, T) predicted from the temporal tokens."""
        _, h_t = self.encode(x, cat)
        return self._spread(self.reconstruct(h_t), self.c.channels, x.shape[2])

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The weights pretraining hands to fine-tuning: all but the task heads."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("heads.")}
