"""Outputs appear whole or not at all: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tsdiff_cli.errors import UserError


def ensure_writable(path: Path, what: str = "output") -> Path:
    """Check, before any work is done and without creating anything, that ``path`` can be written.

    Raises :class:`UserError` naming the path when it is a directory or when its nearest
    existing ancestor is not a writable folder. Missing folders are made by :func:`atomic_output`.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(path, f"the {what} path is a directory", "name a file")
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(path, f"cannot write the {what} here ({ancestor} is a file, not a folder)",
                        "choose another path")
    try:  # os.access is not enough: root on a read-only file system passes it
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError:
        raise UserError(path, f"cannot write the {what} here ({ancestor} is not writable)",
                        "choose a writable path") from None
    return path


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path; rename it to ``path`` if the block succeeds, delete it otherwise
    (also on Ctrl-C), so a reader never sees a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(path, f"cannot create its folder ({exc.strerror})", "choose a writable path") from None
    _remove_stale(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale(path: Path) -> None:
    """Temporary files of ``path`` left by processes that no longer exist (killed mid-write)."""
    for old in path.parent.glob(f".{path.name}.*.tmp"):
        pid = old.name[len(path.name) + 2:-4]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            old.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
