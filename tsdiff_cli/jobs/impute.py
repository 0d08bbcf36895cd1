"""Impute: fill a table's gaps from TimeKD embeddings (a denoising decoder trained here, on the
shared training loop) or from a generator run (TST completion or diffusion inpainting), or judge
either by hiding observed values (``holdout``); and score a filling made elsewhere.

Observed values are always written back exactly as read; only missing cells change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tsdiff_cli import __version__
from tsdiff_cli.data.gappy import GappyTable, read_gappy, write_filled
from tsdiff_cli.errors import UserError
from tsdiff_cli.jobs import Update, no_update
from tsdiff_cli.metrics.imputation import hide, score_filling
from tsdiff_cli.runs import Run
from tsdiff_cli.settings import Settings, to_toml
from tsdiff_cli.training.distributed import Released, from_env, join, shared_run
from tsdiff_cli.training.loop import OnStep


@dataclass
class ImputeResult:
    output: Path | None
    run: Path | None
    filled: int  # cells filled
    left: int  # missing cells no method could reach
    report: dict | None
    notes: list[str] = field(default_factory=list)


def _zscore(values: np.ndarray, rows: slice, where: str, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """NaN-aware mean and std over ``rows`` per column (std 0 → 1)."""
    part = values[rows]
    empty = np.isnan(part).all(axis=0)
    if empty.any():
        name = columns[int(np.flatnonzero(empty)[0])]
        raise UserError(where, f"column '{name}' has no values in rows {rows.start or 0}–{rows.stop}, "
                        "whose statistics define z-space", "give a file with values there")
    mean, std = np.nanmean(part, axis=0), np.nanstd(part, axis=0)
    return mean, np.where(std > 0, std, 1.0)


def _check_request(s: Settings) -> None:
    p = s.impute
    if p.input is None:
        raise UserError("impute", "no input file", "give --input data.csv (or [impute] input)")
    if (p.emb_dir is None) == (p.model is None):
        raise UserError("impute", "give exactly one of --emb-dir (TimeKD embeddings) and --model (a generator run)",
                        "choose the source of the filling")
    if p.holdout > 0 and p.output is not None:
        raise UserError("--holdout", "judges a method and writes no filled file, but --output was given",
                        "drop --output to judge, or drop --holdout to fill")
    if p.holdout == 0 and p.output is None:
        raise UserError("impute", "no output file", "give -o filled.csv (or [impute] output)")
    if p.output is not None and p.output.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise UserError(p.output, "unknown output type", "use .csv or .parquet")
    if p.emb_dir is not None and p.samples:
        raise UserError("--samples", "applies to --model (diffusion inpainting), not to --emb-dir", "drop --samples")


def _check_source(p) -> None:
    """A missing embedding folder or run is an error even when the input has no gap to fill."""
    if p.emb_dir is not None:
        from tsdiff_cli.data.timekd import locate

        locate(p.emb_dir, p.pred_len, p.flag)
        return
    from tsdiff_cli.jobs.generate import GENERATOR_COMMAND
    from tsdiff_cli.runs import run_model

    run_model(Path(p.model), "generator", GENERATOR_COMMAND, tensors=False)


def impute(s: Settings, config_name: str, update: Update = no_update, on_step: OnStep | None = None,
           resume: Path | None = None, started: float | None = None) -> ImputeResult:
    """Run ``tsdiff impute`` as configured by ``s.impute``; see the module docstring. ``resume``
    continues the decoder training of an embeddings run (``s``: that run's settings)."""
    from tsdiff_cli.atomic import ensure_writable

    _check_request(s)
    p = s.impute
    if p.emb_dir is None and not from_env().main:  # under torchrun: nothing to train, rank 0 fills alone
        raise Released()
    if p.output is not None:
        ensure_writable(p.output, "output")
    table = read_gappy(p.input, p.columns, p.time_column, given_as="--input (or [impute] input)")
    _check_source(p)
    missing = int(np.isnan(table.values).sum())
    if missing == 0 and p.holdout == 0:
        import shutil

        from tsdiff_cli.atomic import atomic_output

        if p.output.suffix.lower() == table.path.suffix.lower():
            with atomic_output(p.output) as tmp:
                shutil.copyfile(table.path, tmp)  # byte for byte
        else:
            write_filled(p.output, table, table.values)
        return ImputeResult(p.output, None, 0, 0, None, [f"{table.path} has no missing values; written unchanged to {p.output}"])
    if resume is not None and p.emb_dir is None:
        raise UserError(resume, "is not a run that trains (only --emb-dir runs train a decoder)", "drop --resume")
    if p.emb_dir is not None:
        return _from_embeddings(s, table, config_name, update, on_step, resume, started)
    return _from_generator(s, table, update)


# --- from TimeKD embeddings -----------------------------------------------------------------

def _from_embeddings(s: Settings, table: GappyTable, config_name: str, update: Update, on_step: OnStep | None,
                     resume: Path | None, started: float | None) -> ImputeResult:
    from tsdiff_cli.data.timekd import check_count, locate, read_embeddings, scheme_for, tslib_borders
    from tsdiff_cli.jobs.architectures import emb_decoder_config
    from tsdiff_cli.models.emb_decoder import EmbDecoder
    from tsdiff_cli.models.inpaint import overlap_mean
    from tsdiff_cli.runs import cache_dir, run_model
    from tsdiff_cli.training.emb_decoder import EmbDecoderTask, decode
    from tsdiff_cli.training.loop import Budget, Trainer

    p = s.impute
    layout = locate(p.emb_dir, p.pred_len, p.flag)
    scheme = p.borders if p.borders != "auto" else scheme_for(layout.name)
    order = list(table.columns)
    if scheme == "custom" and p.target in order:  # TSLib's Dataset_Custom puts the target last
        order = [c for c in order if c != p.target] + [p.target]
    perm = [table.columns.index(c) for c in order]
    world, _ = join(torch.device("cpu"))
    embeddings, cached = world.first(lambda: read_embeddings(
        layout, cache_dir(p.runs_dir), lambda done, total: update("reading embeddings", done, total)))
    windows, variables, width = embeddings.shape
    if variables != len(order):
        raise UserError(layout.leaf, f"embeddings have {variables} variables, but {table.path} has {len(order)} value "
                        f"columns ({', '.join(table.columns)})", "give the CSV the embeddings were made from, or [impute] columns")
    rows = table.values.shape[0]
    b1, b2 = check_count(layout, windows, rows, p.seq_len, scheme, str(table.path))
    length = p.seq_len + layout.pred_len
    values = table.values[:, perm]
    mean, std = _zscore(values, slice(0, tslib_borders(scheme, rows, p.seq_len)["train"][1]), str(table.path), order)
    truth = (values - mean) / std
    gappy, hidden = _hide_in(truth, p.holdout, p.seed, slice(b1, b2))
    segment = gappy[b1:b2]
    targets = np.lib.stride_tricks.sliding_window_view(segment, length, axis=0).transpose(0, 2, 1)  # (W, L+P, F)

    n_val = max(1, int(round(windows * p.val_fraction)))
    if windows - n_val < 1:
        raise UserError(layout.leaf, f"holds {windows} window(s), too few to keep some for early stopping",
                        "use a longer split, or lower [impute] val_fraction")

    cfg = emb_decoder_config(p, variables, width, length)
    meta = {"format": "tsdiff-emb-decoder", "config": cfg.to_json(), "columns": json.dumps(order),
            "z_mean": json.dumps(mean.tolist()), "z_std": json.dumps(std.tolist()), "borders": scheme,
            "layout": json.dumps({"leaf": str(layout.leaf), "name": layout.name, "pred_len": layout.pred_len,
                                  "flag": layout.flag, "seq_len": p.seq_len, "border1": b1, "border2": b2}),
            "tsdiff_version": __version__}
    torch.manual_seed(p.seed)
    model = EmbDecoder(cfg)
    emb_t = torch.from_numpy(embeddings)
    task = EmbDecoderTask(model, emb_t, torch.from_numpy(np.ascontiguousarray(targets, dtype=np.float32)), n_val,
                          noise=p.noise, epochs=p.epochs, patience=p.patience, lr=p.lr, batch_size=p.batch_size,
                          seed=p.seed, metadata=meta)
    run = shared_run(world, lambda: Run.open(resume) if resume is not None
                     else Run.create(p.runs_dir, "impute", config_name, to_toml(s), latest=False))
    trainer = Trainer(task, run, seed=p.seed, grad_clip=1.0, budget=Budget(p.max_steps, p.max_minutes, started),
                      on_step=on_step, world=world)
    with run.lifecycle("impute", resume_hint=f"tsdiff impute --resume {run.path}"):
        if resume is not None:
            trainer.restore()  # before begin(): a run that cannot be resumed keeps its state
            run.adopt(s)
        run.begin(f"tsdiff {__version__} impute from {layout.leaf} ({windows} windows, {'cache' if cached else 'files'})"
                  + (f": resumed from step {trainer.pos.step}" if resume is not None else ""))
        fit = trainer.fit()
        model.load_state_dict(run_model(run.path, "emb-decoder", "tsdiff impute --emb-dir DIR")[0])  # the best epoch
        preds = decode(model, emb_t)
        mean_z, _ = overlap_mean(preds.double().unsqueeze(0), torch.arange(windows), b2 - b1)
        filled = gappy.copy()
        filled[b1:b2] = np.where(np.isnan(segment), mean_z[0].numpy(), segment)
        hint = "; set --seq-len if the store script's input_len was not 96" if p.seq_len == 96 else ""
        notes = [f"{layout.flag} embeddings: window i covers rows {b1} + i … {b1} + i + {length - 1} "
                 f"({scheme} borders, L = {p.seq_len}, P = {layout.pred_len}{hint})",
                 f"decoder ({p.decoder}) trained {fit.epochs} epochs ({fit.reason})"
                 + (f", best validation MSE {fit.best:.4f} (z-space, observed values)" if fit.best is not None else "")]
        outside = int(np.isnan(gappy).sum() - np.isnan(gappy[b1:b2]).sum())
        if outside:
            notes.append(f"{outside} missing values lie outside rows {b1}–{b2 - 1}, which the {layout.flag} embeddings "
                         "cover; they are left missing")
        return _finish(s, table, perm, run, truth, gappy, hidden, filled, None, std, mean, notes, slice(b1, b2),
                       caveat="the embeddings were computed from the data before hiding, so this judges how well the "
                              "decoder reads them")


# --- from a generator run -------------------------------------------------------------------

def _from_generator(s: Settings, table: GappyTable, update: Update) -> ImputeResult:
    from tsdiff_cli.data.scaling import Scaler
    from tsdiff_cli.jobs.generate import load_generator
    from tsdiff_cli.models.inpaint import inpaint, tst_fill
    from tsdiff_cli.training.device import resolve_device

    p = s.impute
    device = resolve_device(p.device)
    model, meta = load_generator(Path(p.model).resolve(), device)
    wanted = json.loads(meta["columns"])
    absent = [c for c in wanted if c not in table.columns]
    extra = [c for c in table.columns if c not in wanted]
    if absent or extra:
        what = (f"lacks {', '.join(map(repr, absent))}" if absent else "") + \
               ("; " if absent and extra else "") + (f"has {', '.join(map(repr, extra))} besides" if extra else "")
        raise UserError(table.path, f"{what} the run's columns ({', '.join(wanted)})",
                        "give a file with exactly the columns the generator was trained on")
    perm = [table.columns.index(c) for c in wanted]
    t = model.cfg.seq_len
    rows = table.values.shape[0]
    if rows < t:
        raise UserError(table.path, f"has {rows} rows, fewer than the generator's window of {t}",
                        f"give at least {t} rows")
    values = table.values[:, perm]
    mean, std = _zscore(values, slice(0, rows), str(table.path), wanted)
    truth = (values - mean) / std
    gappy, hidden = _hide_in(truth, p.holdout, p.seed, slice(0, rows))
    scaler = Scaler.from_json(meta["scaler"])
    x01 = torch.from_numpy(scaler.transform(gappy * std + mean).astype(np.float32)).unsqueeze(0).to(device)
    draws = None
    if p.samples == 0:
        filled01 = tst_fill(model, x01, callback=lambda d, n: update("TST completion", d, n))[0].cpu().double().numpy()
        filled = (scaler.inverse(filled01) - mean) / std
        notes = [f"filled with the TST completion of {p.model}"]
    else:
        from tsdiff_cli.resources import require_memory

        # K inpaintings of every row (float32), their float64 copy, the median and the two bands
        require_memory("--samples", p.samples * rows * len(wanted) * (4 + 8 * 4), f"{p.samples} inpaintings of {rows} rows",
                       "ask for fewer --samples, or split the file")
        out = inpaint(model, x01, p.samples, steps=p.steps, seed=p.seed, batch_size=p.batch, start_sigma=p.start_sigma or None,
                      callback=lambda d, n: update(f"inpainting ×{p.samples}", d, n))
        draws = (scaler.inverse(out[:, 0].cpu().double().numpy()) - mean) / std  # (K, R, F) z-space
        filled = np.median(draws, axis=0)
        notes = [f"filled with the median of {p.samples} diffusion inpaintings by {p.model}"]
    filled = np.where(np.isnan(gappy), filled, gappy)
    return _finish(s, table, perm, None, truth, gappy, hidden, filled, draws, std, mean, notes, slice(0, rows))


# --- shared ending --------------------------------------------------------------------------

def _hide_in(truth: np.ndarray, rate: float, seed: int, rows: slice) -> tuple[np.ndarray, np.ndarray]:
    """Hide ``rate`` of the observed values within ``rows`` (the rows the method can fill)."""
    gappy, hidden = truth.copy(), np.zeros(truth.shape, dtype=bool)
    if rate > 0:
        gappy[rows], hidden[rows] = hide(truth[rows], rate, seed)
    return gappy, hidden


def _finish(s: Settings, table: GappyTable, perm: list[int], run, truth, gappy, hidden, filled, draws, std, mean,
            notes: list[str], rows: slice, caveat: str | None = None) -> ImputeResult:
    """Write the filled file, or the holdout report into ``run`` (a new one when the method
    trained none)."""
    p = s.impute
    inverse = np.argsort(perm)
    original = filled * std + mean
    out_values = np.where(np.isnan(table.values), original[:, inverse], table.values)  # observed: exactly as read
    left = int(np.isnan(out_values).sum())
    report = None
    if p.holdout > 0:
        report = score_filling(filled[rows], truth[rows], hidden[rows], gappy[rows],
                               None if draws is None else draws[:, rows])
        report.update(holdout=p.holdout, seed=p.seed, source=str(p.emb_dir or p.model), input=str(table.path),
                      space="z-scored per column", columns=[table.columns[i] for i in perm])
        if caveat:
            report["note"] = caveat
            notes.append(f"note: {caveat}")
        scores = {**report["method"], **{f"{b}_{k}": v for b, m in report["baselines"].items() for k, v in m.items()}}
        if run is None:
            run = Run.create(p.runs_dir, "impute", Path(str(p.model)).resolve().name, to_toml(s), latest=False)
            with run.lifecycle("impute"):
                run.begin(f"tsdiff {__version__} impute: judging {p.model} on {table.path}")
                run.log("eval", "impute", 0, 0, **scores)
                run.write_report(report)
        else:  # inside the training run's lifecycle
            run.log("eval", "impute", run.status.get("step", 0), run.status.get("epoch", 0), **scores)
            run.write_report(report)
        output = None
    else:
        bands = None
        if draws is not None:
            lo, hi = np.quantile(draws, [0.05, 0.95], axis=0) * std + mean
            gaps = np.isnan(table.values)
            bands = {"q05": np.where(gaps, lo[:, inverse], table.values), "q95": np.where(gaps, hi[:, inverse], table.values)}
        output = write_filled(p.output, table, out_values, bands)
    filled_count = int(np.isnan(table.values).sum()) - left if p.holdout == 0 else int(hidden.sum())
    return ImputeResult(output, None if run is None else run.path, filled_count, left, report, notes)


def judge_files(real: Path, gaps: Path, imputed: Path) -> dict:
    """Score a filled table against the complete one where the table with gaps was missing
    (``tsdiff evaluate`` imputation mode); z-space is set by the observed values of ``gaps``."""
    from tsdiff_cli.metrics.imputation import coverage

    g = read_gappy(gaps, given_as="--gaps")
    t = read_gappy(real, g.columns, g.time_column, given_as="--real")
    frame = read_gappy(imputed, g.columns, g.time_column, given_as="--imputed")
    for other in (t, frame):
        if other.values.shape[0] != g.values.shape[0]:
            raise UserError(other.path, f"has {other.values.shape[0]} rows, {g.path} has {g.values.shape[0]}",
                            "compare tables of the same rows")
    mask = np.isnan(g.values) & ~np.isnan(t.values)
    if not mask.any():
        raise UserError(g.path, f"has no missing value that {t.path} knows", "nothing to score; check the files")
    unfilled = mask & np.isnan(frame.values)
    if unfilled.any():
        raise UserError(imputed, f"leaves {int(unfilled.sum())} of the scored values missing",
                        "fill every gap (or score only what was filled)")
    mean, std = _zscore(g.values, slice(0, g.values.shape[0]), str(g.path), g.columns)
    z = lambda v: (v - mean) / std  # noqa: E731
    report = score_filling(z(frame.values), z(t.values), mask, z(g.values))
    bands = [f"{c}_{q}" for q in ("q05", "q95") for c in g.columns]
    if all(b in frame.frame.columns for b in bands):
        lo = frame.frame[bands[: len(g.columns)]].to_numpy(np.float64)
        hi = frame.frame[bands[len(g.columns):]].to_numpy(np.float64)
        report["method"]["coverage90"] = coverage(lo[mask], hi[mask], t.values[mask])
    report.update(real=str(real), gaps=str(gaps), imputed=str(imputed), space="z-scored per column (observed values of --gaps)",
                  columns=g.columns)
    return report
