"""Generation with one generator per seed, evaluation of checkpoints and runs, `harness eval`.

A tiny digits run (EDM, the small network, 512 images, snapshots at 256 and 512) is trained once
per module by `harness.train.train`; every test evaluates it with a few dozen images.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from harness.cli import main as harness_main
from harness.errors import HarnessError
from harness.evaluate.generate import (
    SamplingPlan,
    SeedGenerators,
    generate_batch,
    image_grid,
    process_share,
    sampler_sigma_range,
    save_image_grid,
    steps_for_nfe,
)
from harness.evaluate.plans import evaluate_checkpoint, evaluate_run, list_snapshots
from harness.records import RunPaths, read_jsonl, read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread

REPO = Path(__file__).resolve().parents[1]
TINY_RUN = ["training.duration_mimg=0.000512", "training.batch=64", "training.snapshot_kimg=0.256",
            "training.checkpoint_kimg=0.256", "training.tick_kimg=0.128",
            "training.keep_checkpoints=1", "evaluation.num_samples=32", "evaluation.batch=16",
            "evaluation.samplers=[{name: heun, nfe: [9, 17, 35]}]"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    from harness.specs import expand, load_experiment
    from harness.tracking import RecordingTracker
    from harness.train import train

    job = expand(load_experiment(REPO / "experiments" / "quickstart.yaml", TINY_RUN))[0]
    run_dir = tmp_path_factory.mktemp("runs") / job.run_id
    result = train(job, run_dir, tracker=RecordingTracker())
    assert result.status == "done" and result.nimg == 512
    return run_dir


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    """A private copy of the run, so tests that append to evals.jsonl do not see each other."""
    target = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, target)
    return target


# ---------------------------------------------------------------------------- seeds and splits

def test_each_image_draws_only_from_its_own_seed():
    together = SeedGenerators([3, 5, 7])
    z, labels = together.randn([1, 4, 4]), together.randint(10)
    for i, seed in enumerate([3, 5, 7]):
        alone = SeedGenerators([seed])
        assert torch.equal(alone.randn([1, 4, 4])[0], z[i])
        assert int(alone.randint(10)[0]) == int(labels[i])  # latent first, then the label


def test_process_shares_are_whole_chunks_that_cover_every_seed_once():
    for num_seeds, chunk in ((64, 16), (50, 16), (5, 100), (1797, 100)):
        for world_size in (1, 2, 3, 4):
            shares = [process_share(num_seeds, chunk, r, world_size) for r in range(world_size)]
            assert [i for share in shares for i in share] == list(range(num_seeds))
            assert all(s.start % chunk == 0 for s in shares if len(s))


def test_nfe_maps_to_steps_per_sampler_and_unreachable_nfe_names_neighbours():
    assert [steps_for_nfe("heun", n) for n in (9, 17, 35)] == [5, 9, 18]  # NFE = 2N − 1
    assert steps_for_nfe("euler", 10) == 10
    with pytest.raises(HarnessError, match=r"NFE 10 .*9, 11"):
        steps_for_nfe("heun", 10)
    with pytest.raises(HarnessError, match="did you mean 'heun'"):
        steps_for_nfe("hune", 9)


def test_sampler_sigma_range_is_clipped_to_edm_s_range_per_kind():
    assert sampler_sigma_range("edm") == (0.002, 80.0)
    assert sampler_sigma_range("vp") == (0.002, 80.0)      # the net's own range is 0.001 .. 152
    assert sampler_sigma_range("ve") == (0.02, 80.0)       # VE was trained down to 0.02 only
    assert sampler_sigma_range("fdm-ve") == sampler_sigma_range("ve")


def test_class_labels_come_from_the_seed_whatever_the_batch():
    seen = []

    def denoiser(x, sigma, class_labels):
        seen.append(class_labels.argmax(1).tolist())
        return torch.zeros_like(x)

    plan = SamplingPlan("euler", 1, 0.002, 80.0, channels=1, resolution=4, label_dim=10)
    generate_batch(denoiser, list(range(6)), plan)
    one_batch = seen.pop()
    generate_batch(denoiser, [0, 1, 2], plan)
    generate_batch(denoiser, [3, 4, 5], plan)
    assert seen[0] + seen[1] == one_batch
    generators = SeedGenerators(range(6))
    generators.randn([1, 4, 4])  # each seed's latent is drawn first, then its label
    assert one_batch == generators.randint(10).tolist()


def test_image_grid_tiles_images_row_by_row(tmp_path):
    images = torch.arange(5, dtype=torch.uint8).reshape(5, 1, 1, 1).expand(5, 1, 2, 2) * 50
    grid = image_grid(images.contiguous(), columns=3)
    assert grid.shape == (4, 6, 1)
    assert grid[0, 0, 0] == 0 and grid[0, 2, 0] == 50 and grid[2, 0, 0] == 150 and grid[3, 5, 0] == 0
    path = save_image_grid(images.contiguous(), tmp_path / "g.png", columns=3)
    assert np.array_equal(np.asarray(Image.open(path)), grid[:, :, 0])


# ------------------------------------------------------------------------ checkpoint and runs

def test_same_seeds_give_identical_metric_at_batch_16_and_64(tiny_run, cache_dir):
    ckpt = RunPaths(tiny_run).list_checkpoints()[-1][1]
    kwargs = dict(sampler="heun", nfe=3, num_samples=64, cache_dir=cache_dir, feature_chunk=16)
    small, large = (evaluate_checkpoint(ckpt, batch=b, **kwargs) for b in (16, 64))
    assert small["value"] == large["value"] and small["kid"] == large["kid"]
    assert small["metric"] == "fd-digits" and small["value"] > small["floor"] > 0
    assert (small["seed_start"], small["seed_stop"], small["num_steps"]) == (0, 64, 2)


WORKER = """
import json, sys, torch, torch.distributed as dist
torch.set_num_threads(1)
init, rank, ckpt, cache, out, run_dir = sys.argv[1:7]
dist.init_process_group("gloo", init_method="file://" + init, rank=int(rank), world_size=2)
from harness.evaluate.plans import evaluate_checkpoint, evaluate_run
record = evaluate_checkpoint(ckpt, sampler="heun", nfe=3, num_samples=48, batch=16,
                             cache_dir=cache, feature_chunk=16)
written = evaluate_run(run_dir, samplers=["euler"], nfe=[2], num_samples=40, batch=8,
                       snapshots="latest", cache_dir=cache, feature_chunk=16, save_grids=True)
json.dump({"checkpoint": record, "run": written}, open(out, "w"))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_gloo_processes_give_the_metric_of_one_and_write_each_record_once(
        tiny_run, cache_dir, tmp_path):
    ckpt = RunPaths(tiny_run).list_checkpoints()[-1][1]
    single = evaluate_checkpoint(ckpt, sampler="heun", nfe=3, num_samples=48, batch=16,
                                 cache_dir=cache_dir, feature_chunk=16)
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / "init"), str(rank),
                                 str(ckpt), str(cache_dir), str(tmp_path / f"out{rank}.json"),
                                 str(run_dir)], env=env, stderr=subprocess.PIPE, text=True)
               for rank in (0, 1)]
    for worker in workers:
        _, stderr = worker.communicate(timeout=300)
        assert worker.returncode == 0, stderr[-3000:]
    outputs = [json.loads((tmp_path / f"out{r}.json").read_text()) for r in (0, 1)]
    for output in outputs:
        assert output["checkpoint"]["value"] == single["value"]
        assert output["checkpoint"]["kid"] == single["kid"]
        assert output["checkpoint"]["eval_world_size"] == 2
    records = read_jsonl(RunPaths(run_dir).evals)
    assert len(records) == 1 and records[0]["sampler"] == "euler" and records[0]["nfe"] == 2
    alone = evaluate_run(tiny_run, samplers=["euler"], nfe=[2], num_samples=40, batch=8,
                         snapshots="latest", cache_dir=cache_dir, feature_chunk=16,
                         save_grids=False)
    assert alone[0]["value"] == records[0]["value"]
    RunPaths(tiny_run).evals.unlink()  # keep the shared run clean for the other tests
    assert (RunPaths(run_dir).samples / "euler-nfe2-0000000512.png").is_file()


def test_evaluate_run_covers_every_snapshot_and_nfe_once_and_is_idempotent(run_copy, cache_dir):
    paths = RunPaths(run_copy)
    assert [n for n, _ in list_snapshots(paths, "all")] == [256, 512]
    assert [n for n, _ in list_snapshots(paths, "latest")] == [512]
    written = evaluate_run(run_copy, samplers=["heun", "euler"], nfe=[3, 5], num_samples=16,
                           batch=16, cache_dir=cache_dir)
    keys = [(r["nimg"], r["sampler"], r["nfe"]) for r in written]
    assert keys == [(n, s, f) for n in (256, 512) for s in ("heun", "euler") for f in (3, 5)]
    records = read_jsonl(paths.evals)
    assert len(records) == 8
    ticks = {t["nimg"]: t["device_hours"] for t in read_metrics(paths)}
    for record in records:
        assert record["metric"] == "fd-digits" and record["reference"] == "digits/train"
        assert record["floor"] > 0 and record["kid"] is not None
        assert record["device_hours"] == ticks[record["nimg"]]
        assert (record["seed_start"], record["seed_stop"], record["num_samples"]) == (0, 16, 16)
        assert record["num_steps"] == (2 if record["sampler"] == "heun" and record["nfe"] == 3
                                       else 3 if record["sampler"] == "heun" else record["nfe"])
    assert evaluate_run(run_copy, samplers=["heun", "euler"], nfe=[3, 5], num_samples=16,
                        batch=16, cache_dir=cache_dir) == []
    assert len(read_jsonl(paths.evals)) == 8
    more = evaluate_run(run_copy, samplers=["heun"], nfe=[3], num_samples=24, batch=16,
                        snapshots="latest", cache_dir=cache_dir)
    assert [(r["nimg"], r["num_samples"]) for r in more] == [(512, 24)]
    assert sorted(p.name for p in paths.samples.iterdir())[:2] == [
        "euler-nfe3-0000000256.png", "euler-nfe3-0000000512.png"]


def test_cli_evaluates_nfe_9_17_35_into_evals_jsonl(run_copy, cache_dir, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CACHE", str(cache_dir))
    status = harness_main(["eval", str(run_copy), "--sampler", "heun", "--nfe", "9,17,35",
                           "--num-samples", "16", "--batch", "16", "--snapshots", "latest"])
    assert status == 0
    records = read_jsonl(RunPaths(run_copy).evals)
    assert [(r["sampler"], r["nfe"], r["num_steps"]) for r in records] == [
        ("heun", 9, 5), ("heun", 17, 9), ("heun", 35, 18)]
    assert all(r["nimg"] == 512 and r["metric"] == "fd-digits" for r in records)
    assert "fd-digits" in capsys.readouterr().out
    assert harness_main(["eval", str(run_copy), "--sampler", "heun", "--nfe", "9,17,35",
                         "--num-samples", "16", "--snapshots", "latest"]) == 0
    assert len(read_jsonl(RunPaths(run_copy).evals)) == 3  # nothing evaluated twice
    assert "nothing to evaluate" in capsys.readouterr().out


def test_cli_errors_exit_2_naming_the_problem(tmp_path, run_copy, capsys):
    assert harness_main(["eval", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert harness_main(["eval", str(tmp_path / "empty")]) == 2
    assert "snapshot-<nimg>.pt" in capsys.readouterr().err
    assert harness_main(["eval", str(run_copy), "--nfe", "10"]) == 2
    assert "9, 11" in capsys.readouterr().err
    assert harness_main(["eval", str(run_copy), "--sampler", "euler"]) == 2
    assert "give --nfe" in capsys.readouterr().err
    assert harness_main(["eval", str(run_copy), "--nfe", "9", "--metric", "fid-digits"]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert not RunPaths(run_copy).evals.exists()


def test_nfe_without_sampler_picks_the_spec_samplers_that_reach_it():
    from harness.evaluate.plans import sampler_plan
    from harness.specs import expand, load_experiment

    job = expand(load_experiment(REPO / "experiments" / "digits.yaml"))[0]
    assert [s.name for s in job.evaluation.samplers] == ["heun", "dpmpp_3s"]
    assert sampler_plan(job, None, [9, 17, 35]) == [("heun", 9), ("heun", 17), ("heun", 35)]
    assert sampler_plan(job, None, [10]) == [("dpmpp_3s", 10)]
    assert sampler_plan(job, None, None) == [("heun", 9), ("heun", 17), ("heun", 35),
                                             ("dpmpp_3s", 10), ("dpmpp_3s", 16)]
    assert sampler_plan(job, ["euler"], [4]) == [("euler", 4)]
    unreachable = r"none of the run's samplers .* reaches .*nearby: \[5, 7, 9\]"
    with pytest.raises(HarnessError, match=unreachable):
        sampler_plan(job, None, [8])
