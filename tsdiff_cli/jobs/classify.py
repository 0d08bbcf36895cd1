"""Classify: train the dual-patch transformer on labelled series through the shared training loop
(:func:`train_classifier`), pretrain its encoder without labels (:func:`pretrain_classifier`),
and use a trained run on another file (:func:`predict_from_run`, :func:`evaluate_run`).

Inputs are standardised per numeric channel with the training series' observed values (NaN-aware);
numeric targets with the training labels' mean and spread. Both scalers, the data layout (channels,
length, categorical vocabularies, classes) and the architecture travel in model.safetensors'
metadata, so a run reads a new file exactly as it read its training data.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tsdiff_cli import __version__
from tsdiff_cli.atomic import atomic_output, ensure_writable
from tsdiff_cli.data.labelled import (LabelledSet, conform, layout, read_long, read_ts, remove_values,
                                      resolve_labelled, strata, stratified_split)
from tsdiff_cli.errors import UserError
from tsdiff_cli.jobs import Update, no_update
from tsdiff_cli.jobs.architectures import classifier_config
from tsdiff_cli.models.dualpatch import DualPatchConfig, DualPatchTransformer, HeadConfig
from tsdiff_cli.runs import (BASE_MODEL_FILE, MODEL_FILE, SAMPLING_WEIGHTS_FILE, Run, model_path, model_readable, report_path,
                             run_model, run_settings)
from tsdiff_cli.settings import ClassifySettings, Settings, to_toml
from tsdiff_cli.training.device import resolve_device
from tsdiff_cli.training.distributed import World, join, shared_run
from tsdiff_cli.training.loop import Budget, OnEval, OnStep, Trainer

KIND, ENCODER_KIND = "classifier", "classifier-encoder"
TRAIN_COMMAND, PRETRAIN_COMMAND = "tsdiff classify train CONFIG", "tsdiff classify pretrain CONFIG"
SPLIT_SEEDS = {"train": 0, "test": 1, "val": 2, "input": 3}  # added to [classify] seed for missing_rate's draw


@dataclass
class ClassifierRun:
    run: Path
    report: dict
    minutes: float
    reason: str


# --- data ----------------------------------------------------------------------------------------


def read_labelled(p: ClassifySettings, source: str | Path, role: str, labels_required: bool = True) -> LabelledSet:
    """A ``.ts`` file or long table named by ``source``, with ``missing_rate`` of its observed
    values removed when set (seeded per role, so train and test lose different values; the
    ``input`` of predict / evaluate is read as it is)."""
    path = resolve_labelled(source)
    if path.suffix.lower() == ".ts":
        data = read_ts(path)
    else:
        data = read_long(path, p.id_column, p.time_column, p.value_columns, p.categorical_columns, p.labels,
                         p.step_labels, labels_optional=not labels_required)
    if labels_required and not data.specs:
        raise UserError(path, "has no labels", "declare the label columns in [classify] labels (a .ts file needs "
                        "@classLabel true or @targetlabel true)")
    if p.missing_rate and role != "input":
        data.x = remove_values(data.x, p.missing_rate, p.seed + SPLIT_SEEDS[role])
    return data


def _scaler(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    observed = ~np.isnan(x)
    count = observed.sum(axis=(0, 2))
    if (count == 0).any():
        raise UserError("[classify] train", f"channel {int(np.flatnonzero(count == 0)[0])} has no observed value",
                        "drop it from value_columns")
    mean = np.nansum(x, axis=(0, 2)) / count
    var = np.nansum((x - mean[None, :, None]) ** 2, axis=(0, 2)) / count
    std = np.sqrt(var)
    return mean, np.where(std > 0, std, 1.0)


def _batches(data: LabelledSet, mean: np.ndarray, std: np.ndarray, scale: dict[str, tuple[float, float]],
             gaps: str = "mask"):
    """Model-ready tensors; with ``gaps = "interpolate"`` every gap (padding included) filled
    linearly along time (the nearest value at the ends; 0, the channel mean, where a series has none)."""
    from tsdiff_cli.metrics.imputation import fill_linear
    from tsdiff_cli.training.classify import Batches

    z = (data.x - mean[None, :, None]) / std[None, :, None]
    if gaps == "interpolate":
        z = np.nan_to_num(fill_linear(z.swapaxes(1, 2)).swapaxes(1, 2))
    x = torch.from_numpy(z.astype(np.float32))
    targets = {}
    for spec in data.specs:
        y = data.labels[spec.name]
        if spec.kind == "class":
            targets[spec.name] = torch.from_numpy(y.astype(np.int64))
        else:
            m, s = scale[spec.name]
            targets[spec.name] = torch.from_numpy(((y - m) / s).astype(np.float32))
    return Batches(x, torch.from_numpy(data.cat), targets)


def _categories(data: LabelledSet) -> list[int]:
    """Codes per categorical channel, 0 (unknown) included."""
    return [len(data.vocab[k]) + 1 for k in data.categoricals]


def _heads(data: LabelledSet) -> list[HeadConfig]:
    return [HeadConfig(s.name, s.kind, len(s.classes) if s.kind == "class" else 1, s.per_step) for s in data.specs]


def _at_length(p: ClassifySettings, data: LabelledSet) -> LabelledSet:
    """``data`` padded to ``[classify] length`` steps (when set)."""
    if not p.length:
        return data
    if data.x.shape[2] > p.length:
        raise UserError("[classify] length", f"is {p.length}, but {p.train} has series of {data.x.shape[2]} steps",
                        f"raise it to at least {data.x.shape[2]} (or 0: the longest training series)")
    like = layout(data)
    like["length"] = p.length
    return conform(data, like, str(p.train))


def _split(p: ClassifySettings, full: LabelledSet) -> tuple[LabelledSet, LabelledSet]:
    if p.val is not None:
        return full, conform(read_labelled(p, p.val, "val"), layout(full), str(p.val))
    keep, take = stratified_split(strata(full), len(full), p.val_fraction, p.seed)
    if not len(take) or not len(keep):
        raise UserError("[classify] val_fraction", f"leaves {len(keep)} training and {len(take)} validation series "
                        f"of {len(full)}", "change val_fraction or give a val file")
    return full.subset(keep), full.subset(take)


def _check_labels(data: LabelledSet, where: str) -> None:
    for spec in data.specs:
        y = data.labels[spec.name]
        if spec.kind == "class":
            present = np.unique(y[y >= 0])
            if len(present) < 2:
                raise UserError(where, f"label '{spec.name}' has {len(present)} class{'es' * (len(present) != 1)} in the "
                                "training series", "a classifier needs at least two")
        elif np.isfinite(y).sum() < 2:
            raise UserError(where, f"label '{spec.name}' has fewer than two values", "check the label column")


def _sample_weights(p: ClassifySettings, data: LabelledSet) -> tuple[np.ndarray, list[tuple]] | None:
    """Inverse frequency of each series' joint values of the ``balance`` labels (normalised to
    mean 1), and the keys; None without ``balance``."""
    if not p.balance:
        return None
    for name in p.balance:
        if name not in data.labels:
            raise UserError("[classify] balance", f"names '{name}', which is not a label of the data "
                            f"({', '.join(data.labels)})", "fix balance")
        if data.spec(name).per_step:
            raise UserError("[classify] balance", f"'{name}' is a per-step label", "balance per-series labels only")
    keys = list(zip(*(data.labels[name].tolist() for name in p.balance)))
    _, inverse, counts = np.unique(np.array([str(k) for k in keys]), return_inverse=True, return_counts=True)
    weights = 1.0 / counts[inverse]
    return weights / weights.mean(), keys


def _write_weights(run: Run, p: ClassifySettings, data: LabelledSet, weights: np.ndarray, keys: list[tuple]) -> None:
    with atomic_output(run.path / SAMPLING_WEIGHTS_FILE) as tmp, open(tmp, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", *p.balance, "weight", "probability"])
        total = weights.sum()
        for i, (ident, key) in enumerate(zip(data.ids, keys)):
            names = [data.spec(n).classes[int(v)] if data.spec(n).kind == "class" and v >= 0 else v
                     for n, v in zip(p.balance, key)]
            out.writerow([ident, *names, f"{weights[i]:.6g}", f"{weights[i] / total:.6g}"])


def _class_weights(data: LabelledSet) -> dict[str, torch.Tensor]:
    """Inverse class frequency, mean 1 over the classes present (absent classes weigh 1)."""
    out = {}
    for spec in data.specs:
        if spec.kind == "class":
            y = data.labels[spec.name]
            counts = np.bincount(y[y >= 0].ravel(), minlength=len(spec.classes)).astype(np.float64)
            w = np.where(counts > 0, counts.sum() / (len(spec.classes) * np.maximum(counts, 1)), 1.0)
            out[spec.name] = torch.tensor(w, dtype=torch.float32)
    return out


def _metadata(kind: str, cfg: DualPatchConfig, data: LabelledSet, mean, std, scale) -> dict[str, str]:
    return {"format": f"tsdiff-{kind}", "tsdiff_version": __version__, "config": cfg.to_json(),
            "layout": json.dumps(layout(data)), "scaler": json.dumps({"mean": mean.tolist(), "std": std.tolist()}),
            "target_scale": json.dumps(scale)}


def _target_scale(data: LabelledSet) -> dict[str, tuple[float, float]]:
    scale = {}
    for spec in data.specs:
        if spec.kind == "numeric":
            y = data.labels[spec.name]
            y = y[np.isfinite(y)]
            s = float(y.std()) if len(y) > 1 else 1.0
            scale[spec.name] = (float(y.mean()), s if s > 0 else 1.0)
    return scale


# --- training ------------------------------------------------------------------------------------


def train_classifier(s: Settings, config_name: str, *, update: Update = no_update, on_step: OnStep | None = None,
                     on_run: Callable[[Run], None] | None = None, resume: Path | None = None,
                     started: float | None = None, on_eval: OnEval | None = None) -> ClassifierRun:
    """Train on ``[classify] train`` (validation carved out unless ``val`` is given), keep the best
    validation epoch (and the SWA average with ``swa``), then score on validation and, once, on
    ``test`` when given."""
    from tsdiff_cli.training.classify import ClassifyTask

    p = s.classify
    if p.train is None:
        raise UserError("[classify] train", "is not set", "name the labelled training file (.ts, CSV or Parquet)")
    full = _at_length(p, read_labelled(p, p.train, "train"))
    _check_labels(full, str(p.train))
    train, val = _split(p, full)
    if p.label_fraction < 1:
        _, kept = stratified_split(strata(train), len(train), p.label_fraction, p.seed + 11, leave_one=False)
        train = train.subset(kept)
    if len(train) < 2:
        raise UserError("[classify] label_fraction", f"leaves {len(train)} training series", "raise it")
    _check_labels(train, f"{p.train} (training part)")
    mean, std = _scaler(train.x)
    scale = _target_scale(train)
    heads = _heads(full)
    cfg = classifier_config(p, len(full.channels), int(full.x.shape[2]), _categories(full), heads)
    test = conform(read_labelled(p, p.test, "test"), layout(full), str(p.test)) if p.test is not None else None
    data = {"train": _batches(train, mean, std, scale, p.gaps), "val": _batches(val, mean, std, scale, p.gaps)}

    torch.manual_seed(p.seed)
    world, device = join(resolve_device(p.device))
    model = DualPatchTransformer(cfg).to(device)
    if p.init is not None:
        _load_encoder(model, p.init)
    balanced = _sample_weights(p, train)
    task = ClassifyTask(model, data, p, device, _metadata(KIND, cfg, full, mean, std, scale), scale=scale,
                        class_weights=_class_weights(train) if p.class_weights else {},
                        sample_weights=torch.tensor(balanced[0], dtype=torch.float64) if balanced else None,
                        head_epochs=p.head_epochs if p.init is not None else 0)
    run, trainer = _trainer(s, "classify", config_name, task, device, world, resume, on_run, on_step, started, on_eval)
    with run.lifecycle("classify train", resume_hint=f"tsdiff classify train --resume {run.path}"):
        if resume is not None:
            trainer.restore()
            run.adopt(s)
        how = f"resumed from step {trainer.pos.step}" if resume is not None else "started"
        run.begin(f"tsdiff {__version__} classify train {config_name}: {how} on {device}; {len(train)} training and "
                  f"{len(val)} validation series, {cfg.channels} channels × {cfg.length} steps{world.describe()}")
        if balanced is not None and run.writes:
            _write_weights(run, p, train, *balanced)
        if test is not None and test.unknown_codes:
            run.note(f"{test.unknown_codes} categorical values of {p.test} were never seen in training: read as unknown")
        t0 = time.monotonic()
        fit = trainer.fit()
        run.note(f"training {fit.reason} after {fit.steps} steps, {fit.minutes:.1f} min")
        report = {"job": "classify", "data": {"train": len(train), "val": len(val), "test": len(test) if test else None,
                                              "channels": full.channels, "length": cfg.length,
                                              "labels": [h.__dict__ for h in heads], "missing_rate": p.missing_rate,
                                              "label_fraction": p.label_fraction},
                  "training": {"steps": fit.steps, "minutes": round(fit.minutes, 3), "reason": fit.reason,
                               "seconds": round(time.monotonic() - t0, 1), "seed": p.seed}}
        if test is not None:
            data["test"] = _batches(test, mean, std, scale, p.gaps)
        kept = {"swa" if p.swa else "model": MODEL_FILE, **({"base": BASE_MODEL_FILE} if p.swa else {})}
        if p.swa and (int(task.swa.n_averaged) == 0 or not model_readable(model_path(run.path))):  # nothing averaged
            tensors, metadata = run_model(run.path, KIND, TRAIN_COMMAND, BASE_MODEL_FILE)
            run.save_model(tensors, metadata)
            run.note(f"training stopped before stochastic weight averaging began: {MODEL_FILE} holds the best base epoch")
            kept = {"base": MODEL_FILE}
        for name, file in kept.items():
            tensors, _ = run_model(run.path, KIND, TRAIN_COMMAND, file)
            model.load_state_dict(tensors)
            for split in ("val", "test") if test is not None else ("val",):
                report.setdefault(split, {})[name] = task.evaluate(model, split)["scores"]
        model.load_state_dict(run_model(run.path, KIND, TRAIN_COMMAND)[0])
        run.write_report(report)
        if test is not None:
            first = report["test"][next(iter(kept))][heads[0].name]
            run.log("eval", "test", fit.steps, fit.epochs, profile="test",
                    **{k: v for k, v in first.items() if k not in ("confusion", "labelled")})
    return ClassifierRun(run.path, report, fit.minutes, fit.reason)


def _trainer(s: Settings, command: str, config_name: str, task, device: torch.device, world: World,
             resume: Path | None, on_run: Callable[[Run], None] | None, on_step: OnStep | None,
             started: float | None, on_eval: OnEval | None = None) -> tuple[Run, Trainer]:
    """The run (new, or ``resume``) and the shared loop's trainer for ``task``."""
    p = s.classify
    run = shared_run(world, lambda: Run.open(resume) if resume is not None
                     else Run.create(p.runs_dir, command, config_name, to_toml(s)))
    if on_run is not None and world.main:
        on_run(run)
    trainer = Trainer(task, run, seed=p.seed, grad_clip=p.grad_clip, budget=Budget(p.max_steps, p.max_minutes, started),
                      device=device, on_step=on_step, world=world, on_eval=on_eval)
    return run, trainer


def _load_encoder(model: DualPatchTransformer, init: Path) -> None:
    tensors, meta = run_model(init, ENCODER_KIND, PRETRAIN_COMMAND)
    theirs = DualPatchConfig.from_json(meta["config"])
    mine = model.c
    shared = ("channels", "length", "patch_len", "patch_stride", "d_model", "heads", "layers", "ff", "streams",
              "mask_channel", "instance_norm", "fill", "categories")
    differ = [k for k in shared if getattr(theirs, k) != getattr(mine, k)]
    if differ:
        raise UserError(init, "was pretrained with another " + ", ".join(differ) + " than these settings and data",
                        "pretrain with the same [classify] model settings and training file")
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    if unexpected or any(not k.startswith("heads.") for k in missing):
        raise UserError(init, "does not hold this model's encoder", "pretrain again with this tsdiff")


def pretrain_classifier(s: Settings, config_name: str, *, on_step: OnStep | None = None,
                        on_run: Callable[[Run], None] | None = None, resume: Path | None = None,
                        started: float | None = None) -> ClassifierRun:
    """Masked-patch pretraining of the encoder on every training series (labels are not read)."""
    from tsdiff_cli.training.classify import PretrainTask

    p = s.classify
    if p.train is None:
        raise UserError("[classify] train", "is not set", "name the training file (.ts, CSV or Parquet)")
    full = _at_length(p, read_labelled(p, p.train, "train", labels_required=False))
    keep, take = stratified_split(None, len(full), 0.1, p.seed)
    train, val = full.subset(keep), full.subset(take)
    mean, std = _scaler(train.x)
    cfg = classifier_config(p, len(full.channels), int(full.x.shape[2]), _categories(full), [])
    data = {"train": _batches(train, mean, std, {}, p.gaps), "val": _batches(val, mean, std, {}, p.gaps)}
    torch.manual_seed(p.seed)
    world, device = join(resolve_device(p.device))
    model = DualPatchTransformer(cfg).to(device)
    full.specs = []
    task = PretrainTask(model, data, p, device, _metadata(ENCODER_KIND, cfg, full, mean, std, {}))
    run, trainer = _trainer(s, "pretrain", config_name, task, device, world, resume, on_run, on_step, started)
    with run.lifecycle("classify pretrain", resume_hint=f"tsdiff classify pretrain --resume {run.path}"):
        if resume is not None:
            trainer.restore()
            run.adopt(s)
        run.begin(f"tsdiff {__version__} classify pretrain {config_name}: {len(train)} series (+{len(val)} to "
                  f"validate the reconstruction), {cfg.channels} channels × {cfg.length} steps on {device}{world.describe()}")
        fit = trainer.fit()
        report = {"job": "classify pretrain", "training": {"steps": fit.steps, "minutes": round(fit.minutes, 3),
                                                           "reason": fit.reason, "best_val_loss": fit.best}}
        run.write_report(report)
    return ClassifierRun(run.path, report, fit.minutes, fit.reason)


# --- using a run ---------------------------------------------------------------------------------


def load_classifier(run: Path) -> tuple[DualPatchTransformer, dict]:
    tensors, meta = run_model(run, KIND, TRAIN_COMMAND)
    model = DualPatchTransformer(DualPatchConfig.from_json(meta["config"]))
    model.load_state_dict(tensors)
    info = {"layout": json.loads(meta["layout"]), "scaler": json.loads(meta["scaler"]),
            "target_scale": {k: tuple(v) for k, v in json.loads(meta["target_scale"]).items()}}
    return model.eval(), info


def _read_for_run(run: Path, input: Path, labels_required: bool) -> tuple[DualPatchTransformer, dict, LabelledSet, object]:
    model, info = load_classifier(run)
    p = run_settings(run).classify
    data = read_labelled(p, input, "input", labels_required)
    if not labels_required:  # predict never reads labels: whatever the file holds is not checked
        data.labels, data.specs = {}, []
    data = conform(data, info["layout"], str(input))
    if labels_required:
        absent = [h.name for h in model.c.tasks if h.name not in data.labels]
        if absent:
            raise UserError(input, f"has no label {', '.join(absent)}", "give a labelled file (or use predict)")
    for h in model.c.tasks:  # predict: labels need not be there
        if h.name not in data.labels:
            n, t = len(data), data.x.shape[2]
            shape = (n, t) if h.per_step else (n,)
            data.labels[h.name] = np.full(shape, -1 if h.kind == "class" else np.nan)
    mean, std = np.array(info["scaler"]["mean"]), np.array(info["scaler"]["std"])
    gaps = "mask" if model.c.mask_channel else "interpolate"
    return model, info, data, _batches(data, mean, std, info["target_scale"], gaps)


def predict_from_run(run: Path, input: Path, output: Path) -> tuple[Path, int]:
    """Write predictions for every series of ``input``: per series, each class label's predicted
    class and probabilities and each numeric label's value (original units); with per-step labels,
    one row per (series, step) instead (long format). CSV or Parquet by ``output``'s suffix.
    Returns the path and how many categorical values were never seen in training (read as unknown)."""
    import pandas as pd

    from tsdiff_cli.training.classify import predict_all

    ensure_writable(output, "predictions")
    model, info, data, batches = _read_for_run(run, input, labels_required=False)
    with torch.inference_mode():
        pred = predict_all(model, batches, torch.device("cpu"))
    specs = {s["name"]: s for s in info["layout"]["specs"]}
    series: dict[str, np.ndarray] = {}
    steps: dict[str, np.ndarray] = {}
    for h in model.c.tasks:
        out = pred[h.name]
        into = steps if h.per_step else series
        if h.kind == "class":
            classes = np.array(specs[h.name]["classes"], dtype=object)
            into[h.name] = classes[out.argmax(1)]
            for k, name in enumerate(classes):
                into[f"p({h.name}={name})"] = out[:, k]
        else:
            m, sd = info["target_scale"][h.name]
            into[h.name] = out * sd + m
    ids = np.array(data.ids, dtype=object)
    if steps:
        n, t = len(data), data.x.shape[2]
        real = np.arange(t)[None, :] < data.lengths[:, None]
        cols = {"id": np.repeat(ids, t).reshape(n, t)[real], "step": np.tile(np.arange(t), (n, 1))[real]}
        cols.update({k: np.repeat(v, t).reshape(n, t)[real] for k, v in series.items()})
        cols.update({k: v[real] for k, v in steps.items()})
    else:
        cols = {"id": ids, **series}
    frame = pd.DataFrame(cols)
    with atomic_output(Path(output)) as tmp:
        if Path(output).suffix.lower() in (".parquet", ".pq"):
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    return Path(output), data.unknown_codes


def evaluate_run(run: Path, input: Path, plot: bool = True) -> dict:
    """Scores of the run's model on the labelled ``input``; added to the run's report.json under
    ``evaluations`` (keyed by the input), with a confusion-matrix picture per class label."""
    from tsdiff_cli.training.classify import predict_all, scores

    model, info, data, batches = _read_for_run(run, input, labels_required=True)
    pred = predict_all(model, batches, torch.device("cpu"))
    result = scores(model.c.tasks, pred, batches.targets, info["target_scale"])
    specs = {s["name"]: s for s in info["layout"]["specs"]}
    plots = []
    if plot:
        for h in model.c.tasks:
            if h.kind == "class":
                plots.append(_confusion_plot(result[h.name]["confusion"], specs[h.name]["classes"],
                                             Path(run) / f"confusion_{h.name}.png", f"{h.name}: {Path(input).name}"))
    entry = {"input": str(input), "series": len(data), "unknown_categories": data.unknown_codes, "scores": result,
             "plots": [str(p) for p in plots]}
    path = report_path(Path(run))
    report = json.loads(path.read_text()) if path.is_file() else {}
    report.setdefault("evaluations", {})[str(input)] = entry
    Run(Path(run)).write_report(report)
    return entry


def _confusion_plot(cm: list, classes: list[str], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tsdiff_cli.metrics.plots import _save

    cm = np.array(cm)
    size = max(3.0, 0.45 * len(classes) + 1.5)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", color="white" if cm[i, j] > cm.max() / 2 else "black")
    _save(fig, path)
    plt.close(fig)
    return path
