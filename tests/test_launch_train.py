"""Launching the real training job (harness.train.train) on a tiny digits experiment: the
records it writes through the launcher, and the relaunch acceptance with a killed run."""

from __future__ import annotations

import io
import json
import os
import signal
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.launch import experiment_status
from harness.records import ExperimentPaths, RunPaths, read_jsonl, read_metrics
from tests.test_launch import launch, submitted_lines, tiny_spec

TOTAL_NIMG = 200  # 4 steps of 50 images, a checkpoint every 100
LONG_NIMG = 2500  # 50 steps: seconds of training, long enough to be caught mid-run


def test_debug_launch_of_the_real_training_job_writes_complete_records(tmp_path):
    spec = tiny_spec(tmp_path, seeds=(0,), variants=("edm",), total_nimg=TOTAL_NIMG)
    # None: harness.train.train, then the inline evaluation (harness.evaluate.evaluate_run)
    out = io.StringIO()
    (record,) = launch(spec, train_fn=None, evaluate_fn=None, stream=out)
    assert record.state == "completed" and record.nimg == TOTAL_NIMG
    paths = RunPaths(record.run_dir)
    assert json.loads(paths.done.read_text())["nimg"] == TOTAL_NIMG
    assert [t["nimg"] for t in read_metrics(paths)][-1] == TOTAL_NIMG
    assert [n for n, _ in paths.list_checkpoints()][-1] == TOTAL_NIMG
    assert (paths.root / "finished.json").exists() and not (paths.root / "error.json").exists()
    (evaluation,) = read_jsonl(paths.evals)
    assert (evaluation["nimg"], evaluation["metric"], evaluation["num_samples"]) == (TOTAL_NIMG, "fd-digits", 16)
    value = f"{evaluation['value']:.4g}"
    assert "fd-digits (sampler euler, NFE 4" in out.getvalue()
    assert f"edm      {value} (1)" in out.getvalue()  # the closing table: variant × budget
    # A relaunch finds the run complete and submits nothing.
    (again,) = launch(spec, train_fn=None)
    assert again.state == "completed" and len(submitted_lines(tmp_path / "tiny")) == 1


@pytest.mark.slow
def test_relaunch_with_a_run_killed_in_between_ends_with_one_complete_run_per_job(tmp_path):
    # 50 steps (a checkpoint every 2): the kill comes while the victim is still training.
    spec = tiny_spec(tmp_path, executor="local", seeds=(0,), max_concurrent=2, total_nimg=LONG_NIMG)
    records = launch(spec, train_fn=None, wait=False)
    exp = ExperimentPaths(tmp_path / "tiny")
    victim = RunPaths(records[0].run_dir)
    deadline = time.time() + 120
    while not victim.list_checkpoints() and time.time() < deadline:
        time.sleep(0.2)
    assert victim.list_checkpoints(), "no checkpoint within 120 s"
    _kill_job(int(records[0].job_id))
    assert {r.run_id: r.state for r in experiment_status(exp.root)}[victim.run_id] == "interrupted"
    resume_nimg = victim.list_checkpoints()[-1][0]
    records = launch(spec, train_fn=None, poll_s=0.5)
    assert {r.state for r in records} == {"completed"}
    assert sorted(p.run_id for p in exp.list_runs()) == sorted(r.run_id for r in records)
    assert all(r.nimg == LONG_NIMG for r in records)
    env = json.loads(victim.env.read_text())
    assert len(env["previous_starts"]) == 1  # trained in two starts: the second one resumed
    # Resumed, not restarted: the ticks up to the checkpoint were written once, by the first start.
    ticks = [line["nimg"] for line in read_jsonl(victim.metrics)]
    before = [n for n in ticks if n <= resume_nimg]
    assert 0 < resume_nimg < LONG_NIMG and len(before) == len(set(before)) == resume_nimg // 50
    per_run: dict[str, int] = {}
    for line in submitted_lines(exp.root):
        per_run[line["run_id"]] = per_run.get(line["run_id"], 0) + 1
    assert per_run == {records[0].run_id: 2, records[1].run_id: 1}


def _kill_job(controller_pid: int) -> None:
    """SIGKILL a local job's controller and its task, as a node failure would."""
    children = Path(f"/proc/{controller_pid}/task/{controller_pid}/children").read_text().split()
    os.kill(controller_pid, signal.SIGKILL)
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    time.sleep(0.5)


@pytest.mark.slow
def test_detached_local_launch_feeds_jobs_from_a_background_launcher_that_cancel_stops(tmp_path):
    spec = tiny_spec(tmp_path, executor="local", seeds=(0,), max_concurrent=1, total_nimg=40 * LONG_NIMG)
    records = launch(spec, train_fn=None, wait=False)  # 2 jobs, 1 slot: a background launcher
    assert {r.state for r in records} == {"queued"}
    launcher = records[0].extra["launcher_pid"]
    exp = tmp_path / "tiny"
    deadline, states = time.time() + 90, []
    while time.time() < deadline and sorted(states) != ["queued", "running"]:
        time.sleep(0.5)
        states = [r.state for r in experiment_status(exp)]
    assert sorted(states) == ["queued", "running"]  # one slot busy, the other job waits
    assert main(["cancel", str(exp)]) == 0
    deadline = time.time() + 30
    while time.time() < deadline and {r.state for r in experiment_status(exp)} != {"cancelled"}:
        time.sleep(0.5)
    assert {r.state for r in experiment_status(exp)} == {"cancelled"}
    assert not Path(f"/proc/{launcher}").exists() or _zombie(launcher)
    assert len(submitted_lines(exp)) == 1  # the queued job was never started


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
