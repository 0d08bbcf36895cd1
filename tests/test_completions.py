"""completions/tsdiff.{bash,zsh,fish} are what the CLI generates now, and they complete."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

COMPLETIONS = REPO / "completions"
# the generator is a build tool beside the scripts, not part of the installed package
_spec = importlib.util.spec_from_file_location("completions_generate", COMPLETIONS / "generate.py")
completions = sys.modules[_spec.name] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(completions)


def test_scripts_match_the_cli():
    for name, text in completions.scripts().items():
        path = COMPLETIONS / name
        assert path.is_file(), f"{path} is missing: run python completions/generate.py"
        assert path.read_text() == text, f"{path} is stale: run python completions/generate.py"


def test_tree_has_every_command_and_option():
    tree = completions.command_tree()
    commands = {node.path: node for node in completions._walk(tree)}
    assert {"preprocess", "pretrain-tst", "train", "sample", "evaluate", "monitor", "config", "config show"} <= set(commands)
    monitor = {name: o.value for o in commands["monitor"].options for name in o.names}
    assert monitor == {"--once": None, "--interval": "word", "--linear": None, "--screenshot": "file",
                       "-h": None, "--help": None}
    assert commands["monitor"].argument == "dir" and commands["train"].argument == "toml"
    train = {name: o.value for o in commands["train"].options for name in o.names}
    assert train["--resume"] == "dir" and train["--quiet"] is None


def test_check_mode_reports_stale_scripts(tmp_path, capsys):
    assert completions.main(["--check", "--dir", str(tmp_path)]) == 1
    assert "tsdiff.bash: stale" in capsys.readouterr().out
    assert completions.main(["--dir", str(tmp_path)]) == 0
    assert completions.main(["--check", "--dir", str(tmp_path)]) == 0


@pytest.fixture
def files(tmp_path):
    (tmp_path / "runs" / "20260101-120000-train-a").mkdir(parents=True)
    (tmp_path / "stock.toml").write_text("")
    (tmp_path / "data.csv").write_text("")
    return tmp_path


BASH = """source "$1"; read -ra COMP_WORDS <<< "$2"; [[ "$2" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _tsdiff; printf '%s\\n' "${COMPREPLY[@]}" | sort"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
@pytest.mark.parametrize("line, expected", [
    ("tsdiff mo", ["monitor"]),
    ("tsdiff config ", ["show"]),
    ("tsdiff monitor --i", ["--interval"]),
    ("tsdiff monitor ", ["runs"]),
    ("tsdiff train ", ["runs", "stock.toml"]),
    ("tsdiff train --resume ", ["runs"]),
    ("tsdiff train --device train ", ["runs", "stock.toml"]),  # an option's value is not a command
    ("tsdiff sample --seed ", []),
])
def test_bash_completes(files, line, expected):
    out = subprocess.run(["bash", "-c", BASH, "_", str(COMPLETIONS / "tsdiff.bash"), line], cwd=files,
                         capture_output=True, text=True, check=True).stdout
    assert [w for w in out.splitlines() if w] == expected


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
@pytest.mark.parametrize("line, expected", [
    ("tsdiff mo", ["monitor"]),
    ("tsdiff monitor --l", ["--linear"]),
    ("tsdiff monitor ", ["runs/"]),
    ("tsdiff train --resume ", ["runs/"]),
])
def test_fish_completes(files, line, expected):
    out = subprocess.run(["fish", "--no-config", "-c", f"source {COMPLETIONS / 'tsdiff.fish'}; complete -C '{line}'"],
                         cwd=files, capture_output=True, text=True, check=True).stdout
    assert sorted(w.split("\t")[0] for w in out.splitlines() if w) == expected


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_script_parses():
    subprocess.run(["zsh", "-n", str(COMPLETIONS / "tsdiff.zsh")], check=True)
