"""Conditional generation: the condition encoder, classifier-free dropout and guidance."""

from __future__ import annotations

import pytest
import torch

from tsdiff_cli.models.condition import (ConditionConfig, ConditionEncoder, ConditionalNet, Conditions, Guided,
                                         drop_conditions)
from tsdiff_cli.models.edm import Denoiser
from tsdiff_cli.models.unet import UNet, UNetConfig


def _denoiser(seed: int = 0) -> Denoiser:
    torch.manual_seed(seed)
    unet = UNet(UNetConfig(8, 3, 32, [1, 2], 1, [4], 0.0, context_dim=16))
    enc = ConditionEncoder(ConditionConfig(dim=unet.emb_dim, categories=[4], numerics=1, vocab=10, text_dim=16,
                                           text_layers=1))
    net = ConditionalNet(unet, enc)
    with torch.no_grad():  # zero-initialised output layers would hide every condition at step 0
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return Denoiser(net).eval()


def _conditions(n: int = 4) -> Conditions:
    return Conditions(torch.arange(n)[:, None] % 4, torch.linspace(-1, 1, n)[:, None],
                      torch.tensor([[2, 3, 0], [4, 0, 0], [5, 6, 7], [0, 0, 0]])[:n])


def test_null_condition_dropout_rate_matches_cfg_dropout():
    n = 20000
    c = Conditions(torch.zeros(n, 1, dtype=torch.long), torch.zeros(n, 1), torch.full((n, 3), 2))
    joint = drop_conditions(c, 0.1, torch.Generator().manual_seed(0))
    dropped = joint.cats[:, 0] == -1
    assert abs(dropped.float().mean().item() - 0.1) < 0.01
    assert torch.equal(dropped, joint.nums[:, 0].isnan()) and torch.equal(dropped, (joint.tokens == 0).all(1))
    apart = drop_conditions(c, 0.1, torch.Generator().manual_seed(0), joint=False)
    a, b = apart.cats[:, 0] == -1, apart.nums[:, 0].isnan()
    assert abs(a.float().mean().item() - 0.1) < 0.01 and abs(b.float().mean().item() - 0.1) < 0.01
    assert abs((a & b).float().mean().item() - 0.01) < 0.005  # independent draws


def test_guidance_one_is_the_conditional_denoiser_and_zero_the_unconditional():
    d, c = _denoiser(), _conditions()
    x, s = torch.randn(4, 3, 8, 8), torch.full((4,), 0.7)
    with torch.no_grad():
        cond, uncond = d(x, s, c), d(x, s, c.null())
        assert torch.allclose(Guided(d, c, 1.0)(x, s), cond)
        assert torch.allclose(Guided(d, c, 0.0)(x, s), uncond)
        assert torch.allclose(Guided(d, c, 2.5)(x, s), uncond + 2.5 * (cond - uncond), atol=1e-5)
    with pytest.raises(ValueError):
        Guided(d, c, -1.0)


@pytest.mark.parametrize("part", ["cats", "nums", "tokens"])
def test_each_condition_changes_the_denoiser(part):
    d, c = _denoiser(), _conditions()
    x, s = torch.randn(4, 3, 8, 8), torch.full((4,), 0.7)
    other = Conditions(c.cats, c.nums, c.tokens)
    setattr(other, part, {"cats": (c.cats + 1) % 4, "nums": c.nums + 1.5, "tokens": (c.tokens + 1) % 10}[part])
    with torch.no_grad():
        assert not torch.allclose(d(x, s, c), d(x, s, other), atol=1e-4)


def test_a_null_caption_is_a_learnt_token_not_nan():
    enc = ConditionEncoder(ConditionConfig(dim=32, vocab=10, text_dim=16, text_layers=2))
    emb, context, pad = enc(Conditions(tokens=torch.zeros(2, 5, dtype=torch.long)))
    assert torch.isfinite(emb).all() and torch.isfinite(context).all() and not pad[:, 0].any()


def test_condition_spec_encodes_and_refuses_unknown_categories():
    import numpy as np

    from tsdiff_cli.data.conditions import encode, fill_template, fit_spec
    from tsdiff_cli.errors import UserError

    cats = {"activity": np.array(["Running", "Walking", "Running", None], dtype=object)}
    nums = {"age": np.array([30.0, 50.0, np.nan, 70.0])}
    captions = fill_template("a {activity} recording of a {age} year old", {**cats, **nums})
    assert captions[0] == "a Running recording of a 30 year old"
    spec = fit_spec(cats, nums, captions)
    assert spec.categorical["activity"] == ["Running", "Walking"] and spec.numeric["age"] == (50.0, np.std([30, 50, 70]), 30.0, 70.0)
    out = encode(spec, cats, nums, captions, "data")
    assert out["cats"][:, 0].tolist() == [0, 1, 0, -1] and np.isnan(out["nums"][2, 0])
    assert (out["tokens"][0][:8] > 1).all()  # every word of the first caption is in the vocabulary
    with pytest.raises(UserError, match="Swimming' was never seen in training; use one of: Running, Walking"):
        encode(spec, {"activity": np.array(["Swimming"])}, {"age": np.array([40.0])}, None, "--condition")
    with pytest.raises(UserError, match=r"age = 99 is far outside the training range \[30, 70\]"):
        encode(spec, {"activity": np.array(["Running"])}, {"age": np.array([99.0])}, None, "--condition")
    assert encode(spec, {"activity": np.array(["Running"])}, {"age": np.array([80.0])}, None, "--condition")["nums"][0, 0] > 1
    loose = encode(spec, {"activity": np.array(["Swimming"])}, {"age": np.array([40.0])}, np.array(["a new words"]),
                   "data", strict=False)
    assert loose["cats"][0, 0] == -1 and 1 in loose["tokens"][0]  # unknown word id


def test_labelled_windows_stay_inside_their_series():
    import numpy as np

    from tsdiff_cli.data.conditions import labelled_windows

    x = np.full((2, 1, 6), np.nan)
    x[0, 0, :6] = np.arange(6)
    x[1, 0, :3] = 100 + np.arange(3)  # a short series, padded
    windows, series = labelled_windows(x, np.array([6, 3]), seq_len=4, stride=1)
    assert series.tolist() == [0, 0, 0, 1]
    assert windows[2, :, 0].tolist() == [2, 3, 4, 5]
    assert windows[3, :3, 0].tolist() == [100, 101, 102] and np.isnan(windows[3, 3, 0])


def test_conditions_round_trip_through_the_dataset_file(tmp_path):
    import numpy as np

    from tsdiff_cli.data.conditions import encode, fit_spec
    from tsdiff_cli.data.scaling import fit_scaler
    from tsdiff_cli.data.store import WindowDataset, read_dataset, write_dataset

    x = np.random.default_rng(0).random((3, 4, 2)).astype(np.float32)
    cats = {"activity": np.array(["Running", "Walking", "Running"], dtype=object)}
    captions = np.array(["fast running", "slow walk", "running é"], dtype=object)
    spec = fit_spec(cats, {}, captions)
    enc = encode(spec, cats, {}, captions, "data")
    ds = WindowDataset(x, x, np.zeros(3, np.uint8), np.arange(3), ["a", "b"], fit_scaler("none", x.reshape(-1, 2)),
                       conditions={**enc, "captions": list(captions), "spec": spec.to_dict()})
    write_dataset(tmp_path / "d.h5", ds)
    back = read_dataset(tmp_path / "d.h5").conditions
    assert back["spec"] == spec.to_dict() and back["captions"] == list(captions)
    assert np.array_equal(back["cats"], enc["cats"]) and np.array_equal(back["tokens"], enc["tokens"])
