"""`harness status` and `harness cancel`: an experiment's jobs read back from its directory.

Works from any process: the manifest names each run's last job, the scheduler is asked about
it once (one `sacct` for all SLURM jobs), and the run's own records settle the rest.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from harness.errors import HarnessError
from harness.launch.jobs import JobView, refresh, view_from_entry
from harness.launch.launcher import LOCK_FILE
from harness.launch.manifest import JobRecord, append_event, last_submission, latest_entries
from harness.launch.state import (
    ACTIVE_STATES, CANCELLED, INTERRUPTED, NOT_SUBMITTED, UNKNOWN, format_metric, images_seen,
    last_metric, run_error, run_state,
)
from harness.records import ExperimentPaths

QUEUED = "queued"


def _experiment(experiment_dir: str | Path) -> ExperimentPaths:
    exp = ExperimentPaths(experiment_dir)
    if not exp.manifest.is_file():
        raise HarnessError(f"{exp.root}: not an experiment directory (no {exp.manifest.name}); "
                           "give the directory `harness run` printed as 'records:'")
    return exp


def launcher_pid(exp: ExperimentPaths) -> int | None:
    """The pid of a `harness run` that is launching or watching this experiment, if any.

    The launcher writes its pid into the lock file while it holds the lock and empties it when
    it lets go; a pid left by a killed launcher no longer names a live process. (Reading the
    file instead of trying the lock keeps `status` from ever blocking a launcher.)
    """
    try:
        text = (exp.root / LOCK_FILE).read_text().strip()
    except OSError:
        return None
    if not text.isdigit() or not _alive(int(text)):
        return None
    return int(text)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"  # a zombie has exited already


def experiment_status(experiment_dir: str | Path) -> list[JobRecord]:
    """One record per run of the experiment, in manifest order, with state, images seen, last
    metric and (for a run that failed) the last line of its error."""
    exp = _experiment(experiment_dir)
    entries = latest_entries(exp.manifest)
    submissions = last_submission(exp.manifest)
    views: dict[str, JobView | None] = {
        run_id: view_from_entry(entry) for run_id, entry in submissions.items()}
    refresh([v for v in views.values() if v is not None])
    launcher_alive = launcher_pid(exp) is not None
    records = []
    for run_id, entry in entries.items():
        paths = exp.run(run_id)
        view = views.get(run_id)
        submitted = submissions.get(run_id, {})
        state = run_state(paths, view.state() if view else None, submitted=bool(submitted))
        if state in (INTERRUPTED, UNKNOWN, NOT_SUBMITTED):
            if entry.get("event") == "cancelled":
                state = CANCELLED
            elif entry.get("state") == QUEUED and launcher_alive:
                state = QUEUED
        record = JobRecord(
            run_id=run_id, variant=entry.get("variant", ""), seed=entry.get("seed", 0),
            overrides=entry.get("overrides", {}), executor=entry.get("executor", ""),
            run_dir=paths.root, job_id=submitted.get("job_id"), state=state,
            submitted_at=submitted.get("submitted_at"), log_folder=submitted.get("log_folder"),
            nimg=images_seen(paths), metric=format_metric(last_metric(paths)))
        record.error = run_error(paths, state, log_folder=record.log_folder, job_id=record.job_id)
        record.extra["view"] = view
        records.append(record)
    return records


def cancel_experiment(experiment_dir: str | Path) -> list[JobRecord]:
    """Cancel every unfinished job (and stop the launcher feeding it new ones); returns the
    records of the runs cancelled."""
    exp = _experiment(experiment_dir)
    _stop_launcher(exp)
    cancelled = []
    for record in experiment_status(exp.root):
        view = record.extra.pop("view", None)
        if record.state in ACTIVE_STATES and view is not None:
            view.cancel()
        elif record.state not in (QUEUED, NOT_SUBMITTED):
            continue
        record.state = CANCELLED
        append_event(exp, record, "cancelled")
        cancelled.append(record)
    return cancelled


def _stop_launcher(exp: ExperimentPaths, timeout_s: float = 10.0) -> None:
    """SIGTERM the `harness run` process that holds the experiment's launch lock, if it is one."""
    pid = launcher_pid(exp)
    if not pid or pid <= 0 or pid == os.getpid() or not _is_harness_run(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _is_harness_run(pid):
        time.sleep(0.1)


def _is_harness_run(pid: int) -> bool:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    if not _alive(pid):
        return False
    is_harness = any(a == "harness" or a.endswith("/harness") for a in args)
    return is_harness and "run" in args
