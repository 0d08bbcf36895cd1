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
