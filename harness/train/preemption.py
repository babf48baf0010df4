"""Preemption: a signal asks for a checkpoint at the next step boundary and a requeueable exit.

SLURM sends SIGTERM at preemption and at the time limit (and SIGUSR1 when a job asks for a
warning with `--signal=USR1@<s>`). The handler only sets a flag: checkpointing inside a signal
handler could interrupt a half-finished optimizer step. `train(..., stop=...)` polls the flag at
every step boundary, writes a checkpoint there, and returns with status "preempted"; the command
line entry (`python -m harness.train`) then exits with `EXIT_PREEMPTED`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable

# sysexits.h EX_TEMPFAIL: "a temporary failure; the user is invited to retry". The launcher
# requeues a job that exits with this status and resumes it from its last checkpoint.
EXIT_PREEMPTED = 75

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class StopFlag:
    """A `stop` callable for `train`: true once `set()` ran (from a signal handler or a thread)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self._previous: dict[int, object] = {}

    def __call__(self) -> bool:
        return self._event.is_set()

    def set(self, reason: str = "requested") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def restore(self) -> None:
        """Put back the handlers that `install_signal_handlers` replaced."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()


def install_signal_handlers(signals: Iterable[int] = DEFAULT_SIGNALS) -> StopFlag:
    """Make a StopFlag that SIGTERM / SIGUSR1 set. Call from the main thread."""
    flag = StopFlag()

    def handler(signum: int, frame: object) -> None:
        flag.set(signal.Signals(signum).name)

    for signum in signals:
        flag._previous[signum] = signal.signal(signum, handler)
    return flag
