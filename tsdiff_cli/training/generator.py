"""The ImagenI2R generator as a training task: phase 1 fits the TST on observed values; phase 2
trains the diffusion model on TST-completed images with the masked loss while the TST keeps
refining on its own reconstruction loss (no diffusion gradient reaches the TST: its completion is
detached, so the summed objective gives each network exactly its own loss's gradient). With
``[tst] refine = false`` the TST is frozen after phase 1 and completes every window once.

Every ``eval_every`` diffusion epochs the selection score is the validation; the trainer keeps
the EMA weights with the best (with ``[train] keep_within``, the latest within that of the best).
It reads only what a user has: EMA samples, given the gaps of real windows, against the
*observed* values of those windows (the validation split when the dataset has one, else the
training windows) — never the dataset's ``target``, which holds the values a
benchmark removed. Selection and evaluation draw from disjoint seeds (:func:`selection_seeds`,
:func:`evaluation_seeds`): the final score is computed on other samples and other classifier
splits than those that chose the model (the real side may be the same windows: the presets,
like the paper, train and score on every window).
The noise draws come from a generator checkpointed with the weights (exact resume).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tsdiff_cli.data.store import SPLITS
from tsdiff_cli.models.condition import Conditions, drop_conditions
from tsdiff_cli.models.edm import masked_edm_loss, sample_sigma
from tsdiff_cli.models.generator import Generator, GeneratorConfig, sample_windows
from tsdiff_cli.models.layers import masked_mse
from tsdiff_cli.models.marginal import fit_knots
from tsdiff_cli.models.tst import complete, masked_inputs
from tsdiff_cli.runs import MODEL_FILE, TST_FILE
from tsdiff_cli.settings import Settings
from tsdiff_cli.training.loop import EMA, Phase, Position, StepOutput, Task, Watch, adamw

QUICK_MIN = 4  # fewer real windows with an observed value than this: no selection score
VAL_MIN = 100  # validation windows enough to select on when fewer than eval_samples are there
COMPLETION_BATCH = 1024  # windows a frozen TST completes at a time


def derived_seed(purpose: str, seed: int) -> int:
    """A seed for one ``purpose`` from a user's ``seed``: different purposes never share a
    stream, whatever seeds the user sets (SeedSequence hashing of both)."""
    return int(np.random.SeedSequence([seed % 2**64, *purpose.encode()]).generate_state(1)[0] >> 1)


def selection_seeds(s: Settings) -> dict[str, int]:
    """The seeds of the selection score during training: its samples, the gaps they are given
    and the classifier."""
    return {"sample": derived_seed("selection-sample", s.train.seed),
            "metric": derived_seed("selection-metric", s.eval.seed)}


def evaluation_seeds(seed: int) -> dict[str, int]:
    """The seeds of ``tsdiff evaluate RUN --seed SEED``: its samples and its metrics, disjoint
    from every selection seed by purpose."""
    return {"sample": derived_seed("evaluation-sample", seed), "metric": derived_seed("evaluation-metric", seed)}


def selection_reference(observed: np.ndarray, split: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, str]:
    rows, which = selection_rows(observed, split, n, seed)
    return np.ascontiguousarray(observed[rows], dtype=np.float32), which


def selection_rows(observed: np.ndarray, split: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, str]:
    """The rows of the real side of every selection score, and which windows they are: up to ``n`` observed
    windows (gaps kept) of the validation split when it has ``n`` of them (or at least ``VAL_MIN``)
    with an observed value, else of the training split (a handful of validation windows would make
    a noisy score); the same ones each time (drawn once with ``seed``),
    scored against as many sampled.

    Equal sizes as in the full protocol (TimeGAN scores N generated against N real): 1000
    generated against all 3661 stock windows made a test set three-quarters real, and a model
    scoring 0.105 at the full protocol scored 0.015–0.18 (three sampling seeds). Balanced, the
    same model scores 0.06–0.13 and a 0.013 model 0.011–0.016 (docs/generator-cpu.md)."""
    seen = ~np.isnan(observed).all(axis=(1, 2))
    val = seen & (split == SPLITS["val"])
    enough = val.sum() >= max(QUICK_MIN, min(n, VAL_MIN))
    which, rows = ("validation", val) if enough else ("training", seen & (split == SPLITS["train"]))
    rows = np.flatnonzero(rows)
    pick = np.sort(np.random.default_rng(seed).permutation(len(rows))[:n])
    return rows[pick], which


class GeneratorTask(Task):
    """``phases``: "tst", then "diffusion" unless ``tst_only`` (whose inference file is the TST
    alone). A job with a pretrained TST starts the trainer at "diffusion"."""

    diverged_fix = "lower [train] lr or [tst] lr and start again"

    def __init__(self, s: Settings, cfg: GeneratorConfig, observed: np.ndarray, selection_real: np.ndarray,
                 device: torch.device, metadata: dict[str, str], *, tst_only: bool = False, sample_bf16: bool = False,
                 selection_from: str = "training", conditions: Conditions | None = None,
                 selection_conditions: Conditions | None = None, selection_classes: tuple | None = None):
        self.s, self.cfg, self.device, self.metadata = s, cfg, device, metadata
        self.tst_only, self.sample_bf16 = tst_only, sample_bf16
        torch.manual_seed(s.train.seed)
        self.module = self.model = Generator(cfg).to(device)
        self.ema_model = Generator(cfg).to(device)  # holds the EMA weights for sampling
        if cfg.quantiles:  # the quantile map is fitted on the training windows' observed values
            knots = torch.as_tensor(fit_knots(observed, cfg.quantiles, cfg.quantile_features == "lumpy",
                                              cfg.quantile_output), device=device)
            self.model.knots.copy_(knots)
            self.ema_model.knots.copy_(knots)
        # both networks learn in the model's space (each feature's rank with a quantile map)
        ties = None  # [model] quantile_ties = "random": each window's tied values at a drawn place in their tie
        if s.model.quantile_ties == "random":
            ties = torch.Generator().manual_seed(derived_seed("quantile-ties", s.train.seed))
        self.observed = self.model.encode(torch.as_tensor(observed, dtype=torch.float32, device=device), ties)
        self._frozen: torch.Tensor | None = None  # the frozen TST's completions ([tst] refine = false)
        self.selection_real = selection_real
        self.seeds = selection_seeds(s)
        # conditional runs: the training windows' conditions, and those the selection samples are asked for
        self.conditions = None if conditions is None else conditions.to(device)
        self.selection_conditions = selection_conditions
        self.selection_classes = selection_classes  # (codes of the selection windows, class names): per-class scores
        wd = s.train.weight_decay
        self.optimizer = adamw([{"params": self.model.tst.parameters(), "lr": s.tst.lr},
                                {"params": self.model.denoiser.parameters(), "lr": s.train.lr}], weight_decay=wd)
        self.ema = EMA(self.model.denoiser, s.train.ema_decay, s.train.ema_warmup)
        self.noise = torch.Generator().manual_seed(s.train.seed + 1)
        self.model_file = TST_FILE if tst_only else MODEL_FILE
        self.quick = bool(s.train.eval_every) and len(selection_real) >= QUICK_MIN and not tst_only
        # the selection windows are part of what a score means: another set makes old scores incomparable
        e, p = s.eval, s.sample
        self.watch = Watch("discriminative", key=["observed", selection_from, len(selection_real), e.seed, s.train.seed,
                                                  p.steps, p.churn, e.quick_repeats, e.quick_disc_iterations],
                           tolerance=s.train.keep_within)

    def generators(self) -> dict[str, torch.Generator]:
        return {"noise": self.noise}

    def signature(self) -> str:
        return self.cfg.to_json()

    def same_architecture(self, saved: str) -> bool:
        try:  # a checkpoint from before a config field existed reads with its default
            return GeneratorConfig.from_json(saved).to_json() == self.signature()
        except (TypeError, ValueError, KeyError):
            return False

    def phases(self) -> list[Phase]:
        n, bs = len(self.observed), self.s.train.batch_size
        warmup = 0 if self.tst_only else self.s.tst.max_steps  # pretrain-tst trains all its epochs
        tst = Phase("tst", self.s.tst.epochs, n, bs, self._tst_step, max_steps=warmup)
        diffusion = Phase("diffusion", self.s.train.epochs, n, bs, self._diffusion_step, ema=True,
                          validate=self._quick_evaluation if self.quick else None,
                          validate_every=max(self.s.train.eval_every, 1))
        return [tst] if self.tst_only else [tst, diffusion]

    # --- steps -------------------------------------------------------------------------------

    def _tst(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The TST's prediction for a batch and its reconstruction loss (masking objective)."""
        inputs, targets = masked_inputs(obs, self.s.tst.mask_rate, self.noise, self.shard)
        pred = self.model.tst(inputs).float()
        return pred, masked_mse(pred, targets)  # the TST learns from observed (or hidden) values only

    def _tst_step(self, idx: torch.Tensor) -> StepOutput:
        _, loss = self._tst(self.observed[idx.to(self.device)])
        return loss, {"tst_loss": loss}

    def _completed(self) -> torch.Tensor:
        """Every window completed once by the frozen TST (``[tst] refine = false``): computed at the
        first diffusion step, so after phase 1 or a resume (the same frozen weights, the same windows)."""
        if self._frozen is None:
            tst, was_training = self.model.tst, self.model.tst.training
            tst.eval()  # its dropout off: the completion a user's imputation would give
            with torch.no_grad():
                self._frozen = torch.cat([complete(tst(chunk).float(), chunk)
                                          for chunk in self.observed.split(COMPLETION_BATCH)])
            tst.train(was_training)
        return self._frozen

    def _diffusion_step(self, idx: torch.Tensor) -> StepOutput:
        idx = idx.to(self.device)
        obs = self.observed[idx]
        if self.s.tst.refine:  # the paper: the TST keeps learning, the completion from this batch's masked inputs
            pred, tst_loss = self._tst(obs)
            image = self.model.to_image(complete(pred.detach(), obs))
        else:
            tst_loss, image = None, self.model.to_image(self._completed()[idx])
        mask = self.model.embed.to_image((~torch.isnan(obs)).float())
        # drawn for the whole global batch, this process's rows kept (the same weights on any number of processes)
        sigma = self.shard.rows(sample_sigma(self.shard.whole(len(idx)), self.noise, self.s.train.p_mean,
                                             self.s.train.p_std, device=self.device))
        noise = self.shard.randn(len(idx), self.noise, tail=tuple(image.shape[1:])).to(self.device)
        cond = ()
        if self.conditions is not None:  # classifier-free guidance training: some conditions made null
            t = self.s.train
            cond = (drop_conditions(self.conditions.index(idx.to(self.device)), t.cfg_dropout, self.noise,
                                    joint=t.cfg_drop == "joint", shard=self.shard),)
        loss = masked_edm_loss(self.model.denoiser, image, image, mask, sigma, noise,
                               noise_all=self.s.train.noise_pixels == "all", cond=cond)
        if tst_loss is None:
            return loss, {"diffusion_loss": loss}
        return tst_loss + loss, {"tst_loss": tst_loss, "diffusion_loss": loss}

    # --- validation and the inference file ---------------------------------------------------------

    def load_ema(self) -> Generator:
        self.ema_model.tst.load_state_dict(self.model.tst.state_dict())
        self.ema_model.denoiser.load_state_dict(self.ema.shadow)
        if self.ema_model.knots is not None:
            self.ema_model.knots.copy_(self.model.knots)
        return self.ema_model.eval()

    def _quick_evaluation(self, check: Callable[[], None]) -> dict:
        """The selection score: EMA samples given the real windows' gaps, against their observed values."""
        from tsdiff_cli.metrics.discriminative import gappy_discriminative_score

        real, e = self.selection_real, self.s.eval
        gen = sample_windows(self.load_ema(), len(real), steps=self.s.sample.steps, churn=self.s.sample.churn,
                             seed=self.seeds["sample"], batch_size=self.s.sample.batch_size, device=self.device,
                             bf16=self.sample_bf16, callback=lambda done, total: check(),
                             cond=self.selection_conditions, guidance=self.s.sample.guidance)
        scores = gappy_discriminative_score(real, gen, seed=self.seeds["metric"], repeats=e.quick_repeats,
                                            iterations=e.quick_disc_iterations, batch_size=e.batch_size,
                                            device=str(self.device), callback=lambda done, total: check())
        out = {"profile": "selection", "windows": len(real), "discriminative": float(np.mean(scores))}
        if self.selection_classes is not None:  # watched in `tsdiff monitor`; selection keeps the overall score
            codes, names = self.selection_classes
            for c, name in enumerate(names):
                rows = codes == c
                if rows.sum() >= QUICK_MIN:
                    out[f"disc_{name}"] = float(np.mean(gappy_discriminative_score(
                        real[rows], gen[rows], seed=self.seeds["metric"] + c, repeats=1,
                        iterations=e.quick_disc_iterations, batch_size=e.batch_size, device=str(self.device),
                        callback=lambda done, total: check())))
        return out

    def export(self, pos: Position) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        if self.tst_only:
            return self.model.file_tensors(tst_only=True), {"format": "tsdiff-tst", "config": self.cfg.to_json(),
                                                            **self.metadata}
        return self.load_ema().file_tensors(), {"format": "tsdiff-generator", "config": self.cfg.to_json(),
                                                "step": str(pos.step), "epoch": str(pos.epoch),
                                                "best_disc": str(pos.best), "kept_disc": str(pos.kept), **self.metadata}
