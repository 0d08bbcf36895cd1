"""The classifier as training tasks of the shared loop.

:class:`ClassifyTask` — supervised: AdamW; an optional head-only stretch when fine-tuning a
pretrained encoder (the encoder runs without gradients, so AdamW leaves it untouched), the base
schedule (cosine or one-cycle, per step) with a validation after every epoch that keeps the best
epoch (and stops early after ``patience``), then optionally stochastic weight averaging (Izmailov
et al. 2018, "Averaging Weights Leads to Wider Optima and Better Generalization", Alg. 1): SWALR
anneals linearly to ``swa_lr_frac`` × lr and the loop folds the weights into an ``AveragedModel``
after every SWA epoch; the average is what the run keeps.

:class:`PretrainTask` — self-supervised masked-patch reconstruction (PatchTST §3.2): hide a share
of the temporal patches and of the other observed values (they become missing: value 0, mask 1,
as a real gap), reconstruct, score only values that were observed and hidden.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import SWALR, AveragedModel

from tsdiff_cli.metrics.classify import class_scores, numeric_scores
from tsdiff_cli.models.dualpatch import DualPatchTransformer, HeadConfig
from tsdiff_cli.runs import BASE_MODEL_FILE
from tsdiff_cli.settings import ClassifySettings
from tsdiff_cli.training.loop import Phase, Position, Shard, StepOutput, Task, Watch, adamw

EVAL_BATCH = 256
TIE_BREAK = 1e-3  # selection = error + TIE_BREAK × validation loss: equal accuracies prefer the lower loss


@dataclass
class Batches:
    """Model-ready tensors of one split: x standardised (NaN = missing), categorical codes, and the
    targets (class codes, −1 = none; numbers standardised, NaN = none)."""

    x: torch.Tensor
    cat: torch.Tensor
    targets: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        return (self.x[idx].to(device), self.cat[idx].to(device),
                {k: v[idx].to(device) for k, v in self.targets.items()})


def task_losses(outs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], heads: list[HeadConfig],
                class_weights: dict[str, torch.Tensor], smoothing: float, numeric_loss: str) -> dict[str, torch.Tensor]:
    """One loss per head over its labelled items (an unlabelled item counts nowhere; a batch with
    none gives 0 with a gradient path)."""
    losses = {}
    for h in heads:
        out, y = outs[h.name], targets[h.name]
        if h.kind == "class":
            logits = out.movedim(1, -1).reshape(-1, h.out).float() if h.per_step else out.float()
            y = y.reshape(-1)
            keep = y >= 0
            losses[h.name] = (F.cross_entropy(logits[keep], y[keep], weight=class_weights.get(h.name),
                                              label_smoothing=smoothing) if keep.any() else logits.sum() * 0)
        else:
            out, y = out.reshape(-1).float(), y.reshape(-1)
            keep = torch.isfinite(y)
            fn = F.mse_loss if numeric_loss == "mse" else F.huber_loss
            losses[h.name] = fn(out[keep], y[keep]) if keep.any() else out.sum() * 0
    return losses


def predict_all(model: DualPatchTransformer, data: Batches, device: torch.device) -> dict[str, np.ndarray]:
    """Per head: class probabilities (N, classes[, T]) or standardised values (N[, T])."""
    model.eval()
    parts: dict[str, list] = {h.name: [] for h in model.c.tasks}
    with torch.inference_mode():
        for i in range(0, len(data), EVAL_BATCH):
            x, cat, _ = data.take(torch.arange(i, min(i + EVAL_BATCH, len(data))), device)
            outs = model(x, cat)
            for h in model.c.tasks:
                parts[h.name].append(outs[h.name])
    result = {}
    for h in model.c.tasks:
        out = torch.cat(parts[h.name]).float() if parts[h.name] else torch.zeros(0)
        result[h.name] = (out.softmax(1) if h.kind == "class" else out).cpu().numpy()
    return result


def scores(heads: list[HeadConfig], predictions: dict[str, np.ndarray], targets: dict[str, torch.Tensor],
           scale: dict[str, tuple[float, float]]) -> dict[str, dict]:
    """Per head: class scores, or numeric scores in the target's original units."""
    out = {}
    for h in heads:
        y = targets[h.name].cpu().numpy()
        if h.kind == "class":
            out[h.name] = class_scores(y, predictions[h.name].argmax(1), h.out)
        else:
            mean, std = scale[h.name]
            out[h.name] = numeric_scores(y * std + mean, predictions[h.name] * std + mean)
    return out


class _Schedule:
    """The learning rate per optimizer step: constant while only the heads train, then cosine (or
    one-cycle) over the base steps, then SWALR (linear anneal to the SWA rate)."""

    def __init__(self, optimizer: torch.optim.Optimizer, p: ClassifySettings, head_steps: int, base_steps: int,
                 swa_anneal: int):
        self.opt, self.p = optimizer, p
        self.head_steps, self.base_steps, self.swa_anneal = head_steps, base_steps, swa_anneal
        self.t = 0
        self.swalr: SWALR | None = None
        self._apply()

    def _factor(self, t: int) -> float:
        if t < self.head_steps:
            return 1.0
        u = min((t - self.head_steps) / max(1, self.base_steps), 1.0)
        if self.p.schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * u))
        # one-cycle (Smith & Topin 2019): 30 % rising from lr/25, then cosine down to lr/10 000
        lo, end = 1 / 25, 1 / 1e4
        if u < 0.3:
            return lo + (1 - lo) * 0.5 * (1 - math.cos(math.pi * u / 0.3))
        return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * (u - 0.3) / 0.7))

    def _apply(self) -> None:
        if self.t < self.head_steps + self.base_steps or not self.swa_anneal:
            for g in self.opt.param_groups:
                g["lr"] = self.p.lr * self._factor(self.t)
        elif self.swalr is None:
            self.swalr = SWALR(self.opt, swa_lr=self.p.lr * self.p.swa_lr_frac, anneal_epochs=self.swa_anneal,
                               anneal_strategy="linear")
        else:
            self.swalr.step()

    def step(self) -> None:
        self.t += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.opt.param_groups]

    def state_dict(self) -> dict:
        swalr = {k: v for k, v in self.swalr.state_dict().items() if not callable(v)} if self.swalr else None
        return {"t": self.t, "lr": self.get_last_lr(), "swalr": swalr}

    def load_state_dict(self, state: dict) -> None:
        self.t = state["t"]
        if state["swalr"] is not None:
            self.swalr = SWALR(self.opt, swa_lr=self.p.lr * self.p.swa_lr_frac, anneal_epochs=self.swa_anneal,
                               anneal_strategy="linear")
            self.swalr.load_state_dict(state["swalr"])
        for g, lr in zip(self.opt.param_groups, state["lr"]):  # SWALR's constructor stepped once; undo it
            g["lr"] = lr


class ClassifyTask(Task):
    diverged_fix = "lower [classify] lr and start again"

    def __init__(self, model: DualPatchTransformer, data: dict[str, Batches], p: ClassifySettings, device: torch.device,
                 metadata: dict[str, str], *, scale: dict[str, tuple[float, float]], class_weights: dict[str, torch.Tensor],
                 sample_weights: torch.Tensor | None, head_epochs: int):
        self.module, self.data, self.p, self.device, self.metadata = model, data, p, device, metadata
        self.scale, self.sample_weights = scale, sample_weights
        self.class_weights = {k: v.to(device) for k, v in class_weights.items()}
        self.head_epochs = head_epochs
        self.heads = model.c.tasks
        self.weights = {h.name: p.task_weights.get(h.name, 1.0) for h in self.heads}
        self.gen = torch.Generator().manual_seed(p.seed + 104_729)
        self.optimizer = adamw(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        per_epoch = -(-len(data["train"]) // p.batch_size)
        self.swa_epochs = max(1, math.ceil(p.swa_extra_ratio * p.epochs)) if p.swa else 0
        self.scheduler = _Schedule(self.optimizer, p, head_epochs * per_epoch, p.epochs * per_epoch,
                                   per_epoch if p.swa else 0)
        self.swa = AveragedModel(model) if p.swa else None
        first = self.heads[0]
        self.metric = p.metric if p.metric != "auto" else ("accuracy" if first.kind == "class" else "rmse")
        self.watch = Watch("selection", patience=p.patience or None, key=[self.metric, len(data["val"])])

    def generators(self) -> dict[str, torch.Generator]:
        return {"classify": self.gen}

    def signature(self) -> str:
        return self.module.c.to_json()

    def phases(self) -> list[Phase]:
        n, b = len(self.data["train"]), self.p.batch_size
        phases = []
        if self.head_epochs:
            phases.append(Phase("heads", self.head_epochs, n, b, self._head_step, log_every=20))
        phases.append(Phase("train", self.p.epochs, n, b, self._step, validate=self._validate, log_every=20,
                            model_file=BASE_MODEL_FILE if self.p.swa else None))
        if self.p.swa:
            phases.append(Phase("swa", self.swa_epochs, n, b, self._step, validate=self._validate_swa,
                                validate_every=self.swa_epochs, average=True, log_every=20))
        return phases

    # --- steps -----------------------------------------------------------------------------------

    def _draw(self, idx: torch.Tensor) -> torch.Tensor:
        """The batch: the loop's indices, or a weighted draw when the sampler balances labels."""
        if self.sample_weights is None:
            return idx
        return self.shard.rows(torch.multinomial(self.sample_weights, self.shard.whole(len(idx)), replacement=True,
                                                 generator=self.gen))

    def _objective(self, outs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> StepOutput:
        losses = task_losses(outs, targets, self.heads, self.class_weights, self.p.label_smoothing, self.p.numeric_loss)
        loss = sum(self.weights[k] * v for k, v in losses.items())
        logs = {"loss": loss, **({f"loss_{k}": v for k, v in losses.items()} if len(losses) > 1 else {})}
        return loss, {**logs, "lr": self.scheduler.get_last_lr()[0]}

    def _step(self, idx: torch.Tensor) -> StepOutput:
        x, cat, targets = self.data["train"].take(self._draw(idx), self.device)
        return self._objective(self.module(x, cat), targets)

    def _head_step(self, idx: torch.Tensor) -> StepOutput:
        x, cat, targets = self.data["train"].take(self._draw(idx), self.device)
        with torch.no_grad():  # the pretrained encoder stays as it is
            pooled, h_t = self.module.encode(x, cat)
        return self._objective(self.module.heads_of(pooled, h_t, x.shape[2]), targets)

    # --- validation ------------------------------------------------------------------------------

    def evaluate(self, model: DualPatchTransformer, split: str) -> dict:
        """Loss and scores of ``model`` on a split (the validation one during training)."""
        data = self.data[split]
        predictions = predict_all(model, data, self.device)
        per_head = scores(self.heads, predictions, data.targets, self.scale)
        with torch.inference_mode():
            outs = {}
            for h in self.heads:
                p = torch.from_numpy(predictions[h.name])
                outs[h.name] = p.clamp_min(1e-12).log() if h.kind == "class" else p
            targets = {k: v for k, v in data.targets.items()}
            losses = task_losses(outs, targets, self.heads, self.class_weights, 0.0, self.p.numeric_loss)
        loss = float(sum(self.weights[k] * v for k, v in losses.items()))
        first = per_head[self.heads[0].name]
        error = {"accuracy": lambda: 1 - first["accuracy"], "macro_f1": lambda: 1 - first["macro_f1"],
                 "rmse": lambda: first["rmse"], "loss": lambda: loss}[self.metric]()
        flat = {}
        for h in self.heads:
            prefix = "" if len(self.heads) == 1 else f"{h.name}_"
            for key, value in per_head[h.name].items():
                if key not in ("confusion", "labelled"):
                    flat[f"{prefix}{key}"] = value
        selection = error if self.metric == "loss" else error + TIE_BREAK * loss
        return {"loss": loss, **flat, "selection": selection, "scores": per_head}

    def _validate(self, check: Callable[[], None]) -> dict:
        result = self.evaluate(self.module, "val")
        result.pop("scores")
        return {"profile": "validation", **{f"val_{k}" if k != "selection" else k: v for k, v in result.items()}}

    def averaged(self) -> DualPatchTransformer:
        """The SWA average once it holds an epoch, else the live weights."""
        if self.swa is not None and int(self.swa.n_averaged) > 0:
            return self.swa.module
        return self.module

    def _validate_swa(self, check: Callable[[], None]) -> dict:
        model = self.averaged()
        if model is not self.module and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            # SWA's BatchNorm statistics are those of the averaged weights (Izmailov et al. §3.2)
            train = self.data["train"]
            loader = [train.take(torch.arange(i, min(i + EVAL_BATCH, len(train))), self.device)[0]
                      for i in range(0, len(train), EVAL_BATCH)]
            torch.optim.swa_utils.update_bn(loader, model)
        result = self.evaluate(model, "val")
        result.pop("scores")
        result.pop("selection")  # no watched metric: the loop keeps these weights whatever they score
        profile = "validation (SWA average)" if model is not self.module else "validation (nothing averaged yet)"
        return {"profile": profile, **{f"val_{k}": v for k, v in result.items()}}

    def export(self, pos: Position) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        swa_phase = len(self.phases()) - 1 if self.p.swa else None
        model = self.averaged() if swa_phase is not None and pos.phase >= swa_phase else self.module
        return dict(model.state_dict()), self.metadata


class PretrainTask(Task):
    diverged_fix = "lower [classify] lr and start again"

    def __init__(self, model: DualPatchTransformer, data: dict[str, Batches], p: ClassifySettings, device: torch.device,
                 metadata: dict[str, str]):
        self.module, self.data, self.p, self.device, self.metadata = model, data, p, device, metadata
        self.gen = torch.Generator().manual_seed(p.seed + 7_919)
        self.optimizer = adamw(model.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        steps = p.pretrain_epochs * -(-len(data["train"]) // p.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * min(t / max(1, steps), 1.0))))
        self.watch = Watch("val_loss", key=len(data["val"]))

    def generators(self) -> dict[str, torch.Generator]:
        return {"pretrain": self.gen}

    def signature(self) -> str:
        return self.module.c.to_json()

    def phases(self) -> list[Phase]:
        return [Phase("pretrain", self.p.pretrain_epochs, len(self.data["train"]), self.p.batch_size, self._step,
                      validate=self._validate, log_every=20)]

    def hidden(self, x: torch.Tensor, gen: torch.Generator, shard: Shard = Shard()) -> torch.Tensor:
        """Where to hide: every step of ``mask_ratio`` of the temporal patches, and ``value_mask``
        of the other values (B, C, T) bool. ``shard``: drawn for the global batch (training)."""
        c = self.module.c
        B, C, T = x.shape
        patches = (shard.rand(B, gen, tail=(c.patches,)) < self.p.mask_ratio).to(x.device)
        cover = patches[..., None].expand(B, c.patches, c.patch_len).reshape(B, c.patches, c.patch_len).float()
        steps = self.module._spread(cover, 1, T)[:, 0] > 0  # (B, T): covered by a hidden patch
        values = (shard.rand(B, gen, tail=(C, T)) < self.p.value_mask).to(x.device)
        return steps[:, None, :] | values

    def _loss(self, x: torch.Tensor, cat: torch.Tensor, gen: torch.Generator,
              shard: Shard = Shard()) -> tuple[torch.Tensor, torch.Tensor]:
        hide = self.hidden(x, gen, shard)
        scored = hide & ~torch.isnan(x)
        recon = self.module.reconstruction(x.masked_fill(hide, float("nan")), cat)
        err = (recon.float() - torch.nan_to_num(x)) ** 2
        return (err * scored).sum() / scored.sum().clamp_min(1), scored.sum()

    def _step(self, idx: torch.Tensor) -> StepOutput:
        x, cat, _ = self.data["train"].take(idx, self.device)
        loss, _ = self._loss(x, cat, self.gen, self.shard)
        return loss, {"loss": loss, "lr": self.scheduler.get_last_lr()[0]}

    def _validate(self, check: Callable[[], None]) -> dict:
        data = self.data["val"]
        gen = torch.Generator().manual_seed(self.p.seed + 3)  # the same hidden values at every validation
        total = count = 0.0
        with torch.inference_mode():
            for i in range(0, len(data), EVAL_BATCH):
                x, cat, _ = data.take(torch.arange(i, min(i + EVAL_BATCH, len(data))), self.device)
                loss, n = self._loss(x, cat, gen)
                total += loss.item() * n.item()
                count += n.item()
                check()
        return {"profile": "validation", "val_loss": total / max(count, 1)}

    def export(self, pos: Position) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
        return self.module.encoder_state(), self.metadata
