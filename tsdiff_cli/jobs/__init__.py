"""The application layer: one module per user job (generate, impute, forecast, evaluate), each a
set of plain importable functions with explicit arguments that return result objects. The CLI
parses, resolves settings, calls one of them and prints; benchmarks and tests call them too.

Imports flow one way: cli → jobs → training / models / metrics / data → runs (see README,
"How the code is laid out").
"""

from __future__ import annotations

from collections.abc import Callable

Update = Callable[[str, int, int], None]  # progress of a named task: (label, done, total)


def no_update(label: str, done: int, total: int) -> None:
    """An :data:`Update` that shows nothing."""
