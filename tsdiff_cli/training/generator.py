"""Training the ImagenI2R generator: phase 1 fits the TST on observed values; phase 2 trains the
diffusion model on TST-completed images with the masked loss while the TST keeps refining on
its own reconstruction loss (no diffusion gradient reaches the TST: its completion is detached).

Exact resume: the batch order of an epoch is a function of (seed, epoch); the noise draws come
from a generator whose state is checkpointed with the weights, the EMA, the optimizer moments
and torch's global RNG (dropout). A run stopped after k steps and resumed gives the same
weights as one that never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from tsdiff_cli.data.arrays import gap_free
from tsdiff_cli.models.edm import EMA, masked_edm_loss, sample_sigma
from tsdiff_cli.models.generator import Generator, GeneratorConfig, sample_windows
from tsdiff_cli.models.tst import complete, masked_inputs, reconstruction_loss
from tsdiff_cli.runs import MODEL_FILE, Run, save_model
from tsdiff_cli.training.train import use_bf16

Progress = Callable[[dict], None] | None


class Diverged(RuntimeError):
    pass


@dataclass
class Position:
    phase: str = "tst"  # "tst" → "diffusion" → "done"
    epoch: int = 0
    batch: int = 0  # next batch index within the epoch
    step: int = 0  # optimisation steps so far, both phases
    best_disc: float | None = None
    elapsed: float = 0.0  # training seconds before this session
    history: list = field(default_factory=list)


def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            tensors[f"{prefix}.{idx}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, {"param_groups": sd["param_groups"]}


def _load_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


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


class GeneratorTrainer:
    def __init__(self, settings, cfg: GeneratorConfig, observed: np.ndarray, reference: np.ndarray,
                 run: Run, device: torch.device, progress: Progress = None, tst_only: bool = False):
        self.s, self.cfg, self.run, self.device, self.progress = settings, cfg, run, device, progress
        self.tst_only = tst_only
        torch.manual_seed(settings.train.seed)
        self.model = Generator(cfg).to(device)
        self.ema_model = Generator(cfg).to(device)  # holds EMA weights for sampling
        self.observed = torch.as_tensor(observed, dtype=torch.float32, device=device)
        self.quick_real = quick_reference(reference, settings.train.eval_samples, settings.eval.seed)
        self.opt_tst = torch.optim.AdamW(self.model.tst.parameters(), lr=settings.tst.lr, weight_decay=settings.train.weight_decay)
        self.opt_unet = torch.optim.AdamW(self.model.denoiser.parameters(), lr=settings.train.lr,
                                          weight_decay=settings.train.weight_decay)
        self.ema = EMA(self.model.denoiser, settings.train.ema_decay, settings.train.ema_warmup)
        self.noise_gen = torch.Generator().manual_seed(settings.train.seed + 1)
        self.pos = Position()
        self.bf16 = use_bf16(settings.train.precision, device)  # training forward passes
        self.sample_bf16 = use_bf16(settings.sample.precision, device)  # quick evaluations

    # --- checkpoint state --------------------------------------------------------------------

    def state(self) -> tuple[dict, dict]:
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update({f"ema.{k}": v for k, v in self.ema.shadow.items()})
        t1, m1 = _optimizer_tensors("opt_tst", self.opt_tst)
        t2, m2 = _optimizer_tensors("opt_unet", self.opt_unet)
        tensors.update(t1)
        tensors.update(t2)
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.noise"] = self.noise_gen.get_state()
        p = self.pos
        meta = {"phase": p.phase, "epoch": p.epoch, "batch": p.batch, "step": p.step, "best_disc": p.best_disc,
                "elapsed": p.elapsed + self._session_seconds(), "history": p.history, "ema_updates": self.ema.updates,
                "opt_tst": m1, "opt_unet": m2, "config": self.cfg.to_json(), "quick_windows": self._quick_key()}
        return tensors, meta

    def load_state(self, tensors: dict, meta: dict) -> None:
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        for k in self.ema.shadow:
            self.ema.shadow[k].copy_(tensors[f"ema.{k}"])
        self.ema.updates = meta["ema_updates"]
        _load_optimizer("opt_tst", self.opt_tst, tensors, meta["opt_tst"])
        _load_optimizer("opt_unet", self.opt_unet, tensors, meta["opt_unet"])
        torch.set_rng_state(tensors["rng.torch"])
        self.noise_gen.set_state(tensors["rng.noise"])
        self.pos = Position(meta["phase"], meta["epoch"], meta["batch"], meta["step"], meta["best_disc"],
                            meta["elapsed"], meta.get("history", []))
        if self.pos.best_disc is not None and meta.get("quick_windows") != self._quick_key():
            # the kept model's score came from other quick windows (another eval seed or count, or a
            # checkpoint from before they were balanced): not comparable, so the next evaluation decides
            self.pos.best_disc = None
            self.run.log("event", self.pos.phase, self.pos.step, self.pos.epoch,
                         message="quick evaluations now use other windows; the best score so far is reset")

    def checkpoint(self) -> None:
        tensors, meta = self.state()
        self.run.save_checkpoint(self.pos.step, tensors, meta)
        self._last_checkpoint = time.monotonic()

    # --- the loop ----------------------------------------------------------------------------

    def _session_seconds(self) -> float:
        return time.monotonic() - self._started if hasattr(self, "_started") else 0.0

    def _batches(self, epoch: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(self.s.train.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.observed), generator=gen)
        return list(order.split(self.s.train.batch_size))

    def _out_of_budget(self) -> str | None:
        t = self.s.train
        if t.max_steps and self.pos.step >= t.max_steps:
            return f"max_steps {t.max_steps}"
        if t.max_minutes and (self.pos.elapsed + self._session_seconds()) >= 60 * t.max_minutes:
            return f"max_minutes {t.max_minutes:g}"
        return None

    def fit(self) -> str:
        """Train until done or out of budget; returns why it stopped."""
        self._started = time.monotonic()
        self._last_checkpoint = time.monotonic()
        phases = [("tst", self.s.tst.epochs)] + ([] if self.tst_only else [("diffusion", self.s.train.epochs)])
        names = [name for name, _ in phases]
        start = names.index(self.pos.phase) if self.pos.phase in names else len(names)
        for i, (phase, epochs) in enumerate(phases[start:], start):
            self.pos.phase = phase
            while self.pos.epoch < epochs:
                batches = self._batches(self.pos.epoch)
                while self.pos.batch < len(batches):
                    reason = self._out_of_budget()
                    if reason:
                        return reason
                    idx = batches[self.pos.batch]
                    losses = self._tst_step(idx) if phase == "tst" else self._diffusion_step(idx)
                    self.pos.batch += 1
                    self.pos.step += 1
                    if self.pos.step % 10 == 0 or self.pos.batch == len(batches):
                        self.run.log("train", phase, self.pos.step, self.pos.epoch, **losses)
                    if self.progress:
                        self.progress({"phase": phase, "epoch": self.pos.epoch, "epochs": epochs, "batch": self.pos.batch,
                                       "batches": len(batches), "step": self.pos.step, **losses})
                    if time.monotonic() - self._last_checkpoint > 60 * self.s.train.checkpoint_minutes:
                        self.checkpoint()
                self.pos.epoch += 1
                self.pos.batch = 0
                self.run.set_status(state="running", phase=phase, epoch=self.pos.epoch, epochs=epochs, step=self.pos.step)
                every = self.s.train.eval_every
                if phase == "diffusion" and every and (self.pos.epoch % every == 0 or self.pos.epoch == epochs):
                    self.evaluate()
            # the phase is complete: a checkpoint from here on resumes with the next one
            self.pos.phase = names[i + 1] if i + 1 < len(names) else "done"
            self.pos.epoch, self.pos.batch = 0, 0
            self.checkpoint()
        return "finished"

    def _autocast(self):
        """Forward passes in bf16 where ``[train] precision`` says so; backward runs outside."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _check(self, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss):
            raise Diverged(f"{what} loss became {loss.item()} at step {self.pos.step}")

    def _tst_step(self, idx: torch.Tensor) -> dict:
        obs = self.observed[idx.to(self.device)]
        self.model.tst.train()
        inputs, targets = masked_inputs(obs, self.s.tst.mask_rate, self.noise_gen)
        with self._autocast():
            pred = self.model.tst(inputs).float()
        loss = reconstruction_loss(pred, targets)
        self._check(loss, "TST")
        self.opt_tst.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.tst.parameters(), self.s.train.grad_clip)
        self.opt_tst.step()
        return {"tst_loss": loss.item()}

    def _diffusion_step(self, idx: torch.Tensor) -> dict:
        obs = self.observed[idx.to(self.device)]
        # the TST refines on its own loss; its completion reaches the diffusion model detached
        self.model.tst.train()
        inputs, targets = masked_inputs(obs, self.s.tst.mask_rate, self.noise_gen)
        with self._autocast():
            pred = self.model.tst(inputs).float()
        tst_loss = reconstruction_loss(pred, targets)
        self._check(tst_loss, "TST")
        self.opt_tst.zero_grad(set_to_none=True)
        tst_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.tst.parameters(), self.s.train.grad_clip)
        self.opt_tst.step()

        completed = complete(pred.detach(), obs)
        image = self.model.to_image(completed)
        mask = self.model.embed.to_image((~torch.isnan(obs)).float())
        sigma = sample_sigma(len(idx), self.noise_gen, self.s.train.p_mean, self.s.train.p_std, device=self.device)
        noise = torch.randn(image.shape, generator=self.noise_gen).to(self.device)
        self.model.denoiser.train()
        with self._autocast():
            loss = masked_edm_loss(self.model.denoiser, image, image, mask, sigma, noise,
                                   noise_all=self.s.train.noise_pixels == "all")
        self._check(loss, "diffusion")
        self.opt_unet.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.denoiser.parameters(), self.s.train.grad_clip)
        self.opt_unet.step()
        self.ema.update(self.model.denoiser)
        return {"tst_loss": tst_loss.item(), "diffusion_loss": loss.item()}

    # --- evaluation and the inference file -----------------------------------------------------

    def load_ema(self) -> Generator:
        self.ema_model.tst.load_state_dict(self.model.tst.state_dict())
        self.ema_model.denoiser.load_state_dict(self.ema.shadow)
        return self.ema_model.eval()

    def _quick_key(self) -> list:
        return [len(self.quick_real), self.s.eval.seed]

    def evaluate(self) -> float:
        from tsdiff_cli.metrics.evaluate import evaluate_windows

        real = self.quick_real
        if len(real) < 4:  # every real window has gaps: nothing to score against (the last EMA is kept)
            self.run.log("event", "diffusion", self.pos.step, self.pos.epoch,
                         message="quick evaluation skipped: fewer than 4 real windows without gaps")
            return float("nan")
        model = self.load_ema()
        gen = sample_windows(model, len(real), steps=self.s.sample.steps, churn=self.s.sample.churn, seed=self.s.train.seed,
                             batch_size=self.s.sample.batch_size, device=self.device, bf16=self.sample_bf16)
        report = evaluate_windows(real, gen, self.s.eval, quick=True)
        scores = {name: m["mean"] for name, m in report["metrics"].items()}
        disc = scores.get("discriminative", float("nan"))
        # without a discriminative score (not in [eval] quick_metrics) the latest model is kept
        measured = bool(np.isfinite(disc))
        best = not measured or self.pos.best_disc is None or disc < self.pos.best_disc
        self.pos.history.append({"epoch": self.pos.epoch, "step": self.pos.step, **scores})
        self.run.log("eval", "diffusion", self.pos.step, self.pos.epoch, profile="quick", best=best, windows=len(real),
                     minutes=round((self.pos.elapsed + self._session_seconds()) / 60, 2), **scores)
        if best:
            self.pos.best_disc = disc if measured else self.pos.best_disc
            self.write_model()
        return disc

    def write_model(self, extra: dict | None = None) -> None:
        model = self.load_ema()
        tensors = {f"tst.{k}": v for k, v in model.tst.state_dict().items()}
        tensors.update({f"denoiser.{k}": v for k, v in model.denoiser.state_dict().items()})
        meta = {"format": "tsdiff-generator", "config": self.cfg.to_json(), "step": str(self.pos.step),
                "epoch": str(self.pos.epoch), "best_disc": str(self.pos.best_disc), **(extra or {})}
        meta.update(getattr(self, "model_metadata", {}))
        save_model(self.run.path / MODEL_FILE, tensors, meta)


def load_generator(tensors: dict, metadata: dict, device: torch.device) -> Generator:
    cfg = GeneratorConfig.from_json(metadata["config"])
    model = Generator(cfg)
    model.tst.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("tst.")})
    model.denoiser.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("denoiser.")})
    return model.to(device).eval()
