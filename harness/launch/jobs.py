"""Views of submitted jobs: the submitit job a launcher holds, or one found again from the
manifest by another process (`harness status`, `harness cancel`, a relaunch).

Every view answers `state()` with a normalised scheduler state (see `state.scheduler_state`)
or None when the scheduler no longer knows the job, and can `cancel()` it.
"""

from __future__ import annotations

import datetime
import os
import signal
import time
from pathlib import Path
from typing import Any, Protocol

import submitit

from harness.launch.state import scheduler_state


class JobView(Protocol):
    job_id: str

    def state(self) -> str | None: ...

    def cancel(self) -> None: ...


# sacct learns of a job a moment after sbatch returns; until then "unknown" means "pending".
SCHEDULER_GRACE_S = 60.0


class SubmititView:
    """A submitit job object (SLURM, local with its process, or in-process)."""

    def __init__(self, job: submitit.Job, submitted_at: float | None = None):
        self.job = job
        self.job_id = str(job.job_id)
        self.submitted_at = time.time() if submitted_at is None else submitted_at

    def state(self) -> str | None:
        if hasattr(self.job, "_submission"):  # in-process: waiting on it runs it
            self.job.done()
        state = scheduler_state(self._raw_state())
        if state is None and time.time() - self.submitted_at < SCHEDULER_GRACE_S:
            return "pending"
        return state

    def _raw_state(self) -> str:
        raw = self.job.state
        if raw.upper() == "UNKNOWN" and isinstance(self.job, submitit.SlurmJob) and "_" in self.job_id:
            # Array tasks that never started have no row of their own in sacct: SLURM reports
            # them under the array's own id (e.g. "35|CANCELLED" for a cancelled 35_[2-3]).
            array_id = self.job_id.split("_", 1)[0]
            raw = self.job.watcher.get_info(array_id, mode="cache").get("State") or raw
        return raw

    def cancel(self) -> None:
        self.job.cancel(check=False)


class LocalPidView:
    """A local job started by another launcher process: alive while its controller runs.

    The controller is `python -m submitit.local._local <folder>`; the pid is checked against that
    command line so that a recycled pid is never taken for the job (or signalled).
    """

    def __init__(self, job_id: str, log_folder: str | None):
        self.job_id = str(job_id)
        self.log_folder = log_folder

    def _alive(self) -> bool:
        try:
            cmdline = Path(f"/proc/{int(self.job_id)}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return False
        # With setup lines the controller runs under `sh -c "<setup> && python -m ..."`.
        command = " ".join(a.decode(errors="replace") for a in cmdline)
        return "submitit.local._local" in command and (
            self.log_folder is None or self.log_folder in command)

    def state(self) -> str | None:
        return "running" if self._alive() else None

    def cancel(self) -> None:
        # SIGINT: the controller stops its tasks (INT, then KILL) and exits.
        if self._alive():
            os.kill(int(self.job_id), signal.SIGINT)


def view_from_entry(entry: dict[str, Any]) -> JobView | None:
    """Find the job a manifest line names again, or None (in-process jobs end with their launcher)."""
    job_id, folder, executor = entry.get("job_id"), entry.get("log_folder"), entry.get("executor")
    if not job_id:
        return None
    if executor == "slurm":
        if not folder or not submitit.SlurmExecutor.affinity() > 0:
            return None
        return SubmititView(submitit.SlurmJob(folder=folder, job_id=str(job_id)),
                            submitted_at=_timestamp(entry.get("submitted_at")))
    if executor == "local":
        return LocalPidView(str(job_id), folder)
    return None


def _timestamp(iso: str | None) -> float:
    try:
        return datetime.datetime.fromisoformat(iso).timestamp() if iso else 0.0
    except ValueError:
        return 0.0


def refresh(views: list[JobView]) -> None:
    """One scheduler query for all SLURM jobs in `views` (instead of one per job)."""
    if any(isinstance(v, SubmititView) and isinstance(v.job, submitit.SlurmJob) for v in views):
        submitit.SlurmJob.watcher.update()
