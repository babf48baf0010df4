"""The callable that every executor runs: train one job spec into its run directory.

`TrainJob` is a submitit `Checkpointable`. When the scheduler warns that the time limit or a
preemption is near (USR2, `signal_delay_s` before the end), submitit would call `checkpoint()`
from inside the signal handler and exit at once, wherever the training loop happened to be. We
want the loop to finish its step and write a checkpoint first, so while training runs the signal
only raises a flag that the loop reads through its `stop()` callable. Once `train` has returned
with a checkpoint written, submitit's own handler runs: it calls `checkpoint()`, which
resubmits a fresh `TrainJob` for the same run directory, and requeues (resume = run again).
Outside the training loop (evaluation, start-up) the signal goes straight to submitit's handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from submitit.helpers import Checkpointable, DelayedSubmission, TorchDistributedEnvironment

from harness.launch.manifest import now_iso
from harness.launch.state import error_path, finished_path, write_error
from harness.records import RunPaths, write_json_atomic

TrainFn = Callable[..., Any]
EvaluateFn = Callable[[Path], Any]


def _in_submitit_job() -> bool:
    return os.environ.get("SUBMITIT_EXECUTOR") in ("slurm", "local")


def _world_size() -> int:
    if not _in_submitit_job():
        return 1
    from submitit import JobEnvironment

    return JobEnvironment().num_tasks


class TrainJob(Checkpointable):
    """Train `job_spec` into `run_dir` (resuming from its checkpoints), then evaluate if asked.

    `train_fn(job_spec, run_dir, *, stop)` defaults to `harness.train.train`; `evaluate_fn(run_dir)`
    runs after training on rank 0 when given. Both are collaborators passed in so that tests can
    run the launch machinery with a small job of their own.
    """

    def __init__(self, job_spec: Any, run_dir: str | Path, *, train_fn: TrainFn | None = None,
                 evaluate_fn: EvaluateFn | None = None):
        self.job_spec = job_spec
        self.run_dir = Path(run_dir)
        self.train_fn = train_fn
        self.evaluate_fn = evaluate_fn
        self._stop_requested = False
        self._training = False

    # -- the job ------------------------------------------------------------------------------

    def __call__(self) -> dict:
        paths = RunPaths(self.run_dir)
        if _world_size() > 1:  # DDP: MASTER_ADDR, RANK, WORLD_SIZE, ... for env:// init
            TorchDistributedEnvironment().export()
        rank = int(os.environ.get("RANK", "0"))
        try:
            with self._stop_on_signal() as hand_over:
                result = self._train()
                if self._stop_requested and not paths.done.exists():
                    hand_over()  # the loop wrote a checkpoint: submitit requeues, then exits
            if rank == 0 and paths.done.exists():
                if self.evaluate_fn is not None:
                    self.evaluate_fn(self.run_dir)
                write_json_atomic(finished_path(paths), {
                    "finished_at": now_iso(), "evaluated": self.evaluate_fn is not None})
        except Exception as exc:
            if rank == 0:
                write_error(paths, exc)
            raise
        return {"run_id": paths.run_id, "result": _plain(result)}

    def _train(self) -> Any:
        train_fn = self.train_fn
        if train_fn is None:
            from harness.train import train as train_fn  # the heavy import happens in the job only
        self._training = True
        try:
            return train_fn(self.job_spec, self.run_dir, stop=self.stop_requested)
        finally:
            self._training = False

    def stop_requested(self) -> bool:
        """The training loop's `stop()`: True once the scheduler asked for a checkpoint."""
        return self._stop_requested

    # -- checkpoint / requeue -------------------------------------------------------------------

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Called by submitit before requeueing: resubmit a fresh job for the same run directory.

        Its state lives in the run directory (checkpoints), not in this object, so the new job
        resumes from the last checkpoint the loop wrote.
        """
        self._stop_requested = True
        fresh = TrainJob(self.job_spec, self.run_dir, train_fn=self.train_fn,
                         evaluate_fn=self.evaluate_fn)
        return DelayedSubmission(fresh, *args, **kwargs)

    @contextlib.contextmanager
    def _stop_on_signal(self) -> Iterator[Callable[[], None]]:
        """While training, turn the scheduler's warning signal into `stop()` returning True.

        Yields `hand_over()`, which passes the signal on to submitit's handler (checkpoint via
        `self.checkpoint`, requeue, exit). Outside a submitit job (in-process) nothing changes.
        """
        if not _in_submitit_job() or threading.current_thread() is not threading.main_thread():
            yield lambda: None
            return
        from submitit import JobEnvironment

        signum = JobEnvironment._usr_sig()
        submitit_handler = signal.getsignal(signum)
        caught: list[int] = []

        def on_signal(number: int, frame: Any) -> None:
            if self._training:
                self._stop_requested = True
                caught.append(number)
            elif callable(submitit_handler):
                submitit_handler(number, frame)

        def hand_over() -> None:
            signal.signal(signum, submitit_handler)
            if callable(submitit_handler):
                submitit_handler(caught[0] if caught else signum, None)

        signal.signal(signum, on_signal)
        try:
            yield hand_over
        finally:
            signal.signal(signum, submitit_handler)

    def __repr__(self) -> str:
        return f"TrainJob(run_dir={str(self.run_dir)!r})"


def evaluate_inline(run_dir: str | Path) -> Any:
    """`harness.evaluate.evaluate_run` as the run's spec asks, on the training device (the GPU
    unless `training.device` says cpu); evaluations already in evals.jsonl are not redone."""
    import torch

    from harness.evaluate import evaluate_run
    from harness.specs import JobSpec

    job = JobSpec.from_yaml(RunPaths(run_dir).spec)
    use_cuda = job.training.device != "cpu" and torch.cuda.is_available()
    return evaluate_run(run_dir, device="cuda" if use_cuda else "cpu")


def clear_error(run_dir: str | Path) -> None:
    """Forget the failure of an earlier attempt (called when the run is submitted again)."""
    error_path(RunPaths(run_dir)).unlink(missing_ok=True)


def _plain(result: Any) -> Any:
    """A result that unpickles without the harness importable (dataclass -> dict)."""
    if hasattr(result, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(result)
    return result
