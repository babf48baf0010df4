"""Where a run stands, derived from its records and from what the scheduler says of its job.

The records decide first: a run whose job is still queued or running is pending/running; a run
whose last attempt wrote `error.json` failed; a run with `done.json` is completed. Only a run
that left none of these is judged by the scheduler alone (cancelled, killed at its time limit,
out of memory), and a run with checkpoints but no live job is "interrupted": relaunching resumes it.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import traceback
from pathlib import Path

from submitit.core.utils import JobPaths

from harness.records import RunPaths, read_json, read_metrics, read_evals, write_json_atomic

# Run states, as `harness status` prints them.
PENDING, RUNNING, COMPLETED, FAILED = "pending", "running", "completed", "failed"
CANCELLED, TIMEOUT, INTERRUPTED = "cancelled", "timeout", "interrupted"
NOT_SUBMITTED, UNKNOWN = "not-submitted", "unknown"
ACTIVE_STATES = frozenset({PENDING, RUNNING})

# Scheduler states (sacct, submitit's LocalJob and InProcessJob) -> what they mean for a run.
_SCHEDULER = {
    "PENDING": PENDING, "REQUEUED": PENDING, "REQUEUE_HOLD": PENDING, "REQUEUE_FED": PENDING,
    "CONFIGURING": PENDING, "RESIZING": PENDING, "PREEMPTED": PENDING, "QUEUED": PENDING,
    "RUNNING": RUNNING, "COMPLETING": RUNNING, "SUSPENDED": RUNNING, "STAGE_OUT": RUNNING,
    "SIGNALING": RUNNING,
    "COMPLETED": COMPLETED, "FINISHED": COMPLETED, "DONE": COMPLETED,
    "FAILED": FAILED, "NODE_FAIL": FAILED, "OUT_OF_MEMORY": FAILED, "BOOT_FAIL": FAILED,
    "DEADLINE": TIMEOUT, "TIMEOUT": TIMEOUT,
    "CANCELLED": CANCELLED, "INTERRUPTED": CANCELLED, "REVOKED": CANCELLED,
}


def scheduler_state(raw: str | None) -> str | None:
    """Normalise a scheduler's state word (`CANCELLED by 0` -> cancelled); None when unknown."""
    if not raw:
        return None
    word = raw.split()[0].upper().rstrip("+")
    return _SCHEDULER.get(word)


def error_path(paths: RunPaths) -> Path:
    """The failure record of the run's last attempt (removed when the run is submitted again)."""
    return paths.root / "error.json"


def finished_path(paths: RunPaths) -> Path:
    """Written by the launched job after training and its inline evaluation both ended."""
    return paths.root / "finished.json"


def is_complete(paths: RunPaths, *, launched: bool) -> bool:
    """Training reached its duration and, for a run the launcher started, its job finished too
    (a job killed during its inline evaluation is not complete: relaunching evaluates)."""
    return finished_path(paths).exists() or (not launched and paths.done.exists())


def run_state(paths: RunPaths, scheduler: str | None, *, submitted: bool = True) -> str:
    """The state of one run from its records and the (normalised) state of its job.

    `submitted`: the manifest names a job for this run (its job writes finished.json at the end).
    """
    if scheduler in ACTIVE_STATES:
        return scheduler
    if error_path(paths).exists():
        return FAILED
    if is_complete(paths, launched=submitted):
        return COMPLETED
    if scheduler in (FAILED, CANCELLED, TIMEOUT):
        return scheduler
    if not submitted:
        return NOT_SUBMITTED
    if paths.list_checkpoints() or paths.metrics.exists():
        return INTERRUPTED
    # The job ended without records of its own: it died before training started.
    return FAILED if scheduler == COMPLETED else UNKNOWN


# ------------------------------------------------------------------------------------ error text


def write_error(paths: RunPaths, exc: BaseException) -> dict:
    """Record the exception that ended this attempt (called inside the job, rank 0)."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    record = {
        "type": type(exc).__name__,
        "message": str(exc),
        "last_line": lines[-1].strip() if lines else repr(exc),
        "traceback": "".join(lines),
        "host": os.uname().nodename,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(error_path(paths), record)
    return record


_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt|Exit)\b.*")


def last_exception_line(text: str) -> str | None:
    """The last `SomeError: message` line of a log (a traceback's summary), if any."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if _EXCEPTION_LINE.match(line):
            return line
    return None


def run_error(paths: RunPaths, state: str, *, log_folder: str | None, job_id: str | None) -> str:
    """One line saying why a run failed: its error.json, else its job's stderr, else the state."""
    if error_path(paths).exists():
        try:
            return str(read_json(error_path(paths))["last_line"])
        except (OSError, ValueError, KeyError):
            pass
    if state not in (FAILED, CANCELLED, TIMEOUT, UNKNOWN):
        return ""
    if log_folder and job_id:
        stderr = JobPaths(log_folder, job_id=job_id, task_id=0).stderr
        if stderr.exists():
            found = last_exception_line(stderr.read_text(errors="replace")[-20000:])
            if found:
                return found
    return {TIMEOUT: "time limit reached without a checkpoint to requeue from",
            CANCELLED: "cancelled"}.get(state, "")


# --------------------------------------------------------------------------------- progress text


def images_seen(paths: RunPaths) -> int | None:
    ticks = read_metrics(paths)
    return int(ticks[-1]["nimg"]) if ticks else None


def last_metric(paths: RunPaths) -> dict | None:
    evals = read_evals(paths)
    return evals[-1] if evals else None


def format_metric(record: dict | None) -> str:
    if not record:
        return ""
    where = f"@{record['nimg'] / 1e3:g}k" if "nimg" in record else ""
    return f"{record['metric']}={float(record['value']):.4g}{where}"
