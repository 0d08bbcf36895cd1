"""The ImagenI2R generator: TST completion + delay-embedded images + an EDM-preconditioned U-Net.

``GeneratorConfig`` holds architecture only (it travels in the metadata of model.safetensors);
``sample_windows`` turns Gaussian noise into regular windows in [0, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from tsdiff_cli.models import marginal
from tsdiff_cli.models.condition import ConditionalNet, ConditionConfig, ConditionEncoder, Conditions, Guided
from tsdiff_cli.models.delay import DelayEmbedding
from tsdiff_cli.models.edm import Denoiser, heun_sample
from tsdiff_cli.models.tst import TST, TSTConfig
from tsdiff_cli.models.unet import UNet, UNetConfig


@dataclass
class GeneratorConfig:
    seq_len: int
    features: int
    delay: int
    embedding: int
    tst: TSTConfig
    unet: UNetConfig
    project: bool  # denoiser output projected onto delay-consistent images
    condition: ConditionConfig | None = None  # conditional generation: the condition encoder
    quantiles: int = 0  # knots of the per-feature quantile map (0: the data as it is)
    quantile_features: str = "all"  # which features it ranks ("lumpy": see models.marginal.is_lumpy)
    quantile_output: str = "uniform"  # the map's grid: ranks, or normal scores (models.marginal.knot_probabilities)

    def to_json(self) -> str:
        return json.dumps({"seq_len": self.seq_len, "features": self.features, "delay": self.delay,
                           "embedding": self.embedding, "tst": self.tst.to_dict(), "unet": self.unet.to_dict(),
                           "project": self.project,
                           **({"condition": self.condition.to_dict()} if self.condition else {}),
                           **({"quantiles": self.quantiles} if self.quantiles else {}),
                           **({"quantile_features": self.quantile_features}
                              if self.quantiles and self.quantile_features != "all" else {}),
                           **({"quantile_output": self.quantile_output}
                              if self.quantiles and self.quantile_output != "uniform" else {})})

    @classmethod
    def from_json(cls, text: str) -> GeneratorConfig:
        d = json.loads(text)
        cond = ConditionConfig(**d["condition"]) if d.get("condition") else None
        return cls(d["seq_len"], d["features"], d["delay"], d["embedding"], TSTConfig(**d["tst"]), UNetConfig(**d["unet"]),
                   d.get("project", False), cond, d.get("quantiles", 0),
                   d.get("quantile_features", "all"), d.get("quantile_output", "uniform"))


def image_multiple(channel_mult: list[int]) -> int:
    """The U-Net halves the image once per extra resolution level."""
    return 2 ** (len(channel_mult) - 1)


KNOTS = "knots"  # the quantile map's tensor, in the model and in its files


class Generator(nn.Module):
    """The trainable parts: ``tst`` (completion) and ``denoiser`` (EDM-wrapped U-Net); with
    ``quantiles``, both work on each feature's rank (``encode``) and samples come back through
    the ``knots`` (:mod:`tsdiff_cli.models.marginal`), a buffer fitted on the training data."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.cfg = cfg
        self.tst = TST(cfg.tst)
        self.embed = DelayEmbedding(cfg.seq_len, cfg.delay, cfg.embedding, image_multiple(cfg.unet.channel_mult))
        unet = UNet(cfg.unet)
        net = unet if cfg.condition is None else ConditionalNet(unet, ConditionEncoder(cfg.condition))
        self.denoiser = Denoiser(net, output_map=self.embed.project if cfg.project else None)
        if cfg.quantiles:
            self.register_buffer(KNOTS, torch.linspace(0, 1, cfg.quantiles).repeat(cfg.features, 1))
        else:
            self.knots = None

    def file_tensors(self, tst_only: bool = False) -> dict[str, torch.Tensor]:
        """The weights as a model file holds them: ``tst.*`` and ``denoiser.*`` (the TST's alone,
        unprefixed, with ``tst_only``), and the quantile map, which goes with either: the TST
        learnt each feature's rank."""
        if tst_only:
            tensors = dict(self.tst.state_dict())
        else:
            tensors = {f"tst.{k}": v for k, v in self.tst.state_dict().items()}
            tensors.update({f"denoiser.{k}": v for k, v in self.denoiser.state_dict().items()})
        if self.knots is not None:
            tensors[KNOTS] = self.knots
        return tensors

    def load_file_tensors(self, tensors: dict[str, torch.Tensor], tst_only: bool = False) -> None:
        """Weights from :meth:`file_tensors` (with ``tst_only``: a TST file's, the denoiser left as it is)."""
        if tst_only:
            self.tst.load_state_dict({k: v for k, v in tensors.items() if k != KNOTS})
        else:
            self.tst.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("tst.")})
            self.denoiser.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("denoiser.")})
        if self.knots is not None:
            self.knots.copy_(tensors[KNOTS])

    def encode(self, windows01: torch.Tensor, ties: torch.Generator | None = None) -> torch.Tensor:
        """Data windows (NaN gaps allowed) → the space the networks learn in (the ranks, or as is);
        with a ``ties`` generator, tied values at random places inside their ties (training data:
        ``marginal.encode_ties_at_random``)."""
        if self.knots is None:
            return windows01
        if ties is None:
            return marginal.encode(windows01, self.knots)
        return marginal.encode_ties_at_random(windows01, self.knots, self.cfg.quantile_output, ties)

    def decode(self, windows: torch.Tensor) -> torch.Tensor:
        """The networks' windows → data windows in [0, 1]."""
        return windows if self.knots is None else marginal.decode(windows, self.knots)

    def to_image(self, windows01: torch.Tensor) -> torch.Tensor:
        """Windows in [0, 1] → images in [−1, 1] (the EDM data range, σ_data = 0.5)."""
        return self.embed.to_image(windows01 * 2 - 1)

    def to_windows(self, images: torch.Tensor) -> torch.Tensor:
        """Images → data windows in [0, 1] (through the quantile map when there is one)."""
        return self.decode(((self.embed.to_series(images) + 1) / 2).clamp(0, 1))


def sample_in_batches(model: Generator, n: int, *, steps: int = 18, churn: float = 0.0, seed: int = 0,
                   batch_size: int = 512, device: str | torch.device = "cpu", bf16: bool = False,
                   callback: Callable[[int, int], None] | None = None, cond: Conditions | None = None,
                   guidance: float = 1.0) -> Iterator[np.ndarray]:
    """``n`` regular windows in [0, 1] from the model's denoiser (Heun, EDM Alg. 2), yielded
    ``batch_size`` at a time as (b, T, F) arrays, so that any ``n`` fits in memory.

    A conditional model samples window i under ``cond`` row i (all null when ``cond`` is None:
    the unconditional distribution), guided with weight ``guidance`` (classifier-free guidance,
    :class:`~tsdiff_cli.models.condition.Guided`).

    ``bf16`` runs the U-Net under bfloat16 autocast; the sampler's state, the preconditioning and
    the projection stay in float32/float64, and the network's output is scaled by c_out ≤ σ, so
    its rounding error stays below the noise level of every step."""
    gen = torch.Generator().manual_seed(seed)
    side, features = model.embed.side, model.cfg.features
    model.eval()
    batches = -(-n // batch_size)
    if model.cfg.condition is not None and cond is None:
        cond = null_conditions(model.cfg.condition, n)
    for b in range(batches):
        size = min(batch_size, n - b * batch_size)
        with torch.inference_mode():
            noise = torch.randn(size, features, side, side, generator=gen).to(device)
            denoiser = model.denoiser
            if model.cfg.condition is not None:
                part = cond.index(slice(b * batch_size, b * batch_size + size)).to(device)
                denoiser = Guided(model.denoiser, part, guidance)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
                images = heun_sample(denoiser, noise, steps, churn=churn, generator=gen,
                                     callback=None if callback is None else (lambda i, s, b=b: callback(b * s + i, batches * s)))
            out = model.to_windows(images).cpu().numpy()
        yield out


def null_conditions(c: ConditionConfig, n: int, tokens: int = 1) -> Conditions:
    """``n`` rows of null conditions for a condition encoder of config ``c``."""
    return Conditions(torch.full((n, len(c.categories)), -1, dtype=torch.long) if c.categories else None,
                      torch.full((n, c.numerics), float("nan")) if c.numerics else None,
                      (torch.zeros((n, c.text_in)) if c.text_in else torch.zeros((n, tokens), dtype=torch.long))
                      if c.vocab else None)


def sample_windows(model: Generator, n: int, **kwargs) -> np.ndarray:
    """``n`` windows (n, T, F) in [0, 1] at once (see :func:`sample_in_batches` for the arguments)."""
    return np.concatenate(list(sample_in_batches(model, n, **kwargs)))
