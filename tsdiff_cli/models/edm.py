"""EDM (Karras et al., "Elucidating the Design Space of Diffusion-Based Generative Models",
NeurIPS 2022): preconditioning, the masked training loss of ImagenI2R, and the Heun sampler."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

SIGMA_DATA = 0.5


class Denoiser(nn.Module):
    """D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x; c_noise(σ))  (EDM Table 1, "Ours"):
    c_skip = σd² / (σ² + σd²), c_out = σ σd / √(σ² + σd²), c_in = 1 / √(σ² + σd²), c_noise = ¼ ln σ.

    ``output_map``, when given, is applied to D's output: a projection onto a subspace that holds
    every clean image (the delay-consistent images of :mod:`tsdiff_cli.models.delay`) can only
    bring D closer to its target, since ‖P D − y‖ ≤ ‖D − y‖ for an orthogonal P with P y = y.
    """

    def __init__(self, net: nn.Module, sigma_data: float = SIGMA_DATA,
                 output_map: Callable[[torch.Tensor], torch.Tensor] | None = None):
        super().__init__()
        self.net, self.sigma_data, self.output_map = net, sigma_data, output_map

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, *cond) -> torch.Tensor:
        """``cond`` (a conditional network's conditions) passes through to the network untouched."""
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1)
        sd2 = self.sigma_data ** 2
        c_skip = sd2 / (sigma ** 2 + sd2)
        c_out = sigma * self.sigma_data / (sigma ** 2 + sd2).sqrt()
        c_in = 1 / (sigma ** 2 + sd2).sqrt()
        c_noise = sigma.log().flatten() / 4
        out = c_skip * x + c_out * self.net(c_in * x, c_noise, *cond).to(torch.float32)
        return out if self.output_map is None else self.output_map(out)


def sample_sigma(batch: int, generator: torch.Generator, p_mean: float = -1.2, p_std: float = 1.2,
                 device: str | torch.device = "cpu") -> torch.Tensor:
    """Training noise levels, ln σ ~ N(P_mean, P_std²)  (EDM §5, Table 1)."""
    return (torch.randn(batch, generator=generator) * p_std + p_mean).exp().to(device)


def masked_edm_loss(denoiser: Callable, context: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                    sigma: torch.Tensor, noise: torch.Tensor, sigma_data: float = SIGMA_DATA,
                    noise_all: bool = False, cond: tuple = ()) -> torch.Tensor:
    """The masked EDM loss of ImagenI2R.

    ``context`` is the TST-completed image. By default noise σ·n is added only where ``mask`` is 1
    (observed pixels) and completed pixels stay clean as context (DESIGN's reading of the paper);
    with ``noise_all`` every pixel is noised, as at sampling time, and completed pixels are still
    never scored. ``cond`` (a conditional network's conditions) passes to the denoiser. The EDM-weighted squared error λ(σ) = (σ² + σd²) / (σ σd)²  (EDM Table 1) counts
    observed pixels only, normalised by their number per image; ``target`` outside the mask never
    enters the loss.
    """
    s = sigma.reshape(-1, 1, 1, 1)
    weight = (s ** 2 + sigma_data ** 2) / (s * sigma_data) ** 2
    denoised = denoiser(context + s * noise * (1 if noise_all else mask), sigma, *cond)
    err = weight * (denoised - target) ** 2 * mask
    per_image = err.flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1)
    return per_image.mean()


def karras_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """σ_i = (σmax^(1/ρ) + i/(N−1) (σmin^(1/ρ) − σmax^(1/ρ)))^ρ, then σ_N = 0  (EDM eq. 5)."""
    i = torch.arange(steps, dtype=torch.float64, device=device)
    inv = 1.0 / rho
    sig = (sigma_max ** inv + i / max(steps - 1, 1) * (sigma_min ** inv - sigma_max ** inv)) ** rho
    return torch.cat([sig, sig.new_zeros(1)])


@torch.inference_mode()
def heun_sample(denoiser: Callable, noise: torch.Tensor, steps: int = 18, *, sigma_min: float = 0.002,
                sigma_max: float = 80.0, rho: float = 7.0, churn: float = 0.0, s_tmin: float = 0.0,
                s_tmax: float = float("inf"), s_noise: float = 1.0, generator: torch.Generator | None = None,
                callback: Callable[[int, int], None] | None = None,
                project: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """EDM Algorithm 2: Heun's 2nd-order method with optional stochastic churn.

    ``noise`` is a standard normal tensor of the output shape; ``callback(i, steps)`` is called
    after each step; ``project(x, σ)``, when given, replaces x after the start and after every
    step (inpainting re-imposes the known pixels at the current noise level with it).
    """
    sigmas = karras_sigmas(steps, sigma_min, sigma_max, rho, device=noise.device)
    x = noise.to(torch.float64) * sigmas[0]
    if project is not None:
        x = project(x, sigmas[0])
    ones = x.new_ones(x.shape[0])
    for i in range(steps):
        s_cur, s_next = sigmas[i], sigmas[i + 1]
        gamma = min(churn / steps, 2 ** 0.5 - 1) if s_tmin <= s_cur <= s_tmax else 0.0
        s_hat = s_cur * (1 + gamma)
        if gamma > 0:
            eps = torch.randn(x.shape, generator=generator, dtype=torch.float32).to(x.device, torch.float64)
            x = x + (s_hat ** 2 - s_cur ** 2).sqrt() * s_noise * eps
        d = (x - denoiser(x.float(), ones * s_hat).double()) / s_hat
        x_next = x + (s_next - s_hat) * d
        if s_next > 0:  # second-order correction
            d2 = (x_next - denoiser(x_next.float(), ones * s_next).double()) / s_next
            x_next = x + (s_next - s_hat) * (d + d2) / 2
        x = x_next if project is None else project(x_next, s_next)
        if callback is not None:
            callback(i + 1, steps)
    return x.float()
