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


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """Tests see no TSDIFF_* variables from the developer's shell, and a command's thread setup
    (tsdiff_cli/threads.py, run by every in-process CLI call) does not leak into later tests."""
    import torch

    for name in list(os.environ):
        if name.upper().startswith("TSDIFF_"):
            monkeypatch.delenv(name)
    for name in THREAD_VARIABLES:  # restored afterwards, whatever a command set
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


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


#: A generator run small enough for tests: stock, 30 % missing, tiny TST and U-Net, a few steps.
TINY = """
[data]
source = "stock"
missing_rate = 0.3
reverse_rows = true
val_fraction = 0.9
test_fraction = 0.0
output = "data/tiny.h5"
[tst]
d_model = 8
heads = 2
layers = 1
ff = 16
decoder_hidden = 8
epochs = 1
[model]
channels = 8
channel_mult = [1, 2]
num_blocks = 1
attn_resolutions = [4]
[train]
epochs = 2
batch_size = 128
eval_every = 0
device = "cpu"
[sample]
steps = 3
batch_size = 64
"""


#: A classifier small enough for tests: BasicMotions (shipped), a tiny dual-patch transformer, a few epochs.
TINY_CLASSIFY = """
[classify]
train = "BasicMotions_TRAIN"
d_model = 16
heads = 2
layers = 1
ff = 32
patch_len = 20
patch_stride = 10
epochs = 3
batch_size = 8
device = "cpu"
"""
