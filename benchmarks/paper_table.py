"""The paper's generation table on this machine: train the CPU preset of each dataset at each
missing rate, evaluate with the full protocol on fresh seeds, print it beside ImagenI2R's and
KoVAE's published numbers (shared/DESIGN.md, from arXiv 2510.06699).

    python benchmarks/paper_table.py [--cells stock:30,energy:30,sine:30,etth1:30]
                                     [--minutes 15] [--energy-minutes 30] [--seeds 0 1 2]
                                     [--workdir DIR] [--output table.json] [--device cpu]

Cells run one at a time (never side by side: they share the cores). `--device cuda` trains and
evaluates on a GPU (the budgets are then GPU-minutes; the table is not the CPU table). Each trains
`config/<dataset>.toml` with `[data] missing_rate` set to the cell's rate, for its budget in
minutes (the run's selection reads only observed values), then `tsdiff evaluate RUN --seed S`
for every S in --seeds: as many windows as the dataset has, sampled with seeds that selection
never used, scored with the full protocol (10 discriminative / predictive repeats, 5
Context-FID repeats) against the benchmark's ground truth. A cell's figure is the median over
the seeds of each evaluation's mean, with the seeds' range and the mean std over repeats.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from tsdiff_cli.jobs.evaluate import evaluate_run
from tsdiff_cli.jobs.generate import train_generator
from tsdiff_cli.settings import load_settings

REPO = Path(__file__).resolve().parents[1]
DATASETS = ("sine", "stock", "energy", "etth1")
RATES = (30, 50, 70)
METRICS = ("discriminative", "predictive", "context_fid", "correlation")
# shared/DESIGN.md, "Paper results, seq_len 24, missing 30 / 50 / 70 %"
PAPER_DISC = {"sine": (.013, .014, .008), "stock": (.007, .007, .010), "energy": (.048, .065, .128),
              "etth1": (.020, .032, .058)}
KOVAE_DISC = {"sine": (.035, .030, .065), "stock": (.162, .092, .101), "energy": (.280, .298, .392),
              "etth1": (.208, .188, .196)}
PAPER_PRED = {"sine": (.070, .068, .069), "stock": (.012, .012, .012), "energy": (.047, .047, .047),
              "etth1": (.052, .053, .054)}


def parse_cells(text: str) -> list[tuple[str, int]]:
    cells = []
    for item in text.split(","):
        name, _, rate = item.strip().partition(":")
        if name not in DATASETS or not rate.isdigit() or int(rate) not in RATES:
            raise SystemExit(f"--cells: {item!r} is not DATASET:RATE with DATASET in {DATASETS} and RATE in {RATES}")
        cells.append((name, int(rate)))
    return cells


def run_cell(name: str, rate: int, minutes: float, seeds: list[int], workdir: Path, device: str = "cpu") -> dict:
    overrides = {"data": {"missing_rate": rate / 100, "output": workdir / f"{name}-{rate}.h5"},
                 "train": {"max_minutes": minutes, "max_steps": 0, "runs_dir": workdir / "runs", "device": device},
                 "eval": {"device": device}}
    settings = load_settings(REPO / "config" / f"{name}.toml", overrides)
    start = time.monotonic()
    trained = train_generator(settings, f"{name}{rate}")
    train_minutes = (time.monotonic() - start) / 60
    print(f"{name} {rate} %: trained {trained.steps} steps in {train_minutes:.1f} min ({trained.reason}); "
          f"kept selection score {trained.kept_disc} (best seen {trained.best_disc})", flush=True)
    evaluations = []
    for seed in seeds:
        start = time.monotonic()
        report = evaluate_run(trained.run, settings, seed=seed, output=trained.run / f"report-seed{seed}.json").report
        m = report["metrics"]
        print(f"  seed {seed} (samples {report['seeds']['sample']}, metrics {report['seeds']['metric']}): "
              + ", ".join(f"{k} {m[k]['mean']:.4f} ± {m[k]['std']:.4f}" for k in METRICS if k in m)
              + f" [{(time.monotonic() - start) / 60:.1f} min]", flush=True)
        evaluations.append(report)
    summary = {}
    for k in METRICS:
        means = [r["metrics"][k]["mean"] for r in evaluations if k in r["metrics"]]
        stds = [r["metrics"][k]["std"] for r in evaluations if k in r["metrics"]]
        if means:
            summary[k] = {"median": statistics.median(means), "min": min(means), "max": max(means),
                          "repeat_std": statistics.fmean(stds), "per_seed": means}
    return {"dataset": name, "rate": rate, "minutes": minutes, "run": str(trained.run), "steps": trained.steps,
            "train_minutes": round(train_minutes, 2), "seeds": [r["seeds"] for r in evaluations], "metrics": summary}


def table(cells: list[dict]) -> str:
    lines = ["| cell | budget | steps | disc. (median over seeds [range], ± repeats) | ImagenI2R | KoVAE | "
             "pred. | ImagenI2R pred. | Context-FID | corr. |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        i, m = RATES.index(c["rate"]), c["metrics"]

        def fmt(k, m=m):
            if k not in m:
                return "—"
            v = m[k]
            return f"{v['median']:.3f} [{v['min']:.3f}–{v['max']:.3f}] ± {v['repeat_std']:.3f}"

        lines.append(f"| {c['dataset']} {c['rate']} % | {c['minutes']:g} min | {c['steps']} | {fmt('discriminative')} | "
                     f"{PAPER_DISC[c['dataset']][i]:.3f} | {KOVAE_DISC[c['dataset']][i]:.3f} | {fmt('predictive')} | "
                     f"{PAPER_PRED[c['dataset']][i]:.3f} | {fmt('context_fid')} | {fmt('correlation')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", default=",".join(f"{d}:{r}" for d in DATASETS for r in RATES),
                    help="comma-separated DATASET:RATE (default: all twelve)")
    ap.add_argument("--minutes", type=float, default=15.0, help="minutes of training per cell")
    ap.add_argument("--energy-minutes", type=float, default=30.0, help="minutes of training per energy cell")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="where to train and evaluate (default cpu: the CPU presets' table)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="evaluation seeds (at least 3 for a table)")
    ap.add_argument("--workdir", type=Path, help="where datasets and runs go (default: a temporary folder)")
    ap.add_argument("--output", type=Path, help="write every figure as JSON here")
    args = ap.parse_args()
    cells = parse_cells(args.cells)
    where = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(f"{time.strftime('%Y-%m-%d')}, {where}, {torch.get_num_threads()} "
          f"threads, torch {torch.__version__}; cells {args.cells}; evaluation seeds {args.seeds}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        results = [run_cell(name, rate, args.energy_minutes if name == "energy" else args.minutes, args.seeds, workdir,
                            args.device) for name, rate in cells]
    print(table(results))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
