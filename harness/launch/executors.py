"""Executors behind one interface (submitit's): local subprocesses, SLURM, or in-process.

`make_executor(kind, folder, resources)` is the one place that turns a kind name into a submitit
executor. The launcher takes the executor it is given; tests pass an `InProcessExecutor`.

Why not submitit's own `DebugExecutor` for "debug": it drops into `pdb.post_mortem` when a job
raises, which hangs a test run or a batch job waiting on a terminal that is not there. The
`InProcessExecutor` here runs each job in the calling process the same lazy way (on the first
`done()` / `result()`), and a failure becomes an ordinary failed job.
"""

from __future__ import annotations

import shutil
import traceback
import typing as tp
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

import submitit
from submitit.core import core, utils

from harness.errors import SpecError, did_you_mean
from harness.launch.profiles import load_profile

EXECUTOR_KINDS = ("local", "slurm", "debug")


@dataclass(frozen=True)
class Resources:
    """What one job asks of the executor. Units in the names; None leaves submitit's default.

    `max_concurrent` limits simultaneously running jobs: the local launcher keeps that many
    subprocesses busy, SLURM gets it as the array's `%N` (array parallelism).
    """

    timeout_min: int = 60
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    setup: tuple[str, ...] = ()
    signal_delay_s: int = 90
    max_num_timeout: int = 3
    max_concurrent: int = 1
    additional_parameters: dict[str, tp.Any] = field(default_factory=dict)
    job_name: str = "harness"


# Per executor, what a job gets when neither the experiment nor a profile says otherwise.
# Local jobs are one per core-hungry process on a small machine, and must not be cut short.
_DEFAULTS = {
    "local": {"timeout_min": 7 * 24 * 60, "max_concurrent": 1, "signal_delay_s": 60},
    "slurm": {"timeout_min": 60, "max_concurrent": 256, "signal_delay_s": 90},
    "debug": {},
}
_LAUNCH_FIELDS = tuple(f for f in Resources.__dataclass_fields__ if f != "job_name")


def resolve_resources(launch: Any, kind: str, *, job_name: str = "harness") -> Resources:
    """Resources from, in rising order: the executor's defaults, the cluster profile (SLURM
    only: a GPU cluster's partition or module loads mean nothing to a local run), and the fields
    the experiment's `launch:` section sets (not None)."""
    values: dict[str, Any] = dict(_DEFAULTS[kind])
    if kind == "slurm" and launch.profile:
        profile = load_profile(launch.profile)
        values.update({f: getattr(profile, f) for f in _LAUNCH_FIELDS
                       if getattr(profile, f) is not None})
    values.update({f: getattr(launch, f) for f in _LAUNCH_FIELDS
                   if getattr(launch, f, None) is not None})
    values["setup"] = tuple(values.get("setup", ()))
    values["additional_parameters"] = dict(values.get("additional_parameters", {}))
    return Resources(**values, job_name=job_name)


def slurm_available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("srun") is not None


def check_executor_kind(kind: str, *, field_name: str = "launch.executor") -> None:
    """Raise SpecError when `kind` is unknown or cannot run on this machine."""
    if kind not in EXECUTOR_KINDS:
        raise SpecError(field_name, f"unknown executor '{kind}'{did_you_mean(kind, EXECUTOR_KINDS)} "
                                    f"(choose one of {', '.join(EXECUTOR_KINDS)})")
    if kind == "slurm" and not slurm_available():
        raise SpecError(field_name, "executor 'slurm' needs sbatch and srun on PATH, and they are not "
                                    "here; run on a SLURM login node or choose 'local'")


def make_executor(kind: str, folder: str | Path, resources: Resources) -> submitit.Executor:
    """A submitit executor of `kind` writing its pickles and logs under `folder`."""
    check_executor_kind(kind)
    if kind == "slurm":
        return _slurm_executor(folder, resources)
    if kind == "local":
        return _local_executor(folder, resources)
    return InProcessExecutor(folder)


def _slurm_executor(folder: str | Path, r: Resources) -> submitit.Executor:
    # max_num_timeout is a constructor argument; update_parameters rejects it.
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm",
                                     slurm_max_num_timeout=r.max_num_timeout)
    optional = {"slurm_partition": r.partition, "slurm_account": r.account, "slurm_qos": r.qos,
                "cpus_per_task": r.cpus_per_task, "mem_gb": r.mem_gb}
    executor.update_parameters(
        name=r.job_name, timeout_min=r.timeout_min, nodes=r.nodes, tasks_per_node=r.tasks_per_node,
        gpus_per_node=r.gpus_per_node, slurm_signal_delay_s=r.signal_delay_s,
        slurm_array_parallelism=r.max_concurrent, slurm_setup=list(r.setup),
        slurm_additional_parameters=dict(r.additional_parameters) or None,
        **{k: v for k, v in optional.items() if v is not None})
    return executor


def _local_executor(folder: str | Path, r: Resources) -> submitit.Executor:
    if r.nodes > 1:
        raise SpecError("launch.nodes", f"{r.nodes} nodes need the 'slurm' executor; "
                                        "the local executor runs on this machine only (nodes: 1)")
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=r.max_num_timeout)
    executor.update_parameters(timeout_min=r.timeout_min, tasks_per_node=r.tasks_per_node,
                               gpus_per_node=r.gpus_per_node, signal_delay_s=r.signal_delay_s,
                               setup=list(r.setup))
    return executor


# ------------------------------------------------------------------------------ in-process executor


class InProcessJob(core.Job[core.R]):
    """A job run in the calling process when first waited on; failures are kept, not debugged."""

    watcher = core.InfoWatcher()  # never consulted: state is known locally

    def __init__(self, folder: Path, submission: utils.DelayedSubmission, index: int) -> None:
        super().__init__(folder=folder, job_id=f"inprocess_{index}")
        self._submission = submission
        self._error: str | None = None
        self._cancelled = False

    def _register_in_watcher(self) -> None:
        pass

    def _run(self) -> None:
        if self._submission.done() or self._error is not None or self._cancelled:
            return
        try:
            self._submission.result()
        except Exception:  # noqa: BLE001 - the job's failure is its result
            self._error = traceback.format_exc()

    def done(self, force_check: bool = False) -> bool:
        self._run()
        return True

    def cancel(self, check: bool = True) -> None:
        self._cancelled = not self._submission.done() and self._error is None

    @property
    def state(self) -> str:
        if self._cancelled:
            return "CANCELLED"
        if self._error is not None:
            return "FAILED"
        return "COMPLETED" if self._submission.done() else "PENDING"

    def get_info(self, mode: str = "force") -> dict[str, str]:
        return {"State": self.state}

    def results(self) -> list[tp.Any]:
        exception = self.exception()
        if exception is not None:
            raise exception
        return [self._submission.result()]

    def exception(self) -> utils.UncompletedJobError | None:
        self._run()
        if self._cancelled:
            return utils.UncompletedJobError(f"job {self.job_id} was cancelled")
        if self._error is not None:
            return utils.FailedJobError(f"job {self.job_id} failed with trace:\n{self._error}")
        return None

    def stderr(self) -> str | None:
        return self._error

    def __del__(self) -> None:
        pass


class InProcessExecutor(core.Executor):
    """Runs submissions in this process, one at a time, when each job is first waited on."""

    job_class = InProcessJob

    def __init__(self, folder: str | Path):
        super().__init__(folder)
        self._count = 0

    def _internal_process_submissions(
        self, delayed_submissions: list[utils.DelayedSubmission]
    ) -> list[core.Job[tp.Any]]:
        jobs = []
        for submission in delayed_submissions:
            jobs.append(InProcessJob(self.folder, submission, self._count))
            self._count += 1
        return jobs
