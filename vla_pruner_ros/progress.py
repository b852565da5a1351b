"""A progress line on stderr for long commands: redrawn at most a few times a second on a terminal,
a line every 30 s and a final one otherwise (so logs stay readable)."""

from __future__ import annotations

import sys
import time

LOG_INTERVAL_S = 30.0


class Progress:
    def __init__(self, label: str, unit: str = "ticks", min_interval_s: float = 0.25) -> None:
        self.label, self.unit, self.min_interval = label, unit, min_interval_s
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int, elapsed: float) -> None:
        now = time.monotonic()
        final = done >= total
        # a terminal line is redrawn a few times a second; a log (not a terminal) gets a line every 30 s
        if not final and now - self._last < (self.min_interval if self.tty else LOG_INTERVAL_S):
            return
        self._last = now
        rate = done / elapsed if elapsed > 0 else 0.0
        bar = "#" * int(30 * done / max(total, 1))
        line = f"{self.label:<11} [{bar:<30}] {done}/{total} {self.unit} {rate:6.1f} {self.unit}/s"
        sys.stderr.write(("\r" if self.tty else "") + line + ("\n" if final or not self.tty else ""))
        sys.stderr.flush()
