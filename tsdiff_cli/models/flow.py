"""Few-step samplers of the forecaster's head: plain functions, one signature.

``net(z, t)`` is the head with its conditions bound; ``noise`` is standard normal of the output
shape; ``callback(i, steps)`` is called after each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

Net = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.inference_mode()
def euler_flow_sample(net: Net, noise: torch.Tensor, steps: int,
                      callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Integrate dz/dt = u(z, t) from t = 0 (noise) to t = 1 (data) with ``steps`` Euler steps
    (flow matching, Lipman et al. 2023, §3: the learnt vector field transports noise to data)."""
    z, dt = noise, 1.0 / steps
    for i in range(steps):
        t = z.new_full((z.shape[0],), i * dt)
        z = z + dt * net(z, t)
        if callback is not None:
            callback(i + 1, steps)
    return z


@torch.inference_mode()
def heun_flow_sample(net: Net, noise: torch.Tensor, steps: int,
                     callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """The same ODE with Heun's method (2 evaluations per step, the last step Euler's, as in
    Karras et al. 2022, Algorithm 1): 2·steps − 1 network evaluations."""
    z, dt = noise, 1.0 / steps
    for i in range(steps):
        t = z.new_full((z.shape[0],), i * dt)
        d = net(z, t)
        z_next = z + dt * d
        if i < steps - 1:
            z_next = z + dt * (d + net(z_next, t + dt)) / 2
        z = z_next
        if callback is not None:
            callback(i + 1, steps)
    return z


@torch.inference_mode()
def ddim_v_sample(net: Net, noise: torch.Tensor, steps: int,
                  callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Deterministic DDIM (Song et al. 2021, eq. 12 with η = 0) for a v-prediction network on the
    cosine schedule α = cos(πt/2), σ = sin(πt/2), from t = 1 (noise) to t = 0: with v̂ = net(z, t),
    x̂ = α z − σ v̂ and ε̂ = σ z + α v̂ (Salimans & Ho 2022, appendix D), z_s = α_s x̂ + σ_s ε̂."""
    z = noise
    ts = torch.linspace(1.0, 0.0, steps + 1).tolist()
    for i in range(steps):
        t, s = ts[i], ts[i + 1]
        a_t, s_t = math.cos(0.5 * math.pi * t), math.sin(0.5 * math.pi * t)
        a_s, s_s = math.cos(0.5 * math.pi * s), math.sin(0.5 * math.pi * s)
        v = net(z, z.new_full((z.shape[0],), t))
        x_hat, eps_hat = a_t * z - s_t * v, s_t * z + a_t * v
        z = a_s * x_hat + s_s * eps_hat
        if callback is not None:
            callback(i + 1, steps)
    return z
