"""The generator's parts, each against what the papers say it must do."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tsdiff_cli.errors import UserError
from tsdiff_cli.models.delay import DelayEmbedding, delay_layout
from tsdiff_cli.models.edm import Denoiser, heun_sample, karras_sigmas, masked_edm_loss
from tsdiff_cli.models.layers import masked_mse as reconstruction_loss
from tsdiff_cli.models.tst import TST, TSTConfig, complete, fill_tst_inputs, interpolate
from tsdiff_cli.training.loop import EMA


def test_delay_embedding_layout_matches_the_paper_preset():
    index, side = delay_layout(24, 3, 8)
    grid = index.view(side, side)
    assert side == 8  # seq_len 24, delay 3, embedding 8 → an 8×8 image
    assert grid[:, 0].tolist() == list(range(8))  # column 0: steps 0..7
    assert grid[:, 1].tolist() == list(range(3, 11))  # every `delay` steps
    assert grid[:, 6].tolist() == [18, 19, 20, 21, 22, 23, -1, -1]  # the last, partial column is kept
    assert (grid[:, 7] == -1).all()  # zero padding to a square
    assert delay_layout(24, 3, 8, multiple=16)[1] == 16


def test_series_image_round_trip_is_exact_and_inverse_averages():
    emb = DelayEmbedding(24, 3, 8)
    x = torch.rand(5, 24, 3, dtype=torch.float64)
    image = emb.to_image(x)
    torch.testing.assert_close(emb.to_series(image), x)
    torch.testing.assert_close(emb.to_image(emb.to_series(image)), image)
    noisy = image + torch.randn_like(image)
    index, side = delay_layout(24, 3, 8)
    flat = noisy.reshape(5, 3, -1)
    expected = torch.stack([flat[:, :, index == t].mean(-1) for t in range(24)], dim=1)
    torch.testing.assert_close(emb.to_series(noisy), expected)


def test_delay_projection_is_orthogonal_and_keeps_clean_images():
    emb = DelayEmbedding(24, 3, 8)
    clean = emb.to_image(torch.rand(4, 24, 2, dtype=torch.float64))
    torch.testing.assert_close(emb.project(clean), clean)  # clean images are fixed points
    x = torch.randn_like(clean)
    p = emb.project(x)
    torch.testing.assert_close(emb.project(p), p)  # idempotent
    # orthogonal: the residual is perpendicular to every consistent image, so P x is the nearest one
    assert abs(((x - p) * clean).sum().item()) < 1e-9
    index, _ = delay_layout(24, 3, 8)
    assert (p.reshape(4, 2, -1)[:, :, index < 0] == 0).all()  # padding stays zero


def test_projected_denoiser_is_never_further_from_a_clean_image():
    torch.manual_seed(0)
    emb = DelayEmbedding(24, 3, 8)

    class Rough(torch.nn.Module):  # a denoiser network with arbitrary output
        def forward(self, x, label):
            return torch.randn_like(x)

    clean = emb.to_image(torch.rand(6, 24, 2) * 2 - 1)
    noisy = clean + 0.3 * torch.randn_like(clean)
    sigma = torch.full((6,), 0.3)
    torch.manual_seed(1)
    plain = Denoiser(Rough())(noisy, sigma)
    torch.manual_seed(1)
    projected = Denoiser(Rough(), output_map=emb.project)(noisy, sigma)
    torch.testing.assert_close(projected, emb.project(plain))
    assert ((projected - clean) ** 2).flatten(1).sum(1).le(((plain - clean) ** 2).flatten(1).sum(1) + 1e-6).all()


@pytest.mark.parametrize("args", [(24, 3, 30), (24, 9, 8), (24, 0, 8)])
def test_impossible_embeddings_say_what_works(args):
    with pytest.raises(UserError, match="delay"):
        delay_layout(*args)


def test_fill_tst_inputs_forward_then_backward_then_zero():
    nan = float("nan")
    x = torch.tensor([[[nan, nan], [1.0, nan], [nan, nan], [3.0, nan]]])
    filled = fill_tst_inputs(x)
    assert filled[0, :, 0].tolist() == [1.0, 1.0, 1.0, 3.0]
    assert filled[0, :, 1].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_tst_ignores_all_missing_steps_and_learns_only_from_observed():
    torch.manual_seed(0)
    cfg = TSTConfig(features=3, seq_len=12, d_model=8, heads=2, layers=2, ff=16, decoder_hidden=8, dropout=0.0,
                    norm="layer", positional="learnable", mask_channel=True)
    tst = TST(cfg).eval()
    x = torch.rand(4, 12, 3)
    x[:, 5] = float("nan")  # a whole step missing
    x[0, 2, 1] = float("nan")
    out = tst(x)
    assert out.shape == x.shape and torch.isfinite(out).all() and (out > 0).all() and (out < 1).all()
    # a window with nothing observed at all still gets a finite completion
    empty = torch.full((1, 12, 3), float("nan"))
    assert torch.isfinite(tst(torch.cat([x, empty]))).all()
    pred = torch.rand_like(out)
    loss = reconstruction_loss(pred, x)
    other = x.clone()
    other[torch.isnan(x)] = float("nan")
    assert torch.equal(reconstruction_loss(pred, other), loss)
    assert torch.equal(complete(pred, x)[~torch.isnan(x)], x[~torch.isnan(x)])


def test_interpolation_matches_the_baseline_it_is_compared_with():
    from tsdiff_cli.metrics.imputation import fill_linear

    x = torch.rand(6, 20, 4, dtype=torch.float64)
    x[torch.rand_like(x) < 0.5] = float("nan")
    x[0, :, 2] = float("nan")  # a feature with nothing observed
    x[1, :3, 0] = float("nan")  # leading and trailing gaps
    x[1, -4:, 0] = float("nan")
    expected = torch.from_numpy(fill_linear(x.numpy()))
    expected = torch.nan_to_num(expected, nan=0.0)
    torch.testing.assert_close(interpolate(x), expected)


def test_residual_tst_starts_as_interpolation_and_follows_a_shifted_level():
    """The imputation mode: untrained it is linear interpolation, and a window far above the
    [0, 1] training range is filled at its own level (the paper's sigmoid cannot leave (0, 1))."""
    torch.manual_seed(0)
    kw = dict(features=2, seq_len=12, d_model=8, heads=2, layers=1, ff=16, decoder_hidden=8, dropout=0.0,
              norm="layer", positional="learnable", mask_channel=True)
    residual, paper = TST(TSTConfig(**kw, residual=True)).eval(), TST(TSTConfig(**kw)).eval()
    t = torch.linspace(0, 1, 12).view(1, 12, 1)
    x = torch.cat([5 + t, 3 - 2 * t], dim=2)  # levels 3–6: outside [0, 1]
    gappy = x.clone()
    gappy[0, [2, 3, 7], 0] = float("nan")
    gappy[0, [5, 10], 1] = float("nan")
    gaps = torch.isnan(gappy)
    with torch.no_grad():
        torch.testing.assert_close(residual(gappy)[gaps], x[gaps], atol=1e-5, rtol=1e-5)
        for p in residual.out.parameters():  # trained or not, the fill stays at the window's level
            torch.nn.init.normal_(p, std=0.1)
        assert (residual(gappy)[gaps] - x[gaps]).abs().max() < 1.0
        assert (paper(gappy) < 1).all()


class _Spy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(0.7))
        self.seen = None

    def forward(self, x, sigma):
        self.seen = x.detach().clone()
        return x * self.w


def test_masked_loss_noises_and_scores_observed_pixels_only():
    torch.manual_seed(0)
    context = torch.rand(2, 3, 8, 8) * 2 - 1
    mask = (torch.rand_like(context) > 0.4).float()
    sigma, noise = torch.tensor([0.5, 2.0]), torch.randn_like(context)
    spy = _Spy()
    loss = masked_edm_loss(spy, context, context, mask, sigma, noise)
    # completed (unobserved) pixels reach the network clean, observed ones with σ·n added
    torch.testing.assert_close(spy.seen[mask == 0], context[mask == 0])
    torch.testing.assert_close(spy.seen, context + sigma.view(-1, 1, 1, 1) * noise * mask)
    # changing the targets of completed pixels does not move the loss
    other = context.clone()
    other[mask == 0] += 5.0
    torch.testing.assert_close(masked_edm_loss(spy, context, other, mask, sigma, noise), loss)
    # gradients flow only from observed pixels
    out = context.clone().requires_grad_()
    masked_edm_loss(lambda x, s: out, context, context + 0.1, mask, sigma, noise).backward()
    assert (out.grad[mask == 0] == 0).all() and (out.grad[mask == 1] != 0).all()


def test_masked_loss_with_noise_on_all_pixels_still_scores_observed_only():
    torch.manual_seed(0)
    context = torch.rand(2, 3, 8, 8) * 2 - 1
    mask = (torch.rand_like(context) > 0.4).float()
    sigma, noise = torch.tensor([0.5, 2.0]), torch.randn_like(context)
    spy = _Spy()
    loss = masked_edm_loss(spy, context, context, mask, sigma, noise, noise_all=True)
    torch.testing.assert_close(spy.seen, context + sigma.view(-1, 1, 1, 1) * noise)
    other = context.clone()
    other[mask == 0] += 5.0
    torch.testing.assert_close(masked_edm_loss(spy, context, other, mask, sigma, noise, noise_all=True), loss)
    out = context.clone().requires_grad_()
    masked_edm_loss(lambda x, s: out, context, context + 0.1, mask, sigma, noise, noise_all=True).backward()
    assert (out.grad[mask == 0] == 0).all() and (out.grad[mask == 1] != 0).all()


def test_preconditioning_and_sampler():
    """EDM Table 1: the network sees c_in·x and c_noise = ¼ ln σ, and D = c_skip·x + c_out·F."""
    seen = {}

    def net(x, label):
        seen["x"], seen["label"] = x, label
        return torch.full_like(x, 0.5) * torch.arange(1, len(x) + 1).view(-1, 1, 1, 1)

    d = Denoiser(net)
    x, sigma = torch.randn(2, 1, 2, 2), torch.tensor([2.0, 0.1]).view(-1, 1, 1, 1)
    sd2 = 0.25  # σ_data = 0.5
    c_skip, c_out, c_in = sd2 / (sigma ** 2 + sd2), sigma * 0.5 / (sigma ** 2 + sd2).sqrt(), 1 / (sigma ** 2 + sd2).sqrt()
    out = d(x, sigma)
    torch.testing.assert_close(seen["x"], c_in * x)
    torch.testing.assert_close(seen["label"].flatten(), sigma.flatten().log() / 4)
    torch.testing.assert_close(out, c_skip * x + c_out * net(c_in * x, None))
    # at σ → 0 the denoiser returns its input; at large σ the network's output
    torch.testing.assert_close(d(x, torch.full((2, 1, 1, 1), 1e-6)), x, atol=1e-5, rtol=0)
    sig = karras_sigmas(18)
    assert sig[0] == pytest.approx(80.0) and sig[-2] == pytest.approx(0.002) and sig[-1] == 0 and len(sig) == 19
    # the exact denoiser of a point mass at c brings any noise to c
    c = torch.full((3, 2, 4, 4), 0.3)
    calls = []
    out = heun_sample(lambda x, s: c, torch.randn(3, 2, 4, 4), 18, callback=lambda i, n: calls.append(i))
    torch.testing.assert_close(out, c)
    assert calls == list(range(1, 19))


def test_ema_warms_up_then_follows_slowly():
    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    ema = EMA(net, decay=0.9999, warmup=10)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update()  # decay (1 + 1) / (10 + 1)
    assert ema.shadow["weight"].item() == pytest.approx(1 - 2 / 11)
    assert math.isclose(min(0.9999, (1 + 10**6) / (10 + 10**6)), 0.9999)


def test_projection_travels_in_the_model_config_and_older_files_load_without_it():
    from tsdiff_cli.models.generator import Generator, GeneratorConfig
    from tsdiff_cli.models.unet import UNetConfig

    cfg = GeneratorConfig(24, 2, 3, 8, TSTConfig(features=2, seq_len=24, d_model=8, heads=2, layers=1, ff=16, decoder_hidden=8,
                                                 dropout=0.1, norm="batch", positional="learnable", mask_channel=False),
                          UNetConfig(image_size=8, in_channels=2, channels=8, channel_mult=[1, 2], num_blocks=1,
                                     attn_resolutions=[], dropout=0.1), project=True)
    again = GeneratorConfig.from_json(cfg.to_json())
    assert again.project and Generator(again).denoiser.output_map is not None
    older = json.loads(cfg.to_json())
    del older["project"]  # model.safetensors written before the setting existed
    assert not GeneratorConfig.from_json(json.dumps(older)).project


def test_paper_preset_builds_the_reference_network_and_residual_resampling_starts_as_its_skip():
    """The paper presets' U-Net has the reference's 57.6 M parameters (within 1 %): ADM's residual
    up/down blocks between resolutions. At initialisation (last convolution zero) such a block is
    its resampled, 1×1-projected input; older model files without the key build "pool"."""
    from pathlib import Path

    from tsdiff_cli.jobs.architectures import generator_config
    from tsdiff_cli.models.unet import ResBlock, UNet, UNetConfig
    from tsdiff_cli.settings import load_settings

    preset = Path(__file__).resolve().parents[1] / "config" / "paper" / "stock.toml"
    cfg = generator_config(load_settings(preset), 24, 6)
    with torch.device("meta"):  # count without allocating 230 MB
        unet = UNet(cfg.unet)
    params = sum(p.numel() for p in unet.parameters())
    assert cfg.unet.resample == "residual" and abs(params / 57.6e6 - 1) < 0.01, params

    for how, resample in (("down", lambda x: torch.nn.functional.avg_pool2d(x, 2)),
                          ("up", lambda x: torch.nn.functional.interpolate(x, scale_factor=2))):
        block = ResBlock(8, 8, 16, 0.0, how).eval()
        x, emb = torch.randn(2, 8, 4, 4), torch.randn(2, 16)
        torch.testing.assert_close(block(x, emb), block.skip(resample(x)))
    old = {k: v for k, v in UNetConfig(8, 2, 8, [1, 2], 1, [4], 0.0).to_dict().items() if k != "resample"}
    assert UNetConfig(**old).resample == "pool"


def test_wide_data_widens_the_unet_and_narrow_data_keeps_its_width():
    """Every feature is an input channel of the delay image: the base width is raised to four
    times the features (multiple of 32, at most 256) — 28 energy features get 128 channels —
    while the 6 stock and 7 ETTh1 features keep the preset's 32 and a wider preset (energy's
    160) is never narrowed."""
    from pathlib import Path

    from tsdiff_cli.jobs.architectures import generator_config
    from tsdiff_cli.models.generator import Generator
    from tsdiff_cli.settings import load_settings

    config = Path(__file__).resolve().parents[1] / "config"
    cpu, paper = load_settings(config / "stock.toml"), load_settings(config / "paper" / "energy.toml")
    energy = load_settings(config / "energy.toml")
    assert cpu.model.channels == 32
    assert [generator_config(cpu, 24, f).unet.channels for f in (6, 7, 8, 9, 16, 28, 200)] == [32, 32, 32, 64, 64, 128, 256]
    assert generator_config(paper, 24, 28).unet.channels == 128
    paper.model.channels = 192  # a preset wider than the rule keeps its width
    assert generator_config(paper, 24, 28).unet.channels == 192
    wide = generator_config(energy, 24, 28)
    assert energy.model.channels == 160 and wide.unet.channels == 160
    side = wide.unet.image_size
    x = torch.zeros(2, 28, side, side)
    assert Generator(wide).denoiser(x, torch.ones(2)).shape == x.shape
