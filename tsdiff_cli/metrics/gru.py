"""Many small, independent GRU models trained at once, for the TimeGAN post-hoc metrics.

The discriminative and predictive scores train a tiny one-layer GRU (hidden = features // 2)
for thousands of iterations. One such model leaves a CPU idle between thousands of tiny kernel
launches, and autograd adds a bookkeeping node to each. ``GRUEnsemble`` instead runs R
independent members (the metric's repeats) in the same batched tensor operations — member r
has its own weights, batches and data split, so every member trains exactly as it would alone
— and back-propagates through time by hand, with the gradients written out below. A test checks
them against autograd and the forward pass against ``torch.nn.GRU``.

Cell (PyTorch's GRU convention, gates ordered r, z, n):
    r = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h' = (1 − z) ⊙ n + z ⊙ h
followed by a linear head on every step's hidden state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class _Cache:
    x: torch.Tensor  # (R, F, T, B)
    states: torch.Tensor  # (R, H, T, B) hidden state after each step
    r: torch.Tensor  # (R, H, T, B) reset gate
    z: torch.Tensor  # (R, H, T, B) update gate
    n: torch.Tensor  # (R, H, T, B) candidate state
    ghn: torch.Tensor  # (R, H, T, B) W_hn h + b_hn


class GRUEnsemble:
    """R independent ``GRU(input_size → hidden) + Linear(hidden → out_size)`` models.

    Layout: the batch is the last, contiguous axis everywhere — inputs (R, F, T, B), hidden
    states (R, H, T, B) — because the hidden size is tiny (3 for six features) and CPU kernels
    are slow on tensors whose innermost runs are that short; with time next to the batch, the
    weight gradients reduce over (T, B) as plain views. Weights follow ``torch.nn.GRU``:
    ``w_i`` (R, 3H, F), ``w_h`` (R, 3H, H) with gates (r, z, n) stacked, biases (R, 3H, 1);
    the head ``w_o`` (R, O, H), ``b_o`` (R, O, 1). Initialisation is PyTorch's default for GRU
    and Linear layers of this size, U(−1/√H, 1/√H). tanh is computed as 2σ(2a) − 1, several
    times cheaper than ``torch.tanh`` on CPU for these small tensors.
    """

    def __init__(self, members: int, input_size: int, hidden: int, out_size: int = 1,
                 generator: torch.Generator | None = None, device: str | torch.device = "cpu"):
        self.members, self.input_size, self.hidden, self.out_size = members, input_size, hidden, out_size
        bound = 1.0 / math.sqrt(hidden)

        def uniform(*shape):
            return ((torch.rand(*shape, generator=generator) * 2 - 1) * bound).to(device).requires_grad_()

        h3 = 3 * hidden
        self.w_i, self.b_i = uniform(members, h3, input_size), uniform(members, h3, 1)
        self.w_h, self.b_h = uniform(members, h3, hidden), uniform(members, h3, 1)
        self.w_o, self.b_o = uniform(members, out_size, hidden), uniform(members, out_size, 1)

    def parameters(self) -> list[torch.Tensor]:
        return [self.w_i, self.b_i, self.w_h, self.b_h, self.w_o, self.b_o]

    @torch.no_grad()
    def run(self, x: torch.Tensor, keep: bool = True) -> tuple[torch.Tensor, _Cache | None]:
        """Hidden states (R, H, T, B) of every step for inputs (R, F, T, B); with ``keep`` also
        what :meth:`grads` needs."""
        x = x.contiguous()
        r_, f, t, b = x.shape
        hd = self.hidden
        # The input side of all steps in one product; the n rows doubled so that
        # tanh(a) = 2σ(2a) − 1 needs no extra multiplication inside the loop.
        gi = torch.baddbmm(self.b_i, self.w_i, x.view(r_, f, t * b)).view(r_, 3 * hd, t, b)
        gi[:, 2 * hd:] *= 2
        states = x.new_empty(r_, hd, t, b)
        if keep:
            rs, zs, ns, ghns = (x.new_empty(r_, hd, t, b) for _ in range(4))
        else:
            r_buf, z_buf, n_buf = (x.new_empty(r_, hd, b) for _ in range(3))
        gh = x.new_empty(r_, 3 * hd, b)
        h = x.new_zeros(r_, hd, b)
        for step in range(t):
            g = gi[:, :, step]
            torch.baddbmm(self.b_h, self.w_h, h, out=gh)
            r = torch.add(g[:, :hd], gh[:, :hd], out=rs[:, :, step] if keep else r_buf).sigmoid_()
            z = torch.add(g[:, hd: 2 * hd], gh[:, hd: 2 * hd], out=zs[:, :, step] if keep else z_buf).sigmoid_()
            n = torch.addcmul(g[:, 2 * hd:], r, gh[:, 2 * hd:], value=2.0, out=ns[:, :, step] if keep else n_buf)
            n.sigmoid_().mul_(2).sub_(1)
            if keep:
                ghns[:, :, step] = gh[:, 2 * hd:]
            h = torch.lerp(n, h, z, out=states[:, :, step])  # (1 − z) n + z h
        return states, (_Cache(x, states, rs, zs, ns, ghns) if keep else None)

    @torch.no_grad()
    def head(self, states: torch.Tensor) -> torch.Tensor:
        """The linear head on the given steps: (R, H, T, B) → (R, O, T, B)."""
        r_, hd, t, b = states.shape
        return torch.baddbmm(self.b_o, self.w_o, states.reshape(r_, hd, t * b)).view(r_, -1, t, b)

    @torch.no_grad()
    def grads(self, cache: _Cache, d_out: torch.Tensor) -> list[torch.Tensor]:
        """Gradients of the loss w.r.t. :meth:`parameters`, given dLoss/d(head of every step)
        (R, O, T, B)."""
        x, states = cache.x, cache.states
        r_, f, t, b = x.shape
        hd = self.hidden
        flat_dout = d_out.reshape(r_, -1, t * b)
        d_w_o = torch.bmm(flat_dout, states.view(r_, hd, t * b).transpose(1, 2))
        d_b_o = flat_dout.sum(-1, keepdim=True)
        d_states = torch.bmm(self.w_o.transpose(1, 2), flat_dout).view(r_, hd, t, b)

        # Local derivatives that do not depend on the incoming gradient, for all steps at once.
        # With dh the gradient reaching h_t, the recurrent products W_h h + b_h receive
        # dh ⊙ (k_r, k_z, k_n ⊙ r) and the input-side pre-activations dh ⊙ (k_r, k_z, k_n), where
        #   k_n = (1 − z)(1 − n²),  k_r = k_n (W_hn h + b_hn) r (1 − r),  k_z = (h_prev − n) z (1 − z).
        r, z, n = cache.r, cache.z, cache.n
        prev = torch.cat([states.new_zeros(r_, hd, 1, b), states[:, :, :-1]], dim=2)
        k_n = (1 - z) * (1 - n * n)
        k = x.new_empty(r_, 3, hd, t, b)
        torch.mul(k_n * cache.ghn, r * (1 - r), out=k[:, 0])
        torch.mul(prev - n, z * (1 - z), out=k[:, 1])
        torch.mul(k_n, r, out=k[:, 2])
        d_gh = x.new_empty(r_, 3, hd, t, b)
        dh_all = x.new_empty(r_, hd, t, b)
        w_h_t = self.w_h.transpose(1, 2)  # (R, H, 3H)
        dh = x.new_zeros(r_, hd, b)
        for step in reversed(range(t)):
            dh = torch.add(dh, d_states[:, :, step], out=dh_all[:, :, step])
            torch.mul(dh.unsqueeze(1), k[:, :, :, step], out=d_gh[:, :, :, step])
            dh = torch.bmm(w_h_t, d_gh[:, :, :, step].view(r_, 3 * hd, b)).addcmul_(dh, z[:, :, step])
        d_gh = d_gh.view(r_, 3 * hd, t * b)
        d_in_n = (dh_all * k_n).view(r_, hd, t * b)  # the input side of n is not scaled by r
        x_t = x.view(r_, f, t * b).transpose(1, 2)
        d_w_i = torch.cat([torch.bmm(d_gh[:, : 2 * hd], x_t), torch.bmm(d_in_n, x_t)], dim=1)
        d_b_i = torch.cat([d_gh[:, : 2 * hd].sum(-1, keepdim=True), d_in_n.sum(-1, keepdim=True)], dim=1)
        d_w_h = torch.bmm(d_gh, prev.view(r_, hd, t * b).transpose(1, 2))
        return [d_w_i, d_b_i, d_w_h, d_gh.sum(-1, keepdim=True), d_w_o, d_b_o]

    def step(self, optimizer: torch.optim.Optimizer, grads: list[torch.Tensor]) -> None:
        for p, g in zip(self.parameters(), grads):
            p.grad = g
        optimizer.step()


def feature_major(data: torch.Tensor) -> torch.Tensor:
    """(N, T, F) windows → (N, F, T), the layout :func:`gather` reads from."""
    return data.transpose(1, 2).contiguous()


def gather(data_nft: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Member batches from (N, F, T) data and indices (R, B) → (R, F, T, B)."""
    r_, b = idx.shape
    rows = data_nft[idx.reshape(-1).to(data_nft.device)]  # (R·B, F, T), whole rows: fast
    return rows.view(r_, b, *data_nft.shape[1:]).permute(0, 2, 3, 1).contiguous()


def sample_batches(pools: torch.Tensor, batch: int, generator: torch.Generator) -> torch.Tensor:
    """For each member, ``batch`` distinct entries of its pool (R, P) → (R, min(batch, P)).

    TimeGAN's ``batch_generator`` draws without replacement within a batch; so does this
    (the ``batch`` smallest of P uniform keys are a uniform random subset).
    """
    take = min(batch, pools.shape[1])
    keys = torch.rand(pools.shape, generator=generator)
    return torch.gather(pools, 1, keys.topk(take, dim=1, largest=False, sorted=False).indices)
