"""Filling the gaps of series longer than a generator's window, with its TST or by diffusion.

Both work on a batch of series (S, R, F) in the generator's [0, 1] space with NaN where a value
is missing, R ≥ the window length T:

- ``tst_fill``: the TST completes every stride-1 window; each row's prediction is the mean over
  the windows that cover it (one deterministic filling, fast).
- ``inpaint``: the series is tiled with windows of T (the last one aligned to the end) and each
  tile is sampled by the Heun sampler while its observed pixels are re-imposed after every step
  at the current noise level, x_known + σ·ε with fresh ε (the replacement method of Song et al.
  2021, "Score-Based Generative Modeling through SDEs", App. I.2; RePaint without resampling);
  K draws give K fillings.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tsdiff_cli.models.edm import heun_sample
from tsdiff_cli.models.generator import Generator


def overlap_mean(windows: torch.Tensor, starts: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows (S, n, T, F) starting at rows ``starts`` (n,) → the per-row mean (S, rows, F) over
    the windows covering each row, and the cover count (rows,). Rows no window covers are NaN."""
    s, n, t, f = windows.shape
    index = (starts.view(-1, 1) + torch.arange(t, device=windows.device)).flatten()  # (n·T,)
    sums = windows.new_zeros(s, rows, f).index_add_(1, index, windows.reshape(s, n * t, f))
    count = windows.new_zeros(rows).index_add_(0, index, windows.new_ones(n * t))
    mean = sums / count.view(1, -1, 1)
    return mean, count


def _check_length(series: torch.Tensor, seq_len: int) -> None:
    if series.shape[1] < seq_len:
        raise ValueError(f"series of {series.shape[1]} rows is shorter than the window length {seq_len}")


@torch.inference_mode()
def tst_fill(model: Generator, series: torch.Tensor, batch_size: int = 4096,
             callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """The TST's completion of ``series`` (S, R, F): observed values kept, gaps from the mean of
    the TST predictions of every stride-1 window covering them."""
    _check_length(series, model.cfg.seq_len)
    mean = model.decode(_tst_mean(model, model.encode(series), batch_size, callback))
    return torch.where(torch.isnan(series), mean, series)


def _tst_mean(model: Generator, series: torch.Tensor, batch_size: int = 4096,
              callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """The mean TST prediction for every row of ``series`` (S, R, F), in the model's own space."""
    t = model.cfg.seq_len
    s, r, f = series.shape
    windows = series.unfold(1, t, 1).transpose(2, 3)  # (S, n, T, F)
    n = windows.shape[1]
    flat = windows.reshape(s * n, t, f)
    model.tst.eval()
    parts = []
    for i in range(0, s * n, batch_size):
        parts.append(model.tst(flat[i:i + batch_size]))
        if callback is not None:
            callback(min(i + batch_size, s * n), s * n)
    preds = torch.cat(parts)
    mean, _ = overlap_mean(preds.view(s, n, t, f), torch.arange(n, device=series.device), r)
    return mean


def tile_starts(rows: int, seq_len: int) -> torch.Tensor:
    """Starts of windows of ``seq_len`` tiling ``rows``: every seq_len, the last one flush with the end."""
    starts = list(range(0, rows - seq_len + 1, seq_len))
    if starts[-1] + seq_len < rows:
        starts.append(rows - seq_len)
    return torch.tensor(starts)


@torch.inference_mode()
def inpaint(model: Generator, series: torch.Tensor, samples: int, *, steps: int = 18, seed: int = 0,
            batch_size: int = 512, start_sigma: float | None = None,
            callback: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """``samples`` fillings (K, S, R, F) of ``series`` (S, R, F) by diffusion inpainting; observed
    values are kept exactly.

    ``start_sigma`` None samples from pure noise (σ_max = 80). A value such as 1 starts instead from
    the TST completion noised to that level and samples down from there (SDEdit, Meng et al. 2022,
    combined with the replacement above): the draws scatter around the TST's filling.
    """
    t, device = model.cfg.seq_len, series.device
    _check_length(series, t)
    s, r, f = series.shape
    starts = tile_starts(r, t).to(device)
    encoded = model.encode(series)  # the model's own space (each feature's rank with a quantile map)
    if start_sigma is not None:  # the TST completion, with the whole series as context, then tiled
        completed = torch.where(torch.isnan(encoded), _tst_mean(model, encoded), encoded)
    tiles = encoded[:, starts.view(-1, 1) + torch.arange(t, device=device)]  # (S, n, T, F)
    n = tiles.shape[1]
    flat = tiles.reshape(s * n, t, f).repeat(samples, 1, 1)  # (K·S·n, T, F), sample-major
    known = ~torch.isnan(flat)
    # known pixels: observed values; the padding pixels of the delay image (always 0 in training)
    pixels = model.to_image(torch.nan_to_num(flat, nan=0.5))
    if start_sigma is not None:
        first = completed[:, starts.view(-1, 1) + torch.arange(t, device=device)].reshape(s * n, t, f).repeat(samples, 1, 1)
        start_px = model.to_image(first)
    known_px = model.embed.to_image(known.to(flat.dtype)) > 0.5
    pad = model.embed.to_image(torch.ones_like(flat[:1])) < 0.5
    known_px = known_px | pad
    pixels = torch.where(pad, torch.zeros_like(pixels), pixels)
    gen = torch.Generator().manual_seed(seed)
    model.eval()
    out = []
    total = flat.shape[0]
    batches = -(-total // batch_size)
    for b, lo in enumerate(range(0, total, batch_size)):
        x0, mask = pixels[lo:lo + batch_size].double(), known_px[lo:lo + batch_size]

        def project(x, sigma, x0=x0, mask=mask):
            eps = torch.randn(x.shape, generator=gen).to(device, torch.float64)
            return torch.where(mask, x0 + sigma * eps, x)

        noise = torch.randn(x0.shape, generator=gen).to(device)
        if start_sigma is not None:  # heun_sample starts at σ_max · noise: shift it to the completion
            noise = noise + start_px[lo:lo + batch_size] / start_sigma
        images = heun_sample(model.denoiser, noise, steps, generator=gen, project=project,
                             sigma_max=80.0 if start_sigma is None else start_sigma,
                             callback=None if callback is None else (lambda i, k, b=b: callback(b * k + i, batches * k)))
        out.append(model.to_windows(images))
    windows = torch.cat(out).view(samples, s, n, t, f)
    rows = torch.arange(r, device=device)
    tile = torch.searchsorted(starts, rows, right=True) - 1  # the last tile starting at or before each row
    filled = windows[:, :, tile, rows - starts[tile]]  # (K, S, R, F)
    return torch.where(torch.isnan(series).unsqueeze(0), filled, series.unsqueeze(0))
