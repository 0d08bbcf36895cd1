"""How many CPU threads torch uses, and how its OpenMP threads wait: set once per command,
before torch starts (this module imports no torch).

Two torch processes that each start one compute thread per core ask for twice the cores there
are; OpenMP threads that spin while waiting for each other then burn the other process's time.
On a 2-core machine two `tsdiff sample` side by side each took 3.25× their solo time (median
of two tries; 4.4× in a single one), both processes busy-waiting; with a short spin before
sleeping, 1.9× (benchmarks/shared_cpu.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: GNU OpenMP's busy-wait before a waiting thread sleeps, unless the user set OMP_WAIT_POLICY or
#: GOMP_SPINCOUNT: long enough that one process alone keeps its speed, short enough that two
#: sharing the cores do not spin through each other's time slices (benchmarks/shared_cpu.py).
SPIN_COUNT = "5000"


def physical_cores() -> int:
    """The physical cores this process may run on (hyper-threads counted once)."""
    try:
        cpus = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return os.cpu_count() or 1
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(), (topology / "core_id").read_text().strip()))
        except OSError:
            cores.add(("cpu", str(cpu)))
    return max(1, len(cores))


def configure(threads: int | None = None) -> int:
    """Set torch's CPU threads: ``threads`` when given; else, for one of N processes torchrun
    started on this machine, the physical cores ÷ N (torchrun sets ``OMP_NUM_THREADS=1`` for every
    worker, which would leave cores idle, so it is not read there); else ``OMP_NUM_THREADS`` when
    set, else one per physical core. Also OpenMP's waiting (:data:`SPIN_COUNT`). Returns the count."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    local = os.environ.get("LOCAL_WORLD_SIZE", "")
    if threads:
        n = threads
    elif local.isdigit() and int(local) > 1:
        n = max(1, physical_cores() // int(local))
    else:
        n = int(env) if env.isdigit() and int(env) > 0 else physical_cores()
    os.environ["OMP_NUM_THREADS"] = str(n)
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT
    torch = sys.modules.get("torch")
    if torch is not None:  # already started (tests, a notebook): its thread pool follows
        torch.set_num_threads(n)
    return n
