"""``tsdiff forecast CONFIG`` (train and judge) and ``tsdiff forecast --run RUN --input CSV -o PATH``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tsdiff_cli.errors import UserError


def forecast_command(
    config: Annotated[Optional[Path], typer.Argument(metavar="CONFIG", help="TOML settings with a [forecast] section: train on its data and print the test metrics beside the baselines.", show_default=False)] = None,
    run: Annotated[Optional[Path], typer.Option("--run", help="Forecast with this trained run (from `tsdiff forecast CONFIG`, or runs/latest) instead of training.", show_default=False)] = None,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="With --run: CSV / Parquet whose last seq_len rows are the lookback (same columns as the training data).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="With --run: forecast file (.csv / .parquet): the future dates, then per column its mean, median, q05, q25, q75 and q95, in original units.", show_default=False)] = None,
    samples: Annotated[Optional[int], typer.Option(help="Forecast samples per window [default: 100, or the run's].", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Sampling steps of the generative head [default: 5, or the run's].", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of training and sampling; the same seed gives the same forecast.", show_default=False)] = None,
    all_samples: Annotated[Optional[Path], typer.Option("--all-samples", help="With --run: also write every sample to this HDF5 file (dataset 'samples': sample × future row × column).", show_default=False)] = None,
    max_minutes: Annotated[Optional[float], typer.Option("--max-minutes", help="Training: stop after this many minutes.", show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the training of this forecast run from its last checkpoint (with its own config.toml), then judge it.", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help='"auto", "cpu" or "cuda".', show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no table.")] = False,
) -> None:
    """Probabilistic forecasts: an iTransformer encoder with a few-step flow-matching head.

    With CONFIG: train on the configured series (TSLib split), keep the epoch with the best
    validation loss, and print the test metrics of the model beside seasonal-naive, linear-ridge
    and deterministic-head baselines (report.json in the run). With --run and --input: forecast
    the rows after the input's last one.
    """
    from tsdiff_cli.cli._progress import Reporter
    from tsdiff_cli.settings import load_settings

    overrides = {"forecast": {"samples": samples, "steps": steps, "seed": seed, "max_minutes": max_minutes, "device": device}}
    if run is not None:
        if config is not None:
            raise UserError("forecast", "give CONFIG (to train) or --run RUN (to forecast), not both",
                            "drop one of them")
        if max_minutes is not None:
            raise UserError("--max-minutes", "only applies to training (with CONFIG)", "drop it")
        if input is None or output is None:
            raise UserError("forecast --run", "needs --input recent.csv and -o forecast.csv", "add both")
        from tsdiff_cli.jobs.forecast import forecast_from_run
        from tsdiff_cli.runs import config_path, run_settings

        if resume is not None:
            raise UserError("--resume", "continues a training; --run forecasts with a trained run", "drop one of them")
        settings = run_settings(run, overrides) if config_path(run).is_file() else load_settings(None, overrides)
        p = settings.forecast
        result = forecast_from_run(run, input, output, p.samples, p.steps, p.seed, p.solver, all_samples, p.device)
        if not quiet:
            if result.filled:
                print(f"{result.filled} missing values in the lookback were filled with the last value before them")
            print(f"wrote {result.output} ({p.samples} samples, from {result.start})"
                  + (f" and {result.all_samples}" if result.all_samples else ""))
        return
    if config is None and resume is None:
        raise UserError("forecast", "needs CONFIG to train, or --run RUN --input CSV -o PATH to forecast",
                        "e.g. `tsdiff forecast config/etth1-forecast.toml`")
    for name, value in (("--input", input), ("--output", output), ("--all-samples", all_samples)):
        if value is not None:
            raise UserError(name, "only applies with --run RUN", "drop it, or add --run")
    from tsdiff_cli.cli import command_started
    from tsdiff_cli.jobs.forecast import format_forecast_report, train_forecaster
    from tsdiff_cli.runs import report_path, resume_settings

    settings = resume_settings(resume, config, overrides) if resume is not None else load_settings(config, overrides)

    def announce(r):
        if not quiet:
            print(f"run: {r.path}", flush=True)

    with Reporter(quiet) as rep:
        result = train_forecaster(settings, config.stem if config is not None and resume is None else "resumed", update=rep.update,
                                  on_step=rep.step, on_run=announce, resume=resume, started=command_started())
    if not quiet:
        print(f"training {result.reason} after {result.epochs} epochs, {result.minutes:.1f} min")
        print(format_forecast_report(result.report))
        print(f"report: {report_path(result.run)}")
