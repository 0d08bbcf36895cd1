"""The core of ``tsdiff pretrain-tst``, ``tsdiff train`` and ``tsdiff sample``: plain functions
the CLI wraps (dataset, run directory, trainer, interrupts, the inference file)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tsdiff_cli import __version__
from tsdiff_cli.data.store import SPLITS, WindowDataset, read_dataset
from tsdiff_cli.errors import Interrupted, UserError
from tsdiff_cli.runs import MODEL_FILE, Run, load_model, save_model
from tsdiff_cli.settings import Settings, load_settings, to_toml

TST_FILE = "tst.safetensors"


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("[train] device", "is \"cuda\" but no CUDA GPU is visible", 'use device = "auto" or "cpu"')
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use_bf16(precision: str, device: torch.device) -> bool:
    """``[train] precision`` / ``[sample] precision`` → whether to run forward passes under
    bfloat16 autocast. "auto" takes bf16 where the hardware has it natively: any CUDA GPU, a CPU
    with AVX512-BF16 or AMX (measured on such a 2-core CPU: sampling about 1.45×, a paper-preset
    training step 1.4–1.9× faster); elsewhere bf16 is emulated and slower."""
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return True
    native = (getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
              or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return device.type == "cpu" and bool(native)


def ensure_dataset(settings: Settings) -> WindowDataset:
    """The dataset of ``[data]``, made by preprocess when missing or made with other settings."""
    from tsdiff_cli.data.preprocess import preprocess

    path = settings.data.output
    wanted = settings.data.model_dump(mode="json")
    if Path(path).is_file():
        ds = read_dataset(path)
        if json.loads(ds.attrs.get("settings", "{}")) == wanted:
            return ds
    return preprocess(settings.data).dataset


def _check_range(ds: WindowDataset, where) -> None:
    lo, hi = np.nanmin(ds.observed), np.nanmax(ds.observed)
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise UserError(where, f"values span [{lo:.3g}, {hi:.3g}], but the generator works in [0, 1]",
                        'use [data] scaler = "minmax" (the paper\'s)')


@dataclass
class TrainResult:
    run: Path
    reason: str
    steps: int
    best_disc: float | None
    minutes: float


def train_generator(settings: Settings, config_name: str, *, command: str = "train", tst_only: bool = False,
                    resume: Path | None = None, tst_from: Path | None = None, progress=None,
                    on_run=None) -> TrainResult:
    from tsdiff_cli.models.generator import build_config
    from tsdiff_cli.training.generator import Diverged, GeneratorTrainer

    device = resolve_device(settings.train.device)
    ds = ensure_dataset(settings)
    _check_range(ds, settings.data.output)
    cfg = build_config(settings, ds.observed.shape[1], ds.observed.shape[2])
    train_windows = ds.observed[ds.split == SPLITS["train"]]
    if len(train_windows) == 0:
        raise UserError(settings.data.output, "has no training windows", "lower [data] val_fraction / test_fraction")

    run = Run.open(resume) if resume is not None else Run.create(settings.train.runs_dir, command, config_name, to_toml(settings))
    if on_run:
        on_run(run)
    run.note(f"tsdiff {__version__} {command} {config_name}: {'resumed' if resume is not None else 'started'} on {device}")
    trainer = GeneratorTrainer(settings, cfg, train_windows, ds.target, run, device, progress, tst_only=tst_only)
    trainer.model_metadata = {
        "columns": json.dumps(ds.columns), "scaler": ds.scaler.to_json(), "dataset": str(Path(settings.data.output).resolve()),
        "data_settings": json.dumps(settings.data.model_dump(mode="json")), "tsdiff_version": __version__,
    }
    if resume is not None:
        tensors, meta = run.load_checkpoint()
        if meta["config"] != cfg.to_json():
            raise UserError(resume, "was trained with another architecture than these settings", "resume with its own config.toml")
        trainer.load_state(tensors, meta)
    elif tst_from is not None:
        tensors, _ = _load_tst(tst_from)
        trainer.model.tst.load_state_dict(tensors)
        trainer.pos.phase = "diffusion"
        run.log("event", "tst", 0, 0, message=f"TST weights from {tst_from}")

    run.set_status(state="running", command=command, phase=trainer.pos.phase, step=trainer.pos.step)
    try:
        reason = trainer.fit()
        evaluated_now = bool(trainer.pos.history) and trainer.pos.history[-1]["epoch"] == trainer.pos.epoch
        if reason != "finished" and not tst_only and settings.train.eval_every and trainer.pos.phase == "diffusion" \
                and trainer.pos.step > 0 and not evaluated_now:
            trainer.evaluate()  # a budget-stopped run ends with an evaluated model (unless it just was)
        trainer.checkpoint()
        if tst_only:
            _save_tst(run.path / TST_FILE, trainer)
        elif not (run.path / MODEL_FILE).exists() or not settings.train.eval_every:
            trainer.write_model()
    except KeyboardInterrupt:
        trainer.checkpoint()
        run.set_status(state="interrupted", step=trainer.pos.step)
        run.log("event", trainer.pos.phase, trainer.pos.step, trainer.pos.epoch, message="interrupted")
        run.close()
        raise Interrupted(f"checkpoint written to {run.path}; continue with `tsdiff train --resume {run.path}`") from None
    except Diverged as exc:
        run.set_status(state="failed", step=trainer.pos.step, error=str(exc))
        run.log("event", trainer.pos.phase, trainer.pos.step, trainer.pos.epoch, message=str(exc))
        run.close()
        raise UserError(run.path, f"{exc}; the last good checkpoint is kept in {run.path / 'checkpoints'}",
                        "lower [train] lr or [tst] lr and start again") from None
    minutes = (trainer.pos.elapsed + trainer._session_seconds()) / 60
    run.set_status(state="finished", reason=reason, step=trainer.pos.step, best_disc=trainer.pos.best_disc,
                   minutes=round(minutes, 2))
    run.log("event", trainer.pos.phase, trainer.pos.step, trainer.pos.epoch, message=f"stopped: {reason}")
    run.close()
    return TrainResult(run.path, reason, trainer.pos.step, trainer.pos.best_disc, minutes)


def _save_tst(path: Path, trainer) -> None:
    meta = {"format": "tsdiff-tst", "config": json.dumps(trainer.cfg.tst.to_dict()), "tsdiff_version": __version__}
    save_model(path, {k: v for k, v in trainer.model.tst.state_dict().items()}, meta)


def _load_tst(run: Path) -> tuple[dict, dict]:
    from safetensors import SafetensorError, safe_open

    path = Path(run) / TST_FILE
    if not path.is_file():
        raise UserError(run, f"has no pretrained TST ({TST_FILE})", "make one with `tsdiff pretrain-tst CONFIG`")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise UserError(path, f"is not readable ({exc})", "pretrain the TST again") from None


def run_settings(run: Path, overrides: dict | None = None) -> Settings:
    """The settings a run was made with (its config.toml), with environment and CLI overrides."""
    path = Path(run) / "config.toml"
    if not path.is_file():
        raise UserError(run, "has no config.toml", "name a run directory made by tsdiff")
    return load_settings(path, overrides)


def load_run_generator(run: Path, device: torch.device):
    from tsdiff_cli.training.generator import load_generator

    run = Path(run)
    if not run.is_dir():
        raise UserError(run, "no such run directory", "name a folder under runs/ (or runs/latest)")
    tensors, meta = load_model(run / MODEL_FILE)
    return load_generator(tensors, meta, device), meta


def sample_from_run(run: Path, n: int, *, steps: int, seed: int, batch_size: int, churn: float = 0.0,
                    device: str = "auto", precision: str = "auto", callback=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """``n`` windows from a run: (scaled in [0, 1], original units, metadata)."""
    from tsdiff_cli.data.scaling import Scaler
    from tsdiff_cli.models.generator import sample_windows

    if n < 1:
        raise UserError("-n", f"{n} windows requested", "ask for at least 1")
    dev = resolve_device(device)
    model, meta = load_run_generator(run, dev)
    scaled = sample_windows(model, n, steps=steps, churn=churn, seed=seed, batch_size=batch_size, device=dev,
                            bf16=use_bf16(precision, dev), callback=callback)
    original = Scaler.from_json(meta["scaler"]).inverse(scaled.astype(np.float64))
    return scaled, original, meta
