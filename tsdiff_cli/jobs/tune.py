"""``tsdiff tune``: Optuna studies over any job's settings, on shared storage.

A study lives in ``[tune] studies_dir/NAME/``: ``study.json`` (the config, job, metric, direction
and where the trials are stored), Optuna's journal (``journal.log``, the default storage: safe
for several processes on one machine, and on a shared file system) unless an RDB URL is given
(``postgresql://…`` for workers on several machines), and ``trials/NNNN`` links to each trial's
ordinary run directory. Each trial resolves the config with its suggested values on top (as if
they were options), trains through the job's usual function and is scored by the **validation**
metric its run logs; every evaluation is reported to Optuna's pruner, which may stop the run (it
then ends "finished", with the reason). ``show`` prints the best trials and Optuna's parameter
importances and writes ``best.toml``, which the job's command accepts.

Optuna (Akiba et al., KDD 2019) does the searching: TPE (Bergstra et al., NeurIPS 2011) or
random sampling, median or Hyperband (Li et al., JMLR 2018) pruning, fANOVA importances.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsdiff_cli.errors import Interrupted, UserError
from tsdiff_cli.runs import BEST_SETTINGS_FILE, JOURNAL_FILE, LATEST, STUDY_FILE, TRIALS, Run
from tsdiff_cli.settings import SECTIONS, Settings, load_settings, to_toml

MAXIMIZE = ("accuracy", "f1", "corr", "coverage_score")


class MetricMissing(UserError):
    """The study's metric is not what the job logs: every trial would fail, so the study stops."""


class TrialFailed(Exception):
    """One trial failed on its own (its values, its training); Optuna records it and goes on."""
DEFAULT_METRIC = {"train": "discriminative", "forecast": "val_loss"}
Say = Callable[[str], None]


@dataclass
class Study:
    """What ``study.json`` records."""

    name: str
    folder: Path
    config: Path
    job: str
    metric: str
    direction: str
    storage: str  # "journal" (the folder's journal.log) or an RDB URL without its password

    def to_json(self) -> str:
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}, indent=1) + "\n"


# --- the study's description -------------------------------------------------------------------


def job_of(s: Settings) -> str:
    t = s.tune
    if t.job != "auto":
        return t.job
    if s.classify.train is not None:
        return "classify"
    if s.forecast.data is not None:
        return "forecast"
    return "train"


def metric_of(s: Settings, job: str, metric: str | None) -> str:
    name = metric or s.tune.metric
    if name is None:
        if job == "classify":
            kind = s.classify.metric
            return "val_rmse" if kind == "rmse" else f"val_{'accuracy' if kind == 'auto' else kind}"
        name = DEFAULT_METRIC[job]
    if name.startswith("test") or "_test" in name:
        raise UserError("--metric", f"{name!r} is a test-split score, which a study must never choose on",
                        "name a validation metric (e.g. val_loss, val_accuracy, discriminative)")
    return name


def direction_of(s: Settings, metric: str) -> str:
    if s.tune.direction != "auto":
        return s.tune.direction
    return "maximize" if any(k in metric for k in MAXIMIZE) else "minimize"


def check_space(space: dict[str, dict[str, Any]]) -> None:
    """Every key names a setting; every range is one Optuna can draw from."""
    if not space:
        raise UserError("[tune.space]", "is empty: nothing to tune",
                        'add e.g. "train.lr" = {low = 1e-4, high = 3e-3, log = true}')
    for key, spec in space.items():
        where = f'[tune.space] "{key}"'
        section, _, name = key.partition(".")
        if section not in SECTIONS or section == "tune" or name not in SECTIONS[section].model_fields:
            raise UserError(where, "is not a setting", 'name one as "section.key", e.g. "train.lr" (see `tsdiff config show`)')
        if not isinstance(spec, dict):
            raise UserError(where, "is not a table", "write {low = …, high = …} or {choices = […]}")
        if "choices" in spec:
            if not isinstance(spec["choices"], list) or not spec["choices"] or set(spec) - {"choices"}:
                raise UserError(where, "needs a non-empty list of choices and nothing else", "write {choices = [a, b]}")
            continue
        extra = set(spec) - {"low", "high", "log", "step"}
        if extra or "low" not in spec or "high" not in spec:
            raise UserError(where, f"needs low and high (and optionally log or step){'; not ' + ', '.join(sorted(extra)) if extra else ''}",
                            "write {low = 1e-4, high = 1e-2, log = true}")
        lo, hi = spec["low"], spec["high"]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)) or not lo < hi:
            raise UserError(where, f"low {lo!r} must be a number below high {hi!r}", "swap or fix them")
        if spec.get("log") and lo <= 0:
            raise UserError(where, "has log = true with low ≤ 0", "use a positive low, or drop log")
        if spec.get("log") and "step" in spec:
            raise UserError(where, "has both log and step", "choose one")


def suggest(trial, space: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The trial's values as ``{section: {key: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for key, spec in space.items():
        if "choices" in spec:
            value = trial.suggest_categorical(key, spec["choices"])
        elif isinstance(spec["low"], int) and isinstance(spec["high"], int) and isinstance(spec.get("step", 1), int):
            value = trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1), log=bool(spec.get("log")))
        else:
            value = trial.suggest_float(key, spec["low"], spec["high"], step=spec.get("step"), log=bool(spec.get("log")))
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = value
    return out


def nested(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in params.items():
        section, _, name = key.partition(".")
        out.setdefault(section, {})[name] = value
    return out


# --- storage --------------------------------------------------------------------------------------


def _storage(folder: Path, url: str | None):
    import optuna

    if url is None or url == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(folder / JOURNAL_FILE)))
    try:
        # heartbeats: a trial whose worker stops beating for 2 minutes (killed, on any machine) is
        # failed by the next worker to start a trial, and run again once with its values
        return optuna.storages.RDBStorage(url, heartbeat_interval=30, grace_period=120,
                                          failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1))
    except Exception as exc:  # a driver missing, a server not reachable, a bad URL
        raise UserError("--storage", f"cannot open {_redact(url)} ({str(exc).splitlines()[0][:200]})",
                        "check the URL, that the server is reachable and its driver installed "
                        "(postgresql: pip install 'psycopg[binary]', i.e. tsdiff[postgres])") from None


def _redact(url: str) -> str:
    """The URL without its password, for files and messages."""
    if "://" not in url or "@" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url


def _sampler(s: Settings, worker: int):
    import optuna

    seed = s.tune.seed + worker
    return optuna.samplers.TPESampler(seed=seed) if s.tune.sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed)


def _pruner(s: Settings):
    import optuna

    t = s.tune
    if t.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=min(5, max(1, t.trials // 4)), n_warmup_steps=t.warmup)
    if t.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, t.warmup))
    return optuna.pruners.NopPruner()


def open_study(s: Settings, config: Path, name: str, storage: str | None, *, metric: str | None = None,
               worker: int = 0, create: bool = True):
    """The Optuna study NAME (created, or joined when it exists) and its description."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # tsdiff says what happens, in its own lines
    job = job_of(s)
    m = metric_of(s, job, metric)
    folder = Path(s.tune.studies_dir) / name
    desc = Study(name, folder.resolve(), config.resolve(), job, m, direction_of(s, m),
                 "journal" if storage is None else _redact(storage))
    recorded = folder / STUDY_FILE
    if recorded.is_file():
        old = json.loads(recorded.read_text())
        for key in ("job", "metric", "direction"):
            if old[key] != getattr(desc, key):
                raise UserError(folder, f"is a study of {key} {old[key]!r}, not {getattr(desc, key)!r}",
                                "use the study's own settings, or name a new study with --study")
    elif create:
        from tsdiff_cli.atomic import write_text

        (folder / TRIALS).mkdir(parents=True, exist_ok=True)
        write_text(recorded, desc.to_json())
    study = optuna.create_study(storage=_storage(folder, storage), study_name=name, direction=desc.direction,
                                sampler=_sampler(s, worker), pruner=_pruner(s), load_if_exists=True)
    return study, desc


# --- running trials -------------------------------------------------------------------------------


def _counted(study) -> int:
    """Trials that count towards the study's total: completed, pruned, or failed on their own
    (an interrupted trial is run again by --resume)."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            n += 1
        elif t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"):
            n += 1
    return n


def _me() -> str:
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


def _dead(worker: str | None) -> bool:
    """Whether the worker ``host:pid`` is provably gone: a process of this machine that no longer exists."""
    import socket

    host, _, pid = (worker or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def requeue_interrupted(study, say: Say, everywhere: bool = False) -> int:
    """Trials whose worker died (killed on this machine; with ``everywhere``, ``--resume``, every
    trial still marked running, wherever its worker was) and trials stopped by Ctrl-C (with
    ``everywhere``) are marked failed and their values queued to run again, once."""
    from optuna.trial import TrialState

    again = 0
    for t in study.get_trials(deepcopy=False):
        stale = t.state == TrialState.RUNNING and (everywhere or _dead(t.user_attrs.get("worker")))
        stopped = (everywhere and t.state == TrialState.FAIL and t.user_attrs.get("interrupted")
                   and not t.user_attrs.get("requeued"))
        if not (stale or stopped):
            continue
        if stale:  # attributes first: a finished trial takes no more
            study._storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            study._storage.set_trial_user_attr(t._trial_id, "requeued", True)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        else:
            study._storage.set_trial_user_attr(t._trial_id, "requeued", True)
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
        again += 1
    if again:
        say(f"{again} interrupted trial(s) marked failed and queued again with their values")
    return again


def _train(job: str, s: Settings, name: str, on_run, on_eval):
    if job == "classify":
        from tsdiff_cli.jobs.classify import train_classifier

        return train_classifier(s, name, on_run=on_run, on_eval=on_eval)
    if job == "forecast":
        from tsdiff_cli.jobs.forecast import train_forecaster

        return train_forecaster(s, name, on_run=on_run, on_eval=on_eval)
    from tsdiff_cli.jobs.generate import train_generator

    return train_generator(s, name, on_run=on_run, on_eval=on_eval)


def objective(s0: Settings, desc: Study, trials: int, say: Say):
    """The function Optuna calls once per trial."""
    import optuna

    space = s0.tune.space
    touches_data = any(k.startswith("data.") for k in space)

    def run_trial(trial) -> float:
        trial.set_user_attr("worker", _me())
        values = suggest(trial, space)
        if touches_data:  # each trial preprocesses its own dataset file
            values.setdefault("data", {})["output"] = str(desc.folder / "data" / f"trial-{trial.number:04d}.h5")
        s = load_settings(desc.config, values)
        seen: list[float] = []
        sign = 1 if desc.direction == "minimize" else -1

        def on_run(run: Run) -> None:
            trial.set_user_attr("run", str(run.path.resolve()))
            link = desc.folder / TRIALS / f"{trial.number:04d}"
            link.unlink(missing_ok=True)
            os.symlink(run.path.resolve(), link)
            # the study's latest: `tsdiff monitor STUDY` follows it from trial to trial
            tmp = desc.folder / f".{LATEST}.{os.getpid()}.tmp"
            tmp.unlink(missing_ok=True)
            os.symlink(run.path.resolve(), tmp)
            os.replace(tmp, desc.folder / LATEST)

        def on_eval(metrics: dict, step: int) -> str | None:
            if desc.metric not in metrics:
                names = ", ".join(sorted(k for k, v in metrics.items() if isinstance(v, (int, float)) and k != "best"))
                raise MetricMissing("--metric", f"{desc.metric!r} is not among the {desc.job} job's validation metrics "
                                f"({names})", "name one of them in [tune] metric or --metric")
            value = float(metrics[desc.metric])
            seen.append(value)
            trial.report(value, len(seen))  # the pruner compares trials at their k-th evaluation
            if trial.should_prune():
                return f"pruned by study {desc.name} at evaluation {len(seen)} ({desc.metric} {value:.4g})"
            return None

        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        say(f"trial {trial.number} ({params}): training")
        try:
            result = _train(desc.job, s, f"{desc.config.stem}-trial{trial.number}", on_run, on_eval)
        except Interrupted:
            trial.set_user_attr("interrupted", True)
            raise
        except MetricMissing:
            raise  # the study itself is wrong: it stops, exit 2
        except UserError as exc:  # this trial's values (or its training) failed: the study goes on
            trial.set_user_attr("error", str(exc))
            say(f"trial {trial.number} failed: {exc}")
            raise TrialFailed(str(exc)) from None
        reason = getattr(result, "reason", "")
        if not seen:
            trial.set_user_attr("error", "no validation ran")
            raise MetricMissing(f"trial {trial.number}", f"logged no {desc.metric} (no validation ran: {reason})",
                            "make the job validate, e.g. [train] eval_every > 0")
        best = min(v * sign for v in seen) * sign
        if str(reason).startswith("pruned"):
            say(f"trial {trial.number} pruned after {len(seen)} evaluations ({desc.metric} {seen[-1]:.4g})")
            raise optuna.TrialPruned()
        say(f"trial {trial.number} done: {desc.metric} {best:.4g} (best of {len(seen)} evaluations)")
        return best

    def enough(study, frozen) -> None:
        requeue_interrupted(study, say)  # a worker of this machine that was killed: its trial runs again
        if _counted(study) >= trials:
            study.stop()

    return run_trial, enough


def run_study(s: Settings, config: Path, *, name: str, storage: str | None, trials: int, metric: str | None,
              workers: int, worker: int, resume: bool, say: Say) -> Study:
    """Run trials until the study holds ``trials`` (in this process, or in ``workers`` child
    processes that share the storage)."""
    check_space(s.tune.space)
    study, desc = open_study(s, config, name, storage, metric=metric, worker=worker)
    if resume and worker == 0:
        requeue_interrupted(study, say, everywhere=True)
    elif worker <= 1:
        requeue_interrupted(study, say)
    if workers > 1:
        return _spawn(s, config, desc, study, storage, trials, metric, workers, say)
    run_trial, enough = objective(s, desc, trials, say)
    if _counted(study) >= trials:
        say(f"study {name} already holds {_counted(study)} trials (of {trials})")
        return desc
    study.optimize(run_trial, catch=(TrialFailed,), callbacks=[enough])
    return desc


def _spawn(s: Settings, config: Path, desc: Study, study, storage: str | None, trials: int, metric: str | None,
           workers: int, say: Say) -> Study:
    """``--workers K``: K processes of ``tsdiff tune`` on this machine, each with the cores ÷ K."""
    from tsdiff_cli.threads import physical_cores

    threads = max(1, physical_cores() // workers)
    if desc.job == "train" and not any(k.startswith("data.") for k in s.tune.space):
        from tsdiff_cli.jobs.generate import ensure_dataset

        ensure_dataset(s)  # once, before the workers would all make it
    procs = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "tsdiff_cli", "--threads", str(threads), "tune", str(config), "--study", desc.name,
               "--trials", str(trials), "--worker", str(i + 1)]
        if storage is not None:
            cmd += ["--storage", storage]
        if metric is not None:
            cmd += ["--metric", metric]
        procs.append(subprocess.Popen(cmd))
    say(f"{workers} workers started ({threads} threads each)")
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        for p in procs:
            p.wait()
        raise Interrupted(f"study {desc.name}: stopped; continue with `tsdiff tune {config} --study {desc.name} --resume`")
    bad = [c for c in codes if c]
    if bad:
        how = f"was killed (signal {-bad[0]})" if bad[0] < 0 else f"ended with status {bad[0]}"
        raise UserError(f"study {desc.name}", f"a worker {how}; the others finished the study's trials",
                        f"see its message above; `tsdiff tune {config} --study {desc.name} --resume` runs what is missing")
    return desc


# --- reading a study --------------------------------------------------------------------------------


def find_study(where: Path) -> Study:
    folder = Path(where)
    path = folder / STUDY_FILE
    if not path.is_file():
        raise UserError(folder, "is not a study folder (no study.json)", "name a folder under studies/ made by `tsdiff tune`")
    d = json.loads(path.read_text())
    return Study(d["name"], Path(d["folder"]), Path(d["config"]), d["job"], d["metric"], d["direction"], d["storage"])


def load(where: Path, storage: str | None):
    """The study in folder ``where`` (its journal, or ``storage`` for an RDB study)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    desc = find_study(where)
    if desc.storage != "journal" and storage is None:
        raise UserError(where, f"is stored in {desc.storage}", "give its URL with --storage")
    return optuna.load_study(study_name=desc.name, storage=_storage(Path(where), storage)), desc


def summary(where: Path, storage: str | None, top: int = 10) -> dict:
    """The best trials, the trials by state, Optuna's parameter importances, and the best
    settings written to ``best.toml`` (atomically)."""
    import optuna
    from optuna.trial import TrialState

    study, desc = load(where, storage)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    done.sort(key=lambda t: t.value, reverse=desc.direction == "maximize")
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    out = {"study": desc.name, "metric": desc.metric, "direction": desc.direction, "states": states,
           "best": [{"number": t.number, "value": t.value, "params": t.params, "run": t.user_attrs.get("run")}
                    for t in done[:top]],
           "importances": None, "best_toml": None}
    if len(done) >= 2 and done[0].params:
        try:
            out["importances"] = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):  # e.g. every trial drew the same values
            out["importances"] = None
    if done:
        from tsdiff_cli.atomic import write_text

        best = load_settings(desc.config, nested(done[0].params), environ={})
        text = to_toml(best, exclude={"tune"})
        header = (f"# best trial {done[0].number} of study {desc.name}: {desc.metric} {done[0].value:.6g} "
                  f"({desc.direction}); {desc.config} with {json.dumps(done[0].params)}\n")
        path = desc.folder / BEST_SETTINGS_FILE if desc.folder.is_dir() else Path(where) / BEST_SETTINGS_FILE
        write_text(path, header + text)
        out["best_toml"] = str(path)
    return out
