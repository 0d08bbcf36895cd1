"""``tsdiff config show CONFIG``: the resolved settings as TOML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Inspect settings.", no_args_is_help=True)


@app.command("show")
def show(
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="TOML settings file (presets are in config/).", show_default=False)],
) -> None:
    """Print the settings CONFIG resolves to, after environment overrides, as TOML.

    Every run saves the same text as its config.toml.
    """
    from tsdiff_cli.settings import load_settings, to_toml

    typer.echo(to_toml(load_settings(config)), nl=False)
