"""Generate: ``tsdiff pretrain-tst``, ``tsdiff train`` and ``tsdiff sample`` as plain functions —
the dataset, the run directory, the generator task on the shared training loop, and sampling
from a trained run into a file in original units."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tsdiff_cli import __version__
from tsdiff_cli.data.store import SPLITS, WindowDataset
from tsdiff_cli.errors import UserError
from tsdiff_cli.jobs import Update, no_update
from tsdiff_cli.models.condition import Conditions
from tsdiff_cli.models.generator import KNOTS, Generator, GeneratorConfig
from tsdiff_cli.runs import TST_FILE, Run, read_status, run_model, run_settings
from tsdiff_cli.settings import Settings, to_toml
from tsdiff_cli.training.device import resolve_device, use_bf16
from tsdiff_cli.training.distributed import join, shared_run
from tsdiff_cli.training.loop import Budget, OnEval, OnStep, Trainer

GENERATOR_COMMAND = "tsdiff train CONFIG"
CAPTION = "caption"  # the column of captions in a --conditions table and in conditional samples


def ensure_dataset(settings: Settings) -> WindowDataset:
    """The dataset of ``[data]``, made by preprocess when missing, made with other settings, from
    other source bytes or by an older preprocessing (see :func:`~tsdiff_cli.data.preprocess.current_dataset`)."""
    from tsdiff_cli.data.preprocess import current_dataset, preprocess

    ds = current_dataset(settings.data)
    return ds if ds is not None else preprocess(settings.data).dataset


def _check_range(ds: WindowDataset, where) -> None:
    lo, hi = np.nanmin(ds.observed), np.nanmax(ds.observed)
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise UserError(where, f"values span [{lo:.3g}, {hi:.3g}], but the generator works in [0, 1]",
                        'use [data] scaler = "minmax" (the paper\'s)')


@dataclass
class TrainedGenerator:
    run: Path
    reason: str
    steps: int
    best_disc: float | None  # the lowest selection score seen
    minutes: float
    kept_disc: float | None = None  # the kept weights' own score (within [train] keep_within of the best)


def train_generator(settings: Settings, config_name: str, *, command: str = "train", tst_only: bool = False,
                    resume: Path | None = None, tst_from: Path | None = None, on_step: OnStep | None = None,
                    on_run=None, started: float | None = None, on_eval: OnEval | None = None) -> TrainedGenerator:
    """Train the generator of ``settings`` in a new run directory (or continue ``resume``):
    the TST phase (all of ``pretrain-tst``), then diffusion; ``tst_from`` takes the TST of a
    pretrain-tst run instead of training one. ``started`` (time.monotonic) is when the time
    budget began, by default when training does. ``on_eval`` sees every selection score (a study's
    pruner: a reason it returns stops the run)."""
    from tsdiff_cli.jobs.architectures import generator_config
    from tsdiff_cli.training.generator import GeneratorTask, selection_rows

    world, device = join(resolve_device(settings.train.device))
    ds = world.first(lambda: ensure_dataset(settings))
    _check_range(ds, settings.data.output)
    spec = ds.conditions["spec"] if ds.conditions is not None else None
    sentences = _sentence_encoder(settings, spec)
    cfg = generator_config(settings, ds.observed.shape[1], ds.observed.shape[2], spec,
                           text_in=sentences.width if sentences is not None else 0)
    train_rows = ds.split == SPLITS["train"]
    train_windows = ds.observed[train_rows]
    if len(train_windows) == 0:
        raise UserError(settings.data.output, "has no training windows", "lower [data] val_fraction / test_fraction")
    if resume is not None and tst_from is not None:
        raise UserError("--tst", "takes the TST of a pretrain-tst run into a new run; a resumed run keeps its own",
                        "drop --tst, or start a new run")
    tst = _pretrained_tst(tst_from, cfg) if tst_from is not None else None
    if resume is not None:  # a pretrain-tst run resumes as one (the checkpoint's phases say so too)
        tst_only = (read_status(resume) or {}).get("command") == "pretrain-tst"
        command = "pretrain-tst" if tst_only else command
    metadata = {"columns": json.dumps(ds.columns), "scaler": ds.scaler.to_json(),
                "dataset": str(Path(settings.data.output).resolve()),
                "data_settings": json.dumps(settings.data.model_dump(mode="json")), "tsdiff_version": __version__}
    # selection reads observed values only: ``target`` (the values a benchmark removed) is for evaluate
    rows, selection_from = selection_rows(ds.observed, ds.split, settings.train.eval_samples, settings.eval.seed)
    selection_real = np.ascontiguousarray(ds.observed[rows], dtype=np.float32)
    conditions = selection_conditions = selection_classes = None
    if spec is not None:  # the selection samples are asked for the conditions of the real windows they face
        metadata["conditions"] = json.dumps(spec)
        if sentences is not None:
            metadata["caption_encoder"] = sentences.record()
        conditions = window_conditions(ds, train_rows, sentences)
        selection_conditions = window_conditions(ds, rows, sentences)
        if spec["categorical"]:
            selection_classes = (ds.conditions["cats"][rows, 0], next(iter(spec["categorical"].values())))
    task = GeneratorTask(settings, cfg, train_windows, selection_real, device, metadata, tst_only=tst_only,
                         sample_bf16=use_bf16(settings.sample.precision, device), selection_from=selection_from,
                         conditions=conditions, selection_conditions=selection_conditions,
                         selection_classes=selection_classes)
    run = shared_run(world, lambda: Run.open(resume) if resume is not None else Run.create(
        settings.train.runs_dir, command, config_name, to_toml(settings)))
    if on_run and world.main:
        on_run(run)
    t = settings.train
    trainer = Trainer(task, run, seed=t.seed, grad_clip=t.grad_clip,
                      budget=Budget(t.max_steps, t.max_minutes, started, t.cooldown),
                      checkpoint_minutes=t.checkpoint_minutes, bf16=use_bf16(t.precision, device), device=device,
                      on_step=on_step, world=world, on_eval=on_eval)
    with run.lifecycle(command, resume_hint=f"tsdiff train --resume {run.path}"):
        if resume is not None:
            trainer.restore()  # before begin(): a run that cannot be resumed keeps its state
            run.adopt(settings)
        how = f"resumed from step {trainer.pos.step}" if resume is not None else "started"
        run.begin(f"tsdiff {__version__} {command} {config_name}: {how} on {device}{world.describe()}")
        if tst is not None:
            task.model.tst.load_state_dict(tst)
            trainer.start_at("diffusion")
            run.log("event", "tst", 0, 0, message=f"TST weights from {tst_from}")
        if t.eval_every and not task.quick and not tst_only:
            run.log("event", "diffusion", trainer.pos.step, trainer.pos.epoch,
                    message="selection off: fewer than 4 windows with observed values; the last EMA weights are kept")
        elif task.quick and resume is None:
            run.log("event", "diffusion", 0, 0,
                    message=f"selection: every {t.eval_every} epochs, {len(selection_real)} samples given real gaps vs "
                    f"the observed values of as many {selection_from} windows; the best is kept")
        fit = trainer.fit()
    return TrainedGenerator(run.path, fit.reason, fit.steps, fit.best, fit.minutes, fit.kept)


def _sentence_encoder(settings: Settings, spec: dict | None):
    """The frozen local caption encoder of ``[model] caption_encoder``, or None (captions are then
    encoded by word embeddings trained with the generator)."""
    from tsdiff_cli.data.sentences import SETTING, SentenceEncoder

    folder = settings.model.caption_encoder
    if not folder:
        return None
    if not spec or not spec["vocabulary"]:
        raise UserError(SETTING, "is set but the data has no captions",
                        "set [data] caption_column or caption_template, or remove caption_encoder")
    return SentenceEncoder(folder)


def run_sentences(meta: dict[str, str]):
    """The caption encoder a run was trained with when it was a local model (None otherwise)."""
    from tsdiff_cli.data.sentences import SentenceEncoder

    return SentenceEncoder.from_record(meta["caption_encoder"]) if "caption_encoder" in meta else None


def window_conditions(ds: WindowDataset, rows, sentences=None) -> Conditions:
    """The encoded conditions of the dataset's windows ``rows`` (a mask or indices) as tensors;
    captions as sentence embeddings when ``sentences`` (a run's local caption encoder) is given."""
    c = ds.conditions
    tokens = None
    if c["spec"]["vocabulary"]:
        tokens = torch.as_tensor(c["tokens"][rows] if sentences is None
                                 else sentences(np.asarray(c["captions"], dtype=object)[rows]))
    return Conditions(torch.as_tensor(c["cats"][rows]) if c["cats"].shape[1] else None,
                      torch.as_tensor(c["nums"][rows]) if c["nums"].shape[1] else None, tokens)


def _pretrained_tst(run: Path, cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    """The TST weights of a pretrain-tst run, checked against the architecture about to use them."""
    tensors, meta = run_model(run, "tst", "tsdiff pretrain-tst CONFIG", TST_FILE)
    whole = json.loads(meta.get("config", "{}"))
    saved = whole.get("tst", whole)  # a generator config, or (older files) the TST's alone
    saved.setdefault("residual", False)  # written before the field existed
    if saved != cfg.tst.to_dict():
        raise UserError(run, "holds a TST of another architecture than these settings' [tst]",
                        "pretrain with the same [tst] settings, or drop --tst")

    def grid(d: dict) -> tuple:  # what a TST learnt in: ranks or scores (of all or some features), or the data
        q = d.get("quantiles", 0)
        return (q, d.get("quantile_features", "all") if q else "all", d.get("quantile_output", "uniform") if q else "uniform")

    saved_map = grid(whole)
    wanted_map = grid(json.loads(cfg.to_json()))
    if saved_map != wanted_map:
        raise UserError(run, "holds a TST trained with [model] quantiles = {}, quantile_features = \"{}\", "
                        "quantile_output = \"{}\"; these settings have {}, \"{}\", \"{}\"".format(*saved_map, *wanted_map),
                        "pretrain with the same [model] quantiles, quantile_features and quantile_output, or drop --tst")
    return {k: v for k, v in tensors.items() if k != KNOTS}  # this run fits its own map on its data


# --- sampling ----------------------------------------------------------------------------------

def load_generator(run: Path, device: torch.device) -> tuple[Generator, dict[str, str]]:
    """The EMA generator of a train run and its metadata (columns, scaler, dataset)."""
    tensors, meta = run_model(run, "generator", GENERATOR_COMMAND)
    try:
        model = Generator(GeneratorConfig.from_json(meta["config"]))
        model.load_file_tensors(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(run, f"holds a generator this tsdiff cannot read ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120]})", "train again with this version") from None
    return model.to(device).eval(), meta


def sample_from_run(run: Path, n: int, *, steps: int, seed: int, batch_size: int, churn: float = 0.0,
                    device: str = "auto", precision: str = "auto", callback=None, cond: Conditions | None = None,
                    guidance: float = 1.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """``n`` windows from a run, all in memory: (scaled in [0, 1], original units, metadata);
    a conditional run's under ``cond`` (null: unconditional) with guidance weight ``guidance``."""
    from tsdiff_cli.data.scaling import Scaler
    from tsdiff_cli.models.generator import sample_windows

    model, meta, dev = _sampler(run, n, device)
    scaled = sample_windows(model, n, steps=steps, churn=churn, seed=seed, batch_size=batch_size, device=dev,
                            bf16=use_bf16(precision, dev), callback=callback, cond=cond, guidance=guidance)
    original = Scaler.from_json(meta["scaler"]).inverse(scaled.astype(np.float64))
    return scaled, original, meta


def _sampler(run: Path, n: int, device: str) -> tuple[Generator, dict[str, str], torch.device]:
    if n < 1:
        raise UserError("-n", f"{n} windows requested", "ask for at least 1")
    dev = resolve_device(device)
    model, meta = load_generator(run, dev)
    return model, meta, dev


@dataclass
class Samples:
    output: Path
    shape: tuple[int, int, int]


@dataclass
class ConditionRequest:
    """What ``tsdiff sample`` asks a conditional run for: ``values`` (name → value, every window),
    a ``caption`` (every window), or a ``table`` (CSV / Parquet, one row per window, columns named
    as the conditions, ``caption`` for captions); whatever is not given is the null condition."""

    values: dict[str, str]
    caption: str | None = None
    table: Path | None = None

    def __bool__(self) -> bool:
        return bool(self.values or self.caption or self.table)


def requested_conditions(meta: dict[str, str], n: int | None, request: ConditionRequest | None
                         ) -> tuple[Conditions | None, dict[str, np.ndarray], int | None]:
    """(the encoded conditions of ``n`` windows, their given values per name for the output file,
    ``n`` — the table's rows when ``n`` is None). Every mistake is a one-line error: a condition
    the run does not know, a category never seen in training (naming the valid ones), a number
    far outside the training range, a caption for a run trained without captions."""
    from tsdiff_cli.data.conditions import ConditionSpec, encode

    request = request or ConditionRequest({})
    if "conditions" not in meta:
        if request:
            raise UserError("--condition" if request.values else "--caption" if request.caption else "--conditions",
                            "this run was trained without conditions", "drop it, or train with [data] condition_columns")
        return None, {}, n
    spec = ConditionSpec.from_dict(json.loads(meta["conditions"]))
    known = [*spec.categorical, *spec.numeric]
    given: dict[str, np.ndarray] = {}
    captions = None
    if request.table is not None:
        from tsdiff_cli.data.sources import read_frame

        frame = read_frame(Path(request.table), "--conditions")
        if n is not None and n != len(frame):
            raise UserError(request.table, f"has {len(frame)} rows but -n asks for {n} windows",
                            "drop -n (one window per row) or give as many rows")
        n = len(frame)
        extra = [c for c in frame.columns if c not in known and c != CAPTION]
        if extra:
            raise UserError(request.table, f"has column '{extra[0]}', which is not a condition of this run",
                            f"use columns among: {', '.join(known + ([CAPTION] if spec.vocabulary else []))}")
        given = {c: frame[c].to_numpy(dtype=object) for c in frame.columns if c in known}
        if CAPTION in frame.columns:
            captions = frame[CAPTION].to_numpy(dtype=object)
    if n is None:
        raise UserError("-n", "no number of windows", "give -n or a --conditions table")
    for name, value in request.values.items():
        if name not in known:
            raise UserError(f"--condition {name}={value}", f"'{name}' is not a condition of this run",
                            f"use one of: {', '.join(known) or '(none: the run has captions only)'}")
        given[name] = np.full(n, value, dtype=object)
    if request.caption is not None:
        captions = np.full(n, request.caption, dtype=object)
    if captions is not None and not spec.vocabulary:
        raise UserError("--caption" if request.caption is not None else request.table,
                        "this run was trained without captions", "drop the caption, or train with [data] caption_column")
    categorical = {k: given.get(k, np.full(n, None, dtype=object)) for k in spec.categorical}
    numeric = {}
    for k in spec.numeric:
        raw = given.get(k, np.full(n, None, dtype=object))
        try:
            numeric[k] = np.array([np.nan if v is None or v != v or v == "" else float(v) for v in raw])
        except (TypeError, ValueError):
            raise UserError(f"condition '{k}'", "needs a number", f"give {k}=<number>") from None
    where = "--conditions" if request.table is not None else "--condition"
    enc = encode(spec, categorical, numeric, captions, where, strict=True)
    tokens = torch.as_tensor(enc["tokens"]) if spec.vocabulary else None
    if tokens is not None and "caption_encoder" in meta:  # captions as the run's local model embeds them
        tokens = (torch.as_tensor(run_sentences(meta)(captions)) if captions is not None
                  else torch.zeros(n, json.loads(meta["caption_encoder"])["width"]))
    cond = Conditions(torch.as_tensor(enc["cats"]) if spec.categorical else None,
                      torch.as_tensor(enc["nums"]) if spec.numeric else None, tokens)
    labels = {k: np.array(["" if v is None or v != v else str(v) for v in given[k]], dtype=object) for k in given}
    if captions is not None:
        labels[CAPTION] = np.array([str(c) for c in captions], dtype=object)
    return cond, labels, n


def sample(run: Path, output: Path, overrides: dict | None = None, update: Update = no_update,
           conditions: ConditionRequest | None = None) -> Samples:
    """``tsdiff sample``: windows from ``run`` with its ``[sample]`` settings (and ``overrides``)
    written to ``output`` (.csv / .parquet / .h5 / .npy) in original units and column names,
    one sampling batch at a time (memory does not grow with the number of windows). A
    conditional run samples under ``conditions`` (null where not given) with ``[sample] guidance``,
    and the output carries the given conditions per window."""
    from tsdiff_cli.data.arrays import WindowWriter
    from tsdiff_cli.data.scaling import Scaler
    from tsdiff_cli.models.generator import sample_in_batches

    overrides = overrides or {}
    asked_n = (overrides.get("sample") or {}).get("n")
    if conditions is not None and conditions.table is not None and asked_n is None:  # one window per row
        _, meta = run_model(run, "generator", GENERATOR_COMMAND)
        _, _, rows = requested_conditions(meta, None, conditions)
        overrides = {**overrides, "sample": {**overrides.get("sample", {}), "n": rows}}
    s = run_settings(run, overrides)  # -n 0 is refused by [sample] n itself (n ≥ 1), naming the option
    p = s.sample
    model, meta, dev = _sampler(run, p.n, s.train.device)
    cond, labels, _ = requested_conditions(meta, p.n, conditions)
    scaler, columns = Scaler.from_json(meta["scaler"]), json.loads(meta["columns"])
    label = f"sampling {p.n} windows"
    attrs = {"run": str(run), "seed": p.seed, "steps": p.steps, **({"guidance": p.guidance} if cond is not None else {})}
    with WindowWriter(output, p.n, model.cfg.seq_len, columns, scaler, attrs, labels=list(labels)) as out:
        done = 0
        for batch in sample_in_batches(model, p.n, steps=p.steps, churn=p.churn, seed=p.seed, batch_size=p.batch_size,
                                       device=dev, bf16=use_bf16(p.precision, dev), cond=cond, guidance=p.guidance,
                                       callback=lambda done, total: update(label, done, total)):
            out.write(scaler.inverse(batch.astype(np.float64)), {k: v[done:done + len(batch)] for k, v in labels.items()})
            done += len(batch)
    return Samples(out.path, (p.n, model.cfg.seq_len, model.cfg.features))
