"""`launch_experiment`: an experiment spec → one run directory per job, submitted through an
executor, watched until done (or detached), relaunchable without duplicates.

Relaunching the same spec finds every job's run by its run_id. A completed run is skipped, a
run whose job is still queued or running is watched again (never submitted twice), and any other
run (interrupted, failed, cancelled, never submitted) is submitted again into the same
directory, where training resumes from its last checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from harness.errors import HarnessError
from harness.launch.display import Progress, ProgressRow, default_progress
from harness.launch.executors import check_executor_kind, make_executor, resolve_resources
from harness.launch.job import EvaluateFn, TrainFn, TrainJob, clear_error, evaluate_inline
from harness.launch.jobs import JobView, SubmititView, refresh, view_from_entry
from harness.launch.manifest import JobRecord, append_event, last_submission, now_iso
from harness.launch.results import metric_tables
from harness.launch.state import (
    ACTIVE_STATES, COMPLETED, format_metric, images_seen, last_metric, run_error, run_state,
)
from harness.records import ExperimentPaths, RunPaths, write_atomic

LOCK_FILE = ".launch.lock"  # holds the pid of the launcher while it runs

# Seconds between two looks at the jobs while waiting.
POLL_S = {"debug": 0.0, "local": 1.0, "slurm": 3.0}


@dataclass
class _Tracked:
    record: JobRecord
    view: JobView | None = None  # None while queued (local executor, no free slot yet)


def launch_experiment(spec: Any, *, executor_kind: str | None = None, out_root: str | Path | None = None,
                      wait: bool = True, progress: Progress | None = None,
                      executor: submitit.Executor | None = None, train_fn: TrainFn | None = None,
                      evaluate_fn: EvaluateFn | None = None, poll_s: float | None = None,
                      stream=None) -> list[JobRecord]:
    """Launch every job of `spec` (an ExperimentSpec) and, with `wait`, watch them to the end.

    executor_kind overrides `spec.launch.executor`; out_root overrides `spec.out_root`.
    `executor` replaces the one built from the spec (tests pass an InProcessExecutor);
    `train_fn` / `evaluate_fn` replace `harness.train.train` / the inline evaluation.
    Everything is validated before the experiment directory is created. Returns one record per
    job, in the spec's order, with its final state when waiting (else its state at submission).
    """
    from harness.specs.expand import expand
    from harness.specs.load import check_dataset

    kind = executor_kind or spec.launch.executor
    check_executor_kind(kind)
    wait = wait or kind == "debug"  # in-process jobs run while they are waited on
    resources = resolve_resources(spec.launch, kind, job_name=spec.name)
    check_dataset(spec.dataset, "all")
    jobs = expand(spec)
    exp = ExperimentPaths(Path(out_root if out_root is not None else spec.out_root) / spec.name)
    stream = stream or sys.stdout
    with _launch_lock(exp):
        write_atomic(exp.spec, spec.to_yaml())
        executor = executor or make_executor(kind, exp.root / "submitit" / "%j", resources)
        evaluate_fn = evaluate_fn if evaluate_fn is not None else default_evaluator(spec)
        tracked, queue = _plan(exp, jobs, kind, train_fn, evaluate_fn)
        limit = resources.max_concurrent if kind == "local" else len(queue)
        detach_launcher = not wait and kind == "local" and len(queue) > limit
        if not detach_launcher:
            _submit(exp, executor, queue, limit, tracked)
        if wait:
            _watch(exp, executor, tracked, queue, limit, progress or default_progress(stream),
                   POLL_S[kind] if poll_s is None else poll_s)
    if detach_launcher:  # more local jobs than slots: a background launcher feeds them
        _start_background_launcher(exp, tracked)
    records = [t.record for t in tracked.values()]
    if wait:
        _print_summary(exp, records, stream)
    return records


def default_evaluator(spec: Any) -> EvaluateFn | None:
    """The inline evaluation (`harness.evaluate.evaluate_run`) when the spec asks for it."""
    return evaluate_inline if spec.evaluation.inline else None


# ------------------------------------------------------------------------------------- planning


def _plan(exp: ExperimentPaths, jobs: Sequence[Any], kind: str, train_fn: TrainFn | None,
          evaluate_fn: EvaluateFn | None) -> tuple[dict[str, _Tracked], deque[tuple[_Tracked, TrainJob]]]:
    """Decide per job: skip (completed), watch (its job is live), or submit (queue)."""
    previous = last_submission(exp.manifest)
    views = {job.run_id: view_from_entry(previous[job.run_id]) for job in jobs if job.run_id in previous}
    refresh([v for v in views.values() if v is not None])  # one sacct for all, not one per job
    tracked: dict[str, _Tracked] = {}
    queue: deque[tuple[_Tracked, TrainJob]] = deque()
    for job in jobs:
        paths = exp.run(job.run_id)
        record = JobRecord(run_id=job.run_id, variant=job.variant, seed=job.seed,
                           overrides=dict(job.overrides), executor=kind, run_dir=paths.root,
                           total_nimg=int(round(job.training.duration_mimg * 1e6)))
        entry, view = previous.get(job.run_id), views.get(job.run_id)
        record.state = run_state(paths, view.state() if view else None, submitted=entry is not None)
        t = tracked[job.run_id] = _Tracked(record)
        if record.state in ACTIVE_STATES and view is not None:
            record.executor, record.job_id = entry["executor"], entry["job_id"]
            record.submitted_at, record.log_folder = entry.get("submitted_at"), entry.get("log_folder")
            t.view = view
        elif record.state != COMPLETED:
            paths.root.mkdir(parents=True, exist_ok=True)
            write_atomic(paths.spec, job.to_yaml())
            record.state = "queued"
            append_event(exp, record, "queued")
            queue.append((t, TrainJob(job, paths.root, train_fn=train_fn, evaluate_fn=evaluate_fn)))
    return tracked, queue


def _submit(exp: ExperimentPaths, executor: submitit.Executor,
            queue: deque[tuple[_Tracked, TrainJob]], limit: int, tracked: dict[str, _Tracked]) -> None:
    """Submit from the queue until `limit` jobs are live; several at once become one job array."""
    live = sum(t.view is not None and t.record.state in ACTIVE_STATES for t in tracked.values())
    batch = [queue.popleft() for _ in range(min(len(queue), max(0, limit - live)))]
    if not batch:
        return
    for t, train_job in batch:
        clear_error(train_job.run_dir)
    with executor.batch():
        submitted = [executor.submit(train_job) for _, train_job in batch]
    for (t, _), job in zip(batch, submitted):
        t.view = SubmititView(job)
        t.record.job_id, t.record.state = str(job.job_id), "pending"
        t.record.submitted_at, t.record.log_folder = now_iso(), str(executor.folder)
        append_event(exp, t.record, "submitted")


# ------------------------------------------------------------------------------------- watching


def _watch(exp: ExperimentPaths, executor: submitit.Executor, tracked: dict[str, _Tracked],
           queue: deque, limit: int, progress: Progress, poll_s: float) -> None:
    progress.update(_refresh_rows(tracked, exp))
    while any(t.record.state in ACTIVE_STATES or t.record.state == "queued" for t in tracked.values()):
        time.sleep(poll_s)
        rows = _refresh_rows(tracked, exp)
        _submit(exp, executor, queue, limit, tracked)
        progress.update(rows)
    progress.close(_refresh_rows(tracked, exp))


def _refresh_rows(tracked: dict[str, _Tracked], exp: ExperimentPaths) -> list[ProgressRow]:
    """Update each record from its job and its records; log the runs that ended."""
    refresh([t.view for t in tracked.values() if t.view is not None])
    rows = []
    for t in tracked.values():
        record, paths = t.record, RunPaths(t.record.run_dir)
        if t.view is not None and record.state in ACTIVE_STATES:
            record.state = run_state(paths, t.view.state())
            if record.state not in ACTIVE_STATES:
                record.error = run_error(paths, record.state, log_folder=record.log_folder,
                                         job_id=record.job_id)
                append_event(exp, record, "ended")
        record.nimg = images_seen(paths)
        record.metric = format_metric(last_metric(paths))
        rows.append(ProgressRow(record.run_id, record.variant, record.seed, record.state,
                                record.nimg, record.total_nimg, record.metric, record.error))
    return rows


def _print_summary(exp: ExperimentPaths, records: list[JobRecord], stream) -> None:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
    print("\n" + ", ".join(f"{n} {state}" for state, n in counts.items()), file=stream)
    for table in metric_tables((r.variant, RunPaths(r.run_dir)) for r in records):
        print("\n" + table, file=stream)
    for r in records:
        if r.error:
            print(f"{r.run_id} ({r.variant}, seed {r.seed}) {r.state}: {r.error}", file=stream)
    print(f"\nrecords: {exp.root}", file=stream)


# ------------------------------------------------------------------------------ lock and detach


@contextlib.contextmanager
def _launch_lock(exp: ExperimentPaths) -> Iterator[None]:
    """One launcher per experiment at a time: two would submit the same queued runs twice."""
    exp.root.mkdir(parents=True, exist_ok=True)
    lock_path = exp.root / LOCK_FILE
    with open(lock_path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "?"
            raise HarnessError(f"another `harness run` (pid {owner}) is launching {exp.root}; "
                               f"watch it with `harness status {exp.root}`") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)


def _start_background_launcher(exp: ExperimentPaths, tracked: dict[str, _Tracked]) -> None:
    """Relaunch the resolved spec in a process of its own, which keeps `max_concurrent` local
    jobs running until all are done (its output goes to launcher.log)."""
    log_path = exp.root / "launcher.log"
    command = [sys.executable, "-m", "harness", "run", str(exp.spec), "--executor", "local",
               "--out", str(exp.root.parent)]
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    # Name it in the lock file at once, so that `harness cancel` finds it even before it starts.
    (exp.root / LOCK_FILE).write_text(str(process.pid))
    for t in tracked.values():
        t.record.extra.update(launcher_pid=process.pid, launcher_log=str(log_path))
