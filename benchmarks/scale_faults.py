"""Kill -9 one process of a torchrun training and one worker of a tune study; report what follows.

    python benchmarks/scale_faults.py [--wait 20]

1. torchrun: `torchrun --standalone --nproc-per-node 2 -m tsdiff_cli train` on a small generator
   (stock, 30 % missing, a checkpoint every ~6 s); once the run has logged ``--wait`` seconds of
   training, rank 1 is killed with SIGKILL. Prints how long the other rank and torchrun took to
   exit, the run's status and error, then resumes the run in one process (`tsdiff train --resume`)
   and prints the step it continued from and how it ended.
2. tune: `tsdiff tune config/tune-classify-basicmotions.toml --workers 2 --trials 8` (epochs
   fixed at 300 so trials last); ``--tune-wait`` seconds in, one worker process is killed with SIGKILL.
   Prints how the study ended (trials by state, the killed trial's state, whether its values ran
   again) and that it holds the trials asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = """
[data]
source = "stock"
missing_rate = 0.3
reverse_rows = true
output = "data/stock.h5"
[tst]
epochs = 1
max_steps = 20
[model]
channels = 16
[train]
epochs = 100000
batch_size = 128
eval_every = 0
checkpoint_minutes = 0.1
"""


def _children(parent: int) -> dict[int, dict[str, str]]:
    """pid → environment of the processes ``parent`` started (Linux /proc)."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            env = dict(item.split("=", 1) for item in (proc / "environ").read_text().split("\0") if "=" in item)
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent:
            found[int(proc.name)] = env
    return found


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TSDIFF_")}


def torchrun_rank(work: Path, wait: float) -> None:
    (work / "g.toml").write_text(CONFIG)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "tsdiff_cli",
           "train", "g.toml", "-q"]
    job = subprocess.Popen(cmd, cwd=work, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    status = work / "runs" / "latest" / "status.json"
    while not (status.is_file() and json.loads(status.read_text()).get("phase") == "diffusion"):
        time.sleep(0.5)
    time.sleep(wait)
    ranks = {int(env["RANK"]): pid for pid, env in _children(job.pid).items() if "RANK" in env}
    step = json.loads(status.read_text()).get("step")
    os.kill(ranks[1], signal.SIGKILL)
    killed = time.monotonic()
    rank0_gone = None
    while job.poll() is None:
        if rank0_gone is None and not Path(f"/proc/{ranks[0]}").exists():
            rank0_gone = time.monotonic() - killed
        time.sleep(0.1)
    torchrun_s = time.monotonic() - killed
    _, err = job.communicate()
    state = json.loads(status.read_text())
    line = next((ln for ln in err.splitlines() if "tsdiff: error" in ln), "")
    print(f"torchrun: rank 1 killed at step {step}; rank 0 exited after {rank0_gone or torchrun_s:.1f} s, torchrun after "
          f"{torchrun_s:.1f} s (exit {job.returncode}); status {state['state']!r} at step {state.get('step')}")
    print(f"  rank 0 said: {line.strip()}")
    run = status.parent.resolve()
    ckpt = json.loads((run / "checkpoints" / "latest.json").read_text())["step"]
    # the budget counts the first session's minutes too: 1.5 leaves about a minute to continue
    more = subprocess.run([sys.executable, "-m", "tsdiff_cli", "train", "--resume", str(run), "--max-minutes", "1.5", "-q"],
                          cwd=work, env=_env(), capture_output=True, text=True)
    log = (run / "log.txt").read_text().splitlines()
    resumed = next((ln for ln in log if "resumed from step" in ln), "")
    after = json.loads(status.read_text())
    print(f"  resume in 1 process: exit {more.returncode}; last checkpoint step {ckpt}; log: "
          f"{resumed.split('  ', 1)[-1].strip()}; ended {after['state']!r} at step {after.get('step')}")


def tune_worker(work: Path, wait: float) -> None:
    sys.path.insert(0, str(ROOT))
    # the preset's study with longer trials (epochs fixed at 300, not searched), so that a kill lands mid-trial
    preset = (ROOT / "config" / "tune-classify-basicmotions.toml").read_text()
    config = work / "tune.toml"
    config.write_text("\n".join(ln for ln in preset.splitlines() if not ln.startswith('"classify.epochs"')))
    env = {**_env(), "TSDIFF_CLASSIFY__EPOCHS": "300", "TSDIFF_TUNE__STUDIES_DIR": str(work / "studies"),
           "TSDIFF_CLASSIFY__RUNS_DIR": str(work / "runs")}
    cmd = [sys.executable, "-m", "tsdiff_cli", "tune", str(config),
           "--workers", "2", "--trials", "8", "--study", "faults", "-q"]
    job = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(wait)
    workers = sorted(_children(job.pid))
    victim = workers[0]
    os.kill(victim, signal.SIGKILL)
    started = time.monotonic()
    _, err = job.communicate()
    print(f"tune: worker pid {victim} killed {wait:g} s in; the study command exited {job.returncode} after "
          f"{time.monotonic() - started:.0f} s more ({err.strip().splitlines()[-1] if err.strip() else 'no message'})")
    import optuna

    from tsdiff_cli.jobs.tune import _counted, load

    study, _ = load(work / "studies" / "faults", None)
    trials = study.get_trials()
    killed = [t for t in trials if t.user_attrs.get("worker", "").endswith(f":{victim}")]
    states = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    print(f"  trials by state: {states}; counted towards 8: {_counted(study)}")
    for t in killed:
        again = [u.number for u in trials if u.user_attrs.get("retry_of") == t.number]
        print(f"  the killed worker's trial {t.number}: {t.state.name.lower()}"
              f"{' (in progress when killed)' if t.state != optuna.trial.TrialState.COMPLETE else ''}; "
              f"run again as trial {again or 'none'}")
    if _counted(study) < 8:
        more = subprocess.run([*cmd[:-3], "--study", "faults", "--resume", "-q"], cwd=work, env=env, capture_output=True,
                              text=True)
        print(f"  --resume: exit {more.returncode}; counted now {_counted(load(work / 'studies' / 'faults', None)[0])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wait", type=float, default=20.0, help="seconds of torchrun training before the kill")
    ap.add_argument("--tune-wait", type=float, default=8.0, help="seconds of the study before a worker is killed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        torchrun_rank(Path(tmp) / "a", args.wait)
        tune_worker(Path(tmp) / "b", args.tune_wait)


if __name__ == "__main__":
    main()
