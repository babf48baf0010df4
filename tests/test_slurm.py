"""Integration with a real SLURM cluster (slurm/local-cluster.sh, started by slurm/with-cluster.sh):
experiments submitted through submitit's SlurmExecutor as job arrays, a time-limit requeue that
resumes from the checkpoint, a failing job's error in `harness status`, cancel.

Skipped, with the reason, where no SLURM controller answers (see conftest.slurm_cluster).
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from pathlib import Path

import pytest
import submitit
from submitit.core.utils import JobPaths

from harness.cli import main
from harness.launch import experiment_status
from harness.records import RunPaths, read_jsonl, read_metrics
from tests.test_launch import TOTAL_NIMG, failing_train, fake_train, launch, sleepy_train, \
    submitted_lines, tiny_spec

pytestmark = [pytest.mark.slurm]

REAL_NIMG = 200  # the real training job: 4 steps of 50 images


def sacct_states(job_ids: list[str]) -> dict[str, str]:
    """JobID -> State of the allocations (not the steps) of `job_ids`, from the accounting DB."""
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(job_ids)],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("|", 1) for line in out.splitlines() if line)


def wait_for_sacct(job_ids: list[str], predicate, timeout_s: float = 30) -> dict[str, str]:
    """sacct rows arrive a few seconds after a job ends (slurmctld → slurmdbd is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = sacct_states(job_ids)
        if predicate(states) or time.monotonic() > deadline:
            return states
        time.sleep(1)


def slurm_spec(tmp_path: Path, **launch):
    return tiny_spec(tmp_path, executor="slurm", profile="local", **launch)


def test_experiment_runs_the_real_training_as_one_job_array_and_writes_records(slurm_cluster, tmp_path):
    spec = slurm_spec(tmp_path, seeds=(0,), total_nimg=REAL_NIMG)
    records = launch(spec, train_fn=None, poll_s=1.0)  # None: harness.train.train
    assert {r.state for r in records} == {"completed"}
    array_ids = {r.job_id.split("_")[0] for r in records}
    assert len(array_ids) == 1  # two jobs, one sbatch: an array
    assert sorted(r.job_id.split("_")[1] for r in records) == ["0", "1"]
    for r in records:
        paths = RunPaths(r.run_dir)
        assert read_metrics(paths)[-1]["nimg"] == REAL_NIMG and paths.done.exists()
        assert json.loads(paths.env.read_text())["slurm_job_id"] is not None
        assert read_jsonl(paths.evals)[0]["metric"] == "fd-digits"
    (submission_file,) = (tmp_path / "tiny" / "submitit").glob("*/*_submission.sh")
    submission = submission_file.read_text()
    assert "#SBATCH --partition=debug" in submission and "#SBATCH --array=0-1%2" in submission
    states = wait_for_sacct([r.job_id for r in records], lambda s: len(s) == 2)
    assert set(states.values()) == {"COMPLETED"}


@pytest.mark.slow
def test_two_tasks_per_node_train_one_run_data_parallel(slurm_cluster, tmp_path):
    spec = slurm_spec(tmp_path, seeds=(0,), variants=("edm",), total_nimg=REAL_NIMG, tasks_per_node=2)
    (record,) = launch(spec, train_fn=None, poll_s=1.0)
    assert record.state == "completed" and record.nimg == REAL_NIMG
    assert json.loads(RunPaths(record.run_dir).env.read_text())["world_size"] == 2
    (submission_file,) = (tmp_path / "tiny" / "submitit").glob("*/*_submission.sh")
    assert "#SBATCH --ntasks-per-node=2" in submission_file.read_text()


@pytest.mark.slow
def test_time_limit_requeues_and_the_job_finishes_from_its_checkpoint(slurm_cluster, tmp_path):
    # 8 steps of 7 s against a 1-minute limit. slurmctld checks time limits every 30 s and sends
    # the warning signal up to that much early (sbatch(1): "may be sent up to 60 seconds earlier
    # than specified"), so USR2@10 arrives between 20 s and 50 s after the start: never before
    # Python has installed submitit's handler (a USR2@30 once came 1 s after the start and killed
    # the job while it was still importing), and always before the job could finish. The
    # requeued job resumes at its checkpoint (possibly requeued once more) and finishes.
    spec = slurm_spec(tmp_path, seeds=(0,), variants=("edm",), timeout_min=1, signal_delay_s=10)
    slow = functools.partial(fake_train, step_s=7.0)
    (edm,) = launch(spec, train_fn=slow, poll_s=1.0)
    assert edm.state == "completed"
    attempts = read_jsonl(Path(edm.run_dir) / "attempts.jsonl")
    starts = [a["start_nimg"] for a in attempts if "start_nimg" in a]
    assert len(starts) >= 2 and starts[0] == 0 and 0 < starts[1] < TOTAL_NIMG
    assert read_jsonl(RunPaths(edm.run_dir).metrics)[-1]["nimg"] == TOTAL_NIMG
    # One submission per job: the requeue happened inside SLURM, under the same job id.
    assert len(submitted_lines(tmp_path / "tiny")) == 1
    log = JobPaths(edm.log_folder, job_id=edm.job_id).stdout.read_text()
    assert "Requeued job" in log


@pytest.mark.slow
def test_preempted_job_is_requeued_and_a_relaunch_watches_it_to_the_end(slurm_cluster, tmp_path):
    spec = slurm_spec(tmp_path, seeds=(0,), variants=("edm",))
    slow = functools.partial(fake_train, step_s=2.0)
    (record,) = launch(spec, train_fn=slow, wait=False)
    paths = RunPaths(record.run_dir)
    deadline = time.monotonic() + 60
    while not paths.list_checkpoints() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert paths.list_checkpoints(), "no checkpoint within 60 s"
    submitit.SlurmJob(folder=record.log_folder, job_id=record.job_id)._interrupt()  # SIGTERM + USR2
    (again,) = launch(spec, train_fn=slow, poll_s=1.0)  # finds the requeued job and watches it
    assert again.state == "completed" and again.job_id == record.job_id
    starts = [a["start_nimg"] for a in read_jsonl(paths.root / "attempts.jsonl") if "start_nimg" in a]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 100
    assert len(submitted_lines(tmp_path / "tiny")) == 1


def test_failing_job_shows_its_error_in_status(slurm_cluster, tmp_path, capsys):
    records = launch(slurm_spec(tmp_path, seeds=(1,)), train_fn=failing_train, poll_s=1.0)
    assert {r.state for r in records} == {"failed"}
    assert main(["status", str(tmp_path / "tiny")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for line in lines[1:]:
        assert " failed " in line and line.endswith("ValueError: loss diverged at 100 images")
    states = wait_for_sacct([r.job_id for r in records], lambda s: len(s) == 2)
    assert set(states.values()) == {"FAILED"}


def test_cancel_cancels_queued_and_running_slurm_jobs(slurm_cluster, tmp_path):
    records = launch(slurm_spec(tmp_path), train_fn=sleepy_train, wait=False)
    assert {r.state for r in records} == {"pending"}
    assert main(["cancel", str(tmp_path / "tiny")]) == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = {r.state for r in experiment_status(tmp_path / "tiny")}
        if states == {"cancelled"}:
            break
        time.sleep(1)
    assert states == {"cancelled"}
    # Array tasks that had not started are accounted under the array's own id.
    array_id = records[0].job_id.split("_")[0]
    assert all(v.startswith("CANCELLED") for v in sacct_states([array_id]).values())
