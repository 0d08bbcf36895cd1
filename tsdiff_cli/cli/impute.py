"""``tsdiff impute [CONFIG] --input CSV (--emb-dir DIR | --model RUN) [-o PATH]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def impute_command(
    config: Annotated[Optional[Path], typer.Argument(metavar="CONFIG", help="TOML settings with an [impute] section (for keys without an option here: columns, time_column, decoder sizes, epochs …).", show_default=False)] = None,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="CSV / Parquet file with gaps (empty cells or NaN).", show_default=False)] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Filled file (.csv / .parquet): the input's columns, observed values unchanged.", show_default=False)] = None,
    emb_dir: Annotated[Optional[Path], typer.Option("--emb-dir", help="TimeKD embeddings: the root, or its {name}/{pred_len}/{flag} folder; trains a denoising decoder.", show_default=False)] = None,
    model: Annotated[Optional[Path], typer.Option("--model", help="A generator run (from `tsdiff train`) to fill with.", show_default=False)] = None,
    samples: Annotated[Optional[int], typer.Option(help="With --model: 0 fills with the TST completion; K ≥ 10 draws K diffusion inpaintings and adds 5 % / 95 % columns.", show_default=False)] = None,
    start_sigma: Annotated[Optional[float], typer.Option("--start-sigma", help="Inpainting starts from the TST completion noised to this σ [default: 0.3]; 0 starts from pure noise.", show_default=False)] = None,
    holdout: Annotated[Optional[float], typer.Option(help="Judge instead of fill: hide this fraction of the observed values and report errors on them beside baselines.", show_default=False)] = None,
    pred_len: Annotated[Optional[int], typer.Option("--pred-len", help="TimeKD horizon P, when the folder holds several.", show_default=False)] = None,
    flag: Annotated[Optional[str], typer.Option(help="TimeKD split (train, val, test), when the folder holds several.", show_default=False)] = None,
    seq_len: Annotated[Optional[int], typer.Option("--seq-len", help="TimeKD lookback L [default: 96].", show_default=False)] = None,
    borders: Annotated[Optional[str], typer.Option(help="Split borders: auto, ett_hour, ett_minute or custom (70/10/20).", show_default=False)] = None,
    decoder: Annotated[Optional[str], typer.Option(help='Decoder: "shared" (one network per variable\'s embedding) or "flat".', show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Heun steps of diffusion inpainting [default: 18].", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of training, holdout and sampling.", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help='"auto", "cpu" or "cuda".', show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue the decoder training of this --emb-dir impute run from its last checkpoint (with its own settings).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Fill the gaps of a series, from TimeKD embeddings or from a trained generator.

    Writes the input with its missing cells filled, in original units; or, with --holdout,
    hides some observed values and prints MAE / MSE / RMSE on them (z-space) beside the mean,
    last-observation and linear-interpolation baselines.
    """
    from tsdiff_cli.cli import command_started
    from tsdiff_cli.cli._progress import Reporter
    from tsdiff_cli.metrics.imputation import format_imputation_report
    from tsdiff_cli.runs import report_path
    from tsdiff_cli.jobs.impute import impute
    from tsdiff_cli.runs import resume_settings
    from tsdiff_cli.settings import load_settings

    overrides = {"impute": {"input": input, "output": output, "emb_dir": emb_dir, "model": model, "samples": samples, "start_sigma": start_sigma,
                            "holdout": holdout, "pred_len": pred_len, "flag": flag, "seq_len": seq_len,
                            "borders": borders, "decoder": decoder, "steps": steps, "seed": seed, "device": device}}
    settings = resume_settings(resume, config, overrides) if resume is not None else load_settings(config, overrides)
    name = config.stem if config is not None else (Path(str(settings.impute.input)).stem or "input")
    with Reporter(quiet) as rep:
        result = impute(settings, name, rep.update, rep.step, resume=resume, started=command_started())
    if quiet:
        return
    for line in result.notes:
        print(line)
    if result.report is not None:
        print(format_imputation_report(result.report))
        print(f"report: {report_path(result.run)}")
    elif result.output is not None:
        print(f"filled {result.filled} values; wrote {result.output}"
              + (f" ({result.left} still missing)" if result.left else ""))
    if result.run is not None and result.report is None:
        print(f"run: {result.run}")
