"""The ImagenI2R generator as a training task: phase 1 fits the TST on observed values; phase 2
trains the diffusion model on TST-completed images with the masked loss while the TST keeps
refining on its own reconstruction loss (no diffusion gradient reaches the TST: its completion is
detached, so the summed objective gives each network exactly its own loss's gradient).

Every ``eval_every`` diffusion epochs the quick discriminative score of EMA samples against as
many real gap-free windows is the validation; the trainer keeps the EMA weights with the best.
The noise draws come from a generator checkpointed with the weights (exact resume).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from tsdiff_cli.data.arrays import gap_free
from tsdiff_cli.models.edm import masked_edm_loss, sample_sigma
from tsdiff_cli.models.generator import Generator, GeneratorConfig, sample_windows
from tsdiff_cli.models.layers import masked_mse
from tsdiff_cli.models.tst import complete, masked_inputs
from tsdiff_cli.runs import MODEL_FILE, TST_FILE
from tsdiff_cli.settings import Settings
from tsdiff_cli.training.loop import EMA, Phase, Position, StepOutput, Task, Watch

QUICK_MIN = 4  # fewer real gap-free windows than this: no quick evaluation


def quick_reference(reference: np.ndarray, n: int, seed: int) -> np.ndarray:
    """The real side of every quick evaluation: ``n`` gap-free windows (all when there are fewer),
    the same ones each time (drawn once with ``seed``), scored against as many sampled.

    Equal sizes as in the full protocol (TimeGAN scores N generated against N real): 1000
    generated against all 3661 stock windows made a test set three-quarters real, and a model
    scoring 0.105 at the full protocol scored 0.015–0.18 (three sampling seeds). Balanced, the
    same model scores 0.06–0.13 and a 0.013 model 0.011–0.016 (docs/generator-cpu.md)."""
    ref = reference[gap_free(reference)]
    pick = np.sort(np.random.default_rng(seed).permutation(len(ref))[:n])
    return np.ascontiguousarray(ref[pick], dtype=np.float32)


class GeneratorTask(Task):
    """``phases``: "tst", then "diffusion" unless ``tst_only`` (whose inference file is the TST
    alone). A job with a pretrained TST starts the trainer at "diffusion"."""

    diverged_fix = "lower [train] lr or [tst] lr and start again"

    def __init__(self, s: Settings, cfg: GeneratorConfig, observed: np.ndarray, quick_real: np.ndarray,
                 device: torch.device, metadata: dict[str, str], *, tst_only: bool = False, sample_bf16: bool = False):
        self.s, self.cfg, self.device, self.metadata = s, cfg, device, metadata
        self.tst_only, self.sample_bf16 = tst_only, sample_bf16
        torch.manual_seed(s.train.seed)
        self.module = self.model = Generator(cfg).to(device)
        self.ema_model = Generator(cfg).to(device)  # holds the EMA weights for sampling
        self.observed = torch.as_tensor(observed, dtype=torch.float32, device=device)
        self.quick_real = quick_real
        wd = s.train.weight_decay
        self.optimizer = torch.optim.AdamW([{"params": self.model.tst.parameters(), "lr": s.tst.lr},
                                            {"params": self.model.denoiser.parameters(), "lr": s.train.lr}],
                                           weight_decay=wd)
        self.ema = EMA(self.model.denoiser, s.train.ema_decay, s.train.ema_warmup)
        self.noise = torch.Generator().manual_seed(s.train.seed + 1)
        self.model_file = TST_FILE if tst_only else MODEL_FILE
        self.quick = bool(s.train.eval_every) and len(quick_real) >= QUICK_MIN and not tst_only
        # the quick windows are part of what a score means: another set makes old scores incomparable
        self.watch = Watch("discriminative", key=[len(quick_real), s.eval.seed])

    def generators(self) -> dict[str, torch.Generator]:
        return {"noise": self.noise}

    def signature(self) -> str:
        return self.cfg.to_json()

    def phases(self) -> list[Phase]:
        n, bs = len(self.observed), self.s.train.batch_size
        tst = Phase("tst", self.s.tst.epochs, n, bs, self._tst_step)
        diffusion = Phase("diffusion", self.s.train.epochs, n, bs, self._diffusion_step, ema=True,
                          validate=self._quick_evaluation if self.quick else None,
                          validate_every=max(self.s.train.eval_every, 1))
        return [tst] if self.tst_only else [tst, diffusion]

    # --- steps -------------------------------------------------------------------------------

    def _tst(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The TST's prediction for a batch and its reconstruction loss (masking objective)."""
        inputs, targets = masked_inputs(obs, self.s.tst.mask_rate, self.noise)
        pred = self.model.tst(inputs).float()
        return pred, masked_mse(pred, targets)  # the TST learns from observed (or hidden) values only

    def _tst_step(self, idx: torch.Tensor) -> StepOutput:
        _, loss = self._tst(self.observed[idx.to(self.device)])
        return loss, {"tst_loss": loss}

    def _diffusion_step(self, idx: torch.Tensor) -> StepOutput:
        obs = self.observed[idx.to(self.device)]
        pred, tst_loss = self._tst(obs)
        image = self.model.to_image(complete(pred.detach(), obs))
        mask = self.model.embed.to_image((~torch.isnan(obs)).float())
        sigma = sample_sigma(len(idx), self.noise, self.s.train.p_mean, self.s.train.p_std, device=self.device)
        noise = torch.randn(image.shape, generator=self.noise).to(self.device)
        loss = masked_edm_loss(self.model.denoiser, image, image, mask, sigma, noise,
                               noise_all=self.s.train.noise_pixels == "all")
        return tst_loss + loss, {"tst_loss": tst_loss, "diffusion_loss": loss}

    # --- validation and the inference file ---------------------------------------------------------

    def load_ema(self) -> Generator:
        self.ema_model.tst.load_state_dict(self.model.tst.state_dict())
        self.ema_model.denoiser.load_state_dict(self.ema.shadow)
        return self.ema_model.eval()

    def _quick_evaluation(self, check: Callable[[], None]) -> dict:
        from tsdiff_cli.metrics.evaluate import evaluate_windows

        real = self.quick_real
        gen = sample_windows(self.load_ema(), len(real), steps=self.s.sample.steps, churn=self.s.sample.churn,
                             seed=self.s.train.seed, batch_size=self.s.sample.batch_size, device=self.device,
                             bf16=self.sample_bf16, callback=lambda done, total: check())
        report = evaluate_windows(real, gen, self.s.eval, quick=True, progress=lambda name, done, total: check())
        return {"profile": "quick", "windows": len(real), **{name: m["mean"] for name, m in report["metrics"].items()}}

    def export(self, pos: Position) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        if self.tst_only:
            tensors = dict(self.model.tst.state_dict())
            return tensors, {"format": "tsdiff-tst", "config": self.cfg.to_json(), **self.metadata}
        model = self.load_ema()
        tensors = {f"tst.{k}": v for k, v in model.tst.state_dict().items()}
        tensors.update({f"denoiser.{k}": v for k, v in model.denoiser.state_dict().items()})
        return tensors, {"format": "tsdiff-generator", "config": self.cfg.to_json(), "step": str(pos.step),
                         "epoch": str(pos.epoch), "best_disc": str(pos.best), **self.metadata}
