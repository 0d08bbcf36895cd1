"""``tsdiff classify train|pretrain|predict|evaluate``: labelled series with gaps."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from tsdiff_cli.errors import UserError

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  help="Classify and regress labelled series with gaps: a dual-patch transformer with missing-mask "
                  "channels, optional masked-patch pretraining and SWA.")


def _settings(config: Path | None, resume: Path | None, overrides: dict):
    from tsdiff_cli.runs import resume_settings
    from tsdiff_cli.settings import load_settings

    if config is None and resume is None:
        raise UserError("classify", "needs CONFIG (or --resume RUN)",
                        "e.g. `tsdiff classify train config/classify-japanese-vowels.toml`")
    return resume_settings(resume, config, overrides) if resume is not None else load_settings(config, overrides)


def _announce(quiet: bool):
    def announce(run):
        if not quiet:
            print(f"run: {run.path}", flush=True)
    return announce


def format_scores(title: str, per_label: dict) -> str:
    """One line per label: the class scores or the numeric errors."""
    lines = [title]
    for name, sc in per_label.items():
        if "accuracy" in sc:
            lines.append(f"  {name}: accuracy {sc['accuracy']:.4f}  balanced accuracy {sc['balanced_accuracy']:.4f}  "
                         f"macro-F1 {sc['macro_f1']:.4f}  ({sc['labelled']} labelled)")
        else:
            lines.append(f"  {name}: RMSE {sc['rmse']:.5g}  MAE {sc['mae']:.5g}  R² {sc['r2']:.4f}  ({sc['labelled']} labelled)")
    return "\n".join(lines)


def _config_name(config: Path | None) -> str:
    return config.stem if config is not None else "resumed"


@app.command("train")
def train_command(
    config: Annotated[Optional[Path], typer.Argument(metavar="CONFIG", help="TOML settings with a [classify] section (presets: config/classify-*.toml).", show_default=False)] = None,
    init: Annotated[Optional[Path], typer.Option("--init", help="Fine-tune the encoder of this `tsdiff classify pretrain` run (fresh heads; first the heads alone for [classify] head_epochs).", show_default=False)] = None,
    label_fraction: Annotated[Optional[float], typer.Option("--label-fraction", help="Keep this stratified, seeded share of the training labels (0 < f ≤ 1).", show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs of the base schedule (overrides [classify] epochs).", show_default=False)] = None,
    max_minutes: Annotated[Optional[float], typer.Option("--max-minutes", help="Stop cleanly once the run has trained this many minutes in all; a resumed run counts its earlier sessions.", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of splits, initialisation and batches.", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help='"auto", "cpu" or "cuda".', show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue this classify run from its last checkpoint, with its own config.toml.", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no scores.")] = False,
) -> None:
    """Train on [classify] train, keep the best validation epoch (or the SWA average), and print
    the validation scores (and the test scores when [classify] test is set; report.json in the run)."""
    from tsdiff_cli.cli import command_started
    from tsdiff_cli.cli._progress import Reporter
    from tsdiff_cli.jobs.classify import train_classifier

    settings = _settings(config, resume, {"classify": {"init": init, "label_fraction": label_fraction, "epochs": epochs,
                                                       "max_minutes": max_minutes, "seed": seed, "device": device}})
    with Reporter(quiet) as rep:
        result = train_classifier(settings, _config_name(config), update=rep.update, on_step=rep.step,
                                  on_run=_announce(quiet), resume=resume, started=command_started())
    if quiet:
        return
    print(f"training {result.reason} after {result.minutes:.1f} min")
    for split in ("val", "test"):
        for model, per_label in result.report.get(split, {}).items():
            print(format_scores(f"{'validation' if split == 'val' else 'test'} ({model}):", per_label))
    print(f"run: {result.run}")


@app.command("pretrain")
def pretrain_command(
    config: Annotated[Optional[Path], typer.Argument(metavar="CONFIG", help="TOML settings with a [classify] section.", show_default=False)] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Pretraining epochs (overrides [classify] pretrain_epochs).", show_default=False)] = None,
    max_minutes: Annotated[Optional[float], typer.Option("--max-minutes", help="Stop cleanly once the run has trained this many minutes in all; a resumed run counts its earlier sessions.", show_default=False)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of initialisation, batches and masks.", show_default=False)] = None,
    device: Annotated[Optional[str], typer.Option(help='"auto", "cpu" or "cuda".', show_default=False)] = None,
    resume: Annotated[Optional[Path], typer.Option("--resume", help="Continue this pretrain run from its last checkpoint.", show_default=False)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Self-supervised: hide temporal patches and values of every [classify] train series (labels
    unused) and learn to reconstruct them; `classify train --init RUN` fine-tunes the encoder."""
    from tsdiff_cli.cli import command_started
    from tsdiff_cli.cli._progress import Reporter
    from tsdiff_cli.jobs.classify import pretrain_classifier

    settings = _settings(config, resume, {"classify": {"pretrain_epochs": epochs, "max_minutes": max_minutes, "seed": seed,
                                                       "device": device}})
    with Reporter(quiet) as rep:
        result = pretrain_classifier(settings, _config_name(config), on_step=rep.step, on_run=_announce(quiet),
                                     resume=resume, started=command_started())
    if not quiet:
        best = result.report["training"]["best_val_loss"]
        print(f"pretraining {result.reason} after {result.minutes:.1f} min; best reconstruction loss "
              f"{best:.4f} (hidden observed values, standardised)" if best is not None else "")
        print(f"run: {result.run}")


@app.command("predict")
def predict_command(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A `tsdiff classify train` run (or runs/latest).", show_default=False)],
    input: Annotated[Path, typer.Option("--input", "-i", help="Series to classify: .ts or a long table with the training data's columns (labels not needed).", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Predictions (.csv / .parquet): per series its id, each class label's prediction and probabilities, each numeric label's value; per (series, step) with per-step labels.", show_default=False)],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing.")] = False,
) -> None:
    """Predict every label of the model for every series of --input."""
    from tsdiff_cli.jobs.classify import predict_from_run

    path, unknown = predict_from_run(run, input, output)
    if not quiet:
        if unknown:
            print(f"{unknown} categorical values were never seen in training and were read as unknown")
        print(f"wrote {path}")


@app.command("evaluate")
def evaluate_command(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="A `tsdiff classify train` run (or runs/latest).", show_default=False)],
    input: Annotated[Path, typer.Option("--input", "-i", help="Labelled series (.ts or long table) to score the model on.", show_default=False)],
    plot: Annotated[bool, typer.Option("--plot/--no-plot", help="Write confusion_<label>.png into the run.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing.")] = False,
) -> None:
    """Accuracy, balanced accuracy and macro-F1 (classes), RMSE / MAE / R² (numbers) of the run's
    model on --input; added to the run's report.json under "evaluations"."""
    from rich.console import Console
    from rich.table import Table

    from tsdiff_cli.jobs.classify import evaluate_run

    entry = evaluate_run(run, input, plot=plot)
    if quiet:
        return
    table = Table(title=f"{input} ({entry['series']} series)")
    for col in ("label", "accuracy", "balanced acc.", "macro-F1", "RMSE", "MAE", "R²", "labelled"):
        table.add_column(col, justify="right" if col != "label" else "left")
    for name, sc in entry["scores"].items():
        cells = [sc.get(k) for k in ("accuracy", "balanced_accuracy", "macro_f1", "rmse", "mae", "r2")]
        table.add_row(name, *("" if v is None else f"{v:.4f}" for v in cells), str(sc["labelled"]))
    Console().print(table)
    if entry["unknown_categories"]:
        print(f"{entry['unknown_categories']} categorical values were never seen in training and were read as unknown")
    for p in entry["plots"]:
        print(f"wrote {p}")
