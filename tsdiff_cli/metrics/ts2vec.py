"""TS2Vec (Yue et al., "TS2Vec: Towards Universal Representation of Time Series", AAAI 2022),
written from the paper, as the encoder of Context-FID.

Encoder (§3.1): a per-timestamp linear input projection; timestamp masking of the latent
vectors with probability 0.5 during training; a dilated CNN of residual blocks (two GELU +
kernel-3 convolutions each, dilation 2^l in block l) ending in 320 channels.
Training (§3.2–3.3): two overlapping random crops [a1, b1], [a2, b2] with a1 ≤ a2 ≤ b1 ≤ b2,
shifted for each series of the batch by its own random offset (so the crops of one batch cover
different parts of different series); the representations of the overlap [a2, b1] are contrasted
with the hierarchical loss (Algorithm 1): at every scale, the temporal loss (eq. 1: the same timestamp in the other
view against the other timestamps of both views) plus the instance loss (eq. 2: the same
series in the other view against the other series of both views), then max-pooling by 2 along
time, until one timestamp remains; the sum is averaged over scales. Adam-W, lr 1e-3, batch 8,
200 iterations for data of at most 100 000 values, else 600 (§4, implementation details).
Encoding uses the running average of the weights over all training iterations (stochastic weight
averaging, Izmailov et al. 2018, as the published TS2Vec encodes), via torch's ``AveragedModel``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tsdiff_cli.metrics._common import EVAL_CHUNK, Progress


class _DilatedConv(nn.Conv1d):
    """Kernel-3 'same' convolution. When the dilation reaches the sequence length the outer taps
    only ever read the zero padding, so the centre tap alone gives the identical result at a
    fraction of the cost (a dilation of 512 on 24 steps would otherwise pad by 1024)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.dilation[0]
        if d >= x.shape[-1]:
            return F.conv1d(x, self.weight[:, :, 1:2], self.bias)
        return F.conv1d(x, self.weight, self.bias, padding=d, dilation=d)


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, dilation: int):
        super().__init__()
        self.conv1 = _DilatedConv(c_in, c_out, 3, dilation=dilation)
        self.conv2 = _DilatedConv(c_out, c_out, 3, dilation=dilation)
        self.project = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.project is None else self.project(x)
        return self.conv2(F.gelu(self.conv1(F.gelu(x)))) + skip


class TS2VecEncoder(nn.Module):
    def __init__(self, input_dims: int, output_dims: int = 320, hidden_dims: int = 64, depth: int = 10):
        super().__init__()
        self.input_fc = nn.Linear(input_dims, hidden_dims)
        channels = [hidden_dims] * depth + [output_dims]
        self.blocks = nn.Sequential(*[
            _Block(channels[i - 1] if i else hidden_dims, channels[i], 2 ** i) for i in range(len(channels))
        ])
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, T, F) → per-timestamp representations (B, T, output_dims)."""
        h = self.input_fc(x)
        if self.training:  # timestamp masking, p = 0.5 (§3.2)
            keep = torch.rand(h.shape[:2], generator=generator, device="cpu").to(h.device) < 0.5
            h = h * keep.unsqueeze(-1)
        return self.dropout(self.blocks(h.transpose(1, 2))).transpose(1, 2)

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Full-series encoding: max-pool over all timestamps, (N, T, F) → (N, output_dims)."""
        was = self.training
        self.eval()
        out = torch.cat([self(x[i:i + EVAL_CHUNK]).amax(dim=1) for i in range(0, len(x), EVAL_CHUNK)])
        self.train(was)
        return out


def _contrast(z: torch.Tensor, half: int) -> torch.Tensor:
    """Mean InfoNCE over the 2·half items of the last-but-one axis; item i's positive is i ± half."""
    sim = z @ z.transpose(-1, -2)  # (..., 2h, 2h)
    n = sim.shape[-1]
    off = ~torch.eye(n, dtype=torch.bool, device=z.device)
    logits = sim.masked_select(off).view(*sim.shape[:-1], n - 1)
    log_p = F.log_softmax(logits, dim=-1)
    i = torch.arange(half, device=z.device)
    # after dropping the diagonal, i's partner i + half sits at column i + half − 1, and
    # (i + half)'s partner i at column i
    return -(log_p[..., i, i + half - 1].mean() + log_p[..., i + half, i].mean()) / 2


def instance_loss(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Eq. 2, per timestamp over the batch: (B, T, C) pairs."""
    if r1.shape[0] < 2:
        return r1.new_zeros(())
    return _contrast(torch.cat([r1, r2], dim=0).transpose(0, 1), r1.shape[0])


def temporal_loss(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Eq. 1, per series over its timestamps."""
    return _contrast(torch.cat([r1, r2], dim=1), r1.shape[1])


def hierarchical_loss(r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
    """Algorithm 1: dual loss at every scale, max-pooling time by 2 until one step is left."""
    total, levels = r1.new_zeros(()), 0
    while r1.shape[1] > 1:
        total = total + instance_loss(r1, r2) + temporal_loss(r1, r2)
        levels += 1
        r1 = F.max_pool1d(r1.transpose(1, 2), 2).transpose(1, 2)
        r2 = F.max_pool1d(r2.transpose(1, 2), 2).transpose(1, 2)
    if r1.shape[1] == 1:
        total = total + instance_loss(r1, r2)
        levels += 1
    return total / levels


def default_iterations(data_size: int) -> int:
    return 200 if data_size <= 100_000 else 600


def random_crops(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Two overlapping crops of every series in ``x`` (B, T, F) and the length of their overlap:
    view 1 covers [a1, b1), view 2 [a2, b2), a1 ≤ a2 < b1 ≤ b2, overlap [a2, b1) at least 2 steps;
    series k's crops are shifted by its own offset o_k ∈ [−a1, T − b2] (§3.2)."""
    b, t = x.shape[:2]
    overlap = int(torch.randint(2, t + 1, (), generator=gen))
    a2 = int(torch.randint(0, t - overlap + 1, (), generator=gen))
    b1 = a2 + overlap
    a1 = int(torch.randint(0, a2 + 1, (), generator=gen))
    b2 = int(torch.randint(b1, t + 1, (), generator=gen))
    offset = torch.randint(-a1, t - b2 + 1, (b, 1), generator=gen).to(x.device)

    def crop(lo: int, hi: int) -> torch.Tensor:
        rows = (offset + torch.arange(lo, hi, device=x.device)).unsqueeze(-1).expand(-1, -1, x.shape[2])
        return x.gather(1, rows)

    return crop(a1, b1), crop(a2, b2), overlap


def train_ts2vec(
    data: torch.Tensor,
    *,
    iterations: int | None = None,
    batch_size: int = 8,
    lr: float = 1e-3,
    seed: int = 0,
    output_dims: int = 320,
    callback: Progress = None,
    losses: list[float] | None = None,
) -> TS2VecEncoder:
    """Fit an encoder on (N, T, F) windows with the hierarchical contrastive loss; returns the
    weight-averaged encoder, in eval mode. ``losses``, when given, receives each iteration's loss."""
    from torch.optim.swa_utils import AveragedModel

    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    n, t, f = data.shape
    iterations = default_iterations(data.numel()) if iterations is None else iterations
    model = TS2VecEncoder(f, output_dims).to(data.device)
    averaged = AveragedModel(model)  # equal-weight average of every iterate
    optim = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for step in range(iterations):
        x = data[torch.randperm(n, generator=gen)[:batch_size].to(data.device)]
        view1, view2, overlap = random_crops(x, gen)
        r1 = model(view1, gen)[:, -overlap:]
        r2 = model(view2, gen)[:, :overlap]
        loss = hierarchical_loss(r1, r2)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        averaged.update_parameters(model)
        if losses is not None:
            losses.append(loss.item())
        if callback is not None:
            callback(step + 1, iterations)
    return averaged.module.eval()
