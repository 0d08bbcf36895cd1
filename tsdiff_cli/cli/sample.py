"""``tsdiff sample RUN``: regular windows from a trained generator, in original units."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def sample_command(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory made by `tsdiff train` (or runs/latest).", show_default=False)],
    n: Annotated[Optional[int], typer.Option("-n", help="Number of windows (overrides [sample] n).", show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output file: .csv / .parquet (stacked windows with window and step columns), .h5 or .npy.")] = Path("samples.csv"),
    steps: Annotated[Optional[int], typer.Option(help="Heun steps (overrides [sample] steps; paper: 18).", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the noise: the same seed gives the same windows.", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help='"auto", "cpu" or "cuda".', show_default=False)] = None,
    precision: Annotated[Optional[str], typer.Option(help='Network arithmetic: "auto" (bf16 where the hardware has it), "bf16" or "fp32" (overrides [sample] precision).', show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Sample windows with the run's EMA weights and write them in original units and columns."""
    import json

    from tsdiff_cli.atomic import ensure_writable
    from tsdiff_cli.cli._progress import Reporter
    from tsdiff_cli.data.arrays import write_windows
    from tsdiff_cli.training.train import run_settings, sample_from_run

    # -n 0 is refused by the [sample] n setting itself (n ≥ 1), naming the option
    s = run_settings(run, {"sample": {"n": n, "steps": steps, "seed": seed, "precision": precision}, "train": {"device": device}})
    ensure_writable(output, "output")
    with Reporter(quiet) as rep:
        label = f"sampling {s.sample.n} windows"
        _, original, meta = sample_from_run(run, s.sample.n, steps=s.sample.steps, seed=s.sample.seed,
                                            batch_size=s.sample.batch_size, churn=s.sample.churn, device=s.train.device,
                                            precision=s.sample.precision,
                                            callback=lambda done, total: rep.update(label, done, total))
    write_windows(output, original, json.loads(meta["columns"]), {"run": str(run), "seed": s.sample.seed, "steps": s.sample.steps})
    if not quiet:
        print(f"wrote {len(original)} windows × {original.shape[1]} steps × {original.shape[2]} features to {output}")
