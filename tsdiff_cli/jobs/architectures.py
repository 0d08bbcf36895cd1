"""Settings → model configs: the one path from a TOML section to each model's architecture-only
config. Models never see settings; defaults live in settings.py alone."""

from __future__ import annotations

from tsdiff_cli.models.condition import ConditionConfig
from tsdiff_cli.models.delay import DelayEmbedding
from tsdiff_cli.models.dualpatch import DualPatchConfig, HeadConfig
from tsdiff_cli.models.emb_decoder import EmbDecoderConfig
from tsdiff_cli.models.forecaster import ForecastConfig
from tsdiff_cli.models.generator import GeneratorConfig, image_multiple
from tsdiff_cli.models.tst import TSTConfig
from tsdiff_cli.models.unet import UNetConfig
from tsdiff_cli.settings import ClassifySettings, ForecastSettings, ImputeSettings, Settings


#: the widest base a wide dataset raises the U-Net to (beyond it the network grows past tens of
#: millions of weights; raise [model] channels itself for more)
MAX_AUTO_CHANNELS = 256


def unet_width(channels: int, features: int) -> int:
    """The U-Net's base width: ``[model] channels``, raised for wide data to four times the
    features, rounded up to a multiple of 32 (at most MAX_AUTO_CHANNELS). Each feature is an input
    channel of the delay image, so a base narrower than the features compresses every pixel before
    any processing: on energy (28 features, 30 % missing) 32 channels left generated series 10–30x
    rougher than the data and 64 halved that in fewer steps; 128 then beat 64 on the selection
    score at equal steps (0.277 against 0.327 after 770 diffusion steps) and at equal time (kept
    0.247 against 0.283 in 30 CPU-minutes, with a third fewer steps; docs/generator-cpu.md).
    Data of up to 8 features keeps the presets' 32."""
    wide = min(32 * -(-4 * features // 32), MAX_AUTO_CHANNELS)
    return max(channels, wide)


def generator_config(s: Settings, seq_len: int, features: int, conditions: dict | None = None,
                     text_in: int = 0) -> GeneratorConfig:
    """``[tst]`` and ``[model]`` for windows of (seq_len, features); with ``conditions`` (a
    dataset's condition spec as a dict) the U-Net is conditional on them, with captions as
    sentence embeddings of width ``text_in`` when that is set (a local caption encoder)."""
    m, t = s.model, s.tst
    side = DelayEmbedding(seq_len, m.delay, m.embedding, image_multiple(m.channel_mult)).side
    tst = TSTConfig(features=features, seq_len=seq_len, d_model=t.d_model, heads=t.heads, layers=t.layers, ff=t.ff,
                    dropout=t.dropout, norm=t.norm, positional=t.positional, decoder_hidden=t.decoder_hidden,
                    mask_channel=t.mask_channel, residual=t.residual)
    unet = UNetConfig(image_size=side, in_channels=features, channels=unet_width(m.channels, features),
                      channel_mult=list(m.channel_mult), num_blocks=m.num_blocks,
                      attn_resolutions=list(m.attn_resolutions), dropout=m.dropout, resample=m.resample,
                      context_dim=m.caption_dim if conditions and conditions["vocabulary"] else 0)
    condition = None
    if conditions:
        vocab = len(conditions["vocabulary"]) + 2 if conditions["vocabulary"] else 0  # + padding, unknown word
        condition = ConditionConfig(dim=4 * unet.channels, categories=[len(v) for v in conditions["categorical"].values()],
                                    numerics=len(conditions["numeric"]), vocab=vocab, text_dim=m.caption_dim,
                                    text_layers=m.caption_layers, text_in=text_in if vocab else 0)
    return GeneratorConfig(seq_len, features, m.delay, m.embedding, tst, unet, m.project, condition, m.quantiles,
                           m.quantile_features, m.quantile_output)


def forecast_config(p: ForecastSettings, n_vars: int) -> ForecastConfig:
    """``[forecast]`` for a series of ``n_vars`` columns."""
    return ForecastConfig(seq_len=p.seq_len, pred_len=p.pred_len, n_vars=n_vars, d_model=p.d_model, heads=p.heads,
                          layers=p.layers, ff=p.ff, dropout=p.dropout, cycle=p.cycle, head=p.head, head_dim=p.head_dim,
                          head_heads=p.head_heads, head_layers=p.head_layers, patch=p.patch, residual=p.residual)


def emb_decoder_config(p: ImputeSettings, variables: int, width: int, length: int) -> EmbDecoderConfig:
    """``[impute]`` for embeddings of (variables, width) decoded into ``length`` values each."""
    return EmbDecoderConfig(variables, width, length, p.decoder, p.hidden, p.layers)


def classifier_config(p: ClassifySettings, channels: int, length: int, categories: list[int],
                      heads: list[HeadConfig]) -> DualPatchConfig:
    """``[classify]`` for series of ``channels`` × ``length`` with categorical channels of
    ``categories`` codes each, and one head per label."""
    return DualPatchConfig(channels=channels, length=length, patch_len=p.patch_len, patch_stride=p.patch_stride,
                           d_model=p.d_model, heads=p.heads, layers=p.layers, ff=p.ff, dropout=p.dropout,
                           streams=p.streams, categories=categories, tasks=heads, mask_channel=p.gaps == "mask",
                           instance_norm=p.instance_norm, fill=p.fill)
