"""Forecast metrics: the quantile-loss "CRPS" of ProbTS approximates the CRPS, coverage is calibrated
for a calibrated ensemble, and NMAE / MSE read the median."""

from __future__ import annotations

import numpy as np

from tsdiff_cli.metrics.forecast import QUANTILES, forecast_scores, interval_coverage, nmae, weighted_quantile_loss
from tsdiff_cli.metrics.imputation import fair_crps


def test_quantile_loss_approximates_the_crps_of_a_gaussian_ensemble():
    rng = np.random.default_rng(0)
    y = rng.normal(0, 1, 4000)
    samples = rng.normal(0, 1, (400, 4000))
    assert len(QUANTILES) == 19 and QUANTILES[0] == 0.05 and QUANTILES[-1] == 0.95
    # CRPS = 2 ∫ pinball_q dq (Gneiting & Raftery 2007): 19 quantiles approximate the integral
    crps = fair_crps(samples, y).mean()
    approx = weighted_quantile_loss(samples, y) * np.abs(y).sum() / y.size
    assert abs(approx - crps) / crps < 0.1
    # a sharper, wrong ensemble scores worse
    assert weighted_quantile_loss(samples * 0.2 + 1.0, y) > weighted_quantile_loss(samples, y)


def test_coverage_nmae_and_point_errors():
    rng = np.random.default_rng(1)
    y = rng.normal(0, 1, 20000)
    samples = rng.normal(0, 1, (200, 20000))
    assert abs(interval_coverage(samples, y, 0.5) - 0.5) < 0.02
    assert abs(interval_coverage(samples, y, 0.9) - 0.9) < 0.02
    assert interval_coverage(samples * 0.3, y, 0.9) < 0.5  # too narrow
    exact = np.tile(y, (5, 1))
    scores = forecast_scores(exact, y)
    assert scores["mse_median"] == 0 and scores["mae_mean"] < 1e-12 and nmae(exact, y) == 0
    shifted = forecast_scores(exact + 0.5, y)
    assert abs(shifted["mse_median"] - 0.25) < 1e-12 and abs(shifted["mae_median"] - 0.5) < 1e-12


def test_scores_from_one_sort_equal_the_definitions():
    """forecast_scores sorts each chunk once; every score equals its definition with np.quantile /
    np.median on the samples, on the original scale too (z · std + mean)."""
    rng = np.random.default_rng(2)
    samples, y = rng.gamma(2.0, 1.0, (37, 11, 6, 3)), rng.gamma(2.0, 1.0, (11, 6, 3))
    mean, std = np.array([1.0, -2.0, 5.0]), np.array([0.5, 2.0, 3.0])
    got = forecast_scores(samples, y, chunk=4, scale=(mean, std))
    median = np.median(samples, axis=0)
    assert np.isclose(got["mse_median"], np.mean((median - y) ** 2))
    assert np.isclose(got["crps"], fair_crps(samples, y).mean())
    assert np.isclose(got["coverage90"], interval_coverage(samples, y, 0.9))
    assert np.isclose(got["coverage50"], interval_coverage(samples, y, 0.5))
    so, yo = samples * std + mean, y * std + mean
    assert np.isclose(got["crps_probts"], weighted_quantile_loss(so, yo))
    assert np.isclose(got["nmae_probts"], nmae(so, yo))


def test_recalibration_leans_on_the_better_centre_and_restores_coverage():
    """Chosen on held-out windows: the weight goes to whichever of the ensemble median and the
    anchor is right, and a too-narrow ensemble is widened until its 90 % interval covers 90 %."""
    from tsdiff_cli.metrics.forecast import choose_recalibration, recalibrate

    rng = np.random.default_rng(3)
    y = rng.normal(0, 1, 20000)
    good = y[None] + rng.normal(0, 1, (50, 20000)) * 0.3  # centred on y, too narrow (true noise 1 around 0)
    truth = rng.normal(0, 1, 20000)
    narrow = rng.normal(0, 0.3, (60, 20000))  # centred right (0) but far too narrow for y ~ N(0, 1)
    weight, spread = choose_recalibration(narrow, np.full(20000, 5.0), truth)
    assert weight > 0.95 and 2.8 < spread < 3.9  # anchor 5 is useless; 1.645 / (0.3 · 1.645) ≈ 3.3
    after = recalibrate(narrow, np.full(20000, 5.0), weight, spread)
    assert abs(interval_coverage(after, truth, 0.9) - 0.9) < 0.02
    weight, _ = choose_recalibration(good + 2.0, y, y)  # a biased ensemble, an exact anchor
    assert weight < 0.05
    moved = recalibrate(good + 2.0, y, weight, 1.0)
    assert np.allclose(np.median(moved, axis=0), weight * np.median(good + 2.0, axis=0) + (1 - weight) * y)
