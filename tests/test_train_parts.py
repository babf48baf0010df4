"""Training building blocks: schedules against closed forms, seeds, checkpoints, preemption,
precision switches, the distributed environment."""

from __future__ import annotations

import math
import os
import random
import signal

import numpy as np
import pytest
import torch

from harness.diffusion import fdm_weight_cap
from harness.errors import HarnessError
from harness.records import RunPaths
from harness.train.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    choose_resume_checkpoint,
    crossed,
    load_checkpoint,
    prune_checkpoints,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from harness.train.distributed import read_env
from harness.train.precision import PRECISIONS, precision_mode, tf32_enabled
from harness.train.preemption import EXIT_PREEMPTED, install_signal_handlers
from harness.train.schedules import ema_beta, ema_halflife_nimg, learning_rate, loss_weight_cap
from harness.train.seeding import derive_seed, make_generator

# ------------------------------------------------------------------------------------ schedules


def test_learning_rate_ramps_linearly_in_images_then_stays_constant():
    lr, ramp = 1e-3, 10_000_000
    assert learning_rate(0, lr, ramp) == 0.0
    assert learning_rate(2_500_000, lr, ramp) == pytest.approx(2.5e-4, rel=1e-15)
    assert learning_rate(ramp, lr, ramp) == lr
    assert learning_rate(3 * ramp, lr, ramp) == lr
    assert learning_rate(0, lr, 0) == lr  # no ramp


def test_ema_beta_matches_edm_closed_form_during_and_after_the_ramp():
    batch, halflife, ratio = 512, 500_000, 0.05
    # During the ramp the half-life is nimg * ratio; after 10 Mimg it is the full 0.5 Mimg.
    nimg = 1_000_000
    assert ema_halflife_nimg(nimg, halflife, ratio) == 50_000
    assert ema_beta(nimg, batch, halflife, ratio) == pytest.approx(0.5 ** (512 / 50_000), rel=1e-15)
    assert ema_beta(20_000_000, batch, halflife, ratio) == pytest.approx(0.5 ** (512 / 500_000))
    assert ema_beta(0, batch, halflife, ratio) == 0.0  # the first EMA is a copy of the network
    assert ema_beta(0, batch, halflife, None) == pytest.approx(0.5 ** (512 / 500_000))
    # The defining property: after `halflife` images at a constant beta the old weight halves.
    steps = halflife / batch
    assert ema_beta(10**9, batch, halflife, ratio) ** steps == pytest.approx(0.5, rel=1e-12)


def test_loss_weight_cap_is_fdm_only_and_follows_the_warmup_in_images():
    warmup = 102_400
    assert loss_weight_cap("edm", 0, warmup) == math.inf
    assert loss_weight_cap("fdm-edm", 0, warmup) == 5.0
    assert loss_weight_cap("fdm-edm", warmup // 2, warmup) == pytest.approx(50.0)
    assert loss_weight_cap("fdm-vp", warmup, warmup) == math.inf  # official: no cap afterwards
    assert loss_weight_cap("fdm-vp", warmup, warmup, hold_final=True) == 500.0
    assert loss_weight_cap("fdm-ve", 1234, warmup) == fdm_weight_cap(1234, warmup)


# ---------------------------------------------------------------------------------------- seeds


def test_derived_seeds_are_pure_functions_of_their_keys_and_separate_streams():
    assert derive_seed(7, 1, 512) == derive_seed(7, 1, 512)
    seeds = {derive_seed(7, 1, n) for n in range(0, 512 * 100, 512)}
    assert len(seeds) == 100
    assert derive_seed(7, 1, 512) != derive_seed(7, 2, 512) != derive_seed(8, 1, 512)
    assert all(0 <= s < 2**63 for s in seeds)
    a = torch.randn(4, generator=make_generator(3, 1, 64))
    b = torch.randn(4, generator=make_generator(3, 1, 64))
    assert torch.equal(a, b)


# ---------------------------------------------------------------------------------- checkpoints


def _checkpoint(nimg: int, value: float = 1.0) -> dict:
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "run_id": "abc", "spec_yaml": "x: 1\n",
        "progress": {"nimg": nimg, "step": nimg // 8, "wall_s": 1.5, "world_size": 1,
                     "snapshot": False, "final": False},
        "model": {"w": torch.full((3,), value)}, "ema": {"w": torch.zeros(3)},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
        "grad_scaler": {}, "rng": rng_state(),
    }


def test_checkpoint_round_trips_through_the_safe_loader(tmp_path):
    paths = RunPaths(tmp_path)
    path = save_checkpoint(paths, _checkpoint(64, 2.0))
    assert path == paths.checkpoint(64)
    assert paths.latest.read_text().strip() == path.name
    raw = torch.load(path, weights_only=True)  # only plain data: no custom classes
    assert torch.equal(raw["model"]["w"], torch.full((3,), 2.0))
    assert load_checkpoint(path)["progress"]["nimg"] == 64
    with pytest.raises(CheckpointError, match="belongs to run abc, not other"):
        load_checkpoint(path, run_id="other")


def test_rng_state_survives_the_safe_loader_and_restores_torch_numpy_and_python(tmp_path):
    torch.save(rng_state(), tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_truncated_latest_falls_back_to_the_previous_checkpoint_with_a_warning(tmp_path):
    paths = RunPaths(tmp_path)
    save_checkpoint(paths, _checkpoint(64, 1.0))
    newest = save_checkpoint(paths, _checkpoint(128, 2.0))
    newest.write_bytes(newest.read_bytes()[:200])  # e.g. a disk that filled up
    with pytest.warns(RuntimeWarning, match=r"snapshot-0000000128\.pt.*resuming from "
                                            r"snapshot-0000000064\.pt"):
        path, checkpoint = choose_resume_checkpoint(paths, run_id="abc")
    assert path == paths.checkpoint(64)
    assert torch.equal(checkpoint["model"]["w"], torch.ones(3))


def test_missing_latest_pointer_uses_the_newest_file_and_no_checkpoint_means_none(tmp_path):
    paths = RunPaths(tmp_path)
    assert choose_resume_checkpoint(paths) is None
    save_checkpoint(paths, _checkpoint(64))
    save_checkpoint(paths, _checkpoint(192))
    paths.latest.unlink()
    assert choose_resume_checkpoint(paths)[0] == paths.checkpoint(192)


def test_all_checkpoints_unreadable_is_an_error_not_a_silent_restart(tmp_path):
    paths = RunPaths(tmp_path)
    paths.checkpoints.mkdir(parents=True)
    paths.checkpoint(64).write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="no usable checkpoint"):
        choose_resume_checkpoint(paths)


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path):
    old = {**_checkpoint(64), "format_version": 0}
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="format version 0"):
        load_checkpoint(tmp_path / "old.pt")


def test_pruning_keeps_the_last_k_and_every_snapshot(tmp_path):
    paths = RunPaths(tmp_path)
    batch, snapshot_nimg = 64, 256
    for nimg in range(64, 64 * 9, 64):
        save_checkpoint(paths, _checkpoint(nimg))
    removed = prune_checkpoints(paths, keep_last=2,
                                keep=lambda n: crossed(n, batch, snapshot_nimg))
    assert [n for n, _ in paths.list_checkpoints()] == [256, 448, 512]
    assert len(removed) == 5


def test_crossed_marks_the_step_that_passes_each_interval_boundary():
    # batch 96 and interval 200: the steps ending at 288 (crossing 200) and 480 (crossing 400).
    ends = [n for n in range(96, 96 * 6, 96) if crossed(n, 96, 200)]
    assert ends == [288, 480]


# ----------------------------------------------------------------------------------- preemption


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_sigterm_and_sigusr1_set_the_stop_flag_and_handlers_are_restored(signum):
    before = signal.getsignal(signum)
    stop = install_signal_handlers()
    try:
        assert stop() is False
        os.kill(os.getpid(), signum)
        assert stop() is True
        assert stop.reason == signal.Signals(signum).name
    finally:
        stop.restore()
    assert signal.getsignal(signum) == before
    assert EXIT_PREEMPTED == 75


# ------------------------------------------------------------------------------------ precision


def test_tf32_switch_is_restored_after_training():
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with tf32_enabled(not saved[0]):
        assert torch.backends.cuda.matmul.allow_tf32 is (not saved[0])
    with pytest.raises(RuntimeError), tf32_enabled(True):
        raise RuntimeError("a failing step")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == saved


def test_precision_names_and_their_meaning():
    assert precision_mode("fp32").tf32 is False and precision_mode("fp32").autocast_dtype is None
    assert precision_mode("bf16").autocast_dtype is torch.bfloat16
    assert precision_mode("fp16").loss_scaling is True
    assert sorted(PRECISIONS) == ["bf16", "fp16", "fp32", "tf32"]
    with pytest.raises(ValueError, match="did you mean 'bf16'"):
        precision_mode("bf61")


# ---------------------------------------------------------------------------------- distributed


def test_distributed_environment_is_read_like_torchrun_exports_it():
    assert read_env({}).world_size == 1
    env = read_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    assert (env.rank, env.world_size, env.local_rank, env.is_main) == (1, 2, 1, False)
    with pytest.raises(HarnessError, match="MASTER_ADDR"):
        read_env({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "1"})
