"""Run directories: resolved config, a line-flushed metrics log, a status heartbeat, weights and
resumable checkpoints — safetensors for tensors, JSON for everything else, never pickle.

    runs/<YYYYmmdd-HHMMSS>-<command>-<config>/
        config.toml  metrics.jsonl  log.txt  status.json  model.safetensors  checkpoints/

``log.txt`` is the human-readable story of the run: every event and evaluation, and a training
line every ``LOG_EVERY`` seconds (metrics.jsonl has every logged step).
    runs/latest -> the newest run (relative symlink, replaced atomically)
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch

from tsdiff_cli.atomic import atomic_output, write_text
from tsdiff_cli.errors import UserError

MODEL_FILE = "model.safetensors"
CHECKPOINTS = "checkpoints"
LOG_FILE = "log.txt"
LOG_EVERY = 30.0  # seconds between training lines in log.txt


def _clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become null, tensors and numpy scalars plain numbers."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _describe(record: dict) -> str:
    """A metrics record as a line for people: kind, phase, epoch and step, then its values."""
    head = f"{record['kind']:<5} {record['phase']} epoch {record['epoch']} step {record['step']}"
    if record["kind"] == "event" and "message" in record:
        return f"{head}: {record['message']}"
    values = []
    for key, value in record.items():
        if key in ("time", "kind", "phase", "step", "epoch"):
            continue
        values.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return f"{head}  " + "  ".join(values)


class Run:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._metrics = None
        self._text = None
        self._last_text: dict[str, float] = {}  # phase → when its last train line was written
        self.status: dict[str, Any] = {}

    @classmethod
    def create(cls, runs_dir: Path, command: str, config_name: str, config_text: str, latest: bool = True) -> Run:
        """A new run directory; ``latest`` points runs/latest at it (impute runs do not, so that
        ``--model runs/latest`` keeps naming the newest generator)."""
        runs_dir = Path(runs_dir)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = runs_dir / f"{stamp}-{command}-{config_name}"
        k = 1
        while path.exists():
            k += 1
            path = runs_dir / f"{stamp}-{command}-{config_name}-{k}"
        (path / CHECKPOINTS).mkdir(parents=True)
        write_text(path / "config.toml", config_text)
        run = cls(path)
        if latest:
            run.point_latest()
        return run

    @classmethod
    def open(cls, path: Path) -> Run:
        path = Path(path)
        if not path.is_dir():
            raise UserError(path, "no such run directory", "name a folder under runs/ (or runs/latest)")
        return cls(path.resolve())

    def point_latest(self) -> None:
        link = self.path.parent / "latest"
        tmp = self.path.parent / f".latest.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(self.path.name, tmp)
        os.replace(tmp, link)

    def log(self, kind: str, phase: str, step: int, epoch: int, **values: Any) -> None:
        if self._metrics is None:
            self._metrics = open(self.path / "metrics.jsonl", "a", encoding="utf-8")
        record = {"time": round(time.time(), 3), "kind": kind, "phase": phase, "step": step, "epoch": epoch}
        record.update(_clean(values))
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()
        now = time.monotonic()
        if kind != "train" or now - self._last_text.get(phase, -math.inf) >= LOG_EVERY:
            if kind == "train":
                self._last_text[phase] = now
            self.note(_describe(record))

    def note(self, text: str) -> None:
        """One timestamped line in log.txt."""
        if self._text is None:
            self._text = open(self.path / LOG_FILE, "a", encoding="utf-8")
        self._text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {text}\n")
        self._text.flush()

    def set_status(self, **fields: Any) -> None:
        self.status.update(_clean(fields))
        self.status.setdefault("pid", os.getpid())
        self.status.setdefault("started", round(time.time(), 3))
        self.status["updated"] = round(time.time(), 3)
        write_text(self.path / "status.json", json.dumps(self.status, indent=1) + "\n")

    def close(self) -> None:
        for name in ("_metrics", "_text"):
            if getattr(self, name) is not None:
                getattr(self, name).close()
                setattr(self, name, None)

    # --- checkpoints -------------------------------------------------------------------------

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any], keep: int = 2) -> None:
        """Write ``ckpt-<step>.safetensors`` + ``.json`` atomically, then point ``latest.json`` at them."""
        from safetensors.torch import save_file

        folder = self.path / CHECKPOINTS
        name = f"ckpt-{step:09d}"
        with atomic_output(folder / f"{name}.safetensors") as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        write_text(folder / f"{name}.json", json.dumps(_clean(state)) + "\n")
        write_text(folder / "latest.json", json.dumps({"name": name, "step": step}) + "\n")
        for old in sorted(folder.glob("ckpt-*.safetensors"))[:-keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)

    def load_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        pointer = self.path / CHECKPOINTS / "latest.json"
        if not pointer.is_file():
            raise UserError(self.path, "has no checkpoint to resume from", "start a new run with `tsdiff train CONFIG`")
        name = json.loads(pointer.read_text())["name"]
        weights = self.path / CHECKPOINTS / f"{name}.safetensors"
        try:
            tensors = load_file(str(weights))
            state = json.loads(weights.with_suffix(".json").read_text())
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(weights, f"is not a readable checkpoint ({str(exc).splitlines()[0]})",
                            "the file is truncated or corrupt; start a new run") from None
        return tensors, state


def save_model(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Inference weights with their config as string metadata, atomically."""
    from safetensors.torch import save_file

    with atomic_output(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def load_model(path: Path, kind: str = "generator", command: str = "tsdiff train CONFIG") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Weights and metadata of a ``tsdiff-<kind>`` safetensors file; one-line errors when it is
    missing, unreadable or of another kind (``command`` is what makes one)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(path.parent, f"has no {kind} ({path.name})", f"train one with `{command}`")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(path, f"is not a readable safetensors file ({str(exc).splitlines()[0]})",
                        "the file is truncated or corrupt; train again") from None
    if metadata.get("format") != f"tsdiff-{kind}":
        raise UserError(path, f"is not a tsdiff {kind}", f"name a run made by `{command.split(' CONFIG')[0]}`")
    return tensors, metadata
