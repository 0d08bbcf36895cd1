"""[model] pca: the diffusion model learns each step's principal components, and samples come back
to the features; a step counts as observed only where all its features are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from tsdiff_cli.models.generator import Generator
from tsdiff_cli.models.marginal import fit_basis
from tsdiff_cli.jobs.architectures import generator_config
from tsdiff_cli.settings import Settings
from conftest import TINY, write_toml


def _correlated(n=400, t=24, seed=0):
    """Three features driven by one common level, plus one independent small one, in [0, 1]."""
    rng = np.random.default_rng(seed)
    level = rng.random((n, t, 1))
    x = np.concatenate([level * 0.8 + 0.1, level * 0.5 + 0.2, 1 - level * 0.6, 0.5 + 0.05 * rng.standard_normal((n, t, 1))], -1)
    return x.astype(np.float32)


def test_the_basis_orders_components_by_variance_and_ignores_steps_with_a_gap():
    x = _correlated()
    gappy = x.copy()
    gappy[:, ::5, 1] = np.nan  # one feature missing: the whole step is left out of the fit
    gappy[:, ::7, 3] = 5.0
    gappy[:, ::7, 0] = np.nan  # …so these outliers in another feature never count
    centre, basis = fit_basis(gappy)
    gram = basis.T @ basis
    np.testing.assert_allclose(gram, np.eye(4) * gram[0, 0], atol=1e-6)  # orthogonal, one scale for all axes
    complete = ~np.isnan(gappy).any(-1)
    z = (gappy[complete] - centre) @ basis
    assert np.abs(z).max() == pytest.approx(1.0, abs=1e-5)  # the components fill [−1, 1] together
    spread = z.std(axis=0)
    assert spread[0] > 4 * spread[1] and np.all(np.diff(spread) <= 1e-6)  # one common level: one large component
    with pytest.raises(ValueError, match="every feature observed"):
        fit_basis(np.where(np.eye(4, dtype=bool)[np.arange(24) % 4], np.nan, x[:1])[None, 0])


def test_the_image_holds_components_and_a_step_with_one_gap_is_unknown_in_every_channel():
    s = Settings.model_validate({"model": {"pca": True, "channels": 8, "channel_mult": [1, 2], "num_blocks": 1,
                                           "attn_resolutions": [4]}})
    model = Generator(generator_config(s, 24, 4))
    x = torch.as_tensor(_correlated(8))
    centre, basis = fit_basis(x.numpy())
    model.centre.copy_(torch.as_tensor(centre))
    model.basis.copy_(torch.as_tensor(basis))
    image = model.to_image(x)
    assert image.shape[1] == 4 and image.abs().max() <= 1 + 1e-5
    assert image[:, 0].std() > 4 * image[:, 1].std()  # channel 0: the common level
    torch.testing.assert_close(model.to_windows(image), x, atol=1e-5, rtol=0)
    gappy = x.clone()
    gappy[:, 3, 2] = float("nan")
    known = model.known_pixels(gappy)
    plain = model.embed.to_image(torch.ones_like(x))  # every pixel that holds a step
    step3 = model.embed.to_image(torch.zeros_like(x).index_fill(1, torch.tensor([3]), 1.0)) > 0
    assert torch.all(known[step3] == 0) and torch.all(known[~step3] == plain[~step3])


def test_a_pca_generator_trains_samples_and_fills_gaps_from_the_cli(cli, workdir):
    rows = _correlated(150).reshape(-1, 4)[:3000]
    frame = pd.DataFrame(rows * 100, columns=["t1", "t2", "rh", "noise"])
    frame.to_csv(workdir / "home.csv", index=False)
    text = TINY.replace('source = "stock"', 'source = "home.csv"').replace("reverse_rows = true\n", "")
    result = cli("train", write_toml(workdir / "pca.toml", text.replace("[model]\n", "[model]\npca = true\n")), "-q")
    assert result.exit_code == 0, result.output
    weights = load_file(workdir / "runs" / "latest" / "model.safetensors")
    assert weights["basis"].shape == (4, 4) and weights["centre"].shape == (4,)  # the basis travels with the weights
    result = cli("sample", "runs/latest", "-n", "50", "-o", "s.csv", "--seed", "3", "-q")
    assert result.exit_code == 0, result.output
    sampled = pd.read_csv(workdir / "s.csv")[["t1", "t2", "rh", "noise"]].to_numpy()
    assert np.isfinite(sampled).all() and sampled.min() >= frame.min().min() - 1e-3  # in the data's units and range
    gaps = frame.iloc[:200].copy()
    hidden = np.random.default_rng(4).random(gaps.shape) < 0.2  # single values: partly observed steps
    gaps = gaps.mask(hidden)
    gaps.to_csv(workdir / "gaps.csv", index=False)
    result = cli("impute", "--model", "runs/latest", "--input", "gaps.csv", "-o", "filled.csv", "-q",
                 "--samples", "11", "--steps", "3")
    assert result.exit_code == 0, result.output
    filled = pd.read_csv(workdir / "filled.csv")[["t1", "t2", "rh", "noise"]].to_numpy()
    np.testing.assert_allclose(filled[~hidden], frame.iloc[:200].to_numpy()[~hidden], rtol=1e-5)
    assert np.isfinite(filled).all()


def test_pca_on_data_without_a_complete_step_exits_2(cli, workdir):
    rng = np.random.default_rng(0)
    values = rng.random((400, 3))
    values[np.arange(400), np.arange(400) % 3] = np.nan  # every step misses one feature
    pd.DataFrame(values, columns=["a", "b", "c"]).to_csv(workdir / "gappy.csv", index=False)
    text = TINY.replace('source = "stock"', 'source = "gappy.csv"').replace("reverse_rows = true\n", "")
    text = text.replace("missing_rate = 0.3", "missing_rate = 0.0").replace("[model]\n", "[model]\npca = true\n")
    result = cli("train", write_toml(workdir / "g.toml", text), "-q")
    assert result.exit_code == 2 and "[model] pca" in result.output and "Traceback" not in result.output
