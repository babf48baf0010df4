"""The training job on a tiny network (the "small" architecture on 8×8 digits, CPU).

Resume after SIGKILL and after a stop is bitwise identical to an uninterrupted run; a corrupt
latest checkpoint falls back; preemption exits 75; the records hold every tick with the closed
form schedules; a W&B mirror (real, offline) logs what the records hold, and a broken one
changes nothing; each precision mode trains; a failing torch.compile falls back to eager.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness.diffusion import fdm_weight_cap
from harness.errors import HarnessError
from harness.records import RunPaths, read_json, read_metrics
from harness.tracking import RecordingTracker
from harness.train import EXIT_PREEMPTED, load_checkpoint, train
from harness.train.schedules import ema_beta, learning_rate

REPO = Path(__file__).resolve().parents[1]
BATCH = 16


def tiny_job(*, kind: str = "fdm-edm", steps: int = 12, batch: int = BATCH, tick_steps: int = 1,
             checkpoint_steps: int = 4, ramp_steps: int = 6, warmup_steps: int = 6,
             network: dict | None = None, training: dict | None = None, seed: int = 0,
             experiment: str = "tiny"):
    """A resolved JobSpec small enough to train in well under a second per few steps.

    The lr ramp and the FDM warm-up last `ramp_steps` / `warmup_steps` steps whatever the
    duration, so a shorter job repeats the first steps of a longer one exactly.
    """
    from harness.specs import ExperimentSpec, expand

    nimg = steps * batch
    variant = {"kind": kind}
    if kind.startswith("fdm-"):
        variant.update(multiplier=2.0 if kind != "fdm-ve" else 1.0,
                       warmup_kimg=warmup_steps * batch / 1e3)
    spec = ExperimentSpec.model_validate({
        "name": experiment,
        "dataset": {"name": "digits"},
        "network": {"arch": "small", "model_channels": 8, "dropout": 0.1, **(network or {})},
        "training": {"duration_mimg": nimg / 1e6, "batch": batch, "lr": 2e-3,
                     "lr_rampup_mimg": ramp_steps * batch / 1e6, "ema_halflife_mimg": 4 * batch / 1e6,
                     "tick_kimg": tick_steps * batch / 1e3,
                     "checkpoint_kimg": checkpoint_steps * batch / 1e3,
                     "snapshot_kimg": 1000.0, "keep_checkpoints": 3, "device": "cpu",
                     "num_threads": 1, **(training or {})},
        "variants": {kind: variant}, "seeds": [seed],
        "tracking": {"wandb": {"mode": "disabled"}},
    })
    return expand(spec)[0]


def final_weights(run_dir: Path) -> tuple[dict, dict]:
    paths = RunPaths(run_dir)
    name = read_json(paths.done)["checkpoint"]
    checkpoint = load_checkpoint(paths.checkpoints / name)
    return checkpoint["model"], checkpoint["ema"]


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the default tiny job: (job, run_dir, result)."""
    job = tiny_job()
    run_dir = tmp_path_factory.mktemp("reference")
    result = train(job, run_dir, tracker=RecordingTracker())
    return job, run_dir, result


# --------------------------------------------------------------------------- records, schedules


def test_uninterrupted_run_writes_every_record_and_a_done_marker(reference):
    job, run_dir, result = reference
    paths = RunPaths(run_dir)
    assert (result.status, result.exit_code, result.nimg, result.step) == ("done", 0, 192, 12)
    assert paths.spec.read_text() == job.to_yaml()
    assert read_json(paths.env)["run_id"] == job.run_id
    done = read_json(paths.done)
    assert (done["run_id"], done["nimg"], done["checkpoint"]) == (
        job.run_id, 192, "snapshot-0000000192.pt")
    metrics = read_metrics(run_dir)
    assert [m["nimg"] for m in metrics] == [BATCH * k for k in range(1, 13)]
    for m in metrics:
        assert set(m) >= {"nimg", "step", "loss", "lr", "img_per_s", "wall_s", "device_hours"}
        assert math.isfinite(m["loss"]) and m["loss"] > 0 and m["img_per_s"] > 0
        assert m["device_hours"] == pytest.approx(m["wall_s"] / 3600)
    # last 3 checkpoints kept (keep_checkpoints) and the final one is a snapshot
    assert [n for n, _ in paths.list_checkpoints()] == [64, 128, 192]


def test_logged_schedules_equal_their_closed_forms_at_the_images_seen_before_each_step(reference):
    job, run_dir, _ = reference
    t, warmup_nimg = job.training, job.diffusion.warmup_kimg * 1e3
    for m in read_metrics(run_dir):
        before = m["nimg"] - BATCH  # the tick's only step started here
        assert m["lr"] == learning_rate(before, t.lr, t.lr_rampup_mimg * 1e6)
        assert m["ema_beta"] == ema_beta(before, BATCH, t.ema_halflife_mimg * 1e6,
                                         t.ema_rampup_ratio)
        assert m["weight_cap"] == fdm_weight_cap(before, warmup_nimg)
    first = read_metrics(run_dir)[0]
    assert (first["lr"], first["ema_beta"], first["weight_cap"]) == (0.0, 0.0, 5.0)


def test_ema_of_the_first_step_is_a_copy_and_later_steps_lag_behind(tmp_path):
    job = tiny_job(steps=2, checkpoint_steps=1)
    train(job, tmp_path, tracker=RecordingTracker())
    paths = RunPaths(tmp_path)
    first = load_checkpoint(paths.checkpoint(BATCH))
    assert_bitwise_equal(first["model"], first["ema"])  # beta 0 at nimg 0
    second = load_checkpoint(paths.checkpoint(2 * BATCH))
    key = next(k for k, v in second["model"].items() if v.is_floating_point() and v.numel() > 1)
    beta = ema_beta(BATCH, BATCH, job.training.ema_halflife_mimg * 1e6,
                    job.training.ema_rampup_ratio)
    expected = beta * first["ema"][key] + (1 - beta) * second["model"][key]
    assert torch.allclose(second["ema"][key], expected, atol=1e-7)


def test_tracker_sees_every_tick_and_the_run_identity(reference):
    job, run_dir, _ = reference
    recording = RecordingTracker()
    other = Path(str(run_dir) + "-copy")
    train(job, other, tracker=recording)
    assert recording.started == [{"run_id": job.run_id, "group": "tiny", "job_type": "fdm-edm",
                                  "config": {"run_id": job.run_id,
                                             **job.model_dump(mode="json")}}]
    assert [step for step, _ in recording.logged] == [m["nimg"] for m in read_metrics(other)]
    assert recording.finished == [0]
    assert recording.summaries["status"] == "done"


def test_a_finished_run_called_again_returns_at_once_without_training(reference):
    job, run_dir, result = reference
    before = RunPaths(run_dir).metrics.read_bytes()
    again = train(job, run_dir, tracker=RecordingTracker())
    assert (again.status, again.nimg, again.checkpoint) == ("done", 192, result.checkpoint)
    assert RunPaths(run_dir).metrics.read_bytes() == before


def test_a_run_directory_of_another_spec_is_refused(reference, tmp_path):
    job, run_dir, _ = reference
    other = tiny_job(seed=1)
    target = tmp_path / "run"
    target.mkdir()
    (target / "spec.yaml").write_text(job.to_yaml())
    with pytest.raises(HarnessError, match=f"holds run {job.run_id}, not {other.run_id}"):
        train(other, target, tracker=RecordingTracker())


# ---------------------------------------------------------------------------------------- resume


class StopAfter:
    """A `stop` callable that asks to stop once `steps` step boundaries have passed."""

    def __init__(self, steps: int):
        self.calls, self.steps = 0, steps

    def __call__(self) -> bool:
        self.calls += 1
        return self.calls > self.steps


def test_stop_checkpoints_at_the_step_boundary_and_resume_is_bitwise_identical(reference,
                                                                                tmp_path):
    job, ref_dir, _ = reference
    first = train(job, tmp_path, tracker=RecordingTracker(), stop=StopAfter(5))
    assert (first.status, first.exit_code, first.nimg) == ("preempted", EXIT_PREEMPTED, 5 * BATCH)
    assert Path(first.checkpoint).name == "snapshot-0000000080.pt"  # not a checkpoint_kimg multiple
    assert not RunPaths(tmp_path).done.exists()
    second = train(job, tmp_path, tracker=RecordingTracker())
    assert (second.status, second.resumed_from_nimg, second.nimg) == ("done", 80, 192)
    for ours, theirs in zip(final_weights(tmp_path), final_weights(ref_dir)):
        assert_bitwise_equal(ours, theirs)
    # the ticks replayed after the stop are the same losses (records keep one per nimg)
    ref_losses = [m["loss"] for m in read_metrics(ref_dir)]
    assert [m["loss"] for m in read_metrics(tmp_path)] == ref_losses


def test_truncated_latest_checkpoint_falls_back_with_a_warning_and_still_matches(reference,
                                                                                 tmp_path):
    job, ref_dir, _ = reference
    train(job, tmp_path, tracker=RecordingTracker(), stop=StopAfter(9))  # checkpoints 64,128,144
    paths = RunPaths(tmp_path)
    latest = paths.checkpoints / paths.latest.read_text().strip()
    assert latest.name == "snapshot-0000000144.pt"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match="snapshot-0000000144.pt.*resuming from "
                                            "snapshot-0000000128.pt"):
        result = train(job, tmp_path, tracker=RecordingTracker())
    assert result.resumed_from_nimg == 128
    for ours, theirs in zip(final_weights(tmp_path), final_weights(ref_dir)):
        assert_bitwise_equal(ours, theirs)


def _spawn_training(run_dir: Path, job) -> subprocess.Popen:
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = run_dir.parent / f"{run_dir.name}.yaml"
    spec.write_text(job.to_yaml())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "harness.train", str(run_dir), "--spec",
                             str(spec), "--no-progress"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_for_checkpoint(proc: subprocess.Popen, paths: RunPaths, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not paths.latest.exists():
        if proc.poll() is not None:
            pytest.fail(f"training exited early: {proc.stdout.read().decode()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no checkpoint within the timeout")
        time.sleep(0.01)


# Long enough that a kill sent within milliseconds of the first checkpoint (step 2) lands well
# before the end (a step takes tens of milliseconds here).
LONG_STEPS = 60


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    job = tiny_job(steps=LONG_STEPS, checkpoint_steps=2, tick_steps=10)
    run_dir = tmp_path_factory.mktemp("long-reference")
    train(job, run_dir, tracker=RecordingTracker())
    return job, run_dir


def test_sigkill_after_the_first_checkpoint_then_rerun_matches_an_uninterrupted_run(
        long_reference, tmp_path):
    job, ref_dir = long_reference
    run_dir = tmp_path / "killed"
    paths = RunPaths(run_dir)
    proc = _spawn_training(run_dir, job)
    _wait_for_checkpoint(proc, paths)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert not paths.done.exists(), "the run finished before the kill; make it longer"
    killed_at = max(n for n, _ in paths.list_checkpoints())
    assert 0 < killed_at < LONG_STEPS * BATCH
    result = train(job, run_dir, tracker=RecordingTracker())
    assert result.resumed_from_nimg == killed_at
    for ours, theirs in zip(final_weights(run_dir), final_weights(ref_dir)):
        assert_bitwise_equal(ours, theirs)


@pytest.mark.slow  # two interpreter start-ups: about 20-30 s on the shared 2-core machine
def test_sigterm_checkpoints_at_the_next_step_and_exits_75_for_requeue(long_reference, tmp_path):
    job, ref_dir = long_reference
    run_dir = tmp_path / "preempted"
    paths = RunPaths(run_dir)
    proc = _spawn_training(run_dir, job)
    _wait_for_checkpoint(proc, paths)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == EXIT_PREEMPTED, output
    assert "preempted" in output
    assert not paths.done.exists()
    latest = load_checkpoint(paths.checkpoints / paths.latest.read_text().strip())
    stopped_at = latest["progress"]["nimg"]
    assert 0 < stopped_at < LONG_STEPS * BATCH
    assert stopped_at % BATCH == 0
    resumed = _spawn_training(run_dir, job)  # "run the same command again"
    assert resumed.wait(timeout=120) == 0
    for ours, theirs in zip(final_weights(run_dir), final_weights(ref_dir)):
        assert_bitwise_equal(ours, theirs)


# ---------------------------------------------------------------------------------------- W&B


def test_wandb_offline_mirror_holds_the_same_ticks_as_the_records(tmp_path, monkeypatch):
    from harness.tracking.wandb import WandbTracker, read_offline_run, teardown

    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
                       "WANDB_DISABLE_GIT": "true", "WANDB_ERROR_REPORTING": "false",
                       "WANDB_DIR": str(tmp_path / "wandb-dir"),
                       "WANDB_CONSOLE": "off"}.items():
        monkeypatch.setenv(key, value)
    job = tiny_job(steps=6)
    try:
        train(job, tmp_path / "run", tracker=WandbTracker("harness-tests",
                                                          directory=tmp_path / "wandb-dir"))
    finally:
        teardown()
    run = read_offline_run(tmp_path / "wandb-dir")
    assert (run.run_id, run.group, run.job_type) == (job.run_id, "tiny", "fdm-edm")
    assert run.config["diffusion"]["kind"] == "fdm-edm"
    assert run.config["training"]["batch"] == BATCH
    records = read_metrics(tmp_path / "run")
    assert [row["_step"] for row in run.history] == [m["nimg"] for m in records]
    assert [row["loss"] for row in run.history] == [m["loss"] for m in records]
    assert run.summary["status"] == "done"


def test_wandb_that_fails_to_start_leaves_training_and_records_complete(reference, tmp_path,
                                                                        caplog):
    from harness.tracking.wandb import WandbTracker

    job, ref_dir, _ = reference

    def broken_init(**kwargs):
        raise OSError("wandb-core: cannot connect to localhost")

    mirror = WandbTracker("p", mode="offline", init=broken_init)
    with caplog.at_level(logging.WARNING, logger="harness.tracking"):
        result = train(job, tmp_path, tracker=mirror)
    assert result.status == "done"
    assert mirror.failed.startswith("init: OSError")
    assert [m["loss"] for m in read_metrics(tmp_path)] == [m["loss"] for m in
                                                           read_metrics(ref_dir)]
    assert any("W&B init failed" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------- precision


@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_each_precision_mode_trains_on_cpu_and_restores_the_tf32_switch(precision, tmp_path,
                                                                        reference):
    job, ref_dir, _ = reference
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    variant = tiny_job(steps=4, training={"precision": precision})
    train(variant, tmp_path, tracker=RecordingTracker())
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == saved
    losses = [m["loss"] for m in read_metrics(tmp_path)]
    reference_losses = [m["loss"] for m in read_metrics(ref_dir)][:4]
    assert all(math.isfinite(v) for v in losses)
    if precision in ("fp32", "tf32"):  # TF32 acts on CUDA only: identical on the CPU
        assert losses == reference_losses
    else:  # autocast really ran at low precision: close to fp32, not equal
        assert losses != reference_losses
        assert losses == pytest.approx(reference_losses, rel=0.05)
    checkpoint = load_checkpoint(RunPaths(tmp_path).checkpoint(4 * BATCH))
    assert bool(checkpoint["grad_scaler"]) == (precision == "fp16")


def test_channels_last_gives_the_same_losses_within_float_tolerance(reference, tmp_path):
    _, ref_dir, _ = reference
    train(tiny_job(steps=4, training={"channels_last": True}), tmp_path,
          tracker=RecordingTracker())
    losses = [m["loss"] for m in read_metrics(tmp_path)]
    # the same math in another memory layout: equal up to float reassociation (Adam amplifies
    # the last bits of tiny gradients; measured 2e-5 relative after 3 updates)
    assert losses == pytest.approx([m["loss"] for m in read_metrics(ref_dir)][:4], rel=1e-4)


def test_a_failing_torch_compile_warns_and_trains_eagerly_with_identical_results(
        reference, tmp_path, monkeypatch):
    _, ref_dir, _ = reference

    def broken_compile(module, *args, **kwargs):
        def call(*a, **k):
            raise RuntimeError("inductor: no C++ compiler")
        return call

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no C\\+\\+ compiler"):
        train(tiny_job(training={"compile": True}), tmp_path, tracker=RecordingTracker())
    for ours, theirs in zip(final_weights(tmp_path), final_weights(ref_dir)):
        assert_bitwise_equal(ours, theirs)


def test_nan_gradients_are_zeroed_so_one_bad_batch_does_not_poison_the_weights(tmp_path,
                                                                               monkeypatch):
    from harness.train import step as step_module

    original = step_module.compute_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        per_sample = original(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:  # the second step's loss is NaN
            per_sample = per_sample * float("nan")
        return per_sample

    monkeypatch.setattr(step_module, "compute_loss", poisoned)
    train(tiny_job(steps=3, checkpoint_steps=1), tmp_path, tracker=RecordingTracker())
    paths = RunPaths(tmp_path)
    after_first = load_checkpoint(paths.checkpoint(BATCH))["model"]
    after_second = load_checkpoint(paths.checkpoint(2 * BATCH))["model"]
    for key, value in after_second.items():
        assert torch.isfinite(value).all(), key
    # with every gradient zeroed, Adam's step only carries its momentum from step one
    assert any(not torch.equal(after_first[k], after_second[k]) for k in after_first)
