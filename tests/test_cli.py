"""The command line as a user meets it: help, version, entry point, errors without tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tsdiff_cli import __version__


def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    commands = result.stdout.split("Commands:")[1].split()
    assert {"preprocess", "pretrain-tst", "train", "sample", "evaluate", "impute", "forecast", "monitor", "config"} <= set(commands)


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from tsdiff_cli.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
        "for cmd in (['preprocess', '--help'], ['evaluate', '--help'], ['train', '--help'], ['sample', '--help'],\n"
        "            ['monitor', '--help'], ['config', 'show', '--help']):\n"
        "    try:\n        app(cmd)\n    except SystemExit as e:\n        assert e.code == 0, e.code\n"
        "heavy = [m for m in ('torch', 'pandas', 'h5py', 'matplotlib', 'textual') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"tsdiff {__version__}"


def test_user_error_is_one_line_without_traceback(workdir):
    proc = subprocess.run(
        [sys.executable, "-m", "tsdiff_cli", "preprocess", "no-such.toml"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such.toml" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_thread_count_precedence(monkeypatch):
    """--threads beats OMP_NUM_THREADS, which beats one thread per physical core; the OpenMP spin is
    shortened unless the user chose a wait policy."""
    import torch

    from tsdiff_cli.threads import SPIN_COUNT, configure, physical_cores

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY"):
        monkeypatch.delenv(name, raising=False)
    assert configure() == physical_cores() == torch.get_num_threads()
    assert os.environ["GOMP_SPINCOUNT"] == SPIN_COUNT
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.delenv("GOMP_SPINCOUNT")
    assert configure() == 1 == torch.get_num_threads() and "GOMP_SPINCOUNT" not in os.environ
    assert configure(3) == 3 == torch.get_num_threads() and os.environ["OMP_NUM_THREADS"] == "3"


def test_threads_option_and_variable_reach_torch(cli, workdir):
    import torch

    assert cli("--threads", "1", "config", "show", "--help").exit_code == 0
    assert torch.get_num_threads() == 1
    assert cli("config", "show", "--help", env={"TSDIFF_THREADS": "2"}).exit_code == 0
    assert torch.get_num_threads() == 2
    result = cli("--threads", "-1", "config", "show")
    assert result.exit_code == 2 and result.stderr.startswith("tsdiff: error: ") and result.stderr.count("\n") == 1


@pytest.mark.parametrize("args, words", [
    (["sample"], ["tsdiff sample", "Missing argument 'RUN'", "`tsdiff sample -h`"]),
    (["config", "show"], ["tsdiff config show", "Missing argument 'CONFIG'"]),
    (["sample", "runs/x", "--steps", "many"], ["'--steps'", "valid integer"]),
    (["sample", "runs/x", "--bogus"], ["No such option: --bogus"]),
    (["sampel"], ["No such command 'sampel'", "Did you mean 'sample'?"]),
])
def test_a_mistyped_command_line_is_one_line_and_exit_2(cli, args, words):
    result = cli(*args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("tsdiff: error: ") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def test_tsdiff_alone_still_shows_help(cli):
    result = cli()
    assert "Usage: tsdiff" in result.output and "sample" in result.output
