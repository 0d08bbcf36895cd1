"""Probabilistic forecaster: an iTransformer encoder and a conditional generative head.

- Encoder (Liu et al. 2024, "iTransformer: Inverted Transformers Are Effective for Time Series
  Forecasting", ICLR 2024, §3): each lookback is normalised per instance and per variate (mean and
  std over time, undone at the output; Kim et al. 2022, RevIN), each variate's whole lookback is
  embedded as one token, a transformer encoder attends across variates, and a linear map per
  token gives the deterministic forecast. Optionally a learnt daily cycle is removed before and
  added back after (Lin et al. 2024, "CycleNet", residual cycle forecasting, eq. 2–4).
- Head: a DiT-style denoiser (Peebles & Xie 2023, §3.2: adaLN-Zero blocks) over the horizon.
  Tokens are patches of each variate's horizon; every block modulates its layers by the noise
  time plus a global condition (the mean encoder token), attends across all patch tokens, and
  cross-attends to the encoder's per-variate tokens. It generates the residual around the
  (detached) deterministic forecast in z-space; each variate's lookback mean and log std are
  inputs of its tokens, since the encoder tokens are scale-free. (Residuals divided by the
  lookback std instead blow up on flat lookbacks: ETTh1's validation loss reached 2 700.)
- Objective: λ · MSE(deterministic) + (1 − λ) · generative loss, end to end (the generative loss
  trains the encoder through the cross-attention and the global condition).

``ForecastConfig`` is architecture only and travels in the metadata of model.safetensors.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ForecastConfig:
    """Architecture only; values come from ``[forecast]`` (tsdiff_cli/jobs/architectures.py)."""

    seq_len: int
    pred_len: int
    n_vars: int
    d_model: int
    heads: int
    layers: int
    ff: int
    dropout: float
    cycle: int  # learnt cycle length in rows (24 for hourly data); 0: none
    head: Literal["flow", "vdiff"]
    head_dim: int
    head_heads: int
    head_layers: int
    patch: int
    residual: bool  # the head generates y − deterministic forecast

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ForecastConfig:
        return cls(**json.loads(text))


class ITransformerEncoder(nn.Module):
    """Lookback (B, L, V) in z-space → per-variate tokens (B, V, d), the deterministic forecast
    (B, H, V) in z-space, and the instance statistics (mean, std) of shape (B, 1, V)."""

    def __init__(self, c: ForecastConfig):
        super().__init__()
        self.c = c
        self.embed = nn.Linear(c.seq_len, c.d_model)
        layer = nn.TransformerEncoderLayer(c.d_model, c.heads, c.ff, c.dropout, activation="gelu", batch_first=True,
                                           norm_first=False)
        self.encoder = nn.TransformerEncoder(layer, c.layers, norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False)
        self.project = nn.Linear(c.d_model, c.pred_len)
        self.dropout = nn.Dropout(c.dropout)
        if c.cycle:
            self.cycle = nn.Parameter(torch.zeros(c.cycle, c.n_vars))

    def cycle_at(self, phase: torch.Tensor, length: int) -> torch.Tensor:
        """The learnt cycle for ``length`` rows starting at ``phase`` (B,): (B, length, V)."""
        idx = (phase[:, None] + torch.arange(length, device=phase.device)) % self.c.cycle
        return self.cycle[idx]

    def forward(self, x: torch.Tensor, phase: torch.Tensor | None = None):
        c = self.c
        if c.cycle:
            x = x - self.cycle_at(phase, c.seq_len)
        mean = x.mean(1, keepdim=True)
        std = (x.var(1, keepdim=True, unbiased=False) + 1e-5).sqrt()
        xn = ((x - mean) / std).transpose(1, 2)  # (B, V, L)
        tokens = self.encoder(self.dropout(self.embed(xn)))  # (B, V, d)
        normed = self.project(tokens).transpose(1, 2)  # (B, H, V), normalised space
        det = normed * std + mean
        if c.cycle:
            det = det + self.cycle_at(phase + c.seq_len, c.pred_len)
        return tokens, det, mean, std


def _time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal features of t ∈ [0, 1] (Vaswani et al. 2017, §3.5, on 1000 t)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, §3.2) on torch's fused scaled-dot-product kernel.

    Cross-attention takes a ``context`` with fewer rows than the queries: G = rows(x) / rows(context)
    consecutive query rows (the samples drawn for one lookback) share one context row, and are
    folded into its query sequence, so keys and values are computed once per lookback, not once
    per sample (attention is per query, so the result is the same)."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads, self.cross = heads, context_dim is not None
        if self.cross:
            self.q, self.kv = nn.Linear(dim, dim), nn.Linear(context_dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, dim) → (B, heads, N, dim / heads)
        return t.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        rows, n, dim = x.shape
        if self.cross:
            q = self.q(x).reshape(context.shape[0], -1, dim)  # (B, G·N, dim)
            k, v = self.kv(context).chunk(2, dim=-1)
        else:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        h = F.scaled_dot_product_attention(self._split(q), self._split(k), self._split(v))
        return self.out(h.transpose(1, 2).reshape(rows, n, dim))


class DiTBlock(nn.Module):
    """adaLN-Zero block (DiT §3.2) with a cross-attention to the encoder tokens between the
    self-attention and the MLP; each of the three gets shift, scale and a zero-initialised gate."""

    def __init__(self, dim: int, heads: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.cross = Attention(dim, heads, context_dim)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 9 * dim))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        s1, c1, g1, s2, c2, g2, s3, c3, g3 = self.ada(cond)[:, None].chunk(9, dim=-1)
        x = x + g1 * self.attn(_modulate(self.norm1(x), s1, c1))
        x = x + g2 * self.cross(_modulate(self.norm2(x), s2, c2), context)
        return x + g3 * self.mlp(_modulate(self.norm3(x), s3, c3))


class DiTHead(nn.Module):
    """Denoiser over the horizon: noisy residual (B, H, V), time t (B,), the deterministic forecast
    (B, H, V), the lookback statistics (B, 2, V) (mean, log std) and the encoder tokens (b, V, d)
    → the network output (B, H, V) (a velocity for flow matching, v for v-diffusion). B is a
    multiple of b: B / b consecutive rows are samples for the same lookback."""

    def __init__(self, c: ForecastConfig):
        super().__init__()
        if c.pred_len % c.patch:
            raise ValueError(f"pred_len {c.pred_len} is not a multiple of patch {c.patch}")
        self.c = c
        n_patch, dim = c.pred_len // c.patch, c.head_dim
        # noisy patch joined with the same patch of the forecast and the variate's lookback statistics
        self.inp = nn.Linear(2 * c.patch + 2, dim)
        self.pos = nn.Parameter(torch.randn(1, 1, n_patch, dim) * 0.02)
        self.var = nn.Parameter(torch.randn(1, c.n_vars, 1, dim) * 0.02)
        self.t_embed = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.global_cond = nn.Linear(c.d_model, dim)
        self.blocks = nn.ModuleList(DiTBlock(dim, c.head_heads, c.d_model) for _ in range(c.head_layers))
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.out = nn.Linear(dim, c.patch)
        for m in (self.ada[1], self.out):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def _patches(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, V) → (B, V, P, p)
        return x.transpose(1, 2).reshape(x.shape[0], self.c.n_vars, -1, self.c.patch)

    def forward(self, x: torch.Tensor, t: torch.Tensor, forecast: torch.Tensor, stats: torch.Tensor,
                tokens: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[0], self.c
        n_patch = c.pred_len // c.patch
        stats = stats.transpose(1, 2)[:, :, None].expand(b, c.n_vars, n_patch, 2)
        h = self.inp(torch.cat([self._patches(x), self._patches(forecast), stats], dim=-1)) + self.pos + self.var
        h = h.reshape(b, -1, c.head_dim)  # (B, V·P, dim)
        glob = self.global_cond(tokens.mean(1)).repeat_interleave(b // tokens.shape[0], dim=0)
        cond = self.t_embed(_time_embedding(t, c.head_dim)) + glob
        for block in self.blocks:
            h = block(h, cond, tokens)
        shift, scale = self.ada(cond)[:, None].chunk(2, dim=-1)
        out = self.out(_modulate(self.norm(h), shift, scale))  # (B, V·P, p)
        return out.reshape(b, c.n_vars, c.pred_len).transpose(1, 2)


# --- the two generative objectives -----------------------------------------------------------
# Flow matching with straight (optimal-transport) paths: Lipman et al. 2023, eq. 20–23 with
# σ_min = 0, i.e. rectified flow (Liu et al. 2023): x_t = (1 − t) ε + t x₁, target u = x₁ − ε.
# v-prediction diffusion: Salimans & Ho 2022 ("Progressive distillation"), §4 and appendix D:
# z_t = α_t x + σ_t ε with the cosine schedule α_t = cos(πt/2), σ_t = sin(πt/2), v = α_t ε − σ_t x.

def _vdiff_alpha_sigma(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cos(0.5 * math.pi * t), torch.sin(0.5 * math.pi * t)


class Forecaster(nn.Module):
    def __init__(self, c: ForecastConfig):
        super().__init__()
        self.c = c
        self.encoder = ITransformerEncoder(c)
        self.head = DiTHead(c)

    def _target(self, y: torch.Tensor, det: torch.Tensor) -> torch.Tensor:
        """What the head generates, in z-space: y − forecast (residual), or y itself."""
        return y - det.detach() if self.c.residual else y

    @staticmethod
    def _stats(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        return torch.cat([mean, std.log()], dim=1)  # (B, 2, V)

    def losses(self, x: torch.Tensor, y: torch.Tensor, phase: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(deterministic MSE in z-space, generative loss) for lookbacks x (B, L, V), futures y (B, H, V)."""
        tokens, det, mean, std = self.encoder(x, phase)
        mse = F.mse_loss(det, y)
        target = self._target(y, det)
        noise = torch.randn_like(target)
        t = torch.rand(x.shape[0], device=x.device)
        tt = t[:, None, None]
        if self.c.head == "flow":
            xt, want = (1 - tt) * noise + tt * target, target - noise
        else:
            a, s = _vdiff_alpha_sigma(tt)
            xt, want = a * target + s * noise, a * noise - s * target
        out = self.head(xt, t, det.detach(), self._stats(mean, std), tokens)
        return mse, F.mse_loss(out, want)

    @torch.inference_mode()
    def deterministic(self, x: torch.Tensor, phase: torch.Tensor | None = None) -> torch.Tensor:
        return self.encoder(x, phase)[1]

    @torch.inference_mode()
    def sample(self, x: torch.Tensor, samples: int, steps: int, phase: torch.Tensor | None = None,
               generator: torch.Generator | None = None, solver: str = "euler") -> tuple[torch.Tensor, torch.Tensor]:
        """``samples`` forecasts per lookback, (samples, B, H, V) in z-space, and the deterministic
        forecast (B, H, V). The encoder runs once per lookback; the head runs ``steps`` times (Euler)
        or about twice that (Heun) on B·samples rows."""
        from tsdiff_cli.models.flow import ddim_v_sample, euler_flow_sample, heun_flow_sample

        tokens, det, mean, std = self.encoder(x, phase)
        b = x.shape[0]

        def rep(a: torch.Tensor) -> torch.Tensor:
            return a.repeat_interleave(samples, dim=0) if a is not None else None

        det_r, stats_r = rep(det), rep(self._stats(mean, std))

        def net(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.head(z, t, det_r, stats_r, tokens)

        noise = torch.randn((b * samples, self.c.pred_len, self.c.n_vars), generator=generator, device=x.device)
        if self.c.head == "flow":
            z = (heun_flow_sample if solver == "heun" else euler_flow_sample)(net, noise, steps)
        else:
            z = ddim_v_sample(net, noise, steps)
        out = z + det_r if self.c.residual else z
        return out.reshape(b, samples, self.c.pred_len, self.c.n_vars).transpose(0, 1), det
