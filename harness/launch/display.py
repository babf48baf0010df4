"""Text tables and the progress display of a launch (a live table on a terminal, plain lines
otherwise: a log file or CI output must not fill with cursor movements)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, TextIO


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; numbers are given already formatted."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def format_kimg(nimg: int | None, total_nimg: int | None = None) -> str:
    if nimg is None:
        return ""
    text = f"{nimg / 1e3:.1f}"
    return f"{text}/{total_nimg / 1e3:.1f} kimg" if total_nimg else f"{text} kimg"


@dataclass(frozen=True)
class ProgressRow:
    run_id: str
    variant: str
    seed: int
    state: str
    nimg: int | None = None
    total_nimg: int | None = None
    metric: str = ""
    error: str = ""


ROW_HEADERS = ("run_id", "variant", "seed", "state", "images", "last metric", "error")


def row_cells(row: ProgressRow) -> tuple:
    return (row.run_id, row.variant, row.seed, row.state, format_kimg(row.nimg, row.total_nimg),
            row.metric, row.error)


class Progress(Protocol):
    def update(self, rows: Sequence[ProgressRow]) -> None: ...

    def close(self, rows: Sequence[ProgressRow]) -> None: ...


class LiveTable:
    """Redraws one table in place (ANSI cursor movement); for terminals only."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._drawn_lines = 0
        self._t0 = time.monotonic()

    def update(self, rows: Sequence[ProgressRow]) -> None:
        done = sum(r.state in ("completed", "failed", "cancelled", "timeout") for r in rows)
        head = f"{done}/{len(rows)} jobs finished, {time.monotonic() - self._t0:.0f} s"
        text = head + "\n" + format_table(ROW_HEADERS, [row_cells(r) for r in rows])
        if self._drawn_lines:
            self.stream.write(f"\x1b[{self._drawn_lines}F\x1b[J")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._drawn_lines = text.count("\n") + 1

    def close(self, rows: Sequence[ProgressRow]) -> None:
        self.update(rows)


class PlainLines:
    """One line per job whenever its state changes, and its images seen at most every
    `every_s` seconds while it runs."""

    def __init__(self, stream: TextIO, every_s: float = 30.0):
        self.stream = stream
        self.every_s = every_s
        self._last: dict[str, tuple[str, float]] = {}
        self._t0 = time.monotonic()

    def update(self, rows: Sequence[ProgressRow]) -> None:
        now = time.monotonic()
        for row in rows:
            previous = self._last.get(row.run_id)
            changed = previous is None or previous[0] != row.state
            due = previous is not None and now - previous[1] >= self.every_s and row.state == "running"
            if changed or due:
                self._last[row.run_id] = (row.state, now)
                self.stream.write(self._line(row, now) + "\n")
        self.stream.flush()

    def _line(self, row: ProgressRow, now: float) -> str:
        parts = [f"[{now - self._t0:5.0f} s] {row.run_id} {row.variant} seed={row.seed}: {row.state}"]
        if row.nimg is not None:
            parts.append(format_kimg(row.nimg, row.total_nimg))
        if row.metric:
            parts.append(row.metric)
        if row.error:
            parts.append(f"error: {row.error}")
        return "  ".join(parts)

    def close(self, rows: Sequence[ProgressRow]) -> None:
        self.update(rows)


class Silent:
    def update(self, rows: Sequence[ProgressRow]) -> None:
        pass

    def close(self, rows: Sequence[ProgressRow]) -> None:
        pass


def default_progress(stream: TextIO | None = None) -> Progress:
    stream = stream or sys.stdout
    return LiveTable(stream) if stream.isatty() else PlainLines(stream)
