"""Two `tsdiff sample` processes side by side against one alone, on this machine's cores.

On a 2-core machine two torch processes that each start one compute thread per core ask for
twice the cores there are; OpenMP threads that spin while they wait for each other then burn the
other process's time, and each slowed far more than twice (measured: 3.25×, 4.4× in one try). tsdiff sets its
thread count and OpenMP's waiting deliberately (README, "Threads"); this measures the result.

    python benchmarks/shared_cpu.py RUN [-n 2000] [--repeats 2] [--env NAME=VALUE ...]

Prints each solo time, each side-by-side time, and the ratio of the median side-by-side time to
the median solo time (target ≤ 2.5; 2.0 is two processes fairly sharing the cores). ``--env``
adds variables to both (e.g. OMP_NUM_THREADS=1, TSDIFF_THREADS=1, GOMP_SPINCOUNT=...) to compare settings.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _command(run: Path, n: int, out: Path) -> list[str]:
    tsdiff = Path(sys.executable).with_name("tsdiff")
    return [str(tsdiff), "sample", str(run), "-n", str(n), "-o", str(out), "-q"]


def _timed(commands: list[list[str]], env: dict[str, str]) -> list[float]:
    """Start every command at once; the wall seconds each took."""
    start = time.monotonic()
    procs = [subprocess.Popen(c, env=env) for c in commands]
    took = [0.0] * len(procs)
    pending = set(range(len(procs)))
    while pending:
        for i in list(pending):
            if procs[i].poll() is not None:
                if procs[i].returncode != 0:
                    raise SystemExit(f"{' '.join(commands[i])} failed with exit {procs[i].returncode}")
                took[i] = time.monotonic() - start
                pending.discard(i)
        time.sleep(0.05)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a trained run (e.g. runs/latest after `tsdiff train config/stock.toml`)")
    parser.add_argument("-n", type=int, default=2000, help="windows each process samples")
    parser.add_argument("--repeats", type=int, default=2, help="solo runs and side-by-side pairs, interleaved")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra environment for both")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TSDIFF_")}
    env.update(dict(item.split("=", 1) for item in args.env))
    print(f"cores: {os.cpu_count()}; extra environment: {args.env or 'none'}; {args.n} windows per process")
    solo, pair = [], []
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / f"{k}.npy" for k in range(2)]
        for r in range(args.repeats):
            solo += _timed([_command(args.run, args.n, outs[0])], env)
            pair += _timed([_command(args.run, args.n, o) for o in outs], env)
            print(f"repeat {r}: solo {solo[-1]:.1f} s, side by side {pair[-2]:.1f} / {pair[-1]:.1f} s", flush=True)
    ratio = statistics.median(pair) / statistics.median(solo)
    print(f"median solo {statistics.median(solo):.1f} s, side by side {statistics.median(pair):.1f} s: "
          f"ratio {ratio:.2f} (target ≤ 2.5)")


if __name__ == "__main__":
    main()
