"""Data parallelism across processes and machines, the way PyTorch's ``torchrun`` launches it.

``torchrun --nproc-per-node N [--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT] -m
tsdiff_cli train CONFIG`` starts N processes per machine with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and ``MASTER_ADDR/PORT`` in their environment. :func:`join`
reads them and joins the process group (gloo on CPU, NCCL on CUDA); without them it returns the
one-process :data:`SINGLE` and touches nothing. What each part of a run does with a :class:`World`:

- the shared loop (:class:`tsdiff_cli.training.loop.Trainer`) wraps the trained module in
  ``DistributedDataParallel``, shards each global batch with a ``DistributedSampler``, and lets
  rank 0 decide budgets, validations and early stopping and broadcast them;
- jobs make their run directory with :func:`shared_run`: rank 0 creates it, the other ranks get
  a :class:`tsdiff_cli.runs.Follower` of it that reads but never writes;
- files every rank needs (a dataset that preprocess makes) are made by rank 0 first
  (:meth:`World.first`).

A collective that fails because another process died raises :class:`PeerLost` (a
:class:`UserError`: one line, exit 2, the run's status "failed" on rank 0) instead of hanging
(running out of memory inside one, e.g. in DDP's backward, stays an out-of-memory error);
from then on the process ignores SIGTERM (:func:`tsdiff_cli.runs.hold_sigterm`), which torchrun
sends the surviving workers, so that line and the status are not cut short.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from tsdiff_cli.errors import UserError

T = TypeVar("T")


class PeerLost(UserError):
    """A collective operation failed: another process of the job stopped."""


class Released(Exception):
    """Raised by the trainer on every rank but 0 once training is over: what a job does after
    training (scores, reports, output files) is rank 0's. The CLI exits 0 on it, silently."""


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one training."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the run's files."""
        return self.rank == 0

    def describe(self) -> str:
        """Words for the run's log: nothing for one process."""
        return "" if self.size == 1 else f" × {self.size} processes ({self.local_size} on this machine)"

    def collective(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``, a call that waits on the other processes; its failure is :class:`PeerLost`."""
        import torch
        import torch.distributed as dist

        try:
            return fn()
        except torch.OutOfMemoryError:
            raise  # this process's own failure (a RuntimeError too), not another's: report it as itself
        except (dist.DistError, RuntimeError) as exc:  # gloo reports a dead peer as a plain RuntimeError
            from tsdiff_cli.runs import hold_sigterm

            hold_sigterm()  # torchrun is about to SIGTERM this process: let it report first
            raise PeerLost(f"torchrun rank {self.rank}", f"{what} failed: another process of this job stopped "
                           f"({str(exc).splitlines()[0][:160]})",
                           "see the first error that job printed; `--resume RUN` continues from the last checkpoint") from None

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            self.collective("waiting for the other processes", dist.barrier)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any JSON-like object), on every rank."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value if self.main else None]
        self.collective("receiving rank 0's decision", lambda: dist.broadcast_object_list(box, src=0))
        return box[0]

    def agree(self, flags: list[int]) -> list[int]:
        """Each flag's maximum over the ranks (one small all-reduce)."""
        if self.size == 1:
            return flags
        import torch
        import torch.distributed as dist

        t = torch.tensor(flags, dtype=torch.int64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        self.collective("agreeing on whether to stop", lambda: dist.all_reduce(t, op=dist.ReduceOp.MAX))
        return [int(v) for v in t.cpu()]

    def first(self, make: Callable[[], T]) -> T:
        """``make()`` on rank 0, then (once it is done) on the others: for a file that the first
        call writes and later calls read, e.g. a dataset preprocess makes."""
        if self.size == 1:
            return make()
        if self.main:
            try:
                value = make()
            finally:
                self.barrier()
            return value
        self.barrier()
        return make()


SINGLE = World()


def from_env(environ: dict[str, str] | None = None) -> World:
    """The world torchrun describes in the environment (one process when it describes none)."""
    env = os.environ if environ is None else environ
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
        local_size = int(env.get("LOCAL_WORLD_SIZE", str(size)))
    except ValueError:
        raise UserError("WORLD_SIZE / RANK", "are not whole numbers", "launch with torchrun, or unset them") from None
    if size < 1 or not 0 <= rank < size:
        raise UserError("RANK", f"is {rank} in a world of {size}", "launch with torchrun, or unset RANK and WORLD_SIZE")
    return World(rank, size, local_rank, local_size)


def join(device) -> tuple[World, Any]:
    """Join the process group torchrun set up (once per process) and return the world and the
    device this rank trains on (``cuda:LOCAL_RANK`` for a CUDA device)."""
    import torch
    import torch.distributed as dist

    world = from_env()
    if world.size == 1:
        return SINGLE, device
    cuda = device.type == "cuda"
    if cuda:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:
            raise UserError("WORLD_SIZE", f"is {world.size} but MASTER_ADDR is not set",
                            "launch the processes with torchrun, which sets both")
        backend = "nccl" if cuda else "gloo"
        try:
            dist.init_process_group(backend, rank=world.rank, world_size=world.size,
                                    device_id=device if cuda else None)
        except (dist.DistError, RuntimeError, ValueError) as exc:
            raise UserError(f"torchrun rank {world.rank}", f"could not join the other processes "
                            f"({str(exc).splitlines()[0][:160]})",
                            "check --rdzv-endpoint / MASTER_ADDR and that every machine reaches it") from None
        atexit.register(_leave)
    return world, device


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # the others may be gone already: nothing is left to tidy
            pass


def shared_run(world: World, make: Callable[[], Any]):
    """The run directory of this training: ``make()`` (create or open it) on rank 0; the other
    ranks follow the same folder read-only. An error making it stops every rank with its text."""
    if world.size == 1:
        return make()
    from tsdiff_cli.runs import Follower

    if world.main:
        try:
            run = make()
        except UserError as exc:
            world.broadcast(["error", exc.where, exc.problem, exc.fix])
            raise
        world.broadcast(["ok", str(run.path)])
        return run
    kind, *rest = world.broadcast(None)
    if kind == "error":
        raise UserError(*rest)
    return Follower(Path(rest[0]))
