from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tsdiff_cli.cli import app
from tsdiff_cli.data.sources import shipped_path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def data_file(name: str) -> Path:
    """A reference CSV from ../shared/data, falling back to the copy shipped in the package."""
    shared = SHARED_DATA / name
    if shared.is_file():
        return shared
    shipped = {"stock_data.csv": "stock", "energy_data.csv": "energy", "ETTh1.csv": "etth1"}[name]
    return shipped_path(shipped)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Tests see no TSDIFF_* variables from the developer's shell."""
    for name in list(os.environ):
        if name.upper().startswith("TSDIFF_"):
            monkeypatch.delenv(name)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cli():
    """Run ``tsdiff ARGS`` in-process; returns click's Result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(app, [str(a) for a in args], env=env, catch_exceptions=False)

    return invoke


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
