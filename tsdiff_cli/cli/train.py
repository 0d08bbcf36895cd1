"""``tsdiff pretrain-tst CONFIG`` and ``tsdiff train CONFIG [--resume RUN]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tsdiff_cli.errors import UserError


def _config_name(config: Path | None) -> str:
    return config.stem if config is not None else "resumed"


def _run(config: Path | None, resume: Path | None, tst: Path | None, overrides: dict, quiet: bool, tst_only: bool) -> None:
    from tsdiff_cli.cli import command_started
    from tsdiff_cli.cli._progress import Reporter
    from tsdiff_cli.jobs.generate import train_generator
    from tsdiff_cli.runs import resume_settings
    from tsdiff_cli.settings import load_settings

    if config is None and resume is None:
        raise UserError("train", "needs CONFIG (or --resume RUN)", "e.g. `tsdiff train config/stock.toml`")
    # resuming: the run's own settings, changed only where CONFIG / environment / options may
    settings = resume_settings(resume, config, overrides) if resume is not None else load_settings(config, overrides)
    command = "pretrain-tst" if tst_only else "train"

    def announce(run):
        if not quiet:
            print(f"run: {run.path}", flush=True)

    with Reporter(quiet) as rep:
        result = train_generator(settings, _config_name(config), command=command, tst_only=tst_only, resume=resume,
                                 tst_from=tst, on_step=rep.step, on_run=announce, started=command_started())
    if not quiet:
        best = ""
        if result.best_disc is not None:
            kept = result.kept_disc if result.kept_disc is not None else result.best_disc
            tie = f", best {result.best_disc:.4f}: a later tie within [train] keep_within" if kept != result.best_disc else ""
            best = f"; kept selection score {kept:.4f}{tie} (observed values only; `tsdiff evaluate` scores it)"
        print(f"{command} {result.reason} after {result.steps} steps, {result.minutes:.1f} min{best}\nrun: {result.run}")


def train_command(
    config: Annotated[Optional[Path], typer.Argument(metavar="CONFIG", help="TOML settings (presets in config/).", show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue this run from its last checkpoint, with its own config.toml; a CONFIG or options may change only budgets, cadences, device, sampling and evaluation settings.", show_default=False)] = None,
    tst: Annotated[Optional[Path], typer.Option("--tst", help="Take the completion TST from this pretrain-tst run instead of training it first.", show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Diffusion epochs (overrides [train] epochs).", show_default=False)] = None,
    max_minutes: Annotated[Optional[float], typer.Option(help="Stop cleanly once the run has trained this many minutes in all; a resumed run counts its earlier sessions (overrides [train] max_minutes).", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help='"auto", "cpu" or "cuda" (overrides [train] device).', show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed (overrides [train] seed).", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Train the generator: TST completion (phase 1), then diffusion with the masked loss.

    Preprocesses [data] first when its output file is missing. Every eval_every epochs a selection
    score (samples given real gaps against observed values; never the benchmark's removed values)
    is logged and the best EMA weights are kept in RUN/model.safetensors.
    Ctrl-C writes a checkpoint (exit 130); --resume continues exactly.
    """
    _run(config, resume, tst, {"train": {"epochs": epochs, "max_minutes": max_minutes, "device": device, "seed": seed}},
         quiet, tst_only=False)


def pretrain_tst_command(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="TOML settings (presets in config/).", show_default=False)],
    epochs: Annotated[Optional[int], typer.Option(help="TST epochs (overrides [tst] epochs).", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help='"auto", "cpu" or "cuda" (overrides [train] device).', show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Phase 1 only: fit the completion TST on observed values; `tsdiff train --tst RUN` reuses it."""
    _run(config, None, None, {"tst": {"epochs": epochs}, "train": {"device": device}}, quiet, tst_only=True)
