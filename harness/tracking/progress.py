"""Progress display: a one-line bar on a terminal, one plain line per tick in a batch job.

A SLURM log file fills with carriage returns if a bar is drawn into it, so the mode follows
`stream.isatty()` unless forced.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

_BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def progress_text(nimg: int, total_nimg: int, metrics: Mapping[str, Any]) -> str:
    """The shared part of both displays: images seen, loss, speed and time left."""
    parts = [f"{nimg / 1e3:.1f}/{total_nimg / 1e3:.1f} kimg"]
    if "loss" in metrics:
        parts.append(f"loss {float(metrics['loss']):.4g}")
    rate = float(metrics.get("img_per_s", 0.0) or 0.0)
    if rate > 0:
        parts.append(f"{rate:.1f} img/s")
        parts.append(f"eta {format_duration((total_nimg - nimg) / rate)}")
    return "  ".join(parts)


class ProgressTracker:
    """A `Tracker` that shows progress; it records nothing."""

    def __init__(self, total_nimg: int, *, stream: TextIO | None = None,
                 interactive: bool | None = None):
        self.total_nimg = int(total_nimg)
        self.stream = stream if stream is not None else sys.stdout
        if interactive is None:
            isatty = getattr(self.stream, "isatty", None)
            interactive = bool(isatty and isatty())
        self.interactive = interactive
        self._run_id = ""
        self._started_at = time.monotonic()

    def start(self, run_id: str, group: str, job_type: str, config: Mapping[str, Any]) -> None:
        self._run_id = run_id
        self._started_at = time.monotonic()
        if not self.interactive:
            self._write(f"[{run_id}] start {group}/{job_type}: {self.total_nimg / 1e3:.1f} kimg\n")

    def log(self, metrics: Mapping[str, Any], *, step: int) -> None:
        text = progress_text(step, self.total_nimg, metrics)
        if self.interactive:
            fraction = min(1.0, step / max(self.total_nimg, 1))
            filled = int(round(fraction * _BAR_WIDTH))
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            self._write(f"\r[{bar}] {100 * fraction:5.1f}%  {text}\x1b[K")
        else:
            self._write(f"[{self._run_id}] {text}\n")

    def summary(self, values: Mapping[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        elapsed = format_duration(time.monotonic() - self._started_at)
        state = "done" if exit_code == 0 else f"stopped (exit {exit_code})"
        prefix = "\n" if self.interactive else ""
        self._write(f"{prefix}[{self._run_id}] {state} after {elapsed}\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
