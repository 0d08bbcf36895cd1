"""Where a generator's leftover noise comes from: a diagnosis for samples rougher than the data
(e.g. energy, whose generated smooth features all carry the same step-to-step jitter).

    python benchmarks/denoiser_floor.py RUN [-n 512] [--seed 0]

Clean windows are the run's own training input: the first ``-n`` windows of its dataset, their
gaps completed by the run's TST (observed values only; the benchmark's removed values are never
read). Two measurements, in the dataset's [0, 1] space, medians over features:

1. one denoiser call at σ: the RMSE of its output against the clean windows, beside the RMSE of
   its noisy input (both after images → windows, which averages a time step's pixels);
2. the sampler started at σ0 from the clean windows plus noise (SDEdit, Meng et al. 2022) and run
   down to 0 with the run's steps: the mean |step-to-step change| of the result against that of
   the clean windows. When it is already too rough from a small σ0, the floor is left by the
   denoiser's low-noise calls rather than by the early, high-noise part of sampling.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tsdiff_cli.data.store import read_dataset
from tsdiff_cli.jobs.generate import load_generator
from tsdiff_cli.models.edm import heun_sample
from tsdiff_cli.models.tst import complete
from tsdiff_cli.runs import run_model, run_settings

SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0)
STARTS = (0.05, 0.1, 0.3, 1.0, 80.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("-n", type=int, default=512, help="windows (default 512)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the added noise")
    args = ap.parse_args()
    steps = run_settings(args.run).sample.steps
    _, meta = run_model(args.run, "generator", "tsdiff train CONFIG", tensors=False)
    observed = torch.as_tensor(read_dataset(Path(meta["dataset"])).observed[: args.n])
    model, _ = load_generator(args.run, torch.device("cpu"))
    gen = torch.Generator().manual_seed(args.seed)

    def rough(images: torch.Tensor) -> float:
        return float(model.to_windows(images.float()).diff(dim=1).abs().mean(dim=(0, 1)).median())

    with torch.inference_mode():
        clean = model.to_image(complete(model.tst(observed).float(), observed))
        truth = model.to_windows(clean)
        print(f"{len(observed)} TST-completed training windows; roughness (median over features) {rough(clean):.4f}")
        print("one denoiser call:  σ   RMSE in → out (median over features)")
        for s in SIGMAS:
            noisy = clean + s * torch.randn(clean.shape, generator=gen)
            out = model.denoiser(noisy, torch.full((len(clean),), s))
            rmse_in = (model.to_windows(noisy) - truth).pow(2).mean(dim=(0, 1)).sqrt().median()
            rmse_out = (model.to_windows(out) - truth).pow(2).mean(dim=(0, 1)).sqrt().median()
            print(f"{s:>22} {float(rmse_in):.4f} → {float(rmse_out):.4f}")
        print(f"sampling from σ0 to 0 ({steps} steps): roughness")
        for s0 in STARTS:
            eps = torch.randn(clean.shape, generator=gen)
            start = eps if s0 >= 80 else clean / s0 + eps  # heun_sample scales its input by σ0
            out = heun_sample(model.denoiser, start, steps, sigma_max=s0)
            print(f"{'pure noise' if s0 >= 80 else s0:>22} {rough(out):.4f}")


if __name__ == "__main__":
    main()
