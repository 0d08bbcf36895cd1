"""The ``tsdiff`` command line: a Typer app whose commands are thin modules over core functions.

Importing this package must stay cheap (``tsdiff --help`` in well under a second, and never
torch): command modules import numpy, pandas, h5py or torch inside their functions.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from typer.core import TyperGroup

from tsdiff_cli import __version__
from tsdiff_cli.cli import classify as classify_cmd
from tsdiff_cli.cli import config as config_cmd
from tsdiff_cli.cli import evaluate as evaluate_cmd
from tsdiff_cli.cli import forecast as forecast_cmd
from tsdiff_cli.cli import impute as impute_cmd
from tsdiff_cli.cli import monitor as monitor_cmd
from tsdiff_cli.cli import preprocess as preprocess_cmd
from tsdiff_cli.cli import sample as sample_cmd
from tsdiff_cli.cli import train as train_cmd
from tsdiff_cli.cli import tune as tune_cmd
from tsdiff_cli.errors import Interrupted, UserError
from tsdiff_cli.training.distributed import Released


_started = time.monotonic()


def command_started() -> float:
    """When the running command began (time.monotonic): ``--max-minutes`` counts from here."""
    return _started


try:  # the click that parses our command line: typer ≥ 0.24 carries its own copy
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer parses with click itself
    from click.exceptions import NoArgsIsHelpError, UsageError


def _usage_error(exc: UsageError) -> None:
    """A mistyped command line (missing argument, bad option value) as one line and exit status 2,
    like every other error, rather than click's usage block; ``tsdiff`` alone still shows help."""
    if isinstance(exc, NoArgsIsHelpError):
        raise exc
    where = exc.ctx.command_path if exc.ctx is not None else "tsdiff"
    message = " ".join(exc.format_message().split()).rstrip(".")
    typer.echo(f"tsdiff: error: {where}: {message}; see `{where} -h`", err=True)
    raise typer.Exit(2) from None


class _Group(TyperGroup):
    """Turns a :class:`UserError` from any command, or a mistyped command line, into one line on
    stderr and exit status 2, and Ctrl-C outside a run (which says more itself) into one line and
    exit status 130."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except UsageError as exc:  # this group's own options (tsdiff --threads -1)
            _usage_error(exc)

    def invoke(self, ctx):
        import warnings

        global _started
        _started = time.monotonic()
        if not sys.warnoptions:  # a library's notice is not the user's business; `python -W` still shows them
            warnings.simplefilter("ignore")
        try:
            return super().invoke(ctx)
        except Released:  # another rank of a torchrun job: its training is done, rank 0 reports
            raise typer.Exit(0) from None
        except UserError as exc:
            typer.echo(f"tsdiff: error: {exc}", err=True)
            raise typer.Exit(2) from None
        except UsageError as exc:  # a command's arguments and options are parsed in here
            _usage_error(exc)
        except Interrupted as exc:
            typer.echo(f"tsdiff: interrupted: {exc}", err=True)
            raise typer.Exit(exc.code) from None
        except KeyboardInterrupt:
            typer.echo("tsdiff: interrupted; no output written", err=True)
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=_Group,
    name="tsdiff",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tsdiff {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
    threads: Annotated[
        int, typer.Option("--threads", envvar="TSDIFF_THREADS", min=0,
                          help="CPU threads for torch [default: OMP_NUM_THREADS when set, else one per physical core]; "
                          "lower it when other heavy processes share the machine.", show_default=False)
    ] = 0,
) -> None:
    """Diffusion models for time series with gaps: prepare data, generate, impute, forecast, classify.

    Settings come from a TOML file (presets in config/), overridden by TSDIFF_<SECTION>__<KEY>
    environment variables, overridden by command options.
    """
    from tsdiff_cli.threads import configure

    configure(threads or None)


app.command("preprocess")(preprocess_cmd.preprocess_command)
app.command("pretrain-tst")(train_cmd.pretrain_tst_command)
app.command("train")(train_cmd.train_command)
app.command("sample")(sample_cmd.sample_command)
app.command("evaluate")(evaluate_cmd.evaluate_command)
app.command("impute")(impute_cmd.impute_command)
app.command("forecast")(forecast_cmd.forecast_command)
app.command("monitor")(monitor_cmd.monitor_command)
app.add_typer(classify_cmd.app, name="classify")
app.add_typer(tune_cmd.app, name="tune")
app.add_typer(config_cmd.app, name="config")


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
