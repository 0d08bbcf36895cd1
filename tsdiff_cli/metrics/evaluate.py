"""The evaluation of generated windows against real ones: every metric, repeated, into one report.

``evaluate_windows`` is the core of ``tsdiff evaluate`` (training selects with its own score,
:func:`tsdiff_cli.metrics.discriminative.gappy_discriminative_score`). The
``full`` profile is the papers' protocol (``[eval]`` plain keys); the ``quick`` profile uses the
``quick_*`` keys and its report says, in ``protocol``, that it is reduced and not comparable with
published tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tsdiff_cli import __version__
from tsdiff_cli.data.arrays import WindowSet, gap_free
from tsdiff_cli.errors import UserError
from tsdiff_cli.settings import EvalSettings

FULL_NOTE = "full protocol (TimeGAN / ImagenTime / ImagenI2R), comparable with published tables"
QUICK_NOTE = "QUICK profile: reduced repeats and iterations, for monitoring only; not comparable with published tables"
LABELS = {
    "discriminative": "discriminative score",
    "predictive": "predictive score",
    "context_fid": "Context-FID",
    "correlation": "correlation score",
}

#: callback(metric, done, total) for progress display.
MetricProgress = Callable[[str, int, int], None] | None


@dataclass
class Prepared:
    real: np.ndarray
    generated: np.ndarray
    scaling: str
    dropped_real: int


def prepare(real: WindowSet, generated: WindowSet) -> Prepared:
    """Check the two sets can be compared and bring them into the same [0, 1] space.

    When one side is a tsdiff dataset (scaled) and the other is in original units that are known
    (named columns, or samples that recorded their scaler), the latter is scaled with the
    dataset's scaler. When neither says its units and their ranges plainly differ, they are not
    compared. Otherwise, when the real values are not already within [0, 1], both sets are min-max
    scaled with the real data's per-feature range, the space the metrics were designed for.
    """
    r, g = real.values, generated.values
    if r.shape[1:] != g.shape[1:]:
        raise UserError(generated.path, f"windows have shape (T, F) = {g.shape[1:]} but the real windows "
                        f"({real.path}) have {r.shape[1:]}", "compare windows of the same length and features")
    if np.isnan(g).any():
        share = np.isnan(g).any(axis=(1, 2)).mean()
        raise UserError(generated.path, f"generated windows contain NaN ({100 * share:.1f} % of windows)",
                        "generated data must be complete; check the generator")
    for side, values in ((generated, g), (real, r)):
        if np.isinf(values).any():
            raise UserError(side.path, "windows contain infinite values", "replace them; the metrics need finite data")
    complete = gap_free(r)
    dropped = int((~complete).sum())
    r = r[complete]
    if len(r) < 4 or len(g) < 4:
        which, n = (real, len(r)) if len(r) < 4 else (generated, len(g))
        raise UserError(which.path, f"has {n} complete windows; at least 4 are needed", "give more windows")

    scaling = "as given"
    if real.scaled and generated.units_known:
        g = _to_scaled(generated, g, real)
        scaling = f"generated scaled with the real dataset's {real.scaler.kind} scaler"
    elif generated.scaled and real.units_known:
        r = _to_scaled(real, r, generated)
        scaling = f"real scaled with the generated dataset's {generated.scaler.kind} scaler"
    else:
        _check_same_units(real, r, generated, g)
    if r.min() < -1e-6 or r.max() > 1 + 1e-6:
        lo, hi = r.min(axis=(0, 1)), r.max(axis=(0, 1))
        span = np.where(hi > lo, hi - lo, 1.0)
        r, g = (r - lo) / span, (g - lo) / span
        scaling = "min-max scaled with the real data's per-feature range"
    return Prepared(np.ascontiguousarray(r, np.float32), np.ascontiguousarray(g, np.float32), scaling, dropped)


def _to_scaled(side: WindowSet, values: np.ndarray, dataset: WindowSet) -> np.ndarray:
    """``values`` of ``side`` (original units) in the scaled space of ``dataset``, columns matched by name."""
    if side.columns is not None and dataset.columns is not None and side.columns != dataset.columns:
        if sorted(side.columns) != sorted(dataset.columns):
            raise UserError(side.path, f"columns {side.columns} differ from the dataset's {dataset.columns}",
                            "compare the same variables")
        values = values[:, :, [side.columns.index(c) for c in dataset.columns]]
    return dataset.scaler.transform(values.astype(np.float64)).astype(np.float32)


def _check_same_units(real: WindowSet, r: np.ndarray, generated: WindowSet, g: np.ndarray) -> None:
    """Refuse two sets whose value ranges differ by orders of magnitude: they are in different
    units (e.g. a dataset scaled to [0, 1] against samples in prices), and every score would say
    so rather than anything about the generator."""
    (r_lo, r_hi), (g_lo, g_hi) = np.percentile(r, [1, 99]), np.percentile(g, [1, 99])
    span = max(r_hi - r_lo, 1e-12)
    ratio = (g_hi - g_lo) / span
    offset = abs((g_lo + g_hi) - (r_lo + r_hi)) / 2 / span
    if ratio > 20 or ratio < 0.05 or offset > 10:
        raise UserError(generated.path, f"values lie in {g_lo:.4g} … {g_hi:.4g} but the real windows ({real.path}) in "
                        f"{r_lo:.4g} … {r_hi:.4g} (1st–99th percentiles): they are not in the same units",
                        "compare the two in one space: `tsdiff sample` writes original units and records the scaler "
                        "(.h5, .npy.json, or named columns in .csv / .parquet), which a dataset file is then scaled back from")


def _summary(values: list[float]) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "values": [float(v) for v in arr]}


def evaluate_windows(
    real: np.ndarray,
    generated: np.ndarray,
    settings: EvalSettings,
    *,
    quick: bool = False,
    device: str = "cpu",
    progress: MetricProgress = None,
) -> dict:
    """All configured metrics on prepared (N, T, F) arrays in [0, 1]; returns the report dict."""
    import torch

    from tsdiff_cli.metrics import context_fid, correlation_score, discriminative_score, predictive_score

    previous_threads = torch.get_num_threads()
    threads = settings.threads or previous_threads
    torch.set_num_threads(threads)
    metrics = settings.quick_metrics if quick else settings.metrics
    repeats = settings.quick_repeats if quick else settings.repeats
    seed = settings.seed

    def cb(name):
        return None if progress is None else (lambda done, total: progress(name, done, total))

    results: dict[str, dict] = {}
    start_all = time.perf_counter()
    try:
        for name in metrics:
            start = time.perf_counter()
            if name == "discriminative":
                iters = settings.quick_disc_iterations if quick else settings.disc_iterations
                values = discriminative_score(real, generated, repeats=repeats, iterations=iters,
                                              batch_size=settings.batch_size, seed=seed, device=device, callback=cb(name))
                extra = {"repeats": repeats, "iterations": iters, "batch_size": settings.batch_size}
            elif name == "predictive":
                iters = settings.quick_pred_iterations if quick else settings.pred_iterations
                values = predictive_score(real, generated, repeats=repeats, iterations=iters,
                                          batch_size=settings.batch_size, seed=seed, device=device, callback=cb(name))
                extra = {"repeats": repeats, "iterations": iters, "batch_size": settings.batch_size}
            elif name == "context_fid":
                reps = min(repeats, settings.fid_repeats)
                iters = settings.quick_fid_iterations if quick else settings.fid_iterations
                values = context_fid(real, generated, repeats=reps, iterations=iters, seed=seed, device=device,
                                     callback=cb(name))
                from tsdiff_cli.metrics.ts2vec import default_iterations

                extra = {"repeats": reps, "iterations": iters or default_iterations(real.size), "batch_size": 8}
            else:
                values = correlation_score(real, generated, subsets=settings.corr_subsets, seed=seed)
                extra = {"repeats": settings.corr_subsets}
                if progress is not None:
                    progress(name, 1, 1)
            results[name] = {**_summary(values), **extra, "seconds": round(time.perf_counter() - start, 3)}
    finally:
        torch.set_num_threads(previous_threads)
    protocol = QUICK_NOTE if quick else FULL_NOTE
    # The papers score as many generated windows as there are real ones; with unequal sets the
    # test split is mostly one class, and the discriminative score moves with the ratio (measured:
    # a model scoring 0.105 on 3661 vs 3661 scored 0.015–0.18 on 1000 generated vs 3661 real).
    equal = min(len(real), len(generated)) >= 0.99 * max(len(real), len(generated))
    if not quick and not equal:
        protocol = (f"full protocol, but on {len(generated)} generated vs {len(real)} real windows: the papers "
                    "score as many generated as real, so the discriminative score is not comparable with their tables")
    return {
        "tsdiff_version": __version__,
        "profile": "quick" if quick else "full",
        "protocol": protocol,
        "seed": seed,
        "threads": threads,
        "device": str(device),
        "sizes": {"real": int(len(real)), "generated": int(len(generated)), "seq_len": int(real.shape[1]),
                  "features": int(real.shape[2])},
        "metrics": results,
        "seconds": round(time.perf_counter() - start_all, 3),
    }
