"""Follow a JSON-lines file that another process is appending to.

:class:`JsonlTail` reads only the bytes added since the last call, holds back a last line that
has no newline yet, waits for a file that does not exist yet, starts again from the top when the
file is truncated or replaced (a smaller size, another inode, or different bytes where it last
stopped), and counts lines that are not JSON objects instead of failing on them. It knows
nothing about runs or Textual.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK_BYTES = 2 << 20  # bytes parsed per read: keeps memory flat and a UI responsive on huge files
_FINGERPRINT = 64  # bytes just before the read position, compared on every read
# a control character written the only way JSON allows (\u001b…): rare, so records are only
# cleaned when a chunk holds one
_ESCAPED_CONTROL = re.compile(rb"\\u00[01][0-9a-fA-F]|\\u00[89][0-9a-fA-F]|\\u007[fF]")


def visible(text: str) -> str:
    """``text`` with control characters (escape sequences, bells, carriage returns…) written out
    as ``\\x1b``-style escapes, so that nothing read from a file can drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def visible_values(value: Any) -> Any:
    """:func:`visible` applied to every string (keys too) inside a JSON value."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, dict):
        return {visible(k): visible_values(v) for k, v in value.items()}
    if isinstance(value, list):
        return [visible_values(v) for v in value]
    return value


@dataclass
class Batch:
    """What one :meth:`JsonlTail.read` found."""

    records: list[dict] = field(default_factory=list)
    reset: bool = False  # the file was truncated or replaced: drop everything read before


class JsonlTail:
    def __init__(self, path: Path | str, chunk_bytes: int = CHUNK_BYTES):
        self.path = Path(path)
        self.chunk_bytes = chunk_bytes
        self.exists = False
        self.more = False  # complete lines remain after the last read (call read again)
        self.pending = 0  # bytes of a last line still waiting for its newline
        self.bad_lines = 0  # lines that are not a JSON object
        self.last_bad: tuple[int, str] | None = None  # (line number, start of the line)
        self.resets = 0
        self._restart()

    def _restart(self) -> None:
        self.offset = 0  # bytes of complete lines consumed
        self.line_count = 0  # lines consumed, blank ones included (for line numbers)
        self._identity: tuple[int, int] | None = None
        self._fingerprint = b""
        self.bad_lines = 0
        self.last_bad = None

    def read(self) -> Batch:
        """Records from the complete lines added since the last call (at most about one chunk)."""
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            self.exists, self.more, self.pending = False, False, 0
            return Batch()
        with f:
            self.exists = True
            st = os.fstat(f.fileno())
            reset = self._changed(f, st)
            if reset:
                self._restart()
                self.resets += 1
            self._identity = (st.st_dev, st.st_ino)
            f.seek(self.offset)
            data = self._read_lines(f)
            cut = data.rfind(b"\n") + 1
            complete = data[:cut]
            self.offset += cut
            self._fingerprint = (self._fingerprint + complete)[-_FINGERPRINT:]
            position = f.tell()
            self.more = position < st.st_size  # stopped at the chunk size, not at the end
            self.pending = 0 if self.more else position - self.offset
        return Batch(self._parse(complete), reset)

    def _changed(self, f, st: os.stat_result) -> bool:
        if self._identity is None:
            return False
        if (st.st_dev, st.st_ino) != self._identity or st.st_size < self.offset:
            return True
        if self._fingerprint:
            f.seek(self.offset - len(self._fingerprint))
            return f.read(len(self._fingerprint)) != self._fingerprint
        return False

    def _read_lines(self, f) -> bytes:
        """About one chunk, extended to the end of a line when a single line is longer."""
        data = f.read(self.chunk_bytes)
        while len(data) >= self.chunk_bytes and b"\n" not in data[-self.chunk_bytes:]:
            more = f.read(self.chunk_bytes)
            if not more:
                break
            data += more
        return data

    # --- parsing -----------------------------------------------------------------------------

    def _parse(self, complete: bytes) -> list[dict]:
        if not complete:
            return []
        lines = complete.decode("utf-8", errors="replace").split("\n")
        lines.pop()  # the empty string after the last newline
        first = self.line_count + 1
        self.line_count += len(lines)
        numbered = [i for i, line in enumerate(lines) if line and not line.isspace()]
        records: list[dict] = []
        self._parse_range(lines, numbered, 0, len(numbered), first, records)
        if _ESCAPED_CONTROL.search(complete):
            records = [visible_values(r) for r in records]
        return records

    def _parse_range(self, lines: list[str], numbered: list[int], lo: int, hi: int, first: int, out: list) -> None:
        """One ``json.loads`` for many lines (far faster than one call per line); a range that
        does not decode as exactly one object per line is split in two until the bad lines stand
        alone, so garbage costs a few extra calls, not a slow path for the whole file."""
        if hi <= lo:
            return
        chunk = [lines[i] for i in numbered[lo:hi]]
        if all(line.lstrip().startswith("{") and line.rstrip().endswith("}") for line in chunk):
            try:
                values = json.loads("[" + ",".join(chunk) + "]")
            except ValueError:
                values = None
            if values is not None and len(values) == len(chunk) and all(type(v) is dict for v in values):
                out.extend(values)
                return
        if hi - lo == 1:
            self._bad(first + numbered[lo], chunk[0])
            return
        mid = (lo + hi) // 2
        self._parse_range(lines, numbered, lo, mid, first, out)
        self._parse_range(lines, numbered, mid, hi, first, out)

    def _bad(self, line_number: int, text: str) -> None:
        self.bad_lines += 1
        text = visible(text.strip())
        self.last_bad = (line_number, text if len(text) <= 60 else text[:57] + "...")
