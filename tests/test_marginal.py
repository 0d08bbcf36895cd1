"""The per-feature quantile map ([model] quantiles): discrete levels and heavy tails come back as in the data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tsdiff_cli.models.marginal import Z_MAX, decode, encode, encode_ties_at_random, fit_knots
from conftest import TINY, write_toml

LEVELS = np.array([0, 1, 2, 3]) / 7  # a light switched in steps, off most of the time


def _data(n=4000, seed=0):
    rng = np.random.default_rng(seed)
    lights = rng.choice(LEVELS, size=(n, 24), p=[0.7, 0.15, 0.1, 0.05])
    spikes = np.clip(rng.lognormal(-3, 0.8, size=(n, 24)), 0, 1)  # heavy right tail
    return np.stack([lights, spikes], -1).astype(np.float32)


def test_ranks_are_uniform_and_the_quantile_function_returns_the_data_s_levels_and_tail():
    x = _data()
    x[0, 0, 0] = np.nan
    knots = torch.as_tensor(fit_knots(x, 1001))
    u = encode(torch.as_tensor(x), knots)
    assert torch.isnan(u[0, 0, 0]) and torch.isnan(u).sum() == 1  # gaps stay gaps
    np.testing.assert_allclose(np.quantile(u[..., 1], [0.1, 0.5, 0.9]), [0.1, 0.5, 0.9], atol=0.005)
    # a level shared by many values maps to the middle of its probability range (mid-rank)
    assert abs(float(u[1:][x[1:, :, 0] == 0][0, 0]) - 0.35) < 0.01
    back = decode(torch.nan_to_num(u), knots)
    np.testing.assert_allclose(back[1:], x[1:], atol=1e-4)  # values come back

    draws = decode(torch.rand(100_000, 2, generator=torch.Generator().manual_seed(1)), knots).numpy()
    on_level = [np.mean(np.abs(draws[:, 0] - v) < 1e-6) for v in LEVELS]
    np.testing.assert_allclose(on_level, [0.7, 0.15, 0.1, 0.05], atol=0.01)  # exact levels, data's shares
    assert sum(on_level) > 0.99
    np.testing.assert_allclose(np.quantile(draws[:, 1], [0.5, 0.9, 0.99]), np.quantile(x[..., 1], [0.5, 0.9, 0.99]),
                               rtol=0.03)
    # outside the knots: clamped to the ends; monotone inside
    ends = encode(torch.tensor([[-1.0, -1.0], [2.0, 2.0]]), knots)
    assert ends.tolist() == [[0.0, 0.0], [1.0, 1.0]]
    grid = torch.linspace(0, 1, 500).unsqueeze(1).repeat(1, 2)
    assert (encode(grid, knots).diff(dim=0) >= 0).all()


def test_lumpy_only_ranks_point_masses_and_heavy_tails_and_keeps_smooth_features_as_they_are():
    x = _data()
    smooth = np.random.default_rng(3).normal(0.5, 0.1, size=x.shape[:2]).clip(0, 1)  # a temperature
    x = np.concatenate([x, smooth[..., None].astype(np.float32)], -1)
    knots = torch.as_tensor(fit_knots(x, 1001, only_lumpy=True))
    u = encode(torch.as_tensor(x), knots).numpy()
    lo, hi = smooth.min(), smooth.max()
    np.testing.assert_allclose(u[..., 2], (smooth - lo) / (hi - lo), atol=1e-5)  # affine: its shape kept
    np.testing.assert_allclose(np.quantile(u[..., 1], [0.1, 0.5, 0.9]), [0.1, 0.5, 0.9], atol=0.005)  # tail: ranks
    np.testing.assert_array_equal(knots[:2], torch.as_tensor(fit_knots(x, 1001))[:2])  # switch and tail as "all"


def test_the_normal_grid_gives_a_heavy_tail_room_so_small_errors_there_stay_small():
    """Encoded on the normal grid a feature's values are normal scores (rescaled to [0, 1]) and come
    back exactly; a sampler's small error in the top percent of a heavy tail moves the decoded value
    a little, where on the uniform grid it throws it to the feature's maximum."""
    x = _data()
    uniform, normal = (torch.as_tensor(fit_knots(x, 1001, output=o)) for o in ("uniform", "normal"))
    v = encode(torch.as_tensor(x), normal)
    z = ((v[..., 1] - 0.5) * 2 * Z_MAX).numpy()
    np.testing.assert_allclose(np.quantile(z, [0.1, 0.5, 0.9, 0.99]), [-1.2816, 0, 1.2816, 2.3263], atol=0.02)
    np.testing.assert_allclose(decode(v, normal), x, atol=1e-4)  # values come back, the extremes too
    assert float(v.min()) == 0.0 and float(v.max()) == 1.0
    np.testing.assert_allclose(decode(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), normal), [x.min((0, 1)), x.max((0, 1))])
    # the lights' levels keep their exact values and shares under draws of normal scores
    draws = decode(0.5 + torch.randn(100_000, 2, generator=torch.Generator().manual_seed(1)) / (2 * Z_MAX), normal)
    on_level = [np.mean(np.abs(draws[:, 0].numpy() - lv) < 1e-6) for lv in LEVELS]
    np.testing.assert_allclose(on_level, [0.7, 0.15, 0.1, 0.05], atol=0.01)

    spikes = x[..., 1].ravel()
    top = torch.as_tensor(spikes[spikes >= np.quantile(spikes, 0.99)])[:, None].repeat(1, 2)  # the top percent
    error = torch.randn(top.shape, generator=torch.Generator().manual_seed(2)) * 0.01  # a sampler's error
    moved = {}
    for name, knots in (("uniform", uniform), ("normal", normal)):
        back = decode((encode(top, knots) + error).clamp(0, 1), knots)[:, 1]
        moved[name] = (float((back - top[:, 1]).abs().median()), float((back == knots[1, -1]).float().mean()))
    assert moved["normal"][0] < moved["uniform"][0] / 5  # the same error moves a tail value far less
    assert moved["uniform"][1] > 0.2 and moved["normal"][1] < moved["uniform"][1] / 10  # ranks pile samples on the max


@pytest.mark.parametrize("output", ["uniform", "normal"])
def test_ties_at_random_spread_a_level_over_its_range_and_decode_to_it(output):
    """quantile_ties = "random": a discrete level's training values are spread over its whole
    probability range (uniform ranks / normal scores rather than one spike per level), one place
    per window, and every place decodes to the level; values without a tie encode as before."""
    x = _data()
    x[0, 0, 0] = np.nan
    knots = torch.as_tensor(fit_knots(x, 1001, output=output))
    windows = torch.as_tensor(x)
    u = encode_ties_at_random(windows, knots, output, torch.Generator().manual_seed(5))
    mid = encode(windows, knots)
    assert torch.isnan(u[0, 0, 0]) and torch.isnan(u).sum() == 1  # gaps stay gaps
    back = decode(torch.nan_to_num(u), knots)[1:]
    np.testing.assert_allclose(back[..., 0], x[1:, :, 0], atol=1e-6)  # every place in a tie → its level
    np.testing.assert_allclose(back[..., 1], x[1:, :, 1], atol=1e-4)
    assert torch.equal(u[..., 1], mid[..., 1])  # the continuous tail has no ties: as encode
    lights = u[..., 0][~torch.isnan(u[..., 0])].numpy()
    scores = lights if output == "uniform" else (lights - 0.5) * 2 * Z_MAX
    target = [0.1, 0.5, 0.9] if output == "uniform" else [-1.2816, 0.0, 1.2816]
    np.testing.assert_allclose(np.quantile(scores, [0.1, 0.5, 0.9]), target, atol=0.03)  # no longer four spikes
    assert len(np.unique(mid[..., 0][1:].numpy())) == 4 and len(np.unique(lights)) > 1000
    off = u[1:, :, 0][x[1:, :, 0] == 0]
    assert float(off.min()) < 0.01 and float(off.max()) > (0.69 if output == "uniform" else 0.56)  # its whole range
    # one place per window and level: a window's "off" values are one value
    per_window = torch.where(torch.as_tensor(x[1:, :, 0] == 0), u[1:, :, 0], torch.nan)
    spread = np.nanmax(per_window.numpy(), 1) - np.nanmin(per_window.numpy(), 1)
    assert np.nanmax(spread) < 1e-6
    again = encode_ties_at_random(windows, knots, output, torch.Generator().manual_seed(5))
    assert torch.equal(torch.nan_to_num(u), torch.nan_to_num(again))  # seeded: the same places


def test_quantiles_setting_rejects_one_knot(cli, workdir):
    config = write_toml(workdir / "q.toml", TINY.replace("[model]\n", "[model]\nquantiles = 1\n"))
    result = cli("train", config, "-q")
    assert result.exit_code == 2 and "quantiles" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("quantiles,output,ties", [(0, "uniform", "mid"), (101, "uniform", "mid"),
                                                   (101, "normal", "mid"), (101, "normal", "random")])
def test_a_generator_with_a_quantile_map_samples_a_discrete_column_on_its_levels(cli, workdir, quantiles, output, ties):
    x = _data(300, seed=2)
    rows = x.reshape(-1, 2)[:3000]
    pd.DataFrame({"lights": rows[:, 0] * 70, "power": rows[:, 1] * 1000}).to_csv(workdir / "home.csv", index=False)
    text = TINY.replace('source = "stock"', 'source = "home.csv"').replace("reverse_rows = true\n", "")
    text = text.replace("[model]\n", f'[model]\nquantiles = {quantiles}\nquantile_output = "{output}"\n'
                                     f'quantile_ties = "{ties}"\n')
    config = write_toml(workdir / "home.toml", text)
    result = cli("train", config, "-q")
    assert result.exit_code == 0, result.output
    weights = load_file(workdir / "runs" / "latest" / "model.safetensors")
    assert ("knots" in weights) == bool(quantiles)
    if quantiles:
        assert weights["knots"].shape == (2, quantiles)  # the map travels with the weights
    result = cli("sample", "runs/latest", "-n", "200", "-o", "s.csv", "--seed", "3", "-q")
    assert result.exit_code == 0, result.output
    lights = pd.read_csv(workdir / "s.csv")["lights"].to_numpy()
    on_levels = np.mean(np.min(np.abs(lights[:, None] - LEVELS * 70), axis=1) < 1e-3)
    # with the map, a barely trained denoiser's samples land on the column's own levels (0, 10, 20,
    # 30); without it they are anywhere in between
    assert on_levels > 0.9 if quantiles else on_levels < 0.5

    # filling gaps goes through the same map: observed values kept, the TST's and the diffusion's fills on levels
    frame = pd.read_csv(workdir / "home.csv").iloc[:200]
    gaps = frame.copy()
    hidden = np.random.default_rng(4).random(len(gaps)) < 0.3
    gaps.loc[hidden, "lights"] = np.nan
    gaps.to_csv(workdir / "gaps.csv", index=False)
    for extra in ([], ["--samples", "11", "--steps", "3"]):  # an odd count: the median is a draw
        result = cli("impute", "--model", "runs/latest", "--input", "gaps.csv", "-o", "filled.csv", "-q", *extra)
        assert result.exit_code == 0, result.output
        filled = pd.read_csv(workdir / "filled.csv")["lights"].to_numpy()
        np.testing.assert_allclose(filled[~hidden], frame["lights"].to_numpy()[~hidden], rtol=1e-5)
        on_levels = np.mean(np.min(np.abs(filled[hidden, None] - LEVELS * 70), axis=1) < 1e-3)
        assert on_levels > 0.9 if quantiles else on_levels < 0.5


def test_a_pretrained_tst_is_reused_only_with_the_same_map(cli, workdir):
    ranks = write_toml(workdir / "ranks.toml", TINY.replace("[model]\n", "[model]\nquantiles = 11\n"))
    values = write_toml(workdir / "values.toml", TINY)
    assert cli("pretrain-tst", ranks, "-q").exit_code == 0
    tst_run = (workdir / "runs" / "latest").resolve()
    result = cli("train", values, "--tst", tst_run, "-q")
    assert result.exit_code == 2 and "quantiles = 11" in result.output and "Traceback" not in result.output
    lumpy = write_toml(workdir / "lumpy.toml", TINY.replace("[model]\n", '[model]\nquantiles = 11\nquantile_features = "lumpy"\n'))
    result = cli("train", lumpy, "--tst", tst_run, "-q")  # same knots, another map: the TST learnt other inputs
    assert result.exit_code == 2 and "quantile_features" in result.output and "Traceback" not in result.output
    scores = write_toml(workdir / "scores.toml", TINY.replace("[model]\n", '[model]\nquantiles = 11\nquantile_output = "normal"\n'))
    result = cli("train", scores, "--tst", tst_run, "-q")  # the same features on another grid
    assert result.exit_code == 2 and 'quantile_output = "uniform"' in result.output and "Traceback" not in result.output
    result = cli("train", ranks, "--tst", tst_run, "-q")
    assert result.exit_code == 0, result.output


def test_lumpy_setting_maps_only_stock_volume(cli, workdir):
    """On stock, only Volume (skewness 3) is lumpy: the five prices keep evenly spaced knots."""
    text = TINY.replace("[model]\n", '[model]\nquantiles = 11\nquantile_features = "lumpy"\n')
    assert cli("pretrain-tst", write_toml(workdir / "lumpy.toml", text), "-q").exit_code == 0
    knots = load_file(workdir / "runs" / "latest" / "tst.safetensors")["knots"].numpy()
    steps = np.diff(knots, axis=1)
    evenly = np.abs(steps - steps.mean(1, keepdims=True)).max(1) < 1e-4 * (knots[:, -1:] - knots[:, :1]).ravel()
    assert evenly.tolist() == [True] * 5 + [False]
