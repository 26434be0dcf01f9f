"""Progress lines of an extraction that a log keeps (not only a terminal bar).

:class:`StepLog` writes ``"<what> <done>/<total>, <elapsed> elapsed, ~<left> left"`` through a
``log`` callable (the command line passes one writing to stderr), at most about ``lines`` times
per phase, always at the last step; the estimate of what is left scales the elapsed time by the
share of the work (batches, or features of the layers) still to do.
"""
from __future__ import annotations

import time


def plural(n: int, word: str) -> str:
    """``1 layer``, ``2 layers``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_seconds(s: float) -> str:
    """``4.2 s``, ``3 min 05 s``, ``1 h 02 min`` (``?`` when unknown)."""
    if s != s:
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(round(s)), 60)
    if m < 60:
        return f"{m} min {sec:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def format_bytes(n: float) -> str:
    """``512 B``, ``3.4 MB``, ``1.2 GB`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover - unreachable


class StepLog:
    """Lines for one phase of work of known size (``total`` units, e.g. batches or features)."""

    def __init__(self, log, prefix: str, what: str, total: float, lines: int = 10):
        self.log, self.prefix, self.what, self.total = log, prefix, what, float(total)
        self.every = self.total / max(1, lines)
        self.t0 = time.perf_counter()
        self._next = self.every

    def step(self, done: float, detail: str = "", share: float | None = None) -> None:
        """Report ``done`` units finished (a line when a tenth more is done, and at the end).

        ``share``: the fraction of the work done, when units differ in cost (default ``done / total``).
        """
        if self.log is None or (done < self._next and done < self.total):
            return
        self._next = done + self.every
        elapsed = time.perf_counter() - self.t0
        share = done / self.total if share is None else share
        left = elapsed * (1 - share) / share if share > 0 else float("nan")
        extra = f" ({detail})" if detail else ""
        self.log(f"{self.prefix}: {self.what} {_count(done)}/{_count(self.total)}{extra}, "
                 f"{format_seconds(elapsed)} elapsed, ~{format_seconds(left)} left")


def _count(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


__all__ = ["StepLog", "format_seconds", "format_bytes", "plural"]
