"""Evaluate: score a generator run, or two files of windows, with the field's generation metrics;
the report is written as JSON (plots as PNGs) and returned."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tsdiff_cli.data.arrays import WindowSet
from tsdiff_cli.errors import UserError
from tsdiff_cli.jobs import Update, no_update
from tsdiff_cli.runs import (MODEL_FILE, REPORT_FILE, model_path, report_path, require_run_dir, run_settings,
                             unfinished_fix)
from tsdiff_cli.settings import Settings

if TYPE_CHECKING:
    from tsdiff_cli.data.store import WindowDataset
    from tsdiff_cli.models.condition import Conditions


@dataclass
class Evaluation:
    report: dict
    output: Path


@dataclass
class _RunScoring:
    """What scoring a generator run needs: its settings, dataset, the reference windows (ground
    truth in benchmark mode), the complete ones, their conditions and the evaluation seeds."""
    settings: Settings  # the run's
    dataset: Path
    ds: WindowDataset
    reference: np.ndarray  # (N, T, F) scaled
    read: str
    rows: np.ndarray  # complete reference windows (bool)
    seeds: dict
    base: int
    cond: Conditions | None  # of the complete windows

    @property
    def n(self) -> int:
        return int(self.rows.sum())


def _run_scoring(run: Path, settings: Settings, seed: int | None) -> _RunScoring:
    """(``run`` is a generator run: :func:`_require_generator` has said so.)"""
    from tsdiff_cli.data.arrays import gap_free
    from tsdiff_cli.data.store import read_dataset
    from tsdiff_cli.jobs.generate import GENERATOR_COMMAND
    from tsdiff_cli.runs import run_model
    from tsdiff_cli.training.generator import evaluation_seeds

    rs = run_settings(run)
    _, meta = run_model(run, "generator", GENERATOR_COMMAND, tensors=False)
    dataset = Path(meta["dataset"])
    ds = read_dataset(dataset)
    reference, read = (ds.target, "target") if ds.has_target else (ds.observed, "observed")
    rows = gap_free(reference)  # as many generated windows as real ones the metrics will see
    if (n := int(rows.sum())) < 4:
        raise UserError(dataset, f"has {n} windows without gaps; at least 4 are needed to score a run against",
                        "score samples against other data with --real and --generated")
    base = settings.eval.seed if seed is None else seed
    cond = None
    if ds.conditions is not None:  # each generated window is asked for the conditions of one real window
        from tsdiff_cli.jobs.generate import run_sentences, window_conditions

        cond = window_conditions(ds, rows, run_sentences(meta))
    return _RunScoring(rs, dataset, ds, reference, read, rows, evaluation_seeds(base), base, cond)


def _check_guidance(sc: _RunScoring, weights: list[float], option: str) -> None:
    if not weights:
        return
    if sc.cond is None:
        raise UserError(option, "this run was trained without conditions, so there is no guidance to set",
                        "drop it (guidance applies to conditional runs)")
    bad = [w for w in weights if not w >= 0]
    if bad:
        raise UserError(option, f"guidance {bad[0]:g} is below 0", "use 0 (unconditional), 1 (conditional) or more")


def _sample_run(run: Path, sc: _RunScoring, guidance: float, update: Update, label: str):
    from tsdiff_cli.jobs.generate import sample_from_run

    rs = sc.settings
    scaled, _, _ = sample_from_run(run, sc.n, steps=rs.sample.steps, seed=sc.seeds["sample"],
                                   batch_size=rs.sample.batch_size, churn=rs.sample.churn, device=rs.train.device,
                                   precision=rs.sample.precision, callback=lambda done, total: update(label, done, total),
                                   cond=sc.cond, guidance=guidance)
    return scaled


def evaluate_run(run: Path, settings: Settings, *, seed: int | None = None, quick: bool = False,
                 plots: Path | None = None, output: Path | None = None, update: Update = no_update,
                 guidance: float | None = None, sweep: list[float] | None = None) -> Evaluation:
    """Sample as many windows as the run's dataset has complete ones and score them, as the paper
    does: in benchmark mode (the dataset holds a ``target``) against the ground truth of every
    window, values the benchmark removed included; otherwise against the observed windows without
    gaps. Samples and metrics use seeds derived from ``seed`` (default ``[eval] seed``) that
    selection during training never used; the report records them. The report goes to ``output``
    (default RUN/report.json). A conditional run samples with ``guidance`` (default its ``[sample]
    guidance``); ``sweep`` adds :func:`guidance_sweep` at those weights (and ``guidance.png``)."""
    from tsdiff_cli.training.generator import selection_seeds

    _require_generator(run)
    out = _writable(output or report_path(run))
    _metric_device(settings)
    sc = _run_scoring(run, settings, seed)
    _check_guidance(sc, [] if guidance is None else [guidance], "--guidance")
    _check_guidance(sc, sweep or [], "--sweep")
    if plots is not None and sweep:
        from tsdiff_cli.atomic import ensure_writable

        ensure_writable(plots / "guidance.png", "plots")
    rs, seeds, ds = sc.settings, sc.seeds, sc.ds
    w = rs.sample.guidance if guidance is None else guidance
    used = selection_seeds(_as_trained(run))  # disjoint from ``seeds`` by purpose (tests/test_train_cli.py)
    scaled = _sample_run(run, sc, w, update, f"sampling {sc.n} windows")
    real = WindowSet(sc.reference, ds.columns, ds.scaler, sc.dataset, sc.read, scaled=True)
    generated = WindowSet(scaled, ds.columns, ds.scaler, run, "samples", scaled=True)
    metric_settings = _metric_settings(settings, seeds)
    report = _score(real, generated, metric_settings, quick, plots, update, str(sc.dataset), str(run))
    if ds.conditions is not None:
        update("conditional metrics", 0, 1)
        report["conditional"] = conditional_section(ds, sc.reference, scaled, metric_settings, quick, w)
        update("conditional metrics", 1, 1)
    if sweep:
        known = {w: (scaled, report["conditional"])}  # the report's own weight is not sampled and judged again
        report["guidance_sweep"] = _sweep(run, sc, sweep, metric_settings, quick, update, known)
        if plots is not None:
            from tsdiff_cli.metrics.plots import write_guidance_plot

            report.setdefault("plots", []).append(str(write_guidance_plot(report["guidance_sweep"],
                                                                          plots / "guidance.png", title=str(run))))
    report["seeds"] = {"base": sc.base, "sample": seeds["sample"], "metric": seeds["metric"],
                       "selection": used, "note": "evaluation seeds are derived from base; selection during "
                       "training used its own (never these)"}
    report["inputs"]["generated"]["sampler"] = {"steps": rs.sample.steps, "churn": rs.sample.churn,
                                                "precision": rs.sample.precision,
                                                **({"guidance": w} if ds.conditions is not None else {})}
    report["inputs"]["real"]["mode"] = (
        "benchmark: scored against the dataset's ground truth (target), including the values removed for the "
        "benchmark; training and selection never read it" if ds.has_target else
        "observed windows without gaps (the dataset has no ground truth apart from its observed values)")
    return _write(report, out)


def _metric_settings(settings: Settings, seeds: dict) -> Settings:
    return settings.model_copy(update={"eval": settings.eval.model_copy(update={"seed": seeds["metric"]})})


def guidance_sweep(run: Path, weights: list[float], settings: Settings, *, seed: int | None = None,
                   quick: bool = False, update: Update = no_update) -> list[dict]:
    """Per classifier-free guidance weight: windows sampled for the conditions of the real complete
    windows (the evaluation seeds of ``seed``, the same samples at every weight but for the
    guidance), their discriminative score against all real windows and :func:`conditional_section`
    (per-class fidelity, adherence, TSTR, numeric corr / MAE) — the fidelity-against-adherence
    trade of Ho & Salimans (2022, Fig. 1)."""
    _require_generator(run)
    sc = _run_scoring(run, settings, seed)
    _check_guidance(sc, weights, "--sweep")
    return _sweep(run, sc, weights, _metric_settings(settings, sc.seeds), quick, update)


def _sweep(run: Path, sc: _RunScoring, weights: list[float], metric_settings: Settings, quick: bool,
           update: Update, known: dict | None = None) -> list[dict]:
    """``known``: weight → (samples, conditional section) already made with these seeds."""
    from tsdiff_cli.metrics.discriminative import discriminative_score

    e, device = metric_settings.eval, _metric_device(metric_settings)
    repeats, iterations = (e.quick_repeats, e.quick_disc_iterations) if quick else (min(e.repeats, 3), e.disc_iterations)
    out = []
    for w in weights:
        t0 = time.monotonic()
        if known and w in known:
            gen, section = known[w][0], dict(known[w][1])
        else:
            gen = _sample_run(run, sc, w, update, f"guidance {w:g}: sampling {sc.n} windows")
            update(f"guidance {w:g}: scoring", 0, 1)
            section = conditional_section(sc.ds, sc.reference, gen, metric_settings, quick, w)
        section["discriminative"] = float(np.mean(discriminative_score(
            sc.reference[sc.rows], gen, repeats=repeats, iterations=iterations, seed=e.seed,
            device=device)))
        section["seconds"] = time.monotonic() - t0
        section["seeds"] = dict(sc.seeds)
        update(f"guidance {w:g}: scoring", 1, 1)
        out.append(section)
    return out


def conditional_section(ds, reference, generated, settings: Settings, quick: bool, guidance: float) -> dict:
    """Per-class fidelity, adherence and TSTR for the first categorical condition, adherence for
    each numeric one. ``generated`` window i was asked for the conditions of the i-th complete
    ``reference`` window; the judges train on the training split's complete windows and TSTR
    tests on the test split (the validation split when there is no test split)."""
    from tsdiff_cli.data.arrays import gap_free
    from tsdiff_cli.data.store import SPLITS
    from tsdiff_cli.metrics.conditional import class_report, numeric_report

    e, device = settings.eval, _metric_device(settings)
    rows = gap_free(reference)
    real, split, c = reference[rows], ds.split[rows], ds.conditions
    spec = c["spec"]
    train = split == SPLITS["train"]
    held = "test" if (split == SPLITS["test"]).any() else "val"
    test = split == SPLITS[held]
    out: dict = {"guidance": guidance, "held_out_split": held,
                 "note": "every generated window asks for the conditions of one real window; judges are trained on "
                 "the real training split"}
    if spec["categorical"]:
        name, classes = next(iter(spec["categorical"].items()))
        codes = c["cats"][rows, 0]
        out["condition"] = name
        out.update(class_report(real, codes, train, test, generated, codes, classes, seed=e.seed,
                                disc_repeats=e.quick_repeats if quick else min(e.repeats, 3),
                                disc_iterations=e.quick_disc_iterations if quick else e.disc_iterations,
                                batch_size=e.batch_size, device=device))
    numeric = {}
    for k, (name, (mean, std, *_)) in enumerate(spec["numeric"].items()):
        values = c["nums"][rows, k].astype(np.float64) * std + mean
        numeric[name] = numeric_report(real, values, train, generated, values, seed=e.seed, device=device)
    if numeric:
        out["numeric"] = numeric
    return out


def evaluate_files(real_path: Path, gen_path: Path, settings: Settings, *, quick: bool = False,
                   plots: Path | None = None, output: Path | None = None, update: Update = no_update) -> Evaluation:
    """Score the windows of ``gen_path`` against those of ``real_path`` (report: default report.json)."""
    from tsdiff_cli.data.arrays import read_windows

    out = _writable(output or Path(REPORT_FILE))
    _metric_device(settings)
    real, generated = read_windows(real_path), read_windows(gen_path)
    return _write(_score(real, generated, settings, quick, plots, update, str(real_path), str(gen_path)), out)


def evaluate_imputation(real: Path, gaps: Path, imputed: Path, *, output: Path | None = None) -> Evaluation:
    """Score the filling ``imputed`` of table ``gaps`` where ``real`` knows the values (report:
    default report.json)."""
    from tsdiff_cli.jobs.impute import judge_files

    out = _writable(output or Path(REPORT_FILE))
    return _write(judge_files(real, gaps, imputed), out)


def _as_trained(run: Path) -> Settings:
    """The run's own config.toml, without this shell's TSDIFF_* variables (the seeds it selected with)."""
    from tsdiff_cli.runs import config_path
    from tsdiff_cli.settings import load_settings

    return load_settings(config_path(run), environ={})


def _require_generator(run: Path) -> None:
    if run.is_file():
        raise UserError(run, "is a file, not a run directory", "to score a file use --real A --generated B")
    require_run_dir(run)
    if not model_path(run).is_file():
        raise UserError(run, f"has no generator (no {MODEL_FILE})", unfinished_fix(run)
                        or "train one with `tsdiff train CONFIG`, or compare files with --real/--generated")


def _writable(path: Path) -> Path:
    from tsdiff_cli.atomic import ensure_writable

    return ensure_writable(path, "report")


def _write(report: dict, out: Path) -> Evaluation:
    from tsdiff_cli.atomic import write_text

    write_text(out, json.dumps(report, indent=2) + "\n")
    return Evaluation(report, out)


def _metric_device(settings: Settings) -> str:
    """``[eval] device``, refused up front (before minutes of sampling) when it names a missing GPU."""
    from tsdiff_cli.training.device import resolve_device

    return str(resolve_device(settings.eval.device))


def _score(real: WindowSet, generated: WindowSet, settings: Settings, quick: bool, plots: Path | None, update: Update,
           real_name: str, gen_name: str) -> dict:
    from tsdiff_cli.metrics.evaluate import LABELS, evaluate_windows, prepare

    if plots is not None:
        from tsdiff_cli.atomic import ensure_writable

        ensure_writable(plots / "pca.png", "plots")
    prepared = prepare(real, generated)
    report = evaluate_windows(prepared.real, prepared.generated, settings.eval, quick=quick, device=_metric_device(settings),
                              progress=lambda name, done, total: update(LABELS[name], done, total))
    report["inputs"] = {
        "real": {"path": real_name, "read": real.what, "windows_dropped_incomplete": prepared.dropped_real},
        "generated": {"path": gen_name, "read": generated.what},
        "scaling": prepared.scaling,
    }
    if plots is not None:
        from tsdiff_cli.metrics.plots import write_plots

        report["plots"] = [str(p) for p in write_plots(prepared.real, prepared.generated, plots,
                                                       real.columns or generated.columns, settings.eval.seed)]
    return report
