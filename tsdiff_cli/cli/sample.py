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
    condition: Annotated[Optional[list[str]], typer.Option("--condition", help="Conditional runs: NAME=VALUE for every window (repeat for several conditions); conditions not given are left free.", show_default=False)] = None,
    caption: Annotated[Optional[str], typer.Option(help="Conditional runs trained with captions: the caption of every window.", show_default=False)] = None,
    conditions: Annotated[Optional[Path], typer.Option("--conditions", help="Conditional runs: a CSV / Parquet with one row per window and a column per condition (and 'caption'); -n defaults to its rows.", show_default=False)] = None,
    guidance: Annotated[Optional[float], typer.Option(help="Classifier-free guidance weight w (overrides [sample] guidance): 1 plain conditional, 0 unconditional, > 1 stronger adherence.", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Sample windows with the run's EMA weights and write them in original units and columns."""
    from tsdiff_cli.cli._progress import Reporter
    from tsdiff_cli.errors import UserError
    from tsdiff_cli.jobs.generate import ConditionRequest, sample

    values = {}
    for item in condition or []:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UserError(f"--condition {item}", "is not NAME=VALUE", "write e.g. --condition activity=Running")
        values[name.strip()] = value.strip()
    request = ConditionRequest(values, caption, conditions)
    overrides = {"sample": {"n": n, "steps": steps, "seed": seed, "precision": precision, "guidance": guidance},
                 "train": {"device": device}}
    with Reporter(quiet) as rep:
        result = sample(run, output, overrides, rep.update, request)
    if not quiet:
        n, t, f = result.shape
        print(f"wrote {n} windows × {t} steps × {f} features to {result.output}")
