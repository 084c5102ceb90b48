"""Progress of long tasks on stderr, shared by every stage (extraction, pretraining, training).

A rich bar on a terminal; elsewhere (log file, pipe, CI) plain lines at a bounded rate.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

PLAIN_STEPS = 10  # without a terminal: a progress line per tenth of the task …
PLAIN_MIN_INTERVAL_S = 2.0  # … but not more often than this …
PLAIN_MAX_INTERVAL_S = 60.0  # … and at least this often while the task runs


def stderr_console() -> Console:
    return Console(stderr=True)


class ProgressReport:
    """Progress of one task on stderr: a rich bar on a terminal; elsewhere (log file, pipe, CI) plain
    lines such as `extract: 240/2000 videos (12%), 3.1 videos/s, ETA 9 min, 2 failed`, because a bar
    there prints only its last frame, cut to 80 columns. A no-op when disabled.

    `transient`: the bar disappears at the end, and no final plain line is printed (the caller prints
    its own summary)."""

    def __init__(self, label: str, total: int, unit: str, *, enabled: bool = True, transient: bool = False,
                 detail: str = "", console: Console | None = None) -> None:
        self.label, self.total, self.unit, self.detail = label, total, unit, detail
        self.enabled, self.transient = enabled, transient
        self.console = console if console is not None else stderr_console()
        self.completed = 0
        self._bar: Any = None
        self._task: Any = None
        self._plain = False
        self._t0 = self._last_line_t = 0.0
        self._next_step = 1  # of PLAIN_STEPS

    def __enter__(self) -> ProgressReport:
        self._t0 = self._last_line_t = time.monotonic()
        if not self.enabled:
            return self
        if not self.console.is_terminal or self.console.is_dumb_terminal:
            self._plain = True
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[detail]}", markup=False),
            console=self.console, transient=self.transient,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total, rate=f"- {self.unit}/s", detail=self.detail)
        return self

    def advance(self, n: int = 1, *, detail: str | None = None) -> None:
        self.update(self.completed + n, detail=detail)

    def update(self, completed: int, *, detail: str | None = None) -> None:
        """Sets the number of finished items (and the text after the numbers)."""
        self.completed = completed
        if detail is not None:
            self.detail = detail
        if self._bar is not None:
            self._bar.update(self._task, completed=completed, rate=self._rate(), detail=self.detail)
        elif self._plain and completed < self.total:
            now = time.monotonic()
            since = now - self._last_line_t
            if since >= PLAIN_MAX_INTERVAL_S or (
                since >= PLAIN_MIN_INTERVAL_S and completed * PLAIN_STEPS >= self._next_step * self.total
            ):
                self._line(f"ETA {_duration(self._eta_s())}")

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        elif self._plain and not self.transient and self.total > 0 and exc[0] is None:
            self._line(f"done in {_duration(time.monotonic() - self._t0)}")

    def _line(self, tail: str) -> None:
        self._last_line_t = time.monotonic()
        fraction = self.completed / self.total if self.total else 1.0
        self._next_step = self.completed * PLAIN_STEPS // max(self.total, 1) + 1
        parts = [f"{self.label}: {self.completed}/{self.total} {self.unit} ({fraction:.0%})", self._rate(), tail]
        if self.detail:
            parts.append(self.detail)
        self.console.print(", ".join(parts), soft_wrap=True, markup=False, highlight=False)

    def _rate(self) -> str:
        elapsed = time.monotonic() - self._t0
        if self.completed == 0 or elapsed <= 0:
            return f"- {self.unit}/s"
        rate = self.completed / elapsed
        return f"{rate:.{0 if rate >= 10 else 1 if rate >= 1 else 2}f} {self.unit}/s"

    def _eta_s(self) -> float:
        elapsed = time.monotonic() - self._t0
        return elapsed / self.completed * (self.total - self.completed) if self.completed else float("inf")


def _duration(seconds: float) -> str:
    """`0.4 s`, `42 s`, `9 min`, `2 h 05 min` (progress lines need no more precision)."""
    if seconds == float("inf"):
        return "unknown"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"
