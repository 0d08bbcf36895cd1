"""Conditions of the generator: labels, numeric metadata and captions → one embedding per sample
(added to the U-Net's noise-level embedding, as EDM and ADM add a class embedding) and, for
captions, token features the U-Net cross-attends to (Rombach et al. 2022, "High-Resolution Image
Synthesis with Latent Diffusion Models", §3.3).

Every part has a *null* value, which classifier-free guidance needs (Ho & Salimans 2021,
"Classifier-Free Diffusion Guidance", §3.1, Algorithm 1): categorical code −1 (its own learnt
embedding), a numeric NaN (the MLP sees value 0 with a "present" flag 0), a caption of padding
only (the caption's learnt first token alone). :func:`drop_conditions` replaces conditions by their null with
probability ``p`` during training; :class:`Guided` combines the conditional and unconditional
denoiser at sampling, D̃ = D_uncond + w · (D_cond − D_uncond)  (Ho & Salimans eq. 6, written in
the denoiser's output, which is affine in the noise prediction for a given x and σ).

The caption encoder is trained with the generator (no model is downloaded): word embeddings over
a vocabulary built from the training captions (:mod:`tsdiff_cli.data.conditions`), optionally a
small transformer over them, mean-pooled over the caption's words. Or, with ``text_in``, captions
arrive as sentence embeddings of a frozen local model (:mod:`tsdiff_cli.data.sentences`): each is
projected to one caption token (an all-zero embedding is the null caption).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

NULL_CODE = -1  # a categorical condition's null value
PAD = 0  # caption token ids: 0 padding, 1 unknown word, 2… the vocabulary


@dataclass
class ConditionConfig:
    dim: int  # the embedding width (the U-Net's noise-embedding width)
    categories: list[int] = field(default_factory=list)  # values per categorical condition
    numerics: int = 0  # numeric conditions (standardised)
    vocab: int = 0  # caption token ids (padding and unknown included); 0: no captions
    text_dim: int = 64  # caption token width (the U-Net's cross-attention context)
    text_layers: int = 0  # transformer layers over the caption tokens (0: embeddings only)
    text_in: int = 0  # captions as sentence embeddings of this width (0: as word ids)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Conditions:
    """A batch of conditions: ``cats`` (B, K) codes (−1 null), ``nums`` (B, M) standardised values
    (NaN null), ``tokens`` (B, L) caption token ids (all padding: null) or (B, E) sentence
    embeddings (all zero: null)."""

    cats: torch.Tensor | None = None
    nums: torch.Tensor | None = None
    tokens: torch.Tensor | None = None

    def parts(self) -> list[torch.Tensor | None]:
        return [self.cats, self.nums, self.tokens]

    def cat(self, other: Conditions) -> Conditions:
        return Conditions(*(None if a is None else torch.cat([a, b]) for a, b in zip(self.parts(), other.parts())))

    def index(self, idx) -> Conditions:
        return Conditions(*(None if a is None else a[idx] for a in self.parts()))

    def to(self, device) -> Conditions:
        return Conditions(*(None if a is None else a.to(device) for a in self.parts()))

    def null(self) -> Conditions:
        """The same batch with every condition null."""
        return Conditions(None if self.cats is None else torch.full_like(self.cats, NULL_CODE),
                          None if self.nums is None else torch.full_like(self.nums, float("nan")),
                          None if self.tokens is None else torch.full_like(self.tokens, PAD))


def drop_conditions(c: Conditions, p: float, generator: torch.Generator, joint: bool = True, shard=None) -> Conditions:
    """Each sample's conditions replaced by null with probability ``p``: all parts together
    (``joint``) or each part (labels, numerics, caption) on its own draw. ``shard`` (the training
    loop's): draws made for the global batch, cut to this process's rows."""
    parts = c.parts()
    batch = next(a.shape[0] for a in parts if a is not None)
    if shard is None:
        draws = torch.rand(batch if joint else (3, batch), generator=generator)
    else:
        draws = shard.rand(batch, generator, lead=() if joint else (3,))
    null = c.null().parts()
    out = []
    for i, (a, n) in enumerate(zip(parts, null)):
        if a is None:
            out.append(None)
            continue
        drop = (draws if joint else draws[i]).to(a.device) < p
        out.append(torch.where(drop.view(-1, *([1] * (a.dim() - 1))), n, a))
    return Conditions(*out)


class ConditionEncoder(nn.Module):
    def __init__(self, c: ConditionConfig):
        super().__init__()
        self.c = c
        # index 0 of each table is the null value (codes are shifted by one)
        self.categorical = nn.ModuleList(nn.Embedding(n + 1, c.dim) for n in c.categories)
        if c.numerics:
            self.numeric = nn.Sequential(nn.Linear(2 * c.numerics, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
        if c.vocab:
            # a caption's tokens: its words' embeddings, or its sentence embedding projected to one token
            self.words = nn.Linear(c.text_in, c.text_dim) if c.text_in else nn.Embedding(c.vocab, c.text_dim, padding_idx=PAD)
            # a learnt first token every caption has: a null caption (padding only) is this token alone
            self.start = nn.Parameter(torch.randn(c.text_dim) * 0.02)
            layer = nn.TransformerEncoderLayer(c.text_dim, max(1, c.text_dim // 32), 2 * c.text_dim, 0.0,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.text = nn.TransformerEncoder(layer, c.text_layers, enable_nested_tensor=False) if c.text_layers else None
            self.caption = nn.Linear(c.text_dim, c.dim)

    def forward(self, cond: Conditions) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """(embedding (B, dim), caption tokens (B, 1 + L, text_dim) or None, their padding mask
        (True = padding; the first, learnt token never is))."""
        parts = []
        if self.categorical:
            codes = cond.cats.long() + 1  # null −1 → 0
            parts += [emb(codes[:, k]) for k, emb in enumerate(self.categorical)]
        if self.c.numerics:
            present = torch.isfinite(cond.nums)
            values = torch.where(present, cond.nums, torch.zeros_like(cond.nums))
            parts.append(self.numeric(torch.cat([values, present.to(values.dtype)], dim=1)))
        context = pad = None
        if self.c.vocab:
            if self.c.text_in:  # one token per caption; a null caption is an all-zero embedding
                sentence = cond.tokens.to(self.words.weight.dtype)
                words, absent = self.words(sentence)[:, None], (sentence == 0).all(1, keepdim=True)
            else:
                tokens = cond.tokens.long()
                words, absent = self.words(tokens), tokens == PAD
            start = self.start.expand(words.shape[0], 1, -1)
            context = torch.cat([start, words], dim=1)  # (B, 1 + L, text_dim)
            pad = torch.cat([torch.zeros_like(absent[:, :1]), absent], dim=1)
            if self.text is not None:
                context = self.text(context, src_key_padding_mask=pad)
            keep = (~pad)[..., None].to(context.dtype)
            parts.append(self.caption((context * keep).sum(1) / keep.sum(1)))
        emb = torch.stack(parts).sum(0) if parts else None
        return emb, context, pad


class Guided:
    """Classifier-free guidance around a conditional denoiser ``D(x, σ, cond)``: one batched call
    for the conditional and the null condition, D_uncond + w · (D_cond − D_uncond). w = 1 is the
    conditional denoiser alone, w = 0 the unconditional one (one call each)."""

    def __init__(self, denoiser, cond: Conditions, weight: float):
        if weight < 0:
            raise ValueError("guidance must be ≥ 0")
        self.denoiser, self.cond, self.weight = denoiser, cond, weight

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if self.weight == 1:
            return self.denoiser(x, sigma, self.cond)
        if self.weight == 0:
            return self.denoiser(x, sigma, self.cond.null())
        both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), self.cond.cat(self.cond.null()))
        cond, uncond = both.chunk(2)
        return uncond + self.weight * (cond - uncond)


class ConditionalNet(nn.Module):
    """A U-Net and its condition encoder as one network ``F(x, noise_label, cond)``, so that the
    EDM preconditioning wraps it unchanged."""

    def __init__(self, unet: nn.Module, encoder: ConditionEncoder):
        super().__init__()
        self.unet, self.encoder = unet, encoder

    def forward(self, x: torch.Tensor, noise_label: torch.Tensor, cond: Conditions) -> torch.Tensor:
        emb, context, pad = self.encoder(cond)
        return self.unet(x, noise_label, emb, context, pad)
