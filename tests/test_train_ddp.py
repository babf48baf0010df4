"""Data parallel training: 2 gloo processes against 1 process at the same global batch and seed,
and gradient accumulation; the FDM loss-weight cap at the same images seen is identical in all."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from harness.diffusion import fdm_weight_cap
from harness.records import RunPaths, read_metrics
from harness.tracking import RecordingTracker
from harness.train import train
from tests.test_train import BATCH, final_weights, tiny_job

STEPS = 6

# Spawning two interpreters plus two reference runs: 15-25 s on the shared 2-core machine.
pytestmark = pytest.mark.slow


def ddp_job(**training):
    # No dropout: torch's dropout masks depend on how the batch is split (docs/training.md).
    # Augmentation on (p = 0.5): it is drawn for the global batch and sliced, so it matches.
    # lr 2e-4: the split changes only the float summation order of the weight gradients (a conv
    # over 16 images vs two over 8); Adam divides by sqrt(v), which turns last-bit differences in
    # near-zero gradients into differences proportional to lr. At lr 2e-3 the largest one after 6
    # steps was 4.8e-6 (one element of the middle conv); at 2e-4 it is 6e-8.
    return tiny_job(steps=STEPS, checkpoint_steps=STEPS, warmup_steps=4, network={"dropout": 0.0},
                    training={"augment_p": 0.5, "lr": 2e-4, **training})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, spec_yaml: str, run_dir: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    from harness.specs import JobSpec

    train(JobSpec.from_yaml(spec_yaml), run_dir, tracker=RecordingTracker(), device="cpu")


def _max_abs_diff(a: dict, b: dict) -> float:
    """Largest elementwise difference over all tensors of two state dicts."""
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a if a[k].numel())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    job = ddp_job()
    train(job, root / "one", tracker=RecordingTracker())
    accumulated = ddp_job(batch_per_process=8)  # 2 rounds of 8 images in one process
    train(accumulated, root / "accumulated", tracker=RecordingTracker())
    mp.spawn(_worker, args=(2, _free_port(), job.to_yaml(), str(root / "two")), nprocs=2,
             join=True)
    return {name: root / name for name in ("one", "two", "accumulated")}


def test_two_gloo_processes_end_within_1e_6_of_one_process(runs):
    model_one, ema_one = final_weights(runs["one"])
    model_two, ema_two = final_weights(runs["two"])
    assert _max_abs_diff(model_one, model_two) <= 1e-6
    assert _max_abs_diff(ema_one, ema_two) <= 1e-6
    # and the run really trained: the weights moved away from initialisation
    first = torch.load(RunPaths(runs["one"]).checkpoint(STEPS * BATCH), weights_only=True)
    assert first["progress"]["world_size"] == 1
    two = torch.load(RunPaths(runs["two"]).checkpoint(STEPS * BATCH), weights_only=True)
    assert two["progress"]["world_size"] == 2


def test_gradient_accumulation_ends_within_1e_6_of_one_round(runs):
    model_one, _ = final_weights(runs["one"])
    model_acc, _ = final_weights(runs["accumulated"])
    assert _max_abs_diff(model_one, model_acc) <= 1e-6


def test_logged_loss_of_two_processes_is_the_global_batch_mean(runs):
    one = [m["loss"] for m in read_metrics(runs["one"])]
    two = [m["loss"] for m in read_metrics(runs["two"])]
    assert two == pytest.approx(one, rel=1e-6)
    assert read_metrics(runs["two"])[-1]["device_hours"] == pytest.approx(
        2 * read_metrics(runs["two"])[-1]["wall_s"] / 3600)


def test_fdm_cap_at_the_same_images_seen_is_identical_with_1_2_processes_and_accumulation(runs):
    caps = {name: [(m["nimg"], m["weight_cap"]) for m in read_metrics(path)]
            for name, path in runs.items()}
    assert caps["one"] == caps["two"] == caps["accumulated"]
    warmup_nimg = 4 * BATCH
    assert [c for _, c in caps["one"]] == [fdm_weight_cap(n - BATCH, warmup_nimg)
                                           for n, _ in caps["one"]]
    assert caps["one"][0][1] == 5.0 and caps["one"][-1][1] == float("inf")
