"""Trust the instrument: the metrics measure what they claim, on real (stock) data.

Reduced iterations keep the suite fast; the full protocol is exercised by benchmarks/.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsdiff_cli.data.synthetic import sine_windows
from tsdiff_cli.data.windows import sliding_windows
from tsdiff_cli.metrics import context_fid, correlation_score, discriminative_score, predictive_score
from tsdiff_cli.metrics.context_fid import frechet_distance
from tsdiff_cli.metrics.correlation import cross_correlation
from tsdiff_cli.metrics.gru import GRUEnsemble
from conftest import data_file


@pytest.fixture(scope="module")
def stock():
    """Stock windows as the paper makes them (reversed rows, min-max, 24 steps), shuffled."""
    import pandas as pd

    raw = pd.read_csv(data_file("stock_data.csv")).to_numpy()[::-1]
    scaled = (raw - raw.min(0)) / (raw.max(0) - raw.min(0) + 1e-7)
    windows = sliding_windows(scaled, 24).astype(np.float32)
    return windows[np.random.default_rng(0).permutation(len(windows))]


@pytest.fixture(scope="module")
def halves(stock):
    half = len(stock) // 2
    return stock[:half], stock[half:]


@pytest.fixture(scope="module")
def noise(stock):
    return np.random.default_rng(1).random(stock.shape).astype(np.float32)


FAST = dict(repeats=3, iterations=400)


def test_ensemble_equals_independent_torch_grus():
    """Forward pass equals torch.nn.GRU per member; hand-written gradients equal autograd's."""
    r_, b, t, f, h = 3, 5, 7, 4, 2
    model = GRUEnsemble(r_, f, h, 1, generator=torch.Generator().manual_seed(1))
    x = torch.randn(r_, b, t, f, dtype=torch.float32)
    d_out = torch.randn(r_, 1, t, b)
    states, cache = model.run(x.permute(0, 3, 2, 1))
    grads = model.grads(cache, d_out)
    for m in range(r_):
        gru = torch.nn.GRU(f, h, batch_first=True)
        with torch.no_grad():
            gru.weight_ih_l0.copy_(model.w_i[m])
            gru.weight_hh_l0.copy_(model.w_h[m])
            gru.bias_ih_l0.copy_(model.b_i[m, :, 0])
            gru.bias_hh_l0.copy_(model.b_h[m, :, 0])
        w_o = model.w_o[m].detach().clone().requires_grad_()
        b_o = model.b_o[m].detach().clone().requires_grad_()
        out, _ = gru(x[m])
        torch.testing.assert_close(out, states[m].permute(2, 1, 0), atol=1e-6, rtol=1e-5)
        ((out @ w_o.T + b_o[:, 0]) * d_out[m].permute(2, 1, 0)).sum().backward()
        expected = [gru.weight_ih_l0.grad, gru.bias_ih_l0.grad, gru.weight_hh_l0.grad, gru.bias_hh_l0.grad, w_o.grad, b_o.grad]
        got = [grads[0][m], grads[1][m, :, 0], grads[2][m], grads[3][m, :, 0], grads[4][m], grads[5][m]]
        for e, g in zip(expected, got):
            torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-4)


def test_disjoint_halves_are_indistinguishable(halves):
    assert np.mean(discriminative_score(*halves, **FAST)) <= 0.05


def test_noise_is_obvious(stock, noise):
    assert np.mean(discriminative_score(stock, noise, **FAST)) >= 0.45


def test_shuffled_features_are_caught(halves):
    a, b = halves
    base = np.mean(discriminative_score(a, b, **FAST))
    shuffled = np.mean(discriminative_score(a, b[:, :, [5, 0, 1, 2, 3, 4]].copy(), **FAST))
    assert shuffled > base + 0.15


def test_time_reversal_is_caught_where_time_has_a_direction():
    # On stock, reversed windows are statistically almost the same (a price path read backwards
    # is still a price path): measured 0.012 vs 0.011 for the halves, so there the metric is
    # blind by nature. Sines with phase in [0, 0.1] rise first: reversal is visible.
    x = sine_windows(3000, 24, 5, np.random.default_rng(0)).astype(np.float32)
    a, b = x[:1500], x[1500:]
    base = np.mean(discriminative_score(a, b, **FAST))
    reversed_ = np.mean(discriminative_score(a, b[:, ::-1].copy(), **FAST))
    assert reversed_ > base + 0.2


def test_context_fid_separates_real_from_noise(halves, noise):
    a, b = halves
    same = context_fid(a, b, repeats=1, iterations=60)[0]
    far = context_fid(a, noise[: len(a)], repeats=1, iterations=60)[0]
    assert far > 20 * max(same, 1e-3)


def test_ts2vec_learns_and_context_fid_ranks_what_it_should(halves, noise):
    """TS2Vec's contrastive loss falls while it trains, its crops keep every series' own steps,
    and Context-FID orders: another sample of the real data < the real data with each window's
    steps shuffled (marginals kept, time structure lost) < noise."""
    from tsdiff_cli.metrics.ts2vec import random_crops, train_ts2vec

    a, b = halves
    losses: list[float] = []
    train_ts2vec(torch.from_numpy(a), iterations=120, seed=0, losses=losses)
    # the loss's scale moves with each batch's random crop lengths: compare averages (measured 4.4 → 3.8)
    assert np.mean(losses[-40:]) < 0.93 * np.mean(losses[:20]), (np.mean(losses[:20]), np.mean(losses[-40:]))

    series = torch.arange(5 * 24 * 1, dtype=torch.float32).view(5, 24, 1)  # value = 24·series + step
    gen = torch.Generator().manual_seed(0)
    offsets = set()
    for _ in range(20):
        v1, v2, overlap = random_crops(series, gen)
        assert (v1[:, -overlap:] == v2[:, :overlap]).all()  # the two views share their overlap, per series
        steps = torch.cat([v1, v2], dim=1).squeeze(-1) - 24 * torch.arange(5).unsqueeze(1)
        assert ((steps >= 0) & (steps < 24)).all() and (steps.diff(dim=1)[:, : v1.shape[1] - 1] == 1).all()
        offsets.add(tuple(v1[:, 0, 0].sub(24 * torch.arange(5)).tolist()))
    assert any(len(set(o)) > 1 for o in offsets)  # series of one batch are cropped at different places

    # real vs another draw of the real data < real vs noise, on stock; where time has structure
    # (sines), shuffling each window's steps lies in between (on stock it would not: 24 days of a
    # price are nearly level, and the max-pooled encoding hardly sees their order)
    n = min(len(a), len(b))
    assert 20 * context_fid(a[:n], b[:n], repeats=1, iterations=60)[0] < context_fid(a[:n], noise[:n], repeats=1, iterations=60)[0]
    x = sine_windows(2000, 24, 5, np.random.default_rng(0)).astype(np.float32)
    shuffled = np.take_along_axis(x[1000:], np.random.default_rng(2).random((1000, 24)).argsort(axis=1)[..., None], axis=1)
    same, steps_lost, far = (context_fid(x[:1000], other, repeats=1, iterations=60)[0]
                             for other in (x[1000:], shuffled, np.random.default_rng(3).random((1000, 24, 5), np.float32)))
    assert same < steps_lost < far, (same, steps_lost, far)


def test_predictive_score_prefers_real_training_data(halves, noise):
    a, b = halves
    real_on_real = np.mean(predictive_score(a, b, repeats=2, iterations=600))
    noise_on_real = np.mean(predictive_score(a, noise, repeats=2, iterations=600))
    assert real_on_real < noise_on_real


def test_correlation_score(halves, noise):
    a, b = halves
    assert np.allclose(correlation_score(a, a[::-1].copy()), 0.0, atol=0.05)
    assert np.mean(correlation_score(a, b)) < 0.1 < np.mean(correlation_score(a, noise))
    # lag-0 cross-correlation is the correlation matrix (population-normalised), lower triangle
    flat = a.reshape(-1, a.shape[-1]).astype(np.float64)
    n = len(flat)
    expected = np.corrcoef(flat, rowvar=False)[np.tril_indices(a.shape[-1])] * (n - 1) / n
    np.testing.assert_allclose(cross_correlation(torch.from_numpy(a).double()).numpy(), expected, rtol=1e-6)


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    # same covariance, mean shifted by (1, 2, 0): the distance is the squared shift
    assert frechet_distance(x, x + [1.0, 2.0, 0.0]) == pytest.approx(5.0, rel=1e-6)


def test_seeded_metrics_repeat_exactly(halves):
    a, b = halves
    a, b = a[:400], b[:400]
    assert discriminative_score(a, b, repeats=2, iterations=50, seed=3) == discriminative_score(a, b, repeats=2, iterations=50, seed=3)
    assert predictive_score(a, b, repeats=2, iterations=50, seed=3) == predictive_score(a, b, repeats=2, iterations=50, seed=3)
    assert context_fid(a, b, repeats=1, iterations=5, seed=3) == context_fid(a, b, repeats=1, iterations=5, seed=3)
    assert discriminative_score(a, b, repeats=2, iterations=50, seed=3) != discriminative_score(a, b, repeats=2, iterations=50, seed=4)
