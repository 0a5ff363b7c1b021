"""Progress of a long batch run on stderr: rows so far and rows per second, redrawn in place at
most twice a second. Only on a terminal: a pipe or a log file gets nothing, so that what a
script captures stays clean."""

from __future__ import annotations

import sys
import time
from typing import IO

INTERVAL_SECONDS = 0.5


class Progress:
    """Call ``update(rows_so_far)`` as rows are predicted and ``close()`` at the end."""

    def __init__(self, stream: IO[str] | None, enabled: bool = True, clock=time.monotonic):
        self.stream = stream if enabled and stream is not None and stream.isatty() else None
        self.clock = clock
        self.start = self.last = clock()
        self.shown = False

    def update(self, rows: int) -> None:
        if self.stream is None:
            return
        now = self.clock()
        if now - self.last < INTERVAL_SECONDS:
            return
        self.last = now
        rate = rows / max(now - self.start, 1e-9)
        self.stream.write(f"\r{rows:,} rows  {rate:,.0f} rows/s\x1b[K")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        """Erase the line, so that the shell prompt or an error starts on a clean line."""
        if self.stream is not None and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def on_stderr(quiet: bool) -> Progress:
    return Progress(sys.stderr, enabled=not quiet)
