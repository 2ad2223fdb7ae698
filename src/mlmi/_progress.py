"""A dependency-free progress bar for long work (chains, demo, simulation)."""

from __future__ import annotations

import sys
import time


class Progress:
    """One line on stderr: a bar, done / total, failures, elapsed time and ETA.

    ``enabled=False`` makes every method a no-op (quiet mode for scripts).
    """

    def __init__(self, total: int, enabled: bool = True, stream=None, label: str = ""):
        self.total, self.done, self.failed = total, 0, 0
        self.enabled = enabled and total > 0
        self.stream = stream or sys.stderr
        self.label = label
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, ok: bool = True, n: int = 1) -> None:
        self.done += n
        self.failed += 0 if ok else n
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.5 or self.done >= self.total):
            self._last = now
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total else 100.0
        width = 30
        fill = min(width, int(width * self.done / self.total)) if self.total else width
        head = f"{self.label} " if self.label else ""
        fails = f"  failures {self.failed}" if self.failed else ""
        return (f"{head}[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} "
                f"({pct:.0f}%){fails}  elapsed {hms(elapsed)}  ETA {hms(eta)}   ")

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def hms(seconds: float) -> str:
    """Seconds as m:ss or h:mm:ss ('--:--' when unknown)."""
    if seconds != seconds or seconds == float("inf"):
        return "--:--"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
