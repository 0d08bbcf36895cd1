"""Conditional generation: train the conditional generator on labelled sets (and a numeric
condition on one regular series), then sweep the classifier-free guidance weight and print, per
weight: overall and per-class discriminative score, adherence (a real-trained judge's accuracy on
generated windows, for the class they were asked for), TSTR / TRTR on held-out real windows, and,
for the numeric case, corr / MAE between requested and judged value.

Choices: nothing is chosen here. Every run uses its preset unchanged; the guidance sweep is
printed whole. Held-out recordings (the test split of the preset: whole recordings, stratified)
are read only by the TSTR column. Samples are drawn with seeds derived for evaluation (never those
of selection) and printed.

    python benchmarks/conditional.py                              # everything: 3 seeds, 15 min per run
    python benchmarks/conditional.py --cells BasicMotions:0 --seeds 0 --minutes 15
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PRESETS = {"BasicMotions": "config/conditional-basicmotions.toml"}
JV_DATA = {"source": "JapaneseVowels_TRAIN", "condition_columns": ["speaker"], "seq_len": 12,
           "output": "data/conditional-jv.h5"}


def stock_with_volatility(workdir: Path, seq_len: int = 24) -> Path:
    """The shipped stock series with a numeric condition derived from the data: the volatility
    (standard deviation of daily log returns of Close) of the ``seq_len`` days each row starts;
    rows in the reversed order the loaders use."""
    import pandas as pd

    from tsdiff_cli.data.sources import shipped_path

    frame = pd.read_csv(shipped_path("stock")).iloc[::-1].reset_index(drop=True)
    returns = np.log(frame["Close"]).diff().shift(-1)
    frame["volatility"] = returns[::-1].rolling(seq_len - 1).std()[::-1].bfill().ffill()
    path = workdir / "stock_volatility.csv"
    frame.to_csv(path, index=False)
    return path


def settings_for(name: str, rate: float, seed: int, minutes: float, workdir: Path):
    from tsdiff_cli.settings import load_settings

    over = {"data": {"missing_rate": rate, "seed": seed}, "train": {"seed": seed, "max_minutes": minutes,
                                                                     "runs_dir": str(workdir / "runs")}}
    if name == "BasicMotions":
        base = PRESETS[name]
        over["data"]["output"] = str(workdir / f"bm-{rate}-{seed}.h5")
    elif name == "JapaneseVowels":
        base = PRESETS["BasicMotions"]  # the same network; the data of JapaneseVowels
        over["data"].update({**JV_DATA, "output": str(workdir / f"jv-{rate}-{seed}.h5")})
    else:  # stock with a numeric condition
        base = "config/stock.toml"
        over["data"].update({"source": str(stock_with_volatility(workdir)), "condition_columns": ["volatility"],
                             "reverse_rows": False, "output": str(workdir / f"stock-{rate}-{seed}.h5"),
                             "val_fraction": 0.1, "test_fraction": 0.1})
    return load_settings(REPO / base, over, environ={})


def sweep(run: Path, weights: list[float], seed: int, repeats: int, iterations: int) -> list[dict]:
    """``tsdiff evaluate RUN --sweep`` (its judges, splits and evaluation seeds of ``seed``) with the
    benchmark's discriminative repeats and iterations."""
    from tsdiff_cli.jobs.evaluate import guidance_sweep
    from tsdiff_cli.runs import run_settings

    rs = run_settings(run)
    settings = rs.model_copy(update={"eval": rs.eval.model_copy(update={
        "quick_repeats": repeats, "quick_disc_iterations": iterations})})
    return guidance_sweep(run, weights, settings, seed=seed, quick=True)


def median_rows(runs: list[dict], weights: list[float]) -> list[dict]:
    """The sweep's medians over seeds, in the shape of one seed's rows (for the plot)."""
    def m(values):
        v = [x for x in values if x is not None]
        return statistics.median(v) if v else None

    rows = []
    for i, w in enumerate(weights):
        at = [r["sweep"][i] for r in runs]
        row = {"guidance": w, "condition": at[0].get("condition"),
               **{k: m([a.get(k) for a in at]) for k in ("discriminative", "per_class_discriminative_mean",
                                                         "adherence", "tstr_ratio")}}
        if at[0].get("numeric"):
            name = next(iter(at[0]["numeric"]))
            row["numeric"] = {name: {"correlation": m([a["numeric"][name].get("correlation") for a in at])}}
        rows.append(row)
    return rows


def med(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "—"
    return f"{statistics.median(v):.3f} [{min(v):.3f}–{max(v):.3f}]" if len(v) > 1 else f"{v[0]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="+", default=["BasicMotions:0", "BasicMotions:0.3", "JapaneseVowels:0",
                                                   "JapaneseVowels:0.3", "stock:0.3"],
                    help="SET:MISSING_RATE cells (sets: BasicMotions, JapaneseVowels, stock)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--minutes", type=float, default=15.0, help="training budget per run (CPU minutes)")
    ap.add_argument("--guidance", nargs="+", type=float, default=[0.0, 1.0, 2.0, 4.0])
    ap.add_argument("--repeats", type=int, default=3, help="discriminative repeats per score")
    ap.add_argument("--iterations", type=int, default=2000, help="discriminator iterations (TimeGAN: 2000)")
    ap.add_argument("--output", type=Path, help="write every figure as JSON here; seeds already in an existing file "
                    "are read back instead of retrained, so seeds run as separate processes add up to one table")
    ap.add_argument("--workdir", type=Path, help="keep datasets and runs here (default: a temporary folder)")
    ap.add_argument("--plots", type=Path, help="write each cell's sweep (medians over seeds: disc. against "
                    "adherence, or numeric corr.) as CELL.png into this folder")
    args = ap.parse_args()

    from tsdiff_cli.jobs.generate import train_generator
    from tsdiff_cli.threads import configure

    configure()
    results: dict = {}
    if args.output and args.output.exists():
        results = json.loads(args.output.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"{time.strftime('%Y-%m-%d')}, seeds {args.seeds}, {args.minutes:g} min per run, guidance {args.guidance}")
        for cell in args.cells:
            name, rate = cell.split(":")
            for seed in args.seeds:
                kept = next((r for r in results.get(cell, []) if r["seed"] == seed), None)
                if kept is not None:
                    if [x["guidance"] for x in kept["sweep"]] != args.guidance or abs(kept["minutes"] - args.minutes) > 1:
                        sys.exit(f"{args.output}: {cell} seed {seed} was run with other guidance weights or minutes; "
                                 "use another --output or the same --guidance / --minutes")
                    print(f"  {cell} seed {seed}: read back from {args.output} ({kept['steps']} steps)", flush=True)
                    continue
                s = settings_for(name, float(rate), seed, args.minutes, workdir)
                t0 = time.monotonic()
                trained = train_generator(s, f"conditional-{name}")
                minutes = (time.monotonic() - t0) / 60
                rows = sweep(trained.run, args.guidance, seed, args.repeats, args.iterations)
                results.setdefault(cell, []).append({"seed": seed, "steps": trained.steps, "minutes": minutes,
                                                     "run": str(trained.run), "sweep": rows})
                print(f"  {cell} seed {seed}: {trained.steps} steps in {minutes:.1f} min", flush=True)
                if args.output:  # kept as each seed finishes: a stopped run keeps the seeds it finished
                    tmp_out = args.output.with_suffix(".tmp")
                    tmp_out.write_text(json.dumps(results, indent=1) + "\n")
                    tmp_out.replace(args.output)
            results[cell].sort(key=lambda r: r["seed"])
            done = [r["seed"] for r in results[cell]]
            print(f"\n{cell}: medians [min–max] over seeds {done}")
            print(f"{'w':>4}  {'disc.':>20}  {'per-class disc.':>20}  {'adherence':>20}  {'TSTR / TRTR':>20}  "
                  f"{'numeric corr':>20}")
            for i, w in enumerate(args.guidance):
                at = [r["sweep"][i] for r in results[cell]]
                num = [next(iter(a["numeric"].values())).get("correlation") if a.get("numeric") else None for a in at]
                print(f"{w:>4g}  {med([a['discriminative'] for a in at]):>20}  "
                      f"{med([a.get('per_class_discriminative_mean') for a in at]):>20}  "
                      f"{med([a.get('adherence') for a in at]):>20}  {med([a.get('tstr_ratio') for a in at]):>20}  "
                      f"{med(num):>20}", flush=True)
            if args.plots:
                from tsdiff_cli.metrics.plots import write_guidance_plot

                path = write_guidance_plot(median_rows(results[cell], args.guidance),
                                           args.plots / f"{cell.replace(':', '-')}.png",
                                           title=f"{cell}, medians over seeds {done}")
                print(f"plot: {path}")


if __name__ == "__main__":
    main()
