"""Data-parallel training speed: 1 process against N torchrun processes on this machine.

    python benchmarks/distributed_speed.py [--procs 1 2] [--steps 300] [--jobs generator classify]

For each job and process count, trains the job's CPU preset through the CLI (``tsdiff train
config/stock.toml``; ``tsdiff classify train config/classify-japanese-vowels.toml``) for
``--steps`` optimizer steps, under ``torchrun --standalone --nproc-per-node N`` when N > 1, with
selection / test scoring off, and reads the steady training speed from the run's metrics (the
``train`` rows' timestamps after the first tenth of the steps: start-up, data and the TST
warm-up are not counted). Threads per process: tsdiff's default under torchrun (physical cores ÷
N) unless ``--threads``. Prints steps/s, samples/s (global batch × steps/s), the speed-up over
one process on the same cores, and the scaling efficiency (speed-up ÷ N). Run it on an otherwise
idle machine, one benchmark at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOBS = {
    # command, preset, settings section, phase whose steps are timed, environment for a short run
    "generator": (["train"], "config/stock.toml", "TRAIN", "diffusion",
                  {"TSDIFF_TRAIN__EVAL_EVERY": "0", "TSDIFF_TST__MAX_STEPS": "20", "TSDIFF_TRAIN__MAX_MINUTES": "0"}),
    "classify": (["classify", "train"], "config/classify-japanese-vowels.toml", "CLASSIFY", "train",
                 {"TSDIFF_CLASSIFY__MAX_MINUTES": "0", "TSDIFF_CLASSIFY__EPOCHS": "1000",
                  "TSDIFF_CLASSIFY__PATIENCE": "0", "TSDIFF_CLASSIFY__SWA": "false"}),
}


def measure(job: str, procs: int, steps: int, threads: int | None, work: Path) -> dict:
    command, preset, section, phase, env = JOBS[job]
    runs = work / f"{job}-{procs}"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TSDIFF_")}
    environ.update(env)
    environ.update({f"TSDIFF_{section}__RUNS_DIR": str(runs), f"TSDIFF_{section}__MAX_STEPS": str(steps)})
    if job == "generator":
        environ["TSDIFF_DATA__OUTPUT"] = str(work / "stock.h5")
    if threads:
        environ["TSDIFF_THREADS"] = str(threads)
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"]
                if procs > 1 else [sys.executable])
    out = subprocess.run([*launcher, "-m", "tsdiff_cli", *command, str(ROOT / preset), "-q"], cwd=work, env=environ,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{job} × {procs} failed:\n{out.stderr[-3000:]}")
    run = next(p for p in runs.iterdir() if p.is_dir() and not p.is_symlink())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["kind"] == "train" and r["phase"] == phase]
    first = rows[0]["step"] + (rows[-1]["step"] - rows[0]["step"]) // 10
    rows = [r for r in rows if r["step"] >= first]
    rate = (rows[-1]["step"] - rows[0]["step"]) / (rows[-1]["time"] - rows[0]["time"])
    import tomllib

    cfg = tomllib.loads((run / "config.toml").read_text())
    global_batch = cfg["train" if job == "generator" else "classify"]["batch_size"]
    return {"job": job, "procs": procs, "steps_per_s": rate, "samples_per_s": rate * global_batch,
            "batch": global_batch, "timed_steps": rows[-1]["step"] - rows[0]["step"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=300, help="optimizer steps per run (all phases)")
    ap.add_argument("--jobs", nargs="+", choices=sorted(JOBS), default=["generator", "classify"])
    ap.add_argument("--threads", type=int, default=None, help="threads per process (default: tsdiff's)")
    args = ap.parse_args()
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs; threads per process: "
          f"{args.threads or 'physical cores ÷ processes'}")
    print(f"{'job':<10}{'procs':>6}{'batch':>7}{'steps/s':>10}{'samples/s':>11}{'speed-up':>10}{'efficiency':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        for job in args.jobs:
            base = None
            for n in args.procs:
                r = measure(job, n, args.steps, args.threads, Path(tmp))
                base = base or r
                speed = r["steps_per_s"] / base["steps_per_s"]
                print(f"{job:<10}{n:>6}{r['batch']:>7}{r['steps_per_s']:>10.2f}{r['samples_per_s']:>11.0f}"
                      f"{speed:>10.2f}{speed / (n / base['procs']):>12.2f}", flush=True)


if __name__ == "__main__":
    main()
