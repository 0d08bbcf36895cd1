"""Speed and size of the generator at the paper preset and at the CPU default (stock, seq_len 24).

For each preset, in a fresh process: U-Net and TST parameters, phase-2 training step time at
batch 128 (TST refinement + masked EDM loss + EMA, as `tsdiff train` runs it), sampling speed
with 18 Heun steps (35 network evaluations per window), each in fp32 and, where the CPU has
native bf16 instructions (what `precision = "auto"` then uses), under bf16 autocast; peak RSS
and the size of a resumable checkpoint and of model.safetensors.

    python benchmarks/generator_speed.py [config/stock.toml config/paper/stock.toml ...]

Reference implementation at the paper preset on this machine kind (DESIGN.md): 3.53 s per
training step, ≈ 4.9 sequences/s sampling, 3.7 GiB peak RSS, 935 MB checkpoint.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(config: str, steps: int = 6, samples: int = 512) -> dict:
    import torch

    from tsdiff_cli.jobs.architectures import generator_config
    from tsdiff_cli.models.generator import sample_windows
    from tsdiff_cli.runs import CHECKPOINTS, Run, model_path
    from tsdiff_cli.settings import load_settings
    from tsdiff_cli.training.device import use_bf16
    from tsdiff_cli.training.generator import GeneratorTask
    from tsdiff_cli.training.loop import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        s = load_settings(ROOT / config, {"data": {"output": Path(tmp) / "d.h5"}, "train": {"runs_dir": Path(tmp) / "runs", "device": "cpu"}})
        from tsdiff_cli.data.preprocess import preprocess

        ds = preprocess(s.data).dataset
        cfg = generator_config(s, ds.observed.shape[1], ds.observed.shape[2])
        run = Run.create(s.train.runs_dir, "bench", "b", "")
        no_quick = ds.observed[:0]
        task = GeneratorTask(s, cfg, ds.observed, no_quick, torch.device("cpu"), {})
        trainer = Trainer(task, run, seed=s.train.seed, grad_clip=s.train.grad_clip)
        diffusion = trainer.phases[-1]
        batches = trainer._batches(diffusion, 0)
        precisions = sorted({False, use_bf16("auto", torch.device("cpu"))})
        step = {}
        for bf16 in precisions:  # one optimizer step of phase 2, as `tsdiff train` runs it
            trainer.bf16 = bf16
            trainer.train_step(diffusion, batches[0])  # warm-up (and the bf16 kernels' set-up)
            start = time.perf_counter()
            for i in range(steps):
                trainer.train_step(diffusion, batches[1 + i])
            step["bf16" if bf16 else "fp32"] = (time.perf_counter() - start) / steps
        model = task.load_ema()
        per_s = {}
        for bf16 in precisions:
            sample_windows(model, 8, steps=18, batch_size=8, bf16=bf16)  # warm-up
            start = time.perf_counter()
            sample_windows(model, samples, steps=18, batch_size=min(samples, s.sample.batch_size), bf16=bf16)
            per_s["bf16" if bf16 else "fp32"] = samples / (time.perf_counter() - start)
        trainer.checkpoint()
        run.save_model(*task.export(trainer.pos))
        ckpt = sum(p.stat().st_size for p in (run.path / CHECKPOINTS).glob("*.safetensors"))
        model_size = model_path(run.path).stat().st_size
    return {
        "config": config,
        "unet_params_M": sum(p.numel() for p in task.model.denoiser.parameters()) / 1e6,
        "tst_params_M": sum(p.numel() for p in task.model.tst.parameters()) / 1e6,
        "train_step_s": step["fp32"],
        "train_bf16_step_s": step.get("bf16"),
        "train_seq_per_s": s.train.batch_size / step["fp32"],
        "sample_seq_per_s": per_s["fp32"],
        "sample_bf16_seq_per_s": per_s.get("bf16"),
        "peak_rss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "checkpoint_MB": ckpt / 1e6,
        "model_MB": model_size / 1e6,
    }


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        # the paper preset samples ~10 windows/s here: 128 windows time it well enough
        print(json.dumps(measure(sys.argv[2], samples=128 if "paper" in sys.argv[2] else 512)))
        return
    configs = sys.argv[1:] or ["config/stock.toml", "config/paper/stock.toml"]
    print(f"{'config':<26}{'U-Net M':>9}{'TST M':>7}{'step s':>9}{'bf16 s':>8}{'train seq/s':>13}{'sample seq/s':>14}{'bf16 seq/s':>12}{'RSS GiB':>9}{'ckpt MB':>9}{'model MB':>10}")
    for config in configs:
        out = subprocess.run([sys.executable, __file__, "--one", config], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{config:<26}{r['unet_params_M']:>9.2f}{r['tst_params_M']:>7.2f}{r['train_step_s']:>9.3f}"
              f"{r['train_bf16_step_s'] or float('nan'):>8.3f}{r['train_seq_per_s']:>13.0f}{r['sample_seq_per_s']:>14.1f}"
              f"{r['sample_bf16_seq_per_s'] or float('nan'):>12.1f}{r['peak_rss_GiB']:>9.2f}"
              f"{r['checkpoint_MB']:>9.1f}{r['model_MB']:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
