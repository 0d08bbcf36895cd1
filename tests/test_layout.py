"""The house rules of the code, checked on its source: imports flow one way (cli → jobs →
training / models / metrics / data → runs), there is no import cycle, the monitor and
``tsdiff --help`` never pay for torch, and only runs.py spells a run-file name."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tsdiff_cli import runs

PACKAGE = Path(__file__).resolve().parents[1] / "tsdiff_cli"
# lower layers never import higher ones; modules of one layer may import each other (without cycles)
LAYERS = {"cli": 4, "jobs": 3, "monitor": 3, "training": 2, "models": 2, "metrics": 2, "data": 2, "runs": 1,
          "settings": 0, "errors": 0, "atomic": 0, "resources": 0, "threads": 0, "__init__": 0, "__main__": 5}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every tsdiff_cli module and the tsdiff_cli modules it imports, at the top or inside functions."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = _module(path)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tsdiff_cli"):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("tsdiff_cli"))
        graph[name] = found
    return {m: {i for i in deps if i in graph and i != m} for m, deps in graph.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_imports_flow_down_the_layers():
    upward = [(m, i) for m, deps in _imports().items() for i in deps if _layer(i) > _layer(m)]
    assert upward == []


def test_no_import_cycle():
    graph = _imports()
    # a package's __init__ importing its own modules is how Python packages work, not a cycle of concepts
    edges = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for i in edges[m]:
            if state.get(i) == 1:
                cycles.append(path[path.index(i):] + [i])
            elif i not in state:
                visit(i, path + [i])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert cycles == []


def test_the_monitor_and_the_run_format_need_no_torch():
    code = ("import sys\nimport tsdiff_cli.runs, tsdiff_cli.monitor.app, tsdiff_cli.monitor.locate\n"
            "print('HEAVY', [m for m in ('torch', 'safetensors') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_only_runs_py_spells_a_run_file_name():
    names = {runs.CONFIG_FILE, runs.METRICS_FILE, runs.LOG_FILE, runs.STATUS_FILE, runs.MODEL_FILE, runs.TST_FILE,
             runs.REPORT_FILE, runs.CHECKPOINTS, runs.BASE_MODEL_FILE, runs.SAMPLING_WEIGHTS_FILE, "latest.json"}
    spelled = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "runs.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                spelled.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value}")
    assert spelled == []
