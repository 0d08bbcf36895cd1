"""Per-feature quantile maps: each feature's values ↔ their rank (or normal score) in the
training data, in [0, 1].

A diffusion model with a Gaussian corruption learns smooth, unimodal marginals fastest; a feature
that is mostly one value (a light that is off), takes a few discrete levels, or has a heavy tail
(an appliance's rare spikes) costs it many steps, and until it has learnt them its samples blur
the levels and spread the tail — a discriminator's easiest clue. Mapping every feature through
its empirical distribution function first (the quantile transform of TabDDPM, Kotelnikov et al.
2023, §3) gives the network simple marginals; mapping its samples back through the quantile
function puts them on the data's own values (a flat stretch of the quantile function returns the
exact level). The map's output stays in [0, 1], so the generator's range and EDM's σ_data stay as
they are.

``fit_knots`` takes K quantiles of each feature's observed values: at K evenly spaced
probabilities (``output="uniform"``: a value becomes its rank), or at the probabilities Φ(z) of K
evenly spaced normal scores z in [−Z_MAX, Z_MAX] (``output="normal"``: a value becomes its normal
score, rescaled to [0, 1]: TabDDPM's Gaussian target). The two differ in the tails: on the uniform
grid the top 1 % of a heavy-tailed feature (energy's Appliances: 0.53–1.0 after min-max scaling)
is squeezed into the top 1 % of [0, 1], thinner than a sampler's error there, so samples jump to
the feature's maximum; on the normal grid it spans 17 % of [0, 1] (z from 2.33 to 3.5).
``encode`` is a value's position among the knots over K − 1 (a value shared by several knots, as
a discrete level is, maps to the middle of their range: its mid-rank), ``decode`` the quantile
function, linear between knots; neither depends on the grid. Both are vectorised gathers /
searches with no loop over values; the knots travel with the model's weights.

``encode_ties_at_random`` is ``encode`` for training data with ties broken at random: a tied
value's probability is drawn uniformly inside its tie: the distributional transform
F(x−) + V·(F(x) − F(x−)), V ~ U(0, 1), of Rüschendorf (2009, "On the distributional transform,
Sklar's theorem, and the empirical copula process"), which makes a discrete feature's encoded
marginal uniform (on the normal grid: normal) instead of one spike per level. ``decode`` is
unchanged and returns every point of a tie to its level, so the model may sample anywhere in it.
"""

from __future__ import annotations

import numpy as np
import torch


LUMPY_MODE_SHARE = 0.2  # a value held by ≥ 20 % of the observations: a point mass (a switch that is off)
LUMPY_SKEW = 2.0  # |skewness| above 2: a heavy one-sided tail (a meter's rare spikes)
Z_MAX = 3.5  # the normal grid's outer scores: probabilities 0.00023 … 0.99977
OUTPUTS = ("uniform", "normal")


def is_lumpy(values: np.ndarray) -> bool:
    """Whether a feature's observed ``values`` have a point mass or a heavy tail: what a Gaussian
    corruption learns slowest, and what the quantile map is for."""
    if len(values) < 2:
        return False
    _, counts = np.unique(values, return_counts=True)
    sd = values.std()
    skew = float(np.mean(((values - values.mean()) / sd) ** 3)) if sd > 0 else 0.0
    return counts.max() >= LUMPY_MODE_SHARE * len(values) or abs(skew) > LUMPY_SKEW


def knot_probabilities(knots: int, output: str = "uniform") -> np.ndarray:
    """The K probabilities the knots sit at: evenly spaced (``"uniform"``), or Φ of evenly spaced
    normal scores in [−Z_MAX, Z_MAX] (``"normal"``), so that a knot's index is affine in its score."""
    if output not in OUTPUTS:
        raise ValueError(f"quantile output {output!r}: one of {OUTPUTS}")
    if output == "uniform":
        return np.linspace(0.0, 1.0, knots)
    z = torch.linspace(-Z_MAX, Z_MAX, knots, dtype=torch.float64)
    probs = torch.special.ndtr(z).numpy()
    probs[0], probs[-1] = 0.0, 1.0  # the outer knots on the data's minimum and maximum, as on the uniform grid
    return probs


def fit_knots(observed: np.ndarray, knots: int, only_lumpy: bool = False, output: str = "uniform") -> np.ndarray:
    """(F, K) quantiles at the ``knot_probabilities(K, output)`` of each feature's observed values
    (NaN ignored) in ``observed`` (..., F); a feature with no observed value gets 0…1. With
    ``only_lumpy``, a feature that ``is_lumpy`` does not pick gets K evenly spaced knots from its
    minimum to its maximum instead: an affine map (the identity on min-max scaled data)."""
    flat = np.asarray(observed, dtype=np.float64).reshape(-1, observed.shape[-1])
    probs = knot_probabilities(knots, output)
    out = np.empty((flat.shape[1], knots))
    for f in range(flat.shape[1]):  # one sort per feature
        values = flat[:, f][~np.isnan(flat[:, f])]
        if not len(values):
            out[f] = np.linspace(0.0, 1.0, knots)
        elif only_lumpy and not is_lumpy(values) and values.max() > values.min():
            out[f] = np.linspace(values.min(), values.max(), knots)
        else:
            out[f] = np.quantile(values, probs)
    return out.astype(np.float32)


def _positions(x: torch.Tensor, knots: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Values ``x`` (..., F) → (F, N) tensors: the mid-rank position among ``knots`` (F, K), in
    0 … K − 1, with the first knot ≥ x (``left``), the first > x (``right``) and where x is NaN."""
    f, k = knots.shape
    xt = x.reshape(-1, f).t().contiguous().to(knots.dtype)  # (F, N)
    missing = torch.isnan(xt)
    xt = torch.nan_to_num(xt, nan=0.0)
    left = torch.searchsorted(knots, xt, right=False)  # first knot ≥ x
    right = torch.searchsorted(knots, xt, right=True)  # first knot > x
    tied = (left + right - 1).to(xt.dtype) / 2  # x equals knots left … right−1
    hi = right.clamp(1, k - 1)
    k_lo, k_hi = knots.gather(1, hi - 1), knots.gather(1, hi)
    frac = ((xt - k_lo) / (k_hi - k_lo).clamp_min(1e-12)).clamp(0, 1)
    between = (hi - 1).to(xt.dtype) + frac
    pos = torch.where(right > left, tied, between)
    pos = torch.where(right == 0, torch.zeros_like(pos), pos)  # below the first knot
    pos = torch.where(left == k, torch.full_like(pos, k - 1), pos)  # above the last
    return pos, left, right, missing


def encode(x: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Values ``x`` (..., F) → their mid-rank probability in [0, 1] under ``knots`` (F, K);
    NaN stays NaN, values beyond the outer knots map to 0 / 1."""
    k = knots.shape[1]
    pos, _, _, missing = _positions(x, knots)
    u = torch.where(missing, torch.full_like(pos, float("nan")), pos / (k - 1))
    return u.t().reshape(x.shape).to(x.dtype)


def encode_ties_at_random(windows: torch.Tensor, knots: torch.Tensor, output: str,
                          generator: torch.Generator) -> torch.Tensor:
    """``encode`` of ``windows`` (N, L, F), except that a value tied among knots left … right−1
    (a discrete level) maps to the probability probs[left] + V·(probs[right−1] − probs[left]) of
    the ``output`` grid rather than to its middle, V ~ U(0, 1) drawn from ``generator`` once per
    window and feature: a level held through a window stays one value in it, as in the data."""
    f, k = knots.shape
    pos, left, right, missing = _positions(windows, knots)
    v = torch.rand(*windows.shape[:-2], 1, f, generator=generator, dtype=torch.float64)
    v = v.expand(windows.shape).reshape(-1, f).t().to(knots.device)
    probs = torch.as_tensor(knot_probabilities(k, output), device=knots.device)
    lo, hi = left.clamp(max=k - 1), (right - 1).clamp(min=0)
    p = probs[lo] + v * (probs[hi] - probs[lo])
    # the probability's position on the grid: linear between the knots' probabilities
    idx = torch.searchsorted(probs, p, right=True).clamp(1, k - 1)
    frac = ((p - probs[idx - 1]) / (probs[idx] - probs[idx - 1]).clamp_min(1e-300)).clamp(0, 1)
    drawn = torch.minimum(torch.maximum(idx - 1 + frac, lo.to(p.dtype)), hi.to(p.dtype)).to(pos.dtype)
    pos = torch.where((right - left) >= 2, drawn, pos)
    u = torch.where(missing, torch.full_like(pos, float("nan")), pos / (k - 1))
    return u.t().reshape(windows.shape).to(windows.dtype)


def decode(u: torch.Tensor, knots: torch.Tensor) -> torch.Tensor:
    """Probabilities ``u`` (..., F) → values: the quantile function, linear between knots."""
    f, k = knots.shape
    shape = u.shape
    pos = u.reshape(-1, f).t().to(knots.dtype).clamp(0, 1) * (k - 1)  # (F, N)
    lo = pos.floor().long().clamp(0, k - 2)
    frac = pos - lo
    x = knots.gather(1, lo) * (1 - frac) + knots.gather(1, lo + 1) * frac
    return x.t().reshape(shape).to(u.dtype)
