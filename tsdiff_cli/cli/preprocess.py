"""``tsdiff preprocess CONFIG``: make the windowed dataset file described by ``[data]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def preprocess_command(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="TOML settings file; its [data] section describes the dataset.", show_default=False)],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="HDF5 file to write (overrides [data] output).", show_default=False)] = None,
    missing_rate: Annotated[Optional[float], typer.Option(help="Fraction of time steps to remove for benchmarking, in [0, 1) (overrides [data] missing_rate).", show_default=False)] = None,
    seq_len: Annotated[Optional[int], typer.Option(help="Window length in time steps (overrides [data] seq_len).", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for synthetic data, missingness and shuffling (overrides [data] seed).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary on success.")] = False,
) -> None:
    """Make the windowed dataset file that [data] describes.

    Reads the source, places irregular rows on a regular grid, scales, removes benchmark time
    steps and cuts stride-1 windows; writes one HDF5 file atomically and prints a summary.
    """
    from tsdiff_cli.cli._progress import Reporter
    from tsdiff_cli.data.preprocess import preprocess
    from tsdiff_cli.settings import load_settings

    overrides = {"data": {"output": output, "missing_rate": missing_rate, "seq_len": seq_len, "seed": seed}}
    settings = load_settings(config, overrides)
    with Reporter(quiet) as rep:
        result = preprocess(settings.data, lambda done, total: rep.update("preprocess", done, total))
    if not quiet:
        _print_summary(result)


def _print_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    ds = result.dataset
    n, t, f = ds.observed.shape
    table = Table(title="tsdiff preprocess", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("source", result.source)
    if result.series_length is not None:
        table.add_row("series", f"{result.series_length} time steps")
    if "freq" in ds.attrs:
        grid = f"{ds.attrs['freq']} from {ds.attrs['start']}"
        if result.merged_rows:
            grid += f" ({result.merged_rows} rows averaged into shared steps)"
        table.add_row("grid", grid)
    table.add_row("windows", f"{n} × {t} steps × {f} features")
    table.add_row("features", ", ".join(ds.columns))
    table.add_row("observed", f"{100 * ds.observed_fraction:.1f} %  (missing_rate {ds.attrs['missing_rate']:g})")
    table.add_row("scaler", ds.scaler.kind)
    table.add_row("splits", "  ".join(f"{k} {v}" for k, v in result.split_sizes().items()))
    table.add_row("written", str(result.path))
    Console().print(table)
