"""Run directories: the only module that knows their file names and formats.

    runs/<YYYYmmdd-HHMMSS>-<command>-<config>/
        config.toml      the resolved settings
        metrics.jsonl    one JSON object per line (DESIGN "Formats"), flushed per line
        log.txt          the same story for people: events, evaluations, a training line every 30 s
        status.json      state (running / finished / failed / interrupted), position, heartbeat
        model.safetensors (or tst.safetensors)   inference weights, config in the metadata
        report.json      a job's final figures
        checkpoints/     ckpt-<step>.safetensors + .json, latest.json pointing at the newest
    runs/latest -> the newest run (relative symlink, replaced atomically)
    runs/cache/  consolidated inputs (TimeKD embeddings)

Tensors are safetensors, everything else JSON; never pickle. torch is imported only by the
functions that read or write tensors, so the monitor (and ``tsdiff --help``) can use this module
without paying for it. Every write goes through :class:`Run`, the one place where a run's side
effects happen (a distributed run lets rank 0 alone hold one).
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsdiff_cli.atomic import atomic_output, write_text
from tsdiff_cli.errors import Interrupted, UserError

if TYPE_CHECKING:
    import torch

    from tsdiff_cli.settings import Settings

CONFIG_FILE = "config.toml"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "log.txt"
STATUS_FILE = "status.json"
MODEL_FILE = "model.safetensors"
TST_FILE = "tst.safetensors"
REPORT_FILE = "report.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
CACHE = "cache"
_POINTER = "latest.json"  # inside checkpoints/: the newest complete checkpoint
#: a folder holding any of these is a run directory
MARKERS = (CONFIG_FILE, STATUS_FILE, METRICS_FILE)
LOG_EVERY = 30.0  # seconds between training lines in log.txt


# --- reading (no torch) -------------------------------------------------------------------------

def metrics_path(run: Path) -> Path:
    return Path(run) / METRICS_FILE


def status_path(run: Path) -> Path:
    return Path(run) / STATUS_FILE


def config_path(run: Path) -> Path:
    return Path(run) / CONFIG_FILE


def report_path(run: Path) -> Path:
    return Path(run) / REPORT_FILE


def model_path(run: Path, name: str = MODEL_FILE) -> Path:
    return Path(run) / name


def cache_dir(runs_dir: Path) -> Path:
    return Path(runs_dir) / CACHE


def read_status(run: Path) -> dict | None:
    """status.json as a dict; None when it is missing, unreadable or not an object."""
    try:
        status = json.loads(status_path(run).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def read_config_text(run: Path) -> str | None:
    try:
        return config_path(run).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def is_run(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in MARKERS)


def list_runs(folder: Path) -> list[Path]:
    """The run directories in ``folder``, oldest first (names start with their start time)."""
    try:
        entries = sorted(Path(folder).iterdir(), key=lambda p: p.name)
    except OSError:
        return []
    return [p for p in entries if not p.is_symlink() and is_run(p)]


def latest_link(folder: Path) -> Path:
    return Path(folder) / LATEST


def run_settings(run: Path, overrides: dict | None = None) -> Settings:
    """The settings a run was made with (its config.toml), with environment and CLI overrides."""
    from tsdiff_cli.settings import load_settings

    path = config_path(run)
    if not path.is_file():
        raise UserError(run, f"has no {CONFIG_FILE}", "name a run directory made by tsdiff")
    return load_settings(path, overrides)


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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so it unwinds like Ctrl-C (checkpoint, status)."""


# --- writing -------------------------------------------------------------------------------------

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
        write_text(config_path(path), config_text)
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
        link = latest_link(self.path.parent)
        tmp = self.path.parent / f".{LATEST}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(self.path.name, tmp)
        os.replace(tmp, link)

    def log(self, kind: str, phase: str, step: int, epoch: int, **values: Any) -> None:
        if self._metrics is None:
            self._metrics = open(metrics_path(self.path), "a", encoding="utf-8")
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
        write_text(status_path(self.path), json.dumps(self.status, indent=1) + "\n")

    def write_report(self, report: dict) -> Path:
        path = report_path(self.path)
        write_text(path, json.dumps(_clean(report), indent=1) + "\n")
        return path

    def close(self) -> None:
        for name in ("_metrics", "_text"):
            if getattr(self, name) is not None:
                getattr(self, name).close()
                setattr(self, name, None)

    @contextmanager
    def lifecycle(self, command: str, resume_hint: str | None = None) -> Iterator[Run]:
        """Whatever happens inside, status.json ends as finished, interrupted (Ctrl-C or SIGTERM:
        :class:`Interrupted`, exit 130 / 143) or failed (with the error text), and the log says so.

        Code inside that holds state worth keeping (the training loop) saves it on
        ``KeyboardInterrupt`` before letting it through."""
        self.set_status(state="running", command=command)
        previous = _on_sigterm()
        try:
            yield self
        except KeyboardInterrupt as exc:
            code = 143 if isinstance(exc, Terminated) else 130
            self._end("interrupted", "interrupted" + (" (SIGTERM)" if code == 143 else ""))
            kept = f"; continue with `{resume_hint}`" if resume_hint else ""
            raise Interrupted(f"{self.path}: stopped at step {self.status.get('step', 0)}{kept}", code) from None
        except UserError as exc:
            self._end("failed", str(exc), error=str(exc))
            raise
        except BaseException as exc:
            text = f"{type(exc).__name__}: {exc}"
            self._end("failed", text, error=text)
            raise
        else:
            self._end("finished", f"stopped: {self.status.get('reason', 'finished')}")
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.close()

    def _end(self, state: str, message: str, **fields: Any) -> None:
        try:
            self.set_status(state=state, **fields)
            phase = self.status.get("phase") or self.status.get("command") or "run"
            self.log("event", str(phase), int(self.status.get("step") or 0), int(self.status.get("epoch") or 0),
                     message=message)
        except OSError:
            pass  # a full disk must not hide the error that ended the run

    # --- tensors (torch imported here) ---------------------------------------------------------

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any], keep: int = 2) -> None:
        """Write ``ckpt-<step>.safetensors`` + ``.json`` atomically, then point ``latest.json`` at them."""
        from safetensors.torch import save_file

        folder = self.path / CHECKPOINTS
        name = f"ckpt-{step:09d}"
        with atomic_output(folder / f"{name}.safetensors") as tmp:
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
        write_text(folder / f"{name}.json", json.dumps(_clean(state)) + "\n")
        write_text(folder / _POINTER, json.dumps({"name": name, "step": step}) + "\n")
        for old in sorted(folder.glob("ckpt-*.safetensors"))[:-keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".json").unlink(missing_ok=True)

    def load_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        pointer = self.path / CHECKPOINTS / _POINTER
        if not pointer.is_file():
            raise UserError(self.path, "has no checkpoint to resume from", "start a new run")
        name = json.loads(pointer.read_text())["name"]
        weights = self.path / CHECKPOINTS / f"{name}.safetensors"
        try:
            tensors = load_file(str(weights))
            state = json.loads(weights.with_suffix(".json").read_text())
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(weights, f"is not a readable checkpoint ({str(exc).splitlines()[0]})",
                            "the file is truncated or corrupt; start a new run") from None
        return tensors, state

    def save_model(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str], name: str = MODEL_FILE) -> Path:
        path = model_path(self.path, name)
        save_model(path, tensors, metadata)
        return path


def _on_sigterm():
    """Turn SIGTERM into :class:`Terminated` while a run is active (main thread only); returns
    the previous handler, or None where signals cannot be set."""
    def handler(signum, frame):
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        return None


def save_model(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Inference weights with their config as string metadata, atomically."""
    from safetensors.torch import save_file

    with atomic_output(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def load_model(path: Path, kind: str = "generator", command: str = "tsdiff train CONFIG",
               tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Weights and metadata of a ``tsdiff-<kind>`` safetensors file; one-line errors when it is
    missing, unreadable or of another kind (``command`` is what makes one). ``tensors=False``
    reads the metadata alone (the weights come back empty)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    want = tensors
    if not path.is_file():
        raise UserError(path.parent, f"has no {kind} ({path.name})", f"train one with `{command}`")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if want else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(path, f"is not a readable safetensors file ({str(exc).splitlines()[0]})",
                        "the file is truncated or corrupt; train again") from None
    if metadata.get("format") != f"tsdiff-{kind}":
        raise UserError(path, f"is not a tsdiff {kind}", f"name a run made by `{command.split(' CONFIG')[0]}`")
    return tensors, metadata


def run_model(run: Path, kind: str, command: str, name: str = MODEL_FILE,
              tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The inference file of run directory ``run`` (see :func:`load_model`)."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(run, "no such run directory", f"name a folder made by `{command}` (or runs/latest)")
    return load_model(model_path(run, name), kind, command, tensors)
