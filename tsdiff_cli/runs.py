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
BASE_MODEL_FILE = "base.safetensors"  # classify with SWA: the best epoch before averaging
SAMPLING_WEIGHTS_FILE = "sampling_weights.csv"  # classify with balance: each series' draw weight
REPORT_FILE = "report.json"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
CACHE = "cache"
_POINTER = "latest.json"  # inside checkpoints/: the newest complete checkpoint
LOCK_FILE = ".lock"  # held (flock) by the one process writing the run; says its pid and host
# a study folder (tsdiff tune): its description, Optuna's journal, links to its trials' runs, the best settings
STUDY_FILE = "study.json"
JOURNAL_FILE = "journal.log"
TRIALS = "trials"
BEST_SETTINGS_FILE = "best.toml"
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


def require_run_dir(run: Path) -> Path:
    """``run`` as a Path; a one-line error when there is no such folder."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(run, "no such run directory", "name a folder under runs/ (or runs/latest)")
    return run


def _run_config(run: Path) -> Path:
    """The config.toml of run directory ``run``; one-line errors when there is none."""
    path = config_path(require_run_dir(run))
    if not path.is_file():
        raise UserError(run, f"has no {CONFIG_FILE}", "name a run directory made by tsdiff")
    return path


def run_settings(run: Path, overrides: dict | None = None) -> Settings:
    """The settings a run was made with (its config.toml), with environment and CLI overrides."""
    from tsdiff_cli.settings import load_settings

    return load_settings(_run_config(run), overrides)


#: what a resumed run may take from CONFIG, the environment or options: budgets, cadences, where it
#: runs and how it is judged or sampled. Everything else was fixed when the run began.
RESUMABLE = {
    "train": {"epochs", "max_minutes", "max_steps", "cooldown", "eval_every", "eval_samples", "checkpoint_minutes", "device"},
    "tst": {"epochs", "max_steps"},
    "sample": {"steps", "churn", "n", "batch_size", "seed", "precision", "guidance"},
    "eval": None,  # None: every key
    "forecast": {"epochs", "max_minutes", "max_steps", "patience", "samples", "steps", "solver", "sample_windows", "device"},
    "impute": {"epochs", "patience", "max_minutes", "max_steps", "output", "device", "holdout"},
}


def _changes(before: Settings, after: Settings) -> dict[tuple[str, str], tuple[Any, Any]]:
    old, new = before.model_dump(mode="json"), after.model_dump(mode="json")
    return {(section, key): (old[section].get(key), value) for section in new for key, value in new[section].items()
            if old[section].get(key) != value}


def resume_settings(run: Path, config: Path | None = None, overrides: dict | None = None) -> Settings:
    """The settings to continue ``run`` with: its own config.toml, with what ``config``, the
    environment and ``overrides`` change among :data:`RESUMABLE`; any other change is refused,
    naming the keys (a CONFIG that differs must not be ignored silently)."""
    from tsdiff_cli.settings import load_settings

    path = _run_config(run)
    saved = load_settings(path, environ={})
    wanted = load_settings(config if config is not None else path, overrides)
    fixed = [f"[{section}] {key} ({old!r} → {new!r})" for (section, key), (old, new) in _changes(saved, wanted).items()
             if section not in RESUMABLE or (RESUMABLE[section] is not None and key not in RESUMABLE[section])]
    if fixed:
        source = f"{config}, the environment or options" if config is not None else "the environment or options"
        raise UserError(run, f"cannot continue with other {', '.join(fixed)} from {source}",
                        "only budgets, cadences, device, sampling and evaluation settings may change on --resume; "
                        "start a new run for the others")
    return wanted


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

class RunWriteError(UserError):
    """A run file could not be written (a full disk, a lost mount): one line, not a traceback."""


class Run:
    """One run directory, as its writer sees it. Every write goes through here: an ``OSError``
    becomes a :class:`RunWriteError` naming the file (the temporary file is removed, the files
    written before stay as they were)."""

    writes = True  # False for a :class:`Follower` (the other ranks of a torchrun job)

    def __init__(self, path: Path):
        self.path = Path(path)
        self._metrics = None
        self._text = None
        self._last_text: dict[str, float] = {}  # phase → when its last train line was written
        self._lock: int | None = None
        self.status: dict[str, Any] = {}
        self.command, self.resume_hint, self.begun = "run", None, False

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
        run = cls(path)
        with run._writing(path):
            (path / CHECKPOINTS).mkdir(parents=True)
            write_text(config_path(path), config_text)
            if latest:
                run.point_latest()
        return run

    @classmethod
    def open(cls, path: Path) -> Run:
        return cls(require_run_dir(path).resolve())

    def point_latest(self) -> None:
        link = latest_link(self.path.parent)
        tmp = self.path.parent / f".{LATEST}.{os.getpid()}.tmp"
        tmp.unlink(missing_ok=True)
        os.symlink(self.path.name, tmp)
        os.replace(tmp, link)

    @contextmanager
    def _writing(self, path: Path) -> Iterator[None]:
        try:
            yield
        except UserError:
            raise
        except OSError as exc:
            again = f" and continue with `{self.resume_hint}`" if self.resume_hint else ""
            raise RunWriteError(path, f"could not be written ({exc.strerror or exc})",
                                f"free space on that disk (or fix its permissions){again}; "
                                "the files written before are kept") from None

    def log(self, kind: str, phase: str, step: int, epoch: int, **values: Any) -> None:
        record = {"time": round(time.time(), 3), "kind": kind, "phase": phase, "step": step, "epoch": epoch}
        record.update(_clean(values))
        with self._writing(metrics_path(self.path)):
            if self._metrics is None:
                self._metrics = open(metrics_path(self.path), "a", encoding="utf-8")
            self._metrics.write(json.dumps(record) + "\n")
            self._metrics.flush()
        now = time.monotonic()
        if kind != "train" or now - self._last_text.get(phase, -math.inf) >= LOG_EVERY:
            if kind == "train":
                self._last_text[phase] = now
            self.note(_describe(record))

    def note(self, text: str) -> None:
        """One timestamped line in log.txt."""
        with self._writing(self.path / LOG_FILE):
            if self._text is None:
                self._text = open(self.path / LOG_FILE, "a", encoding="utf-8")
            self._text.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}  {text}\n")
            self._text.flush()

    def set_status(self, **fields: Any) -> None:
        self.status.update(_clean(fields))
        self.status.setdefault("pid", os.getpid())
        self.status.setdefault("started", round(time.time(), 3))
        self.status["updated"] = round(time.time(), 3)
        with self._writing(status_path(self.path)):
            write_text(status_path(self.path), json.dumps(self.status, indent=1) + "\n")

    def adopt(self, settings: Settings) -> None:
        """Record settings a resumed run continues with (see :func:`resume_settings`): config.toml
        is rewritten and the log says what changed."""
        from tsdiff_cli.settings import load_settings, to_toml

        saved = load_settings(config_path(self.path), environ={})
        changes = _changes(saved, settings)
        if changes:
            with self._writing(config_path(self.path)):
                write_text(config_path(self.path), to_toml(settings))
            self.note("settings changed on resume: " + ", ".join(f"[{s}] {k} {old!r} → {new!r}"
                                                             for (s, k), (old, new) in changes.items()))

    def write_report(self, report: dict) -> Path:
        path = report_path(self.path)
        with self._writing(path):
            write_text(path, json.dumps(_clean(report), indent=1) + "\n")
        return path

    def close(self) -> None:
        for name in ("_metrics", "_text"):
            handle = getattr(self, name)
            if handle is not None:
                setattr(self, name, None)
                try:
                    handle.close()
                except OSError:
                    pass

    # --- one writer at a time ------------------------------------------------------------------

    def lock(self) -> None:
        """Hold the run folder for this process (an advisory lock the OS drops when the process
        dies, so a killed run never leaves a stale one); another process holding it is a
        :class:`UserError` naming it."""
        import fcntl
        import socket

        fd = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 300).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise UserError(self.path, f"is in use by {holder}",
                            "wait for that process to end (or stop it), then try again") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._lock = fd

    def unlock(self) -> None:
        if self._lock is not None:
            import fcntl

            os.ftruncate(self._lock, 0)
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None

    def clean_leftovers(self) -> list[str]:
        """Remove what a process killed mid-write left (its lock is ours now, so no one is writing):
        temporary files, and checkpoint halves whose other half is missing. Returns their names."""
        folder = self.path / CHECKPOINTS
        gone = list(self.path.glob(".*.tmp")) + list(folder.glob(".*.tmp"))
        weights = {p.stem for p in folder.glob("ckpt-*.safetensors")}
        sidecars = {p.stem for p in folder.glob("ckpt-*.json")}
        gone += [folder / f"{name}.safetensors" for name in weights - sidecars]
        gone += [folder / f"{name}.json" for name in sidecars - weights]
        for path in gone:
            path.unlink(missing_ok=True)
        return [str(p.relative_to(self.path)) for p in gone]

    # --- the lifecycle -------------------------------------------------------------------------

    @contextmanager
    def lifecycle(self, command: str, resume_hint: str | None = None) -> Iterator[Run]:
        """Hold the run folder (:meth:`lock`), clear an earlier process's leftovers, and from
        :meth:`begin` on make sure status.json ends as finished, interrupted (Ctrl-C or SIGTERM:
        :class:`Interrupted`, exit 130 / 143) or failed (with the error text), the log saying so.
        What fails before :meth:`begin` (a resume that cannot be) leaves the run as it was.

        Code inside that holds state worth keeping (the training loop) saves it on
        ``KeyboardInterrupt`` before letting it through."""
        self.command, self.resume_hint, self.begun = command, resume_hint, False
        self.lock()
        previous = _on_sigterm()
        try:
            removed = self.clean_leftovers()
            if removed:
                self.note(f"removed what an earlier process left unfinished: {', '.join(removed)}")
            yield self
        except KeyboardInterrupt as exc:
            code = 143 if isinstance(exc, Terminated) else 130
            if not self.begun:
                raise Interrupted(f"{self.path}: stopped before it started; nothing changed", code) from None
            self._end("interrupted", "interrupted" + (" (SIGTERM)" if code == 143 else ""))
            kept = f"; continue with `{resume_hint}`" if resume_hint else ""
            raise Interrupted(f"{self.path}: stopped at step {self.status.get('step', 0)}{kept}", code) from None
        except UserError as exc:
            if self.begun:
                self._end("failed", str(exc), error=str(exc))
            raise
        except BaseException as exc:
            if self.begun:
                text = f"{type(exc).__name__}: {exc}"
                self._end("failed", text, error=text)
            raise
        else:
            if self.begun:
                self._end("finished", f"stopped: {self.status.get('reason', 'finished')}")
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, signal.SIG_IGN if _ending else previous)
            self.close()
            self.unlock()

    def begin(self, text: str) -> None:
        """The run starts (or resumes) now: status "running", and ``text`` in the log."""
        self.set_status(state="running", command=self.command,
                        **({"resume": self.resume_hint} if self.resume_hint else {}))
        self.note(text)
        self.begun = True

    def _end(self, state: str, message: str, **fields: Any) -> None:
        try:
            self.set_status(state=state, **fields)
            phase = self.status.get("phase") or self.status.get("command") or "run"
            self.log("event", str(phase), int(self.status.get("step") or 0), int(self.status.get("epoch") or 0),
                     message=message)
        except UserError:
            pass  # a full disk must not hide the error that ended the run

    # --- tensors (torch imported here) ---------------------------------------------------------

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any], keep: int = 2) -> None:
        """Write ``ckpt-<step>.safetensors`` + ``.json`` atomically, then point ``latest.json`` at
        them, then remove all but the ``keep`` newest."""
        from safetensors.torch import save_file

        folder = self.path / CHECKPOINTS
        name = f"ckpt-{step:09d}"
        with self._writing(folder / f"{name}.safetensors"):
            with atomic_output(folder / f"{name}.safetensors") as tmp:
                save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
            write_text(folder / f"{name}.json", json.dumps(_clean(state)) + "\n")
            write_text(folder / _POINTER, json.dumps({"name": name, "step": step}) + "\n")
        for old in sorted(folder.glob("ckpt-*.safetensors"))[:-keep]:
            old.with_suffix(".json").unlink(missing_ok=True)
            old.unlink(missing_ok=True)

    def has_checkpoint(self) -> bool:
        return any((self.path / CHECKPOINTS).glob("ckpt-*.safetensors"))

    def load_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The newest readable checkpoint: the one ``latest.json`` names, or else (it is truncated or
        corrupt) the newest earlier one that reads whole, with a line in the log saying so."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = self.path / CHECKPOINTS
        pointer = folder / _POINTER
        named = None
        try:
            named = json.loads(pointer.read_text())["name"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
        candidates = sorted((p.stem for p in folder.glob("ckpt-*.safetensors")), reverse=True)
        if named in candidates:
            candidates.remove(named)
            candidates.insert(0, named)
        problems = []
        for name in candidates:
            weights = folder / f"{name}.safetensors"
            try:
                tensors = load_file(str(weights))
                state = json.loads(weights.with_suffix(".json").read_text())
            except (SafetensorError, OSError, ValueError) as exc:
                problems.append(f"{weights.name} ({str(exc).splitlines()[0][:80]})")
                continue
            if problems:
                self.note(f"unreadable checkpoint {'; '.join(problems)}: resuming from {name}")
            return tensors, state
        if problems:
            raise UserError(folder, f"holds no readable checkpoint ({'; '.join(problems)})",
                            "the files are truncated or corrupt; start a new run")
        raise UserError(self.path, "has no checkpoint to resume from", "start a new run")

    def save_model(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str], name: str = MODEL_FILE) -> Path:
        path = model_path(self.path, name)
        with self._writing(path):
            save_model(path, tensors, metadata)
        return path



class Follower(Run):
    """A run directory as a rank other than 0 of a torchrun job sees it: it reads (checkpoints to
    resume from, the kept weights) and keeps its status in memory, but writes nothing: rank 0
    owns every file of the run (tsdiff_cli.training.distributed)."""

    writes = False

    def point_latest(self) -> None:
        pass

    def log(self, kind: str, phase: str, step: int, epoch: int, **values: Any) -> None:
        pass

    def note(self, text: str) -> None:
        pass

    def set_status(self, **fields: Any) -> None:
        self.status.update(_clean(fields))

    def adopt(self, settings: Settings) -> None:
        pass

    def write_report(self, report: dict) -> Path:
        return report_path(self.path)

    def lock(self) -> None:
        pass

    def unlock(self) -> None:
        pass

    def clean_leftovers(self) -> list[str]:
        return []

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any], keep: int = 2) -> None:
        pass

    def save_model(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str], name: str = MODEL_FILE) -> Path:
        return model_path(self.path, name)


_ending = False  # set by hold_sigterm(): this process only reports why it stops, then exits


def hold_sigterm() -> None:
    """This process cannot go on and exits once it has said why (its torchrun group broke): from
    now on SIGTERM is ignored. torchrun's agent sends SIGTERM to every surviving worker about
    0.1 s after one dies (and SIGKILL 30 s later), which would otherwise cut the run's status or
    the one-line error on stderr short. Not for a failure the process can outlive (a tune trial)."""
    global _ending
    _ending = True
    try:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread
        pass


def _on_sigterm():
    """Turn SIGTERM into :class:`Terminated` while a run is active (main thread only); returns
    the previous handler, or None where signals cannot be set."""
    def handler(signum, frame):
        if not _ending:
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


def unfinished_fix(run: Path) -> str | None:
    """What to do with a run that ended before writing its outputs (its status says so, with the
    command that continues it), or None for a run that finished or is no run."""
    status = read_status(run) or {}
    state, resume = status.get("state"), status.get("resume")
    if not resume or state not in ("interrupted", "failed", "running"):
        return None
    if state == "running":
        return f"it is still running (watch it with `tsdiff monitor {run}`); if its process is gone, continue it with `{resume}`"
    ended = "was interrupted" if state == "interrupted" else "failed"
    return f"it {ended} before writing one; continue it with `{resume}`"


def load_model(path: Path, kind: str = "generator", command: str = "tsdiff train CONFIG",
               tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Weights and metadata of a ``tsdiff-<kind>`` safetensors file; one-line errors when it is
    missing, unreadable or of another kind (``command`` is what makes one). ``tensors=False``
    reads the metadata alone (the weights come back empty)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    want = tensors
    if not path.is_file():
        raise UserError(path.parent, f"has no {kind} ({path.name})", unfinished_fix(path.parent) or f"train one with `{command}`")
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


def model_readable(path: Path) -> bool:
    """Whether an inference file exists and reads whole (header and every tensor)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            for k in f.keys():
                f.get_tensor(k)
    except (SafetensorError, OSError, ValueError, RuntimeError):
        return False
    return True


def run_model(run: Path, kind: str, command: str, name: str = MODEL_FILE,
              tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The inference file of run directory ``run`` (see :func:`load_model`)."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(run, "no such run directory", f"name a folder made by `{command}` (or runs/latest)")
    return load_model(model_path(run, name), kind, command, tensors)
