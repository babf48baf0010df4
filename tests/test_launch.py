"""Launching: executors, the checkpointable job, manifest, relaunch without duplicates, status,
cancel, the CLI. Uses a small stand-in training function (`fake_train`, same contract as
harness.train.train: resumes from the run's checkpoints, stops at a step boundary when `stop()`)
so that the launch machinery is tested in seconds; test_launch_train.py runs the real one.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from harness.cli import main
from harness.errors import SpecError
from harness.launch import (
    InProcessExecutor,
    Resources,
    TrainJob,
    experiment_status,
    launch_experiment,
    load_profile,
    make_executor,
    resolve_resources,
)
from harness.launch.display import PlainLines, ProgressRow, Silent
from harness.launch.manifest import latest_entries
from harness.launch.results import metric_tables
from harness.launch.state import last_exception_line, scheduler_state
from harness.records import ExperimentPaths, RunPaths, append_eval, append_tick, read_jsonl, \
    write_json_atomic
from harness.specs import ExperimentSpec, LaunchSpec, expand

# Local and SLURM jobs unpickle the fakes without importing this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TOTAL_NIMG = 400  # duration_mimg 0.0004 with batch 50: 8 steps, a checkpoint every 2 steps


VARIANTS = {"edm": {"kind": "edm"}, "edm-fdm": {"kind": "fdm-edm", "multiplier": 1.0, "warmup_kimg": 0.0}}


def tiny_spec(out_root: Path, *, executor: str = "debug", seeds=(0, 1), variants=tuple(VARIANTS),
              total_nimg: int = TOTAL_NIMG, **launch) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "name": "tiny",
        "out_root": str(out_root),
        "dataset": {"name": "digits"},
        "network": {"arch": "small"},
        "training": {"duration_mimg": total_nimg / 1e6, "batch": 50, "lr": 1e-3, "tick_kimg": 0.05,
                     "checkpoint_kimg": 0.1, "lr_rampup_mimg": 0.0, "num_threads": 1},
        "variants": {name: VARIANTS[name] for name in variants},
        "seeds": list(seeds),
        "evaluation": {"num_samples": 16, "inline": True, "samplers": [{"name": "euler", "nfe": [4]}]},
        "launch": {"executor": executor, **launch},
        "tracking": {"wandb": {"mode": "disabled"}},
    })


# ------------------------------------------------------------------------------------ the fakes


def fake_train(job, run_dir, *, stop, step_s=0.02, fail_at_nimg=None):
    """Images in steps of training.batch, a tick per step, a checkpoint every checkpoint_kimg,
    done.json at the end; resumes from the newest checkpoint; records each attempt."""
    paths = RunPaths(run_dir)
    batch, every = job.training.batch, int(job.training.checkpoint_kimg * 1e3)
    total = int(round(job.training.duration_mimg * 1e6))
    checkpoints = paths.list_checkpoints()
    nimg = checkpoints[-1][0] if checkpoints else 0
    with open(paths.root / "attempts.jsonl", "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "start_nimg": nimg, "t": time.time()}) + "\n")
    while nimg < total:
        if stop():
            _checkpoint(paths, nimg)
            return {"status": "preempted", "nimg": nimg}
        if fail_at_nimg is not None and nimg >= fail_at_nimg:
            raise ValueError(f"loss diverged at {nimg} images")
        time.sleep(step_s)
        nimg += batch
        append_tick(paths, {"nimg": nimg, "step": nimg // batch, "loss": 1.0 / nimg})
        if nimg % every == 0:
            _checkpoint(paths, nimg)
    write_json_atomic(paths.done, {"run_id": paths.run_id, "nimg": nimg})
    with open(paths.root / "attempts.jsonl", "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "end": time.time()}) + "\n")
    return {"status": "done", "nimg": nimg}


def _checkpoint(paths: RunPaths, nimg: int) -> None:
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    paths.checkpoint(nimg).write_bytes(b"state")


def fake_evaluate(run_dir):
    """One evaluation per run whose value is known in closed form: seed + 1 (edm) or seed + 0.5."""
    paths = RunPaths(run_dir)
    job = (paths.spec).read_text()
    seed = int(next(line.split(":")[1] for line in job.splitlines() if line.startswith("seed:")))
    fdm = "variant: edm-fdm" in job
    append_eval(paths, {"nimg": TOTAL_NIMG, "metric": "fd-digits", "value": seed + (0.5 if fdm else 1.0),
                        "sampler": "heun", "nfe": 9})


def failing_train(job, run_dir, *, stop):
    return fake_train(job, run_dir, stop=stop, fail_at_nimg=100 if job.seed == 1 else None)


def sleepy_train(job, run_dir, *, stop):
    return fake_train(job, run_dir, stop=stop, step_s=0.5)


def launch(spec, **kwargs):
    kwargs.setdefault("train_fn", fake_train)
    kwargs.setdefault("evaluate_fn", fake_evaluate)
    kwargs.setdefault("progress", Silent())
    kwargs.setdefault("stream", io.StringIO())
    return launch_experiment(spec, **kwargs)


def submitted_lines(exp_dir: Path) -> list[dict]:
    return [line for line in read_jsonl(exp_dir / "manifest.jsonl") if line["event"] == "submitted"]


# --------------------------------------------------------------------------- profiles, resources


def test_resources_take_executor_defaults_then_profile_then_spec_fields():
    launch = LaunchSpec(executor="slurm", profile="local", timeout_min=2, cpus_per_task=2)
    r = resolve_resources(launch, "slurm")
    assert (r.partition, r.mem_gb, r.signal_delay_s, r.max_concurrent) == ("debug", 1.0, 30, 2)  # profile
    assert (r.timeout_min, r.cpus_per_task) == (2, 2)  # the spec's own fields win
    assert r.max_num_timeout == 3 and r.nodes == 1
    # A GPU cluster's profile means nothing to a local run: the local defaults stay.
    local = resolve_resources(LaunchSpec(profile="example-gpu-cluster"), "local")
    assert (local.partition, local.setup, local.gpus_per_node, local.max_concurrent) == (None, (), 0, 1)


def test_example_gpu_profile_has_setup_lines_and_ddp_layout():
    profile = load_profile("example-gpu-cluster")
    assert profile.tasks_per_node == profile.gpus_per_node == 8
    assert any(line.startswith("module load") for line in profile.setup)


def test_unknown_profile_is_a_spec_error_with_a_suggestion():
    with pytest.raises(SpecError) as err:
        resolve_resources(LaunchSpec(executor="slurm", profile="locl"), "slurm")
    assert err.value.field == "launch.profile" and "did you mean 'local'" in str(err.value)


def test_profile_with_unknown_field_names_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("partition: gpu\ntime_min: 5\n")
    with pytest.raises(SpecError) as err:
        load_profile(str(bad))
    assert str(bad) in str(err.value) and "time_min" in str(err.value) and "timeout_min" in str(err.value)


def test_slurm_executor_refused_with_the_field_named_when_sbatch_is_absent(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    with pytest.raises(SpecError) as err:
        make_executor("slurm", tmp_path / "%j", Resources())
    assert err.value.field == "launch.executor" and "sbatch" in str(err.value)


def test_local_executor_gets_time_limit_signal_delay_and_setup(tmp_path):
    ex = make_executor("local", tmp_path / "%j", Resources(timeout_min=7, signal_delay_s=11,
                                                           setup=("export A=1",)))
    assert ex.parameters == {"timeout_min": 7, "tasks_per_node": 1, "gpus_per_node": 0,
                             "signal_delay_s": 11, "setup": ["export A=1"]}


# ------------------------------------------------------------------------ the in-process executor


def _boom():
    raise RuntimeError("boom 7")


def test_in_process_executor_keeps_a_failure_instead_of_opening_a_debugger(tmp_path):
    ex = InProcessExecutor(tmp_path)
    ok, bad = ex.submit(sum, [1, 2, 3]), ex.submit(_boom)
    assert ok.state == "PENDING" and ok.result() == 6 and ok.state == "COMPLETED"
    assert bad.done() and bad.state == "FAILED"
    assert "RuntimeError: boom 7" in str(bad.exception())
    with pytest.raises(Exception, match="boom 7"):
        bad.result()


def test_train_job_checkpoint_resubmits_a_fresh_job_for_the_same_run(tmp_path):
    job = TrainJob("spec", tmp_path / "run", train_fn=fake_train)
    delayed = job.checkpoint()
    assert job.stop_requested() is True  # the loop is asked to stop
    assert isinstance(delayed.function, TrainJob) and delayed.function is not job
    assert delayed.function.run_dir == job.run_dir and delayed.function.stop_requested() is False


# ------------------------------------------------------------------ launch through the debug path


def test_launch_writes_experiment_manifest_and_one_complete_run_per_job(tmp_path):
    spec = tiny_spec(tmp_path)
    out = io.StringIO()
    records = launch(spec, stream=out)
    exp = ExperimentPaths(tmp_path / "tiny")
    jobs = expand(spec)
    assert [r.run_id for r in records] == [j.run_id for j in jobs]
    assert {r.state for r in records} == {"completed"}
    assert ExperimentSpec.from_yaml(exp.spec) == spec
    for job in jobs:
        paths = exp.run(job.run_id)
        assert paths.spec.read_text() == job.to_yaml()
        assert paths.done.exists() and (paths.root / "finished.json").exists()
    assert sorted(p.root.name for p in exp.list_runs()) == sorted(j.run_id for j in jobs)
    lines = read_jsonl(exp.manifest)
    assert [l["event"] for l in lines] == ["queued"] * 4 + ["submitted"] * 4 + ["ended"] * 4
    for line in lines[4:8]:
        assert set(line) >= {"run_id", "variant", "seed", "overrides", "executor", "job_id", "state",
                             "submitted_at"}
        assert line["executor"] == "debug" and line["job_id"].startswith("inprocess_")
    # The closing table: mean ± std over seeds 0 and 1 of the fake metric (seed + 1 / seed + 0.5).
    text = out.getvalue()
    assert "fd-digits (sampler heun, NFE 9" in text
    assert "edm      1.5 ± 0.71 (2)" in text and "edm-fdm  1 ± 0.71 (2)" in text
    assert f"records: {exp.root}" in text


def test_relaunch_of_a_finished_experiment_submits_nothing(tmp_path):
    spec = tiny_spec(tmp_path)
    launch(spec)
    exp_dir = tmp_path / "tiny"
    before = (exp_dir / "manifest.jsonl").read_text()
    records = launch(spec)
    assert {r.state for r in records} == {"completed"}
    assert (exp_dir / "manifest.jsonl").read_text() == before
    assert len(list((exp_dir / "runs").iterdir())) == 4


def test_relaunch_resubmits_a_failed_run_into_the_same_directory(tmp_path):
    spec = tiny_spec(tmp_path)
    records = launch(spec, train_fn=failing_train)
    failed = [r for r in records if r.state == "failed"]
    assert [r.seed for r in failed] == [1, 1]
    assert all(r.error == "ValueError: loss diverged at 100 images" for r in failed)
    records = launch(spec)  # the bug is fixed: same spec, same run_ids
    assert {r.state for r in records} == {"completed"}
    assert len(submitted_lines(tmp_path / "tiny")) == 4 + 2
    for r in failed:
        attempts = read_jsonl(Path(r.run_dir) / "attempts.jsonl")
        starts = [a["start_nimg"] for a in attempts if "start_nimg" in a]
        assert starts == [0, 100]  # the second attempt resumed from the checkpoint at 100 images
        assert not (Path(r.run_dir) / "error.json").exists()


def test_status_shows_the_error_of_a_job_that_raised(tmp_path, capsys):
    launch(tiny_spec(tmp_path), train_fn=failing_train)
    rows = {(r.variant, r.seed): r for r in experiment_status(tmp_path / "tiny")}
    assert rows["edm", 0].state == "completed" and rows["edm", 0].error == ""
    assert rows["edm", 0].nimg == TOTAL_NIMG and rows["edm", 0].metric == "fd-digits=1@0.4k"
    assert rows["edm", 1].state == "failed" and rows["edm", 1].nimg == 100
    assert rows["edm", 1].error == "ValueError: loss diverged at 100 images"
    assert main(["status", str(tmp_path / "tiny")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["run_id", "variant", "seed", "state"]
    failed_line = next(line for line in table if "failed" in line)
    assert failed_line.endswith("ValueError: loss diverged at 100 images")


def test_status_of_a_directory_that_is_not_an_experiment_exits_2(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "not an experiment directory" in capsys.readouterr().err


# ------------------------------------------------------------------------------ state derivation


def test_scheduler_states_are_normalised():
    assert scheduler_state("CANCELLED by 0") == "cancelled"
    assert scheduler_state("REQUEUED") == "pending" and scheduler_state("PREEMPTED") == "pending"
    assert scheduler_state("TIMEOUT") == "timeout" and scheduler_state("OUT_OF_MEMORY") == "failed"
    assert scheduler_state("FINISHED") == "completed" and scheduler_state("INTERRUPTED") == "cancelled"
    assert scheduler_state("UNKNOWN") is None and scheduler_state("") is None


def test_last_exception_line_of_a_traceback():
    log = "Traceback (most recent call last):\n  File 'x', line 1\nharness.errors.DataError: x.npz missing\nbye\n"
    assert last_exception_line(log) == "harness.errors.DataError: x.npz missing"
    assert last_exception_line("all fine\n") is None


def test_metric_table_pools_seeds_per_variant_and_budget(tmp_path):
    runs = []
    for variant, seed, values in [("a", 0, {100: 4.0, 200: 2.0}), ("a", 1, {100: 6.0}), ("b", 0, {200: 3.0})]:
        paths = RunPaths(tmp_path / f"{variant}{seed}")
        for nimg, value in values.items():
            append_eval(paths, {"nimg": nimg, "metric": "fd", "value": value, "sampler": "euler", "nfe": 5,
                                "floor": 1.5})
        runs.append((variant, paths))
    (table,) = metric_tables(runs)
    lines = table.splitlines()
    assert lines[0] == "fd (sampler euler, NFE 5; mean ± std over seeds (n); real-vs-real floor 1.5)"
    assert lines[1].split() == ["variant", "0.1", "kimg", "0.2", "kimg"]
    assert lines[2].split() == ["a", "5", "±", "1.4", "(2)", "2", "(1)"]  # mean 5, std sqrt(2)
    assert lines[3].split() == ["b", "3", "(1)"]


def test_plain_progress_prints_a_line_per_state_change_only():
    stream = io.StringIO()
    progress = PlainLines(stream, every_s=3600)
    row = ProgressRow("abc", "edm", 0, "pending")
    progress.update([row])
    progress.update([row])
    progress.update([ProgressRow("abc", "edm", 0, "running", 100, 400)])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].endswith("abc edm seed=0: running  0.1/0.4 kimg")


# ------------------------------------------------------------------------------------------ CLI


def test_dry_run_prints_the_job_table_and_creates_nothing(tmp_path, capsys):
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(tiny_spec(tmp_path / "out").to_yaml())
    assert main(["run", str(spec_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert all(job.run_id in out for job in expand(tiny_spec(tmp_path / "out")))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, field", [
    (["--set", "launch.max_concurrent=0"], "launch.max_concurrent"),
    (["--set", "launch.profile=nope", "--executor", "slurm"], None),
    (["--set", "dataset.name=mnist", "--set", "dataset.path=missing.npz"], "dataset.path"),
])
def test_bad_launch_input_exits_2_naming_the_field_and_creates_nothing(tmp_path, capsys, monkeypatch, args, field):
    import harness.launch.executors as executors

    monkeypatch.setattr(executors, "slurm_available", lambda: True)  # reach the profile check
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(tiny_spec(tmp_path / "out").to_yaml())
    assert main(["run", str(spec_file), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert (field or "launch.profile") in err[0]
    assert not (tmp_path / "out").exists()


def test_slurm_requested_where_there_is_none_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable))
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(tiny_spec(tmp_path / "out").to_yaml())
    assert main(["run", str(spec_file), "--executor", "slurm"]) == 2
    assert "--executor: executor 'slurm' needs sbatch" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------- the local executor (processes)


@pytest.mark.slow
def test_local_executor_runs_jobs_as_subprocesses_within_the_concurrency_limit(tmp_path):
    spec = tiny_spec(tmp_path, executor="local", seeds=(0,), max_concurrent=1)
    records = launch(spec, poll_s=0.2)
    assert {r.state for r in records} == {"completed"}
    spans = []
    for r in records:
        attempts = read_jsonl(Path(r.run_dir) / "attempts.jsonl")
        assert attempts[0]["pid"] != os.getpid()  # a real subprocess
        spans.append((attempts[0]["t"], attempts[-1]["end"]))
    spans.sort()
    assert spans[0][1] <= spans[1][0]  # max_concurrent 1: the second started after the first ended
    assert [l["job_id"] for l in submitted_lines(tmp_path / "tiny")] == [r.job_id for r in records]


@pytest.mark.slow
def test_local_time_limit_checkpoints_requeues_and_resumes(tmp_path):
    # A 1-minute limit with the warning 45 s early: each attempt is asked to stop after 15 s
    # (~4 s of it Python start-up and imports); the job needs 8 steps of 2 s.
    spec = tiny_spec(tmp_path, executor="local", seeds=(0,), variants=("edm",), timeout_min=1,
                     signal_delay_s=45, max_num_timeout=5)
    slow = functools.partial(fake_train, step_s=2.0)
    records = launch(spec, train_fn=slow, poll_s=0.5)
    assert {r.state for r in records} == {"completed"}
    for r in records:
        starts = [a["start_nimg"] for a in read_jsonl(Path(r.run_dir) / "attempts.jsonl") if "start_nimg" in a]
        assert len(starts) >= 2 and starts[0] == 0 and starts == sorted(starts) and starts[1] > 0
        nimgs = [t["nimg"] for t in read_jsonl(RunPaths(r.run_dir).metrics)]
        assert nimgs[-1] == TOTAL_NIMG and len(submitted_lines(tmp_path / "tiny")) == 1


@pytest.mark.slow
def test_cancel_stops_running_local_jobs(tmp_path, capsys):
    spec = tiny_spec(tmp_path, executor="local", seeds=(0,), max_concurrent=2)
    records = launch(spec, train_fn=sleepy_train, wait=False)
    exp = tmp_path / "tiny"
    deadline = time.time() + 60
    while time.time() < deadline and not all(RunPaths(r.run_dir).metrics.exists() for r in records):
        time.sleep(0.2)
    assert main(["cancel", str(exp)]) == 0
    assert "2 job(s) cancelled" in capsys.readouterr().err
    time.sleep(2)
    rows = experiment_status(exp)
    assert {r.state for r in rows} == {"cancelled"}
    for r in records:
        assert not Path(f"/proc/{r.job_id}").exists() or _is_zombie(int(r.job_id))
    assert all(latest_entries(exp / "manifest.jsonl")[r.run_id]["event"] == "cancelled" for r in records)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True
