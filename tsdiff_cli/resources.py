"""Refuse up front what cannot fit: work that scales with a number the user gives (windows to
sample, samples per forecast or per gap) is checked against free disk space and available memory
before it starts, with the figures in the message, rather than failing hours in."""

from __future__ import annotations

import shutil
from pathlib import Path

from tsdiff_cli.errors import UserError


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_disk(path: Path) -> int:
    """Free bytes on the disk that would hold ``path`` (its nearest existing folder)."""
    folder = Path(path).absolute().parent
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def available_memory() -> int | None:
    """Bytes the system can give without swapping (Linux MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def require_disk(path: Path, need: int, what: str, fix: str) -> None:
    free = free_disk(path)
    if need > free:
        raise UserError(path, f"{what} need about {size_text(need)}, but its disk has {size_text(free)} free", fix)


def require_memory(where: str, need: int, what: str, fix: str) -> None:
    free = available_memory()
    if free is not None and need > free:
        raise UserError(where, f"{what} need about {size_text(need)} of memory, {size_text(free)} is available", fix)
