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
    from tsdiff_cli.cli._progress import Reporter
    from tsdiff_cli.jobs.generate import sample

    overrides = {"sample": {"n": n, "steps": steps, "seed": seed, "precision": precision}, "train": {"device": device}}
    with Reporter(quiet) as rep:
        result = sample(run, output, overrides, rep.update)
    if not quiet:
        n, t, f = result.shape
        print(f"wrote {n} windows × {t} steps × {f} features to {result.output}")
