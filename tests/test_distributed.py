"""Data parallel training under torchrun: 2 gloo processes train the weights 1 process does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY, TINY_CLASSIFY
from tsdiff_cli.training.distributed import World, from_env
from tsdiff_cli.training.loop import Shard

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="this torch build has no gloo")

# complete data, no dropout and fp32: what remains per process (dropout masks, bf16 kernels chosen
# by batch size, masked losses normalised over each process's own observed values) is left out
GENERATOR = (TINY.replace("missing_rate = 0.3", "missing_rate = 0.0")
             .replace("[tst]\n", '[tst]\nnorm = "layer"\ndropout = 0.0\nmax_steps = 2\n')
             .replace("[model]\n", "[model]\ndropout = 0.0\n")
             .replace('device = "cpu"\n', 'device = "cpu"\nprecision = "fp32"\n'))

CLASSIFY = TINY_CLASSIFY + "dropout = 0.0\n"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TSDIFF_")
           and k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(extra)
    return env


def tsdiff(cwd: Path, *args: str, procs: int = 1, env: dict | None = None, wait: bool = True):
    """``tsdiff ARGS`` in a subprocess, under ``torchrun --standalone --nproc-per-node procs`` when procs > 1."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={procs}"] if procs > 1 else [sys.executable]
    cmd = [*launcher, "-m", "tsdiff_cli", *map(str, args)]
    if not wait:
        return subprocess.Popen(cmd, cwd=cwd, env=_env(**(env or {})), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, cwd=cwd, env=_env(**(env or {})), capture_output=True, text=True, timeout=600)


def _last_checkpoint(run: Path) -> dict[str, torch.Tensor]:
    return load_file(sorted((run / "checkpoints").glob("ckpt-*.safetensors"))[-1])


def _comparable(name: str, t: torch.Tensor) -> torch.Tensor:
    """The weights that training determines. Attention's key bias shifts every logit of a query
    alike, so softmax ignores it and its true gradient is 0: Adam turns the float noise there
    into steps of size lr, differently for any change in summation order. Its thirds for the
    queries and values are kept."""
    if name.endswith("in_proj_bias"):
        n = t.numel() // 3
        return torch.cat([t[:n], t[2 * n:]])
    return t.float()


def _weights_close(a: Path, b: Path, atol: float = 1e-5) -> None:
    wa, wb = _last_checkpoint(a), _last_checkpoint(b)
    keys = [k for k in wa if k.startswith(("model.", "ema.", "swa."))]
    assert keys and set(keys) <= set(wb)
    worst = max(((_comparable(k, wa[k]) - _comparable(k, wb[k])).abs().max().item(), k) for k in keys)
    assert worst[0] < atol, worst
    # and training moved them: equal weights are not just the shared initialisation
    init = [k for k in keys if k.startswith("model.") and wa[k].dtype.is_floating_point]
    assert any(not torch.equal(wa[k], wb[k]) or wa[k].abs().sum() > 0 for k in init)


def _runs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())


def test_shard_draws_for_the_global_batch_and_keeps_its_rows():
    whole = torch.rand((8, 3), generator=torch.Generator().manual_seed(1))
    parts = [Shard(r, 2).rand(4, torch.Generator().manual_seed(1), tail=(3,)) for r in range(2)]
    assert torch.equal(parts[0], whole[0::2]) and torch.equal(parts[1], whole[1::2])
    lead = Shard(1, 2).randn(2, torch.Generator().manual_seed(0), lead=(3,))
    assert torch.equal(lead, torch.randn((3, 4), generator=torch.Generator().manual_seed(0))[:, 1::2])
    assert torch.equal(Shard().rand(5, torch.Generator().manual_seed(2)), torch.rand(5, generator=torch.Generator().manual_seed(2)))


def test_world_comes_from_torchruns_environment():
    assert from_env({}).size == 1 and from_env({}).main
    w = from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert (w.rank, w.size, w.local_rank, w.local_size, w.main) == (3, 4, 1, 2, False)


def test_two_processes_train_the_generator_one_process_trains(tmp_path):
    # with a cooldown: the rate's factor is rank 0's, agreed by all ranks each step
    (tmp_path / "g.toml").write_text(GENERATOR.replace("[train]\n", "[train]\ncooldown = 0.5\n"))
    one = tsdiff(tmp_path, "train", "g.toml", "-q", env={"TSDIFF_TRAIN__RUNS_DIR": "one"})
    assert one.returncode == 0, one.stderr
    two = tsdiff(tmp_path, "train", "g.toml", procs=2, env={"TSDIFF_TRAIN__RUNS_DIR": "two"})
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("run: ") == 2  # rank 0 alone prints (its run at the start and the end)
    [a], [b] = _runs(tmp_path / "one"), _runs(tmp_path / "two")
    _weights_close(a, b)
    status = json.loads((b / "status.json").read_text())
    assert status["state"] == "finished" and status["step"] == json.loads((a / "status.json").read_text())["step"]
    assert "× 2 processes" in (b / "log.txt").read_text()
    assert (b / "model.safetensors").is_file() and (tmp_path / "two" / "latest").resolve() == b.resolve()



def test_a_checkpoint_of_two_processes_resumes_in_one(tmp_path):
    """Stopped by its budget after 5 steps under torchrun, continued by one process: the weights
    of one process that never stopped."""
    (tmp_path / "g.toml").write_text(GENERATOR)
    full = tsdiff(tmp_path, "train", "g.toml", "-q", env={"TSDIFF_TRAIN__RUNS_DIR": "full"})
    assert full.returncode == 0, full.stderr
    part = tsdiff(tmp_path, "train", "g.toml", "-q", procs=2, env={"TSDIFF_TRAIN__MAX_STEPS": "5"})
    assert part.returncode == 0, part.stderr
    [run] = _runs(tmp_path / "runs")
    assert json.loads((run / "status.json").read_text())["step"] == 5
    more = tsdiff(tmp_path, "train", "--resume", run, "-q", env={"TSDIFF_TRAIN__MAX_STEPS": "0"})
    assert more.returncode == 0, more.stderr
    _weights_close(_runs(tmp_path / "full")[0], run)


def test_two_processes_train_the_classifier_one_process_trains(tmp_path):
    (tmp_path / "c.toml").write_text(CLASSIFY)
    one = tsdiff(tmp_path, "classify", "train", "c.toml", "-q", env={"TSDIFF_CLASSIFY__RUNS_DIR": "one"})
    assert one.returncode == 0, one.stderr
    two = tsdiff(tmp_path, "classify", "train", "c.toml", "-q", procs=2, env={"TSDIFF_CLASSIFY__RUNS_DIR": "two"})
    assert two.returncode == 0, two.stderr
    [a], [b] = _runs(tmp_path / "one"), _runs(tmp_path / "two")
    _weights_close(a, b)
    ra, rb = (json.loads((r / "report.json").read_text()) for r in (a, b))
    assert ra["val"] == rb["val"]  # rank 0 validated and reported once, the same scores
    evals = [[(r["step"], r["epoch"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "eval"] for run in (a, b)]
    assert evals[0] == evals[1] and len(evals[0]) >= 3  # the same validations, at the same steps


def test_a_global_batch_that_does_not_split_is_refused_before_training(tmp_path):
    (tmp_path / "c.toml").write_text(CLASSIFY.replace("batch_size = 8", "batch_size = 7"))
    out = tsdiff(tmp_path, "classify", "train", "c.toml", "-q", procs=2)
    assert out.returncode != 0
    assert "batch_size: is 7 (the global batch of phase train), which does not split evenly over 2 processes" in out.stderr
    assert "tsdiff_cli/" not in out.stderr  # one line per rank; the traceback below it is torchrun's own
    [run] = _runs(tmp_path / "runs")
    assert not (run / "checkpoints").exists() or not any((run / "checkpoints").iterdir())


def _worker_pids(parent: int) -> dict[int, int]:
    """rank → pid of the workers a torchrun process started (Linux /proc)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != parent:
            continue
        for item in env:
            if item.startswith(b"RANK="):
                found[int(item[5:])] = int(proc.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the workers through /proc")
def test_a_rank_that_dies_stops_the_others_and_the_run_fails(tmp_path):
    (tmp_path / "g.toml").write_text(GENERATOR.replace("epochs = 2\n", "epochs = 100000\n"))
    job = tsdiff(tmp_path, "train", "g.toml", "-q", procs=2, wait=False)
    try:
        deadline = time.monotonic() + 120
        status = tmp_path / "runs" / "latest" / "status.json"
        while time.monotonic() < deadline:
            if status.is_file() and json.loads(status.read_text()).get("step", 0) >= 5:
                break
            time.sleep(0.5)
        workers = _worker_pids(job.pid)
        assert set(workers) == {0, 1}
        os.kill(workers[1], signal.SIGKILL)
        _, err = job.communicate(timeout=120)  # no hang
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0
    state = json.loads(status.read_text())
    assert state["state"] == "failed", state
    assert "another process of this job stopped" in state["error"]
    assert "--resume RUN" in err


_PEER_LOST_THEN_SIGTERM = """
import os, signal, sys
from pathlib import Path
from tsdiff_cli.errors import UserError
from tsdiff_cli.runs import Run
from tsdiff_cli.training.distributed import World

def lost():
    raise RuntimeError("Connection closed by peer")

run = Run.create(Path(sys.argv[1]), "test", "t", "")
try:
    with run.lifecycle("test"):
        run.begin("test")
        try:
            World(rank=0, size=2).collective("agreeing on whether to stop", lost)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # torchrun's stop, while the run records the failure
except UserError as exc:
    os.kill(os.getpid(), signal.SIGTERM)  # and again, before the error is printed
    print(f"tsdiff: error: {exc}", file=sys.stderr)
    sys.exit(2)
"""


def test_the_sigterm_torchrun_sends_after_a_peer_is_lost_does_not_cut_the_report_short(tmp_path):
    # torchrun stops the surviving workers with SIGTERM ~0.1 s after one dies: the run must still
    # end "failed" with the reason, and the reason (with the way to resume) must reach stderr
    done = subprocess.run([sys.executable, "-c", _PEER_LOST_THEN_SIGTERM, str(tmp_path / "runs")],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "another process of this job stopped" in done.stderr and "--resume RUN" in done.stderr
    (run,) = _runs(tmp_path / "runs")
    state = json.loads((run / "status.json").read_text())
    assert state["state"] == "failed" and "another process of this job stopped" in state["error"]


def test_running_out_of_memory_inside_a_collective_is_not_reported_as_a_lost_peer():
    # DDP's backward runs inside World.collective: a rank that runs out of memory there must say
    # so, not blame "another process of this job"
    def backward():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    with pytest.raises(torch.OutOfMemoryError, match="Tried to allocate"):
        World(rank=0, size=2).collective("averaging gradients", backward)
