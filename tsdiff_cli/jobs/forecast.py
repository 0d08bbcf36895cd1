"""Forecast: train the forecaster on one series through the shared training loop and judge it
on the test split beside the baselines (:func:`train_forecaster`), or forecast from a trained run
and the recent rows of a file (:func:`forecast_from_run`).

Evaluation follows DESIGN "Forecast": every test window (stride 1, nothing dropped), z-space
metrics, ProbTS scores on the original scale; the baselines are fitted on the training windows
and their Gaussian spread comes from the validation residuals.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tsdiff_cli import __version__
from tsdiff_cli.data.forecast import (ForecastSeries, ForecastWindows, calendar_freq, infer_freq, read_series, row_phase,
                                      split_borders)
from tsdiff_cli.errors import UserError
from tsdiff_cli.jobs import Update, no_update
from tsdiff_cli.metrics.forecast import forecast_scores, gaussian_scores
from tsdiff_cli.models.forecast_baselines import Ridge, residual_spread, seasonal_naive
from tsdiff_cli.models.forecaster import ForecastConfig, Forecaster
from tsdiff_cli.resources import require_memory
from tsdiff_cli.runs import Run, run_model
from tsdiff_cli.settings import Settings, to_toml
from tsdiff_cli.training.device import resolve_device
from tsdiff_cli.training.distributed import join, shared_run
from tsdiff_cli.training.loop import Budget, OnEval, OnStep, Trainer

FORECAST_COMMAND = "tsdiff forecast CONFIG"
QUANTILE_COLUMNS = {"q05": 0.05, "q25": 0.25, "q75": 0.75, "q95": 0.95}
RIDGE_TENSOR = "calibration.ridge_weights"  # stored beside the module's weights in model.safetensors
CALIBRATION_SEED = 7919  # added to [forecast] seed: calibration samples never repeat the test evaluation's


@dataclass
class TrainedForecaster:
    run: Path
    report: dict
    epochs: int
    minutes: float
    reason: str


def train_forecaster(s: Settings, config_name: str, *, update: Update = no_update, on_step: OnStep | None = None,
                     on_run: Callable[[Run], None] | None = None, resume: Path | None = None,
                     started: float | None = None, on_eval: OnEval | None = None) -> TrainedForecaster:
    """Train on ``[forecast] data`` (TSLib split) in a new run (or continue ``resume``), keep the
    epoch with the best validation loss, then score it and the baselines on the test windows.
    ``started`` (time.monotonic) is when the training budget began, by default when training does."""
    from tsdiff_cli.jobs.architectures import forecast_config
    from tsdiff_cli.training.forecast import ForecastTask

    p = s.forecast
    series = read_series(p.data, p.columns, p.time_column)
    rows, n_vars = series.values.shape
    borders = split_borders(series.path.stem if p.split == "auto" else series.path.name, rows, p.seq_len, p.pred_len, p.split)
    if p.cycle and series.times is None:
        raise UserError(series.path, f"has no date column, which [forecast] cycle = {p.cycle} needs to place rows in the cycle",
                        "name it with [forecast] time_column, or set [forecast] cycle = 0")
    train_rows = slice(*borders["train"])
    mean, std = series.values[train_rows].mean(0), series.values[train_rows].std(0)
    std = np.where(std > 0, std, 1.0)
    z = torch.tensor((series.values - mean) / std, dtype=torch.float32)
    freq = infer_freq(series.times) if series.times is not None else None
    t0 = series.times[0] if series.times is not None else None
    phase = torch.from_numpy(row_phase(series.times, t0, freq, p.cycle, rows))
    wins = {flag: ForecastWindows(z, b1, b2, p.seq_len, p.pred_len) for flag, (b1, b2) in borders.items()}
    # the test evaluation holds every sample of every test window (and a copy for the quantiles)
    require_memory("[forecast] samples", 2 * 4 * p.samples * len(wins["test"]) * p.pred_len * n_vars,
                   f"{p.samples} samples of {len(wins['test'])} test windows", "lower [forecast] samples")

    torch.manual_seed(p.seed)
    world, device = join(resolve_device(p.device))
    cfg = forecast_config(p, n_vars)
    model = Forecaster(cfg).to(device)
    ridge = Ridge().fit(*_all(wins["train"]))  # a baseline of the report, and the anchor of the calibration
    task = ForecastTask(model, wins, phase, p, device, _metadata(cfg, series, mean, std, freq, t0))
    run = shared_run(world, lambda: Run.open(resume) if resume is not None
                     else Run.create(p.runs_dir, "forecast", config_name, to_toml(s)))
    if on_run is not None and world.main:
        on_run(run)
    trainer = Trainer(task, run, seed=p.seed, grad_clip=p.grad_clip, budget=Budget(p.max_steps, p.max_minutes, started),
                      device=device, on_step=on_step, world=world, on_eval=on_eval)
    with run.lifecycle("forecast", resume_hint=f"tsdiff forecast --resume {run.path}"):
        if resume is not None:
            trainer.restore()  # before begin(): a run that cannot be resumed keeps its state
            run.adopt(s)
        how = f"resumed from step {trainer.pos.step}" if resume is not None else "started"
        run.begin(f"tsdiff {__version__} forecast {config_name}: {how} on {device}{world.describe()}")
        if series.filled:
            run.note(f"{series.filled} missing cells filled (last value carried forward, then first carried back)")
        fit = trainer.fit()
        run.note(f"training {fit.reason} after {fit.epochs} epochs, {fit.steps} steps, {fit.minutes:.1f} min")
        model.load_state_dict(load_forecaster(run.path)[0].state_dict())  # the kept (best) weights
        calibration = _calibrate(model, s, wins["val"], phase, ridge, update) if p.calibrate else None
        if calibration is not None:
            tensors, metadata = task.export(trainer.pos)
            run.save_model({**tensors, RIDGE_TENSOR: torch.from_numpy(ridge.weights)},
                           {**metadata, "calibration": json.dumps({k: calibration[k] for k in ("weight", "spread")})})
            run.note(f"calibrated on {calibration['windows']} validation windows: median weight {calibration['weight']:.3f} "
                     f"(ridge {1 - calibration['weight']:.3f}), spread × {calibration['spread']:.3f}")
        report = evaluate_forecaster(model, s, wins, phase, mean, std, ridge, update, calibration)
        report["training"] = {"epochs": fit.epochs, "steps": fit.steps, "minutes": round(fit.minutes, 2),
                              "reason": fit.reason, "best_val_loss": fit.best}
        run.write_report(report)
        run.log("eval", "forecast", fit.steps, fit.epochs, profile="test", **report["model"])
    return TrainedForecaster(run.path, report, fit.epochs, fit.minutes, fit.reason)


def _calibrate(model: Forecaster, s: Settings, val: ForecastWindows, phase: torch.Tensor, ridge: Ridge,
               update: Update) -> dict:
    """Weight and spread of :func:`recalibrate`, chosen on up to ``calibration_windows`` evenly
    spaced validation windows (samples drawn with a seed of their own, not the test evaluation's)."""
    from tsdiff_cli.metrics.forecast import choose_recalibration, interval_coverage, recalibrate

    p = s.forecast
    n = min(p.calibration_windows, len(val))
    pick = torch.from_numpy(np.unique(np.linspace(0, len(val) - 1, n).round().astype(np.int64)))
    draws, _ = _sample_all(model, val, phase, p.samples, p.steps, p.solver, p.sample_windows, p.seed + CALIBRATION_SEED,
                           update, "calibration on validation windows", subset=pick)
    x, y, _ = val.batch(pick)
    x, y = x.numpy(), y.numpy()
    anchor = ridge.predict(x)
    weight, spread = choose_recalibration(draws, anchor, y, 0.9)
    after = recalibrate(draws, anchor, weight, spread)
    median = np.median(draws, axis=0)
    return {"weight": weight, "spread": spread, "windows": len(pick), "seed": p.seed + CALIBRATION_SEED,
            "anchor": "linear ridge", "mse_median_before": float(np.mean((median - y) ** 2)),
            "mse_median_after": float(np.mean((np.median(after, axis=0) - y) ** 2)),
            "mse_anchor": float(np.mean((anchor - y) ** 2)),
            "coverage90_before": interval_coverage(draws, y, 0.9), "coverage90_after": interval_coverage(after, y, 0.9)}


def evaluate_forecaster(model: Forecaster, s: Settings, wins: dict[str, ForecastWindows], phase: torch.Tensor, mean: np.ndarray,
                        std: np.ndarray, ridge: Ridge, update: Update, calibration: dict | None = None) -> dict:
    """The test metrics of the model's samples (recalibrated as ``calibration`` says, and as
    drawn), its deterministic head and the baselines (``ridge``: fitted on the training windows)."""
    from tsdiff_cli.metrics.forecast import recalibrate

    p = s.forecast
    model.eval()
    t = time.monotonic()
    draws, det = _sample_all(model, wins["test"], phase, p.samples, p.steps, p.solver, p.sample_windows, p.seed, update,
                             "test forecasts")
    seconds = time.monotonic() - t
    x_te, y_te = _all(wins["test"])
    x_va, y_va = _all(wins["val"])
    raw = None
    if calibration is not None:
        raw = forecast_scores(draws, y_te, scale=(mean, std))
        draws = recalibrate(draws, ridge.predict(x_te), calibration["weight"], calibration["spread"])
    report = {"protocol": {"windows": len(wins["test"]), "seq_len": p.seq_len, "pred_len": p.pred_len,
                           "samples": p.samples, "steps": p.steps, "solver": p.solver, "space": "z (train StandardScaler)",
                           "sampling_seconds": round(seconds, 1)},
              "model": forecast_scores(draws, y_te, scale=(mean, std))}
    if calibration is not None:
        report["calibration"] = calibration
        report["model_as_drawn"] = raw
    det_val = _deterministic(model, wins["val"], phase)
    points = {"deterministic head": (det, det_val), "linear ridge": (ridge.predict(x_te), ridge.predict(x_va)),
              "seasonal naive": (seasonal_naive(x_te, p.pred_len), seasonal_naive(x_va, p.pred_len))}
    report["baselines"] = {name: gaussian_scores(test, residual_spread(val, y_va), y_te, mean, std)
                           for name, (test, val) in points.items()}
    # what settings may be chosen on: the validation windows' MSE (z-space) of each point forecast
    report["validation"] = {"windows": len(wins["val"]),
                            **{f"mse {name}": float(np.mean((val - y_va) ** 2)) for name, (_, val) in points.items()}}
    return report


def _deterministic(model: Forecaster, windows: ForecastWindows, phase: torch.Tensor) -> np.ndarray:
    device = next(model.parameters()).device
    outs = []
    for i in range(0, len(windows), 1024):
        x, _, st = windows.batch(torch.arange(i, min(i + 1024, len(windows))))
        outs.append(model.deterministic(x.to(device), phase[st].to(device)).float().cpu().numpy())
    return np.concatenate(outs)


METRIC_LABELS = (("mse_median", "MSE med"), ("mae_median", "MAE med"), ("mse_mean", "MSE mean"), ("crps", "CRPS"),
                 ("crps_probts", "CRPS ProbTS"), ("nmae_probts", "NMAE"), ("coverage50", "cov 50%"), ("coverage90", "cov 90%"))


def format_forecast_report(report: dict) -> str:
    """The model and the baselines side by side, one row each."""
    rows = [("tsdiff forecaster", report["model"])] + [(f"{k} + Gaussian", v) for k, v in report["baselines"].items()]
    width = max(len(name) for name, _ in rows)
    head = " " * width + "  " + "  ".join(f"{label:>11}" for _, label in METRIC_LABELS)
    lines = [head] + [f"{name:<{width}}  " + "  ".join(f"{vals[key]:>11.4f}" for key, _ in METRIC_LABELS) for name, vals in rows]
    pr = report["protocol"]
    lines.append(f"ETTh1-style protocol: {pr['windows']} test windows, {pr['seq_len']}→{pr['pred_len']}, {pr['samples']} samples, "
                 f"{pr['steps']} {pr['solver']} steps ({pr['sampling_seconds']} s); errors and CRPS in z-space, "
                 "CRPS ProbTS / NMAE on the original scale ÷ Σ|y|")
    c = report.get("calibration")
    if c:
        lines.append(f"samples recalibrated on {c['windows']} validation windows: median weight {c['weight']:.3f} against "
                     f"the ridge, spread × {c['spread']:.3f} (validation MSE {c['mse_median_before']:.4f} → "
                     f"{c['mse_median_after']:.4f}, ridge {c['mse_anchor']:.4f}; 90 % coverage {c['coverage90_before']:.3f} → "
                     f"{c['coverage90_after']:.3f}); as drawn on test: MSE {report['model_as_drawn']['mse_median']:.4f}, "
                     f"coverage {report['model_as_drawn']['coverage90']:.3f}")
    return "\n".join(lines)


def _sample_all(model: Forecaster, windows: ForecastWindows, phase: torch.Tensor, samples: int, steps: int, solver: str,
                per_batch: int, seed: int, update: Update, label: str,
                subset: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(samples (M, N, H, V), deterministic (N, H, V)) for every window (or the windows ``subset``),
    ``per_batch`` at a time."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    chosen = torch.arange(len(windows)) if subset is None else subset
    n = len(chosen)
    out = np.empty((samples, n, windows.pred_len, windows.series.shape[1]), dtype=np.float32)
    det = np.empty((n, windows.pred_len, windows.series.shape[1]), dtype=np.float32)
    for i in range(0, n, per_batch):
        idx = chosen[i:i + per_batch]
        x, _, start = windows.batch(idx)
        draws, point = model.sample(x.to(device), samples, steps, phase[start].to(device), generator=gen, solver=solver)
        out[:, i:i + len(idx)] = draws.float().cpu().numpy()
        det[i:i + len(idx)] = point.float().cpu().numpy()
        update(label, min(i + per_batch, n), n)
    return out, det


def _all(windows: ForecastWindows) -> tuple[np.ndarray, np.ndarray]:
    x, y, _ = windows.batch(torch.arange(len(windows)))
    return x.numpy(), y.numpy()


def _metadata(cfg: ForecastConfig, series: ForecastSeries, mean: np.ndarray, std: np.ndarray, freq, t0) -> dict[str, str]:
    return {"format": "tsdiff-forecaster", "config": cfg.to_json(), "columns": json.dumps(series.columns),
            "time_column": json.dumps(series.time_column), "mean": json.dumps(mean.tolist()), "std": json.dumps(std.tolist()),
            "freq_ns": json.dumps(None if freq is None else int(freq / pd.Timedelta(1, "ns"))),
            "t0": json.dumps(None if t0 is None else t0.isoformat()), "tsdiff_version": __version__,
            "freq_alias": json.dumps(calendar_freq(series.times))}


# --- forecasting from a trained run ----------------------------------------------------------

def load_forecaster(run: Path, device: str | torch.device = "cpu") -> tuple[Forecaster, dict]:
    """The model of a forecast run and its metadata (columns, scaler, dates)."""
    tensors, meta = run_model(run, "forecaster", FORECAST_COMMAND)
    try:
        ridge = tensors.pop(RIDGE_TENSOR, None)
        model = Forecaster(ForecastConfig.from_json(meta["config"]))
        model.load_state_dict(tensors)
        freq_ns, t0 = json.loads(meta["freq_ns"]), json.loads(meta["t0"])
        info = {"columns": json.loads(meta["columns"]), "time_column": json.loads(meta["time_column"]),
                "mean": np.array(json.loads(meta["mean"])), "std": np.array(json.loads(meta["std"])),
                "freq": None if freq_ns is None else pd.Timedelta(freq_ns, unit="ns"),
                "freq_alias": json.loads(meta.get("freq_alias", "null")),
                "t0": None if t0 is None else pd.Timestamp(t0),
                "calibration": json.loads(meta.get("calibration", "null")),  # None: not calibrated
                "ridge": None if ridge is None else Ridge(weights=ridge.double().numpy())}
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(run, f"does not hold a forecaster this tsdiff can read ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:120]})", "train again with this version") from None
    return model.to(device).eval(), info


def _check_rhythm(where: Path, times: pd.DatetimeIndex, info: dict) -> None:
    """The lookback's dates must follow the training data's rhythm with no row missing: the model
    reads rows, not times, and places them in its cycle by date."""
    alias = info.get("freq_alias")
    expected = pd.date_range(times[0], periods=len(times), freq=alias or info["freq"])
    if (times.tz is None) != (expected.tz is None) or not (times == expected).all():
        k = int(np.flatnonzero(times != expected)[0]) if len(times) == len(expected) else 0
        rhythm = alias or str(info["freq"])
        raise UserError(where, f"the last {len(times)} rows are not one every {rhythm} as in the training data "
                        f"(row {k + 1} of them is {times[k]}, expected {expected[k]})",
                        "give consecutive rows at the training frequency (fill missing rows with empty values)")


@dataclass
class ForecastOutput:
    output: Path
    all_samples: Path | None
    filled: int
    start: object  # the first forecast date (or row number)


def forecast_from_run(run: Path, input: Path, output: Path, samples: int, steps: int, seed: int, solver: str = "euler",
                      all_samples: Path | None = None, device: str = "auto") -> ForecastOutput:
    """Forecast ``pred_len`` rows after the last row of ``input`` with the model of ``run``."""
    from tsdiff_cli.atomic import atomic_output, ensure_writable

    if samples < 1:
        raise UserError("--samples", f"must be at least 1 (got {samples})", "give --samples 100 for quantiles")
    if steps < 1:
        raise UserError("--steps", f"must be at least 1 (got {steps})", "give --steps 5")
    output = Path(output)
    if output.suffix.lower() not in (".csv", ".parquet", ".pq"):
        raise UserError(output, "unknown output type", "use .csv or .parquet")
    if all_samples is not None and Path(all_samples).suffix.lower() not in (".h5", ".hdf5"):
        raise UserError(all_samples, "--all-samples writes HDF5", "name a .h5 file")
    ensure_writable(output, "output")
    if all_samples is not None:
        ensure_writable(Path(all_samples), "--all-samples")
    model, info = load_forecaster(run, resolve_device(device))
    cfg = model.c
    columns, time_column = info["columns"], info["time_column"]
    from tsdiff_cli.data.sources import read_frame

    frame = read_frame(Path(input), "--input")
    header = list(frame.columns)
    missing = [c for c in columns if c not in header]
    if missing:
        raise UserError(input, f"columns differ from the training run's (lacks {', '.join(map(repr, missing))})",
                        f"give the columns {', '.join(columns)}" + (f" and the date column '{time_column}'" if time_column else ""))
    if time_column is not None and time_column not in header:
        raise UserError(input, f"has no date column '{time_column}', which the model was trained with",
                        "keep the date column of the training data")
    series = read_series(input, columns, time_column, where="the input's", frame=frame)
    if len(series.values) < cfg.seq_len:
        raise UserError(input, f"has {len(series.values)} rows; the model reads the last seq_len = {cfg.seq_len}",
                        f"give at least {cfg.seq_len} rows")
    values = series.values[-cfg.seq_len:]
    lookback_missing = int(series.missing[-cfg.seq_len:].sum())
    x = torch.tensor((values - info["mean"]) / info["std"], dtype=torch.float32)[None]
    times = series.times[-cfg.seq_len:] if series.times is not None else None
    freq = info["freq"] or (infer_freq(series.times) if series.times is not None else None)
    if times is not None and info["freq"] is not None:
        _check_rhythm(input, times, info)
    phase = torch.from_numpy(row_phase(times, info["t0"], freq, cfg.cycle, cfg.seq_len)[:1])
    device_ = next(model.parameters()).device
    gen = torch.Generator(device=device_).manual_seed(seed)
    require_memory("--samples", 8 * 4 * samples * cfg.pred_len * cfg.n_vars, f"{samples} samples",
                   "ask for fewer --samples")
    draws, _ = model.sample(x.to(device_), samples, steps, phase.to(device_), generator=gen, solver=solver)
    draws = draws[:, 0].float().cpu().numpy()  # (K, H, V) z-space
    if info["calibration"] is not None and info["ridge"] is not None:
        from tsdiff_cli.metrics.forecast import recalibrate

        c = info["calibration"]
        draws = recalibrate(draws[:, None], info["ridge"].predict(x.numpy()), c["weight"], c["spread"])[:, 0]
    draws = draws * info["std"] + info["mean"]  # original units
    if times is not None:
        step = pd.tseries.frequencies.to_offset(info["freq_alias"]) if info.get("freq_alias") else freq
        future = pd.date_range(times[-1] + step, periods=cfg.pred_len, freq=step)
        index = {time_column or series.time_column: future.strftime("%Y-%m-%d %H:%M:%S") if (future.second == 0).all() else future.astype(str)}
        start = future[0]
    else:
        index = {"step": np.arange(1, cfg.pred_len + 1)}
        start = 1
    table = dict(index)
    stats = {"mean": draws.mean(0), "median": np.median(draws, axis=0)}
    stats.update({name: np.quantile(draws, q, axis=0) for name, q in QUANTILE_COLUMNS.items()})
    for j, name in enumerate(columns):
        for key, arr in stats.items():
            table[f"{name}_{key}"] = arr[:, j]
    frame = pd.DataFrame(table)
    if all_samples is not None:  # first, so that a failure here leaves no forecast file either
        import h5py

        with atomic_output(Path(all_samples)) as tmp, h5py.File(tmp, "w") as f:
            f.create_dataset("samples", data=draws.astype(np.float32))
            f.attrs["columns"] = json.dumps(columns)
            f.attrs["dates"] = json.dumps([str(v) for v in next(iter(index.values()))])
            f.attrs["layout"] = "(sample, future row, column), original units"
    with atomic_output(output) as tmp:
        if output.suffix.lower() == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return ForecastOutput(output, None if all_samples is None else Path(all_samples), lookback_missing, start)
