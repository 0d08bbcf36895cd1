"""``tsdiff tune CONFIG`` and ``tsdiff tune show STUDY``: Optuna studies over any job's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup


class _DefaultRun(TyperGroup):
    """``tsdiff tune CONFIG …`` is ``tsdiff tune run CONFIG …``; ``show`` is the other command."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().resolve_command(ctx, args)


app = typer.Typer(cls=_DefaultRun, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  help="Hyper-parameter studies with Optuna: `tsdiff tune CONFIG` runs trials of the [tune.space] "
                  "search space on validation scores; `tsdiff tune show STUDY` prints the best and writes best.toml.")


def _print_summary(summary: dict) -> None:
    states = ", ".join(f"{n} {s}" for s, n in sorted(summary["states"].items()))
    print(f"study {summary['study']}: {states}; {summary['metric']} ({summary['direction']})")
    if not summary["best"]:
        print("no completed trial yet")
        return
    print(f"{'trial':>6}  {summary['metric']:>14}  settings")
    for t in summary["best"]:
        params = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items())
        print(f"{t['number']:>6}  {t['value']:>14.6g}  {params}")
    if summary["importances"]:
        print("importance (Optuna, fANOVA): " + ", ".join(f"{k} {v:.2f}" for k, v in summary["importances"].items()))
    print(f"best settings: {summary['best_toml']}   (run: {summary['best'][0]['run']})")


@app.command("run")
def run_command(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="TOML settings with a [tune] section and its [tune.space] table.", show_default=False)],
    trials: Annotated[Optional[int], typer.Option(help="Trials in the study, over all its workers (overrides [tune] trials).", show_default=False)] = None,
    metric: Annotated[Optional[str], typer.Option(help="Validation metric to optimise, as the job's evaluation rows name it (overrides [tune] metric).", show_default=False)] = None,
    study: Annotated[Optional[str], typer.Option(help="Study name: created, or joined when it exists (default: the config's name).", show_default=False)] = None,
    storage: Annotated[Optional[str], typer.Option(help="An RDB URL (e.g. postgresql://user:pass@host/db) shared by workers on several machines [default: a journal file in the study folder].", show_default=False)] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes on this machine, sharing its cores.")] = 1,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted study: its interrupted trials run again with their values.")] = False,
    worker: Annotated[int, typer.Option(hidden=True, help="Index of a worker started by --workers.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress lines and no summary.")] = False,
) -> None:
    """Run trials of an Optuna study over CONFIG's [tune.space] until it holds [tune] trials.

    Each trial trains the job ([tune] job) with its values on top of CONFIG, in an ordinary run
    directory linked from studies/NAME/trials/, and is scored by a validation metric (never a test
    split); each evaluation feeds the pruner. Ctrl-C stops the study; --resume continues it. Another
    `tsdiff tune CONFIG --study NAME --storage URL` on another machine joins the same study.
    """
    from tsdiff_cli.jobs.tune import run_study, summary
    from tsdiff_cli.settings import load_settings

    s = load_settings(config, {"tune": {"trials": trials, "metric": metric}})
    name = study or config.stem

    def say(text: str) -> None:
        if not quiet:
            print(f"[worker {worker}] {text}" if worker else text, flush=True)

    desc = run_study(s, config, name=name, storage=storage, trials=s.tune.trials, metric=metric, workers=workers,
                     worker=worker, resume=resume, say=say)
    if not quiet and not worker:
        _print_summary(summary(desc.folder, storage))


@app.command("show")
def show_command(
    study: Annotated[Path, typer.Argument(metavar="STUDY", help="The study folder (studies/NAME).", show_default=False)],
    storage: Annotated[Optional[str], typer.Option(help="The RDB URL, for a study stored in a database.", show_default=False)] = None,
    top: Annotated[int, typer.Option(min=1, help="How many of the best trials to list.")] = 10,
) -> None:
    """Print the study's best trials and Optuna's parameter importances; write STUDY/best.toml,
    the settings of the best trial, which the job's own command accepts."""
    from tsdiff_cli.jobs.tune import summary

    if not study.is_dir() and (Path("studies") / study).is_dir():  # a name under the default studies_dir
        study = Path("studies") / study
    _print_summary(summary(study, storage, top))
