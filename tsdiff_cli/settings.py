"""Settings: one pydantic model per TOML section, resolved from four layers.

Precedence, lowest to highest: the model defaults, the TOML file named on the command line,
``TSDIFF_<SECTION>__<KEY>`` environment variables, explicit CLI options. The layers are read
separately and merged here (rather than by pydantic-settings' own source chain) so that every
validation error can name where the bad value came from: the file, the variable or the option.

Unknown sections and keys are errors in every layer. ``to_toml`` gives the canonical text of
resolved settings: ``tsdiff config show`` prints it and every run saves it.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tsdiff_cli.errors import UserError

ENV_PREFIX = "TSDIFF_"
ENV_DELIMITER = "__"

#: Dataset names that ``[data] source`` resolves to files shipped inside the package.
SHIPPED_DATASETS = {"stock": "stock_data.csv", "energy": "energy_data.csv", "etth1": "ETTh1.csv"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)  # no inf/nan budgets or rates


class DataSettings(_Section):
    """``[data]``: where the series comes from and how it becomes windows (``tsdiff preprocess``)."""

    source: str = Field(
        "stock",
        description='"sine" (synthetic, as in TimeGAN), a shipped dataset ("stock", "energy", '
        '"etth1"), or the path of a CSV / Parquet file',
    )
    seq_len: int = Field(24, ge=2, description="window length in time steps")
    missing_rate: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="benchmark missingness: fraction of time steps removed (seeded); 0 keeps the data as it is",
    )
    scaler: Literal["minmax", "standard", "none"] = Field(
        "minmax",
        description='"minmax" per feature to [0, 1] as in the paper, "standard" z-scores, or "none"',
    )
    seed: int = Field(0, description="seed for synthetic data, missingness and the window shuffle")
    output: Path | None = Field(
        None, description="the HDF5 file to write; default data/<source name>.h5"
    )
    time_column: str | None = Field(
        None, description="column of timestamps; rows are placed on a regular grid at `freq`"
    )
    freq: str | None = Field(
        None, description='grid step for `time_column` ("1h", "15min", "1D"); inferred when unset'
    )
    columns: list[str] | None = Field(None, description="the value columns to keep; default all")
    reverse_rows: bool = Field(
        False,
        description="reverse the row order before windowing, as the TimeGAN / ImagenI2R loaders do",
    )
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of windows marked validation")
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of windows marked test")
    sine_samples: int = Field(10000, ge=1, description='number of windows when source = "sine"')
    sine_features: int = Field(5, ge=1, description='number of features when source = "sine"')
    condition_columns: list[str] = Field([], description="conditional generation: per-series (or, in one regular series, "
                                         "per-window: the window's first row) categorical or numeric columns to condition "
                                         "on; a .ts source has one, its label, which the single name here names")
    categorical_conditions: list[str] = Field([], description="condition columns read as categories even though their "
                                              "values are numbers (e.g. integer codes); other numeric ones are numeric")
    caption_column: str | None = Field(None, description="conditional generation: a free-text caption per series")
    caption_template: str | None = Field(None, description='captions built from the condition columns, e.g. "a {activity} '
                                         'recording of a {age} year old subject"')
    id_column: str | None = Field(None, description="a long table of many labelled series: the series id column (one row "
                                  "per series and time step, as tsdiff classify reads); windows stay inside a series")

    @model_validator(mode="after")
    def _check(self) -> DataSettings:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} "
                "leaves no training windows; keep their sum below 1"
            )
        if self.freq is not None and self.time_column is None:
            raise ValueError("freq is set but time_column is not; name the column of timestamps")
        if self.source == "sine" and (self.time_column or self.columns):
            raise ValueError('source = "sine" has no columns to choose; remove time_column / columns')
        if self.source == "sine" and (self.condition_columns or self.caption_column or self.caption_template):
            raise ValueError('source = "sine" has no conditions; remove condition_columns / caption_column / caption_template')
        if self.caption_column and self.caption_template:
            raise ValueError("caption_column and caption_template both set; captions come from one of them")
        stray = [c for c in self.categorical_conditions if c not in self.condition_columns]
        if stray:
            raise ValueError(f"categorical_conditions names {', '.join(stray)}, which condition_columns does not")
        if self.output is None:
            object.__setattr__(self, "output", Path("data") / f"{self.source_name}.h5")
        return self

    @property
    def source_name(self) -> str:
        """A short name for the source: the dataset name, or the file's stem."""
        if self.source in ("sine", *SHIPPED_DATASETS):
            return self.source
        name = Path(self.source).name
        for suffix in (".gz", ".csv", ".parquet", ".pq", ".txt", ".ts"):
            name = name.removesuffix(suffix)
        return name or "dataset"


class TSTSettings(_Section):
    """``[tst]``: the Time Series Transformer that completes the gaps (phase 1 of training)."""

    d_model: int = Field(40, ge=2, description="transformer width (paper: 40)")
    heads: int = Field(5, ge=1, description="attention heads (paper: 5)")
    layers: int = Field(6, ge=1, description="encoder layers (paper: 6)")
    ff: int = Field(2048, ge=1, description="feed-forward width (paper: 2048)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in the encoder")
    norm: Literal["batch", "layer"] = Field("batch", description="BatchNorm (paper) or LayerNorm")
    positional: Literal["learnable", "fixed"] = Field("learnable", description="positional encoding")
    decoder_hidden: int = Field(40, ge=1, description="hidden units of the bidirectional GRU decoder")
    mask_channel: bool = Field(False, description="join each feature with its missingness indicator")
    residual: bool = Field(False, description="predict the correction to linear interpolation, in units of each window's "
                           "observed mean and spread, instead of the value through a sigmoid (paper): robust to level "
                           "shifts and outliers; starts as interpolation")
    mask_rate: float = Field(0.0, ge=0.0, lt=1.0, description="hide this fraction of observed values from the TST's input and "
                             "score only those (Zerveas et al.'s masking objective); 0: score every observed value (paper)")
    epochs: int = Field(100, ge=0, description="phase-1 (completion) epochs")
    max_steps: int = Field(1000, ge=0, description="before diffusion training, phase 1 also ends after this many steps "
                           "(the TST keeps learning in phase 2), so its share of a budget does not grow with the data; "
                           "0: epochs alone (pretrain-tst always trains its epochs)")
    lr: float = Field(1e-3, gt=0, description="TST learning rate (AdamW)")
    refine: bool = Field(True, description="keep training the TST on its own loss during diffusion training (paper); "
                         "false: freeze it after phase 1 and complete every window once, which saves the TST's "
                         "forward and backward in every diffusion step")

    @model_validator(mode="after")
    def _check(self) -> TSTSettings:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        return self


class ModelSettings(_Section):
    """``[model]``: the delay embedding and the U-Net of the diffusion model."""

    delay: int = Field(3, ge=1, description="steps between the starts of image columns (paper: 3)")
    embedding: int = Field(8, ge=1, description="steps per image column (paper: 8)")
    channels: int = Field(64, ge=8, description="U-Net base channels (paper: 128); wide data raises it to four times the "
                          "features, rounded up to a multiple of 32 (at most 256)")
    channel_mult: list[int] = Field([1, 2, 2], min_length=1, description="channel multiplier per resolution")
    num_blocks: int = Field(2, ge=1, description="residual blocks per resolution")
    attn_resolutions: list[int] = Field([4, 2], description="image sizes that get self-attention (paper: 8, 4, 2)")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="dropout in residual blocks")
    resample: Literal["pool", "residual"] = Field(
        "pool", description='between resolutions: "pool" (average-pool down, nearest up: no weights, cheaper) or '
        '"residual" (ADM\'s up/down residual blocks, as the paper\'s reference network; the paper presets)')
    project: bool = Field(False, description="project the denoiser's output onto delay-consistent images (every pixel "
                          "of a time step equal); false in the paper presets")
    quantiles: int = Field(0, ge=0, description="knots of a per-feature quantile map: the model learns each feature's "
                           "rank in the training data (uniform marginals) and samples return through its quantiles, "
                           "so discrete levels and heavy tails come out as in the data (0: off; e.g. 1001)")
    quantile_features: Literal["all", "lumpy"] = Field(
        "all", description='which features the quantile map ranks: "all", or "lumpy": only those with a point mass '
        "(one value in ≥ 20 % of the observations) or a heavy tail (|skewness| > 2); the others keep their values")
    quantile_output: Literal["uniform", "normal"] = Field(
        "uniform", description='what the quantile map turns a value into: "uniform" (its rank) or "normal" (its normal '
        "score, rescaled to [0, 1]): the normal grid gives a heavy tail's rare values room, where ranks squeeze them "
        "into the last percent")
    quantile_ties: Literal["mid", "random"] = Field(
        "mid", description='where the quantile map puts a training value shared by several knots (a discrete level): '
        '"mid" (the middle of its probability range, as at sampling) or "random" (a place drawn for each window '
        "and feature inside its range: the level's encoded values spread over its range, and every place there "
        "samples back to the level); training only, the map itself is the same")
    caption_dim: int = Field(64, ge=8, description="conditional generation: width of the caption encoder's word tokens "
                             "(the U-Net cross-attends to them)")
    caption_layers: int = Field(1, ge=0, description="transformer layers over the caption's words (0: mean of word "
                                "embeddings)")
    caption_encoder: str | None = Field(
        None, description="conditional generation with captions: a local folder holding a sentence-embedding model "
        "(Hugging Face layout: config.json, tokenizer, *.safetensors), used frozen instead of the word encoder trained "
        'with the generator; nothing is downloaded. Needs pip install "tsdiff[text]"')

    @model_validator(mode="after")
    def _quantiles(self):
        if self.quantiles == 1:
            raise ValueError("quantiles 1 cannot map a feature (use 0 for off, or at least 2 knots, e.g. 1001)")
        return self


class TrainSettings(_Section):
    """``[train]``: the optimisation of ``tsdiff pretrain-tst`` and ``tsdiff train``."""

    epochs: int = Field(200, ge=1, description="phase-2 (diffusion) epochs")
    batch_size: int = Field(128, ge=1, description="windows per step")
    lr: float = Field(1e-4, gt=0, description="diffusion learning rate (AdamW)")
    weight_decay: float = Field(1e-5, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="gradient norm clipping")
    ema_decay: float = Field(0.9999, gt=0, lt=1, description="EMA decay of the diffusion weights")
    ema_warmup: int = Field(100, ge=1, description="EMA warm-up: decay_t = min(decay, (1+t)/(warmup+t))")
    noise_pixels: Literal["observed", "all"] = Field(
        "observed", description='pixels that get diffusion noise in training: "observed" (DESIGN\'s reading of the paper: '
        'completed pixels stay clean context) or "all" (as at sampling); the loss counts observed pixels either way')
    p_mean: float = Field(-1.2, description="mean of ln σ of the training noise levels (EDM: −1.2)")
    p_std: float = Field(1.2, gt=0, description="spread of ln σ of the training noise levels (EDM: 1.2)")
    eval_every: int = Field(10, ge=0, description="selection score every N epochs, the best kept (0: never; the last weights are kept)")
    eval_samples: int = Field(1000, ge=4, description="windows of each selection score: this many sampled, given the "
                              "gaps of as many observed windows (validation split, else training; a fixed subset "
                              "drawn with [eval] seed; fewer when the dataset has fewer)")
    keep_within: float = Field(0.0, ge=0, description="a later selection score no more than this above the best so far "
                               "keeps the later, longer-trained weights (the best stays the lowest score seen); about "
                               "2 × 0.5/√(eval_samples × 0.4), the score's noise, ties within it (0: the best score's weights)")
    max_minutes: float = Field(0.0, ge=0, description="stop cleanly after this many minutes, counted from the start of the "
                               "command, quick evaluations included; a resumed run counts its earlier sessions too (0: no limit)")
    max_steps: int = Field(0, ge=0, description="stop cleanly after this many optimisation steps, both phases (0: no limit)")
    cooldown: float = Field(0.0, ge=0, le=1, description="learning rates fall linearly to 0 over this last fraction of "
                            "the budget nearest its end (max_minutes, max_steps or the phase's own epochs, each as a "
                            "fraction of itself); 0: constant")
    checkpoint_minutes: float = Field(5.0, gt=0, description="write a resumable checkpoint this often")
    cfg_dropout: float = Field(0.1, ge=0, lt=1, description="conditional generation: probability that a window's "
                               "condition is replaced by the null one (classifier-free guidance training)")
    cfg_drop: Literal["joint", "parts"] = Field("joint", description='"joint": labels, numbers and caption dropped together; '
                                                '"parts": each on its own draw')
    seed: int = Field(0, description="seed of initialisation, batches and noise")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description='"auto" uses a GPU when there is one')
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description='forward passes in "bf16" (autocast; weights, optimizer and losses stay fp32) or "fp32"; '
        '"auto": bf16 on a GPU and on CPUs with native bf16 instructions (AVX512-BF16, AMX)')
    runs_dir: Path = Field(Path("runs"), description="where run directories are made")


class SampleSettings(_Section):
    """``[sample]``: the Heun sampler of ``tsdiff sample`` and of evaluation."""

    steps: int = Field(18, ge=1, description="Heun steps (paper: 18)")
    churn: float = Field(0.0, ge=0, description="EDM stochastic churn S_churn (0: deterministic)")
    n: int = Field(1000, ge=1, description="windows to sample")
    batch_size: int = Field(512, ge=1, description="windows per sampling batch")
    seed: int = Field(0, description="seed of the initial noise")
    guidance: float = Field(1.0, ge=0, description="conditional runs: classifier-free guidance weight w in D_uncond + "
                            "w (D_cond − D_uncond); 1 plain conditional, 0 unconditional, > 1 stronger adherence")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description='network arithmetic while sampling: "bf16" (autocast; the σ-scaled network output keeps its '
        'error below the noise level), "fp32", or "auto": bf16 on a GPU and on CPUs with native bf16 instructions')


METRIC_NAMES = ("discriminative", "predictive", "context_fid", "correlation")
MetricName = Literal["discriminative", "predictive", "context_fid", "correlation"]


class EvalSettings(_Section):
    """``[eval]``: the generation metrics of ``tsdiff evaluate`` and the selection score of training.

    The plain keys are the full protocol of the papers (TimeGAN / ImagenTime / ImagenI2R); the
    ``quick_*`` keys form the reduced profile of ``tsdiff evaluate --quick`` (labelled so, never
    compared with published tables); ``quick_repeats`` and ``quick_disc_iterations`` also size
    the selection score during training.
    """

    metrics: list[MetricName] = Field(list(METRIC_NAMES), description="metrics of the full protocol")
    repeats: int = Field(10, ge=1, description="repeats of the discriminative and predictive scores")
    disc_iterations: int = Field(2000, ge=1, description="discriminator training iterations (TimeGAN: 2000)")
    pred_iterations: int = Field(5000, ge=1, description="predictor training iterations (TimeGAN: 5000)")
    batch_size: int = Field(128, ge=1, description="batch of the post-hoc GRU networks (TimeGAN: 128)")
    fid_repeats: int = Field(5, ge=1, description="Context-FID repeats, each with a new TS2Vec encoder")
    fid_iterations: int | None = Field(
        None, ge=1, description="TS2Vec training iterations; default as TS2Vec: 200 up to 100 000 values, else 600"
    )
    corr_subsets: int = Field(5, ge=1, description="random subsets the correlation score is averaged over")
    seed: int = Field(0, description="seed of every metric; the same seed gives the same numbers")
    threads: int = Field(0, ge=0, description="torch CPU threads for evaluation; 0: those of the command (tsdiff --threads)")
    device: Literal["cpu", "cuda"] = Field("cpu", description='where the four protocol metrics\' networks train ("cpu": '
                                           'as every score in the README; the conditional section stays on the CPU)')
    quick_metrics: list[MetricName] = Field(["discriminative"], description="metrics of the quick profile")
    quick_repeats: int = Field(3, ge=1, description="repeats in the quick profile")
    # Not fewer iterations: with 500 the classifier is undertrained and the quick score flatters
    # (measured: 0.021 quick against 0.18 at the full protocol for the same stock model).
    quick_disc_iterations: int = Field(2000, ge=1, description="discriminator iterations in the quick profile")
    quick_pred_iterations: int = Field(1000, ge=1, description="predictor iterations in the quick profile")
    quick_fid_iterations: int = Field(100, ge=1, description="TS2Vec iterations in the quick profile")


class ImputeSettings(_Section):
    """``[impute]``: ``tsdiff impute``, from TimeKD embeddings (``emb_dir``) or a generator run (``model``)."""

    input: Path | None = Field(None, description="the CSV / Parquet file with gaps (NaN or empty cells)")
    output: Path | None = Field(None, description="where to write the filled file (.csv or .parquet)")
    emb_dir: Path | None = Field(None, description="TimeKD embeddings: the root, or a {name}/{pred_len}/{flag} folder")
    model: Path | None = Field(None, description="a run made by `tsdiff train` whose generator fills the gaps")
    columns: list[str] | None = Field(None, description="value columns; default every numeric column")
    time_column: str | None = Field(None, description='the date column, kept as it is; default the first column of timestamps')
    seq_len: int = Field(96, ge=1, description="TimeKD lookback L (the store script's input_len)")
    pred_len: int | None = Field(None, ge=1, description="TimeKD horizon P; needed when the folder holds several")
    flag: Literal["train", "val", "test"] | None = Field(None, description="TimeKD split; needed when the folder holds several")
    borders: Literal["auto", "ett_hour", "ett_minute", "custom"] = Field(
        "auto", description="TSLib split borders: auto follows the dataset name (ETTh*, ETTm*, else custom 70/10/20)")
    target: str = Field("OT", description="custom data: TSLib moves this column last; its embeddings are in that order")
    decoder: Literal["shared", "flat"] = Field(
        "shared", description='"shared": one network decodes each variable\'s embedding; "flat": one MLP reads them all')
    hidden: int = Field(256, ge=1, description="decoder hidden width")
    layers: int = Field(2, ge=0, description="decoder hidden layers")
    noise: float = Field(0.1, ge=0, description="std of the Gaussian noise on (standardised) embeddings in training")
    epochs: int = Field(200, ge=1, description="most decoder epochs (early stopping usually ends sooner)")
    patience: int = Field(10, ge=1, description="epochs without a better validation loss before stopping")
    lr: float = Field(1e-3, gt=0, description="decoder learning rate (AdamW)")
    batch_size: int = Field(64, ge=1, description="windows per decoder step")
    max_minutes: float = Field(0.0, ge=0, description="stop decoder training after this many minutes, counted from the "
                               "start of the command (reading the embeddings included; 0: no limit)")
    max_steps: int = Field(0, ge=0, description="stop decoder training after this many optimisation steps (0: no limit)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="last fraction of the windows used for early stopping")
    samples: int = Field(0, ge=0, description="generator path: 0 fills with the TST completion; K ≥ 10 draws K diffusion "
                         "inpaintings and writes their median with 5 % and 95 % columns")
    start_sigma: float = Field(0.3, ge=0, description="inpainting starts from the TST completion noised to this σ "
                               "(SDEdit); 0 starts from pure noise (σ 80), which scored worse than linear interpolation on ETTh1")
    steps: int = Field(18, ge=1, description="Heun steps of diffusion inpainting")
    batch: int = Field(512, ge=1, description="windows per inpainting batch")
    holdout: float = Field(0.0, ge=0, lt=1, description="judge instead of fill: hide this fraction of the observed values, "
                           "fill, report errors on them beside baselines")
    seed: int = Field(0, ge=0, description="seed of training, holdout and sampling")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description='"auto" uses a GPU when there is one')
    runs_dir: Path = Field(Path("runs"), description="where impute runs are made (they do not move runs/latest)")

    @model_validator(mode="after")
    def _check(self) -> ImputeSettings:
        if 0 < self.samples < 10:
            raise ValueError(f"samples = {self.samples} draws cannot give a 5–95 % interval (their min and max would "
                             "stand for it); use 0 (TST completion) or at least 10")
        return self


class ForecastSettings(_Section):
    """``[forecast]``: ``tsdiff forecast`` — an iTransformer encoder with a generative head (see
    tsdiff_cli/models/forecaster.py), trained on one CSV, judged on its test split."""

    data: str = Field("etth1", description='the series to learn: a CSV / Parquet path or a shipped name ("etth1")')
    columns: list[str] | None = Field(None, description="value columns to forecast; default every column but the date")
    time_column: str | None = Field(None, description="the date column; default the first column of timestamps")
    split: Literal["auto", "ett_hour", "ett_minute", "custom"] = Field(
        "auto", description="train / val / test borders: TSLib's 12 / 4 / 4 months for ETT files (auto), else 70 / 10 / 20 %")
    seq_len: int = Field(96, ge=2, description="lookback rows")
    pred_len: int = Field(96, ge=1, description="horizon rows")
    d_model: int = Field(128, ge=8, description="encoder token width")
    heads: int = Field(8, ge=1, description="encoder attention heads")
    layers: int = Field(2, ge=1, description="encoder layers")
    ff: int = Field(256, ge=1, description="encoder feed-forward width")
    dropout: float = Field(0.1, ge=0, lt=1, description="encoder dropout")
    cycle: int = Field(24, ge=0, description="length in rows of a learnt cycle removed before and restored after the "
                       "encoder (CycleNet; 24 for hourly data); needs a date column; 0: none")
    head: Literal["flow", "vdiff"] = Field("flow", description='generative head: "flow" (flow matching) or "vdiff" '
                                           "(v-prediction diffusion, DDIM sampling)")
    head_dim: int = Field(64, ge=8, description="width of the head's tokens")
    head_heads: int = Field(4, ge=1, description="attention heads of the head")
    head_layers: int = Field(2, ge=1, description="DiT blocks of the head")
    patch: int = Field(48, ge=1, description="horizon rows per head token (pred_len must be a multiple)")
    residual: bool = Field(True, description="the head generates the residual around the deterministic forecast")
    mse_weight: float = Field(0.5, ge=0, le=1, description="λ in λ · MSE(deterministic) + (1 − λ) · generative loss")
    lr: float = Field(5e-4, gt=0, description="peak learning rate (AdamW; linear warm-up, then cosine decay)")
    warmup_steps: int = Field(100, ge=0, description="learning-rate warm-up steps")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="gradient norm clipping")
    batch_size: int = Field(32, ge=1, description="windows per step")
    epochs: int = Field(4, ge=1, description="training epochs (the cosine schedule spans them; ETTh1 overfits after about 4)")
    patience: int = Field(3, ge=1, description="epochs without a better validation loss before stopping")
    max_minutes: float = Field(0.0, ge=0, description="stop training after this many minutes, counted from the start of "
                               "the command, validations included (0: no limit)")
    max_steps: int = Field(0, ge=0, description="stop training after this many optimisation steps (0: no limit)")
    samples: int = Field(100, ge=1, description="forecast samples per window (test evaluation and --run)")
    steps: int = Field(5, ge=1, description="sampling steps of the head (≤ 10)")
    solver: Literal["euler", "heun"] = Field("euler", description="flow-matching ODE solver (heun: 2·steps − 1 evaluations)")
    sample_windows: int = Field(8, ge=1, description="windows per sampling batch (× samples rows; small batches stay in cache)")
    calibrate: bool = Field(True, description="after training, on validation windows: move the samples' median toward the "
                            "ridge forecast by the weight that minimises their squared error, and scale the samples around "
                            "it so that the 90 % interval covers 90 % (two constants; test windows are never read)")
    calibration_windows: int = Field(512, ge=1, description="validation windows (evenly spaced) sampled to choose them")
    seed: int = Field(0, description="seed of initialisation, batches and sampling")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description='"auto" uses a GPU when there is one')
    runs_dir: Path = Field(Path("runs"), description="where forecast runs are made")

    @model_validator(mode="after")
    def _check(self) -> ForecastSettings:
        if self.pred_len % self.patch:
            divisors = [d for d in range(1, self.pred_len + 1) if self.pred_len % d == 0]
            raise ValueError(f"patch = {self.patch} does not divide pred_len = {self.pred_len}; use one of "
                             + ", ".join(map(str, divisors)))
        if self.d_model % self.heads or self.head_dim % self.head_heads:
            raise ValueError("d_model must be a multiple of heads and head_dim a multiple of head_heads")
        return self


class ClassifySettings(_Section):
    """``[classify]``: ``tsdiff classify`` — a dual-patch transformer that classifies and regresses
    labelled series with gaps (see tsdiff_cli/models/dualpatch.py)."""

    train: str | None = Field(None, description='labelled training series: a .ts file, a long CSV / Parquet table, or a '
                              'shipped set ("JapaneseVowels_TRAIN", "BasicMotions_TRAIN", "Covid3Month_TRAIN")')
    val: str | None = Field(None, description="validation series (same layout); default: val_fraction of train, stratified")
    test: str | None = Field(None, description="test series, scored once after training (never used for any choice)")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="share of train carved out for validation when val is unset "
                                "(stratified by the first class label, seeded)")
    id_column: str = Field("id", description="long tables: the series id column")
    time_column: str | None = Field(None, description="long tables: orders rows within a series (default: file order)")
    value_columns: list[str] | None = Field(None, description="long tables: numeric channels (default: every column not "
                                            "named elsewhere)")
    categorical_columns: list[str] = Field([], description="long tables: time-varying categorical channels")
    labels: dict[str, Literal["class", "numeric"]] = Field({}, description='long tables: label columns and their kind, '
                                                         'e.g. {activity = "class", age = "numeric"}; a .ts file has one, '
                                                         '"label", its kind read from the header')
    step_labels: list[str] = Field([], description="long tables: labels given per time step (the rest are per series)")
    task_weights: dict[str, float] = Field({}, description="loss weight per label (default 1 each)")
    length: int = Field(0, ge=0, description="steps the model reads: shorter series are padded with missing values, a "
                        "longer one is an error; 0: the longest training series")
    patch_len: int = Field(8, ge=1, description="steps per temporal patch")
    patch_stride: int = Field(4, ge=1, description="steps between temporal patches")
    d_model: int = Field(64, ge=8, description="token width")
    heads: int = Field(4, ge=1, description="attention heads")
    layers: int = Field(2, ge=1, description="encoder layers (per stream)")
    ff: int = Field(128, ge=1, description="feed-forward width")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout")
    gaps: Literal["mask", "interpolate"] = Field("mask", description='"mask": missing values enter as 0 with a missing-mask '
                                                 'channel; "interpolate": filled by linear interpolation, no mask channel '
                                                 "(the ablation the benchmark compares with)")
    fill: Literal["zero", "linear"] = Field("zero", description='the value channel where a value is missing: "zero", or '
                                            '"linear" interpolation between the observations either side (the mask '
                                            "channel says where the gaps are either way)")
    instance_norm: bool = Field(False, description="scale each series' channel by its own observed mean and spread "
                                "(RevIN), passing both to its variate token: for series whose levels differ by orders "
                                "of magnitude")
    streams: Literal["joint", "separate"] = Field("joint", description='"joint": one encoder over temporal and variate '
                                                  'tokens; "separate": one encoder each, fused after pooling')
    epochs: int = Field(100, ge=1, description="epochs of the base schedule")
    batch_size: int = Field(32, ge=1, description="series per step")
    lr: float = Field(1e-3, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    schedule: Literal["cosine", "onecycle"] = Field("cosine", description='"cosine" decay from lr to 0, or "onecycle" '
                                                    "(30 % warm-up from lr/25, then cosine to lr/10 000)")
    grad_clip: float = Field(1.0, gt=0, description="gradient norm clipping")
    metric: Literal["auto", "accuracy", "macro_f1", "rmse", "loss"] = Field(
        "auto", description="validation metric that keeps the best epoch and stops early, on the first label: accuracy "
        "(class) or rmse (numeric) for auto; ties are broken by the validation loss")
    patience: int = Field(0, ge=0, description="validations without a better metric before stopping (0: never; not with swa)")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="cross-entropy label smoothing")
    class_weights: bool = Field(False, description="weigh the cross-entropy by inverse class frequency")
    numeric_loss: Literal["mse", "huber"] = Field("mse", description="loss of numeric labels (on standardised targets)")
    balance: list[str] = Field([], description="labels whose joint values the sampler balances: each series drawn with "
                               "weight 1 / (series sharing its values); weights written to sampling_weights.csv")
    swa: bool = Field(False, description="after the base schedule, average the weights over swa_extra_ratio × epochs "
                      "more (torch.optim.swa_utils); the average is what is saved")
    swa_extra_ratio: float = Field(0.333, gt=0, description="SWA epochs as a fraction of epochs")
    swa_lr_frac: float = Field(0.25, gt=0, le=1, description="SWALR anneals linearly to this fraction of lr")
    pretrain_epochs: int = Field(100, ge=1, description="classify pretrain: masked-patch epochs")
    mask_ratio: float = Field(0.4, gt=0, lt=1, description="classify pretrain: share of temporal patches hidden")
    value_mask: float = Field(0.1, ge=0, lt=1, description="classify pretrain: share of other observed values hidden")
    init: Path | None = Field(None, description="fine-tune from this pretrain run's encoder (fresh heads)")
    head_epochs: int = Field(5, ge=0, description="with init: epochs training the heads alone before all layers")
    label_fraction: float = Field(1.0, gt=0, le=1, description="keep this stratified, seeded share of the training labels")
    missing_rate: float = Field(0.0, ge=0, lt=1, description="benchmark gaps: remove this share of observed values at "
                                "random from every file read (seeded); 0 keeps the data as it is")
    seed: int = Field(0, description="seed of splits, initialisation, batches and masks")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description='"auto" uses a GPU when there is one')
    max_minutes: float = Field(0.0, ge=0, description="stop training after this many minutes (0: no limit)")
    max_steps: int = Field(0, ge=0, description="stop training after this many steps (0: no limit)")
    runs_dir: Path = Field(Path("runs"), description="where classify runs are made")

    @model_validator(mode="after")
    def _check(self) -> ClassifySettings:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if self.patch_stride > self.patch_len:
            raise ValueError(f"patch_stride {self.patch_stride} > patch_len {self.patch_len} would skip steps")
        for name in (*self.step_labels, *self.task_weights, *self.balance):
            if self.labels and name not in self.labels:
                raise ValueError(f"'{name}' is not one of labels ({', '.join(self.labels)})")
        if self.swa and self.patience:
            raise ValueError("patience stops the base schedule that swa continues; set patience = 0 with swa")
        return self


class TuneSettings(_Section):
    """``[tune]``: ``tsdiff tune CONFIG`` — an Optuna study over the other sections' settings.
    The search space is the ``[tune.space]`` table: one key per setting ("section.key"), each a
    range ``{low, high}`` (floats; ints when both are whole numbers; ``log = true`` for a
    log scale; ``step`` for a grid) or ``{choices = [...]}``."""

    job: Literal["auto", "train", "forecast", "classify"] = Field(
        "auto", description='the training each trial runs: "train" (the generator), "forecast", "classify"; "auto": '
        "classify when [classify] train is set, forecast when [forecast] data is set, else train")
    metric: str | None = Field(None, description="the validation metric to optimise, as the run's evaluation rows name "
                               "it (default: train discriminative, classify val_accuracy / val_rmse, forecast val_loss); "
                               "never a test-split metric")
    direction: Literal["auto", "minimize", "maximize"] = Field(
        "auto", description='"auto": maximize accuracy, F1 and correlation metrics, minimize the rest')
    trials: int = Field(20, ge=1, description="trials in the study (completed, pruned or failed), over all its workers")
    sampler: Literal["tpe", "random"] = Field("tpe", description="Optuna's sampler (seeded with seed + worker)")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="stops a trial whose evaluations are worse than earlier trials' at the same step")
    warmup: int = Field(1, ge=0, description="evaluations of a trial before the pruner may stop it")
    seed: int = Field(0, description="the sampler's seed")
    studies_dir: Path = Field(Path("studies"), description="where study folders are made")
    space: dict[str, dict[str, Any]] = Field({}, description="the search space (see above)")


class Settings(BaseSettings):
    """All settings, one attribute per TOML section.

    Build it with :func:`load_settings`; constructing it directly only validates the given
    keyword arguments (the environment is read by ``load_settings`` so errors can name it).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter=ENV_DELIMITER, extra="forbid"
    )

    data: DataSettings = Field(default_factory=DataSettings)
    tst: TSTSettings = Field(default_factory=TSTSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    sample: SampleSettings = Field(default_factory=SampleSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    impute: ImputeSettings = Field(default_factory=ImputeSettings)
    forecast: ForecastSettings = Field(default_factory=ForecastSettings)
    classify: ClassifySettings = Field(default_factory=ClassifySettings)
    tune: TuneSettings = Field(default_factory=TuneSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        return (init_settings,)


SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation for name, field in Settings.model_fields.items()  # type: ignore[misc]
}


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file as a dict, with one-line errors for a missing, unreadable or invalid file."""
    path = Path(path)
    if not path.exists():
        raise UserError(path, "no such settings file", "check the path (presets are in config/)")
    if path.is_dir():
        raise UserError(path, "is a directory, not a TOML settings file", "name a .toml file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(path, f"not valid TOML ({exc})", "fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(path, f"cannot be read ({exc})", "check the file") from None


def read_environment(environ: Mapping[str, str]) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str], str]]:
    """``TSDIFF_<SECTION>__<KEY>`` variables as ``{section: {key: value}}`` plus each one's name.

    Values that look like JSON lists or tables (``["a", "b"]``) are decoded; the rest stay
    strings and are converted by the model, so ``TSDIFF_DATA__SEQ_LEN=48`` becomes an int.
    """
    values: dict[str, dict[str, Any]] = {}
    names: dict[tuple[str, str], str] = {}
    for name, raw in environ.items():
        if not name.upper().startswith(ENV_PREFIX) or ENV_DELIMITER not in name[len(ENV_PREFIX):]:
            continue
        section, key = name[len(ENV_PREFIX):].lower().split(ENV_DELIMITER, 1)
        if section not in SECTIONS:
            raise UserError(
                f"environment variable {name}",
                f"there is no settings section [{section}]",
                f"use one of: {', '.join(SECTIONS)} (or unset it)",
            )
        value: Any = raw
        if raw.strip()[:1] in ("[", "{"):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                raise UserError(
                    f"environment variable {name}",
                    f"{raw!r} is not valid JSON",
                    'write lists as JSON, e.g. ["a", "b"]',
                ) from None
        values.setdefault(section, {})[key] = value
        names[(section, key)] = name
    return values, names


def load_settings(
    config: Path | str | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings: defaults < TOML ``config`` < environment < ``overrides`` (CLI options).

    ``overrides`` is ``{section: {key: value}}``; ``None`` values mean "option not given".
    Raises :class:`UserError` naming the offending key and where it came from.
    """
    toml = read_toml(Path(config)) if config is not None else {}
    _check_toml_types(config, toml)
    env, env_names = read_environment(os.environ if environ is None else environ)
    cli = {s: {k: v for k, v in kv.items() if v is not None} for s, kv in (overrides or {}).items()}

    merged: dict[str, Any] = dict(toml)
    for layer in (env, cli):
        for section, kv in layer.items():
            base = merged.get(section)
            merged[section] = {**base, **kv} if isinstance(base, dict) else dict(kv)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise _explain(exc, config, toml, env_names, cli) from None


_SCALARS = {bool: "true or false", int: "a whole number", float: "a number"}


def _scalar_type(annotation: Any) -> type | None:
    """bool, int or float when a field holds one of them (or None); else None."""
    union = get_origin(annotation) in (Union, UnionType)
    args = [a for a in get_args(annotation) if a is not type(None)] if union else [annotation]
    return args[0] if len(args) == 1 and args[0] in _SCALARS else None


def _check_toml_types(config: Path | str | None, toml: Mapping[str, Any]) -> None:
    """A TOML value of the wrong type is an error, not converted: pydantic would read
    ``seq_len = "24"`` as 24 and ``seq_len = true`` as 1. (Environment variables are strings by
    nature and stay converted.)"""
    for section, kv in toml.items():
        model = SECTIONS.get(section)
        if model is None or not isinstance(kv, Mapping):
            continue  # unknown sections and keys get their own errors from validation
        for key, value in kv.items():
            field = model.model_fields.get(key)
            want = _scalar_type(field.annotation) if field is not None else None
            if want is None or value is None:
                continue
            ok = isinstance(value, bool) if want is bool else (
                isinstance(value, (int, float) if want is float else int) and not isinstance(value, bool))
            if not ok:
                quoted = " without quotes" if isinstance(value, str) else ""
                raise UserError(config, f"[{section}] {key} = {json.dumps(value)} is not {_SCALARS[want]}",
                                f"write {_SCALARS[want]}{quoted}")


def _origin(section: str, key: str | None, config, toml, env_names, cli) -> str:
    if key is not None and key in cli.get(section, {}):
        return f"option {'-' if len(key) == 1 else '--'}{key.replace('_', '-')}"
    if key is not None and (section, key) in env_names:
        return f"environment variable {env_names[(section, key)]}"
    return str(config) if config is not None else "settings"


def _explain(exc: ValidationError, config, toml, env_names, cli) -> UserError:
    """One :class:`UserError` for the first validation error (and a count of the others)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = [str(part) for part in first["loc"]]
    section = loc[0]
    key = loc[1] if len(loc) > 1 else None
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    where = _origin(section, key, config, toml, env_names, cli)

    if first["type"] == "extra_forbidden" and key is None:
        owners = [s for s, model in SECTIONS.items() if section in model.model_fields]
        if owners:
            return UserError(where, f"'{section}' is not a settings section{more}", f"put it under [{owners[0]}]")
        hint = difflib.get_close_matches(section, SECTIONS, n=1)
        fix = f"did you mean [{hint[0]}]?" if hint else f"known sections: {', '.join(SECTIONS)}"
        return UserError(where, f"unknown settings section [{section}]{more}", fix)
    if first["type"] == "extra_forbidden":
        known = list(SECTIONS[section].model_fields)
        hint = difflib.get_close_matches(key, known, n=1)
        fix = f"did you mean {hint[0]}?" if hint else f"known keys in [{section}]: {', '.join(known)}"
        return UserError(where, f"unknown setting [{section}] {key}{more}", fix)
    if key is None:
        message = first["msg"].removeprefix("Value error, ")
        return UserError(where, f"[{section}]: {message}{more}", "fix the values")
    message = first["msg"].removeprefix("Value error, ")
    shown = first.get("input")
    return UserError(where, f"[{section}] {key} = {shown!r} is invalid: {message}{more}", "fix the value")


def to_toml(settings: Settings, exclude: set[str] | None = None) -> str:
    """The canonical TOML text of resolved settings (unset optional keys and the sections in
    ``exclude`` are left out)."""
    import tomli_w

    return tomli_w.dumps(settings.model_dump(mode="json", exclude_none=True, exclude=exclude))
