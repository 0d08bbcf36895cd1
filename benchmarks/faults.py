"""Kill -9 at random moments of a short training, resume, and check what a user would find.

Each trial starts `tsdiff train` on a small generator (stock, 30 % missing, a checkpoint every
~1.2 s so that some kills land in the middle of a checkpoint write), kills it with SIGKILL after a
random 2–12 s, counts what the dead process left behind (temporary files, checkpoint halves),
resumes it with `tsdiff train --resume`, and samples from the finished run.

    python benchmarks/faults.py [--trials 10] [--seed 0]

Prints per trial: when it was killed, the last step the run had logged before the kill, the step
the resume continued from (steps lost = the difference, against the steps one checkpoint
interval holds), the leftovers, whether the resume finished and whether samples could be read.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
[data]
source = "stock"
missing_rate = 0.3
reverse_rows = true
val_fraction = 0.8
test_fraction = 0.0
output = "data/faults.h5"
[tst]
d_model = 16
heads = 2
layers = 1
ff = 32
decoder_hidden = 16
epochs = 20
[model]
channels = 16
channel_mult = [1, 2]
num_blocks = 1
attn_resolutions = [4]
[train]
epochs = 10000
batch_size = 64
eval_every = 0
max_steps = {max_steps}
checkpoint_minutes = 0.02
device = "cpu"
[sample]
steps = 4
"""


def tsdiff(*args: str, cwd: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tsdiff_cli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def leftovers(run: Path) -> list[str]:
    ckpts = run / "checkpoints"
    found = [p.name for p in list(run.glob(".*.tmp")) + list(ckpts.glob(".*.tmp"))]
    weights = {p.stem for p in ckpts.glob("ckpt-*.safetensors")}
    sidecars = {p.stem for p in ckpts.glob("ckpt-*.json")}
    return found + sorted(f"{n} (half)" for n in weights ^ sidecars)


def train_rows(run: Path) -> list[dict]:
    rows = []
    try:
        for line in (run / "metrics.jsonl").read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut by the kill
            if isinstance(row, dict) and row.get("kind") == "train":
                rows.append(row)
    except OSError:
        pass
    return rows


def pace(rows: list[dict]) -> float:
    """Steps per second over the last two seconds of logged rows (the pace at the kill)."""
    if len(rows) < 2:
        return 0.0
    last = rows[-1]
    early = next((r for r in rows if r["time"] >= last["time"] - 2.0), rows[0])
    if early is last:
        early = rows[-2]
    return (last["step"] - early["step"]) / max(last["time"] - early["time"], 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    ap.add_argument("--max-steps", type=int, default=600, help="training length (steps) of every run")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="tsdiff-faults-"))
    (work / "faults.toml").write_text(CONFIG.format(max_steps=args.max_steps))
    assert tsdiff("preprocess", "faults.toml", "-q", cwd=work).wait() == 0

    print(f"{'trial':>5} {'killed at':>9} {'logged':>7} {'resumed from':>12} {'lost':>5} {'interval':>8} "
          f"{'leftovers':<34} {'resumed':>8} {'samples':>8}")
    rows = []
    for trial in range(args.trials):
        before = set((work / "runs").glob("*-train-*")) if (work / "runs").exists() else set()
        proc = tsdiff("train", "faults.toml", "-q", cwd=work)
        wait = rng.uniform(2.0, 12.0)
        time.sleep(wait)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        new = sorted(set((work / "runs").glob("*-train-*")) - before)
        if not new:
            print(f"{trial:>5} killed before the run folder was made")
            continue
        run = new[-1]
        rows_before = train_rows(run)
        logged = rows_before[-1]["step"] if rows_before else 0
        found = leftovers(run)
        resume = tsdiff("train", "--resume", str(run), "-q", cwd=work)
        _, err = resume.communicate()
        ok = resume.returncode == 0 and json.loads((run / "status.json").read_text()).get("state") == "finished"
        found_after = re.findall(r"resumed from step (\d+)", (run / "log.txt").read_text())
        resumed_from = int(found_after[0]) if found_after else None
        sample = tsdiff("sample", str(run), "-n", "8", "-o", f"s{trial}.csv", "-q", cwd=work).wait() == 0
        readable = sample and (work / f"s{trial}.csv").is_file()
        interval = pace(rows_before) * 0.02 * 60  # steps per checkpoint interval, at the pace before the kill
        lost = None if resumed_from is None else max(0, logged - resumed_from)
        rows.append((ok, lost, interval, found, readable))
        shown = ", ".join(found) if found else "none"
        print(f"{trial:>5} {wait:>8.1f}s {logged:>7} {str(resumed_from):>12} {str(lost):>5} {interval:>8.0f} "
              f"{shown[:34]:<34} {str(ok):>8} {str(readable):>8}" + ("" if ok else f"  ({err.strip()[:80]})"), flush=True)
    resumed = sum(r[0] for r in rows)
    lost = [r[1] for r in rows if r[1] is not None]
    print(f"\nresumed {resumed}/{len(rows)}; steps lost: max {max(lost, default=0)} (a checkpoint interval holds about "
          f"{max((r[2] for r in rows), default=0):.0f} steps); leftovers found after the kill in {sum(bool(r[3]) for r in rows)} "
          f"trials, left after the resume: {sum(bool(leftovers(p)) for p in (work / 'runs').glob('*-train-*'))}; "
          f"samples readable {sum(r[4] for r in rows)}/{len(rows)}  (work folder {work})")


if __name__ == "__main__":
    main()
