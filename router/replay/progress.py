"""A dependency-free progress bar on stderr, for runs long enough to need one."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """`update(done)` redraws at most ten times a second; `close()` ends the line.

    Silent when `total` is below `min_total` or the stream is not a terminal
    (unless `force`), so logs and tests stay clean.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        min_total: int = 50_000,
        force: bool = False,
    ) -> None:
        self.label = label
        self.total = max(total, 1)
        self.stream = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.enabled = force or (total >= min_total and isatty)
        self._last = 0.0
        self._t0 = time.perf_counter()

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < 0.1 and done < self.total:
            return
        self._last = now
        frac = min(done / self.total, 1.0)
        bar = "#" * int(frac * 30)
        rate = done / max(now - self._t0, 1e-9)
        self.stream.write(
            f"\r{self.label} [{bar:<30}] {done}/{self.total} {frac:6.1%} {rate:,.0f}/s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(self.total)
            self.stream.write("\n")
            self.stream.flush()
