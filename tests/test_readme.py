"""The README's two commands are what CI runs; this fails when they drift apart."""

from __future__ import annotations

import re

from conftest import REPO


def test_ci_runs_the_readme_commands():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- two-commands -->\s*```sh\n(.*?)```", readme, re.S)
    assert block, "README lost its two-commands block"
    commands = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-2:] == commands
