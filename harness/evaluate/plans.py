"""Evaluation of a checkpoint, and of every snapshot of a run (the two cost axes).

- Training-cost axis: each snapshot of a run (images seen `nimg`, device-hours at that point).
- Sampling-cost axis: each sampler at each NFE (`harness.diffusion.samplers.steps_for_nfe`).

`evaluate_run` appends one line per (snapshot, sampler, NFE) to the run's `evals.jsonl` and skips
entries already there (same sampler, nfe, nimg, metric and num_samples), so running it again only
fills in what is missing. Under torch.distributed every process generates its share of the seeds;
rank 0 writes the records.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError
from harness.evaluate.features import FeatureExtractor
from harness.evaluate.generate import (
    FEATURE_CHUNK,
    SamplingPlan,
    distributed_rank_and_size,
    generate_features,
    sampler_sigma_range,
    save_image_grid,
    steps_for_nfe,
)
from harness.evaluate.metrics import make_extractor, resolve_metric, score_features
from harness.evaluate.reference import Reference, dataset_reference, file_reference
from harness.records import RunPaths, append_eval, read_jsonl, read_metrics

GRID_IMAGES = 64
SKIP_KEY = ("sampler", "nfe", "nimg", "metric", "num_samples")


# ------------------------------------------------------------------------------ the network

@contextlib.contextmanager
def cpu_threads(num_threads: int | None) -> Iterator[None]:
    """torch's CPU thread count for the duration (the run's `training.num_threads`): on a
    shared CPU, more threads than cores slow the small networks down many times over."""
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(int(num_threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class Snapshot:
    """The EMA network of one checkpoint and what it was trained on."""

    path: Path
    job: Any            # harness.specs.JobSpec
    denoiser: torch.nn.Module
    nimg: int
    progress: dict


def load_snapshot(ckpt_path: str | Path, *, device: torch.device | str = "cpu") -> Snapshot:
    """Rebuild the Denoiser from the checkpoint's resolved spec and load its EMA weights."""
    from harness.specs import JobSpec
    from harness.train import build_denoiser, load_checkpoint

    checkpoint = load_checkpoint(ckpt_path)
    job = JobSpec.from_yaml(checkpoint["spec_yaml"])
    denoiser = build_denoiser(job)
    denoiser.load_state_dict(checkpoint["ema"])
    denoiser = denoiser.eval().requires_grad_(False).to(device)
    progress = dict(checkpoint["progress"])
    return Snapshot(path=Path(ckpt_path), job=job, denoiser=denoiser,
                    nimg=int(progress["nimg"]), progress=progress)


def sampling_plan(job: Any, sampler: str, nfe: int) -> SamplingPlan:
    sigma_min, sigma_max = sampler_sigma_range(job.diffusion.kind)
    return SamplingPlan(sampler=sampler, num_steps=steps_for_nfe(sampler, nfe),
                        sigma_min=sigma_min, sigma_max=sigma_max,
                        channels=job.dataset.channels, resolution=job.dataset.resolution,
                        label_dim=job.label_dim)


# --------------------------------------------------------------------------- the reference

class Evaluator:
    """Holds the feature extractor and the reference of one metric across many evaluations."""

    def __init__(self, job: Any, *, metric: str | None = None,
                 inception_path: str | Path | None = None, reference_path: str | Path | None = None,
                 cache_dir: str | Path | None = None, device: torch.device | str = "cpu"):
        self.metric = resolve_metric(metric or job.evaluation.metric, job.dataset.name)
        self.device = device
        inception_path = inception_path or job.evaluation.inception_path
        self.extractor: FeatureExtractor = make_extractor(self.metric, inception_path=inception_path,
                                                          device=device)
        self.reference: Reference = self._reference(job, reference_path, cache_dir)

    def _reference(self, job, reference_path, cache_dir) -> Reference:
        if reference_path is not None:
            return file_reference(reference_path, self.extractor)
        data = job.dataset
        return dataset_reference(data.name, self.extractor, cache_dir=cache_dir, path=data.path,
                                 resolution=data.resolution, use_labels=False)

    def evaluate(self, snapshot: Snapshot, *, sampler: str, nfe: int, num_samples: int,
                 batch: int, seed_offset: int = 0, grid_path: Path | None = None,
                 feature_chunk: int = FEATURE_CHUNK) -> dict:
        """Generate `num_samples` images (seeds seed_offset ...) and score them: one record."""
        plan = sampling_plan(snapshot.job, sampler, nfe)
        seeds = range(seed_offset, seed_offset + num_samples)
        start = time.perf_counter()
        generated = generate_features(snapshot.denoiser, seeds, plan, self.extractor,
                                      batch=batch, device=self.device,
                                      grid_count=GRID_IMAGES if grid_path else 0,
                                      feature_chunk=feature_chunk)
        score = score_features(generated.features, self.reference, device=self.device)
        wall_s = time.perf_counter() - start
        rank, world_size = distributed_rank_and_size()
        if grid_path is not None and rank == 0 and generated.grid_images is not None:
            save_image_grid(generated.grid_images, grid_path)
        return {
            "nimg": snapshot.nimg, "metric": self.metric, "value": score.value,
            "sampler": sampler, "nfe": plan.nfe, "num_samples": num_samples,
            **self.reference.record_fields(),
            "seed_start": seed_offset, "seed_stop": seed_offset + num_samples,
            "kid": score.kid, "num_steps": plan.num_steps, "sigma_min": plan.sigma_min,
            "sigma_max": plan.sigma_max, "kind": snapshot.job.diffusion.kind,
            "checkpoint": snapshot.path.name, "device_hours": device_hours(snapshot),
            "wall_s": round(wall_s, 3), "eval_world_size": world_size,
        }


def device_hours(snapshot: Snapshot, ticks: Sequence[dict] = ()) -> float | None:
    """Training device-hours at the snapshot: the metrics tick at its nimg, else its progress."""
    for tick in ticks:
        if int(tick.get("nimg", -1)) == snapshot.nimg and "device_hours" in tick:
            return float(tick["device_hours"])
    wall_s, world_size = snapshot.progress.get("wall_s"), snapshot.progress.get("world_size", 1)
    if wall_s is None:
        return None
    return float(wall_s) * int(world_size) / 3600.0


# ------------------------------------------------------------------------------- public API

def evaluate_checkpoint(ckpt_path: str | Path, *, sampler: str = "heun", nfe: int = 35,
                        num_samples: int | None = None, batch: int | None = None,
                        metric: str | None = None, seed_offset: int | None = None,
                        inception_path: str | Path | None = None,
                        reference_path: str | Path | None = None,
                        cache_dir: str | Path | None = None, device: torch.device | str = "cpu",
                        grid_path: str | Path | None = None,
                        feature_chunk: int = FEATURE_CHUNK) -> dict:
    """Evaluate one checkpoint's EMA network with one sampler at one NFE; returns the record.

    Defaults (num_samples, batch, metric, seed offset, Inception path) come from the
    checkpoint's spec (`evaluation.*`). Nothing is written except the optional image grid.
    """
    snapshot = load_snapshot(ckpt_path, device=device)
    ev = snapshot.job.evaluation
    with cpu_threads(snapshot.job.training.num_threads):
        evaluator = Evaluator(snapshot.job, metric=metric, inception_path=inception_path,
                              reference_path=reference_path, cache_dir=cache_dir, device=device)
        return evaluator.evaluate(
            snapshot, sampler=sampler, nfe=nfe, num_samples=num_samples or ev.num_samples,
            batch=batch or ev.batch, seed_offset=ev.seed_offset if seed_offset is None else seed_offset,
            grid_path=Path(grid_path) if grid_path else None, feature_chunk=feature_chunk)


def sampler_plan(job: Any, samplers: Iterable[str] | None, nfe: Iterable[int] | None
                 ) -> list[tuple[str, int]]:
    """(sampler, NFE) pairs: the spec's `evaluation.samplers` unless overridden.

    `samplers` picks sampler names; `nfe` replaces the NFE list of every picked sampler. A sampler
    that the spec does not list needs `nfe`. `nfe` without `samplers` applies to the spec's
    samplers that can reach every value (NFE 9, 17, 35 are Heun's; 10, 16 are DPM-Solver++(3S)'s).
    """
    listed = {s.name: tuple(s.nfe) for s in job.evaluation.samplers}
    nfe = tuple(int(v) for v in nfe) if nfe else ()
    if samplers:
        names = list(samplers)
    elif nfe:
        names = [name for name in listed if _reaches(name, nfe)]
        if not names:
            raise HarnessError(f"none of the run's samplers ({', '.join(listed)}) reaches every NFE "
                               f"in {list(nfe)}; pick one with --sampler ("
                               + "; ".join(_nearby(name, nfe) for name in listed) + ")")
    else:
        names = list(listed)
    pairs = []
    for name in names:
        values = nfe or listed.get(name)
        if not values:
            raise HarnessError(f"sampler '{name}' is not in the run's evaluation.samplers "
                               f"({', '.join(listed) or 'none'}); give --nfe for it")
        for value in values:
            steps_for_nfe(name, value)  # an unreachable NFE fails before any work is done
            pairs.append((name, int(value)))
    return pairs


def _reaches(sampler: str, nfe: Sequence[int]) -> bool:
    try:
        return all(steps_for_nfe(sampler, value) for value in nfe)
    except HarnessError:
        return False


def _nearby(sampler: str, nfe: Sequence[int]) -> str:
    for value in nfe:
        try:
            steps_for_nfe(sampler, value)
        except HarnessError as exc:
            return str(exc)
    return f"{sampler} reaches them"


def list_snapshots(paths: RunPaths, which: str) -> list[tuple[int, Path]]:
    """(nimg, path) of the checkpoints to evaluate: 'all' snapshots (and the final one), or the
    'latest' checkpoint."""
    found = paths.list_checkpoints()
    if which == "latest":
        return found[-1:]
    if which != "all":
        raise HarnessError(f"--snapshots must be 'all' or 'latest', got '{which}'")
    chosen = []
    for nimg, path in found:
        progress = _progress(path)
        if progress.get("snapshot") or progress.get("final") or path == found[-1][1]:
            chosen.append((nimg, path))
    return chosen


def _progress(path: Path) -> dict:
    # mmap: reading the progress dict does not load the weights and optimizer state.
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable file is reported when it is evaluated
        return {"snapshot": True}
    return dict(checkpoint.get("progress", {}))


def _check_run_dir(run_dir: str | Path) -> RunPaths:
    paths = RunPaths(run_dir)
    if not paths.root.is_dir():
        raise HarnessError(f"{paths.root}: no such run directory")
    if not paths.list_checkpoints():
        raise HarnessError(f"{paths.root}: not a run directory with checkpoints (expected "
                           f"{paths.checkpoints}/snapshot-<nimg>.pt)")
    return paths


def _done_keys(paths: RunPaths) -> set[tuple]:
    return {tuple(r.get(k) for k in SKIP_KEY) for r in read_jsonl(paths.evals)}


def _broadcast(obj: Any) -> Any:
    rank, world_size = distributed_rank_and_size()
    if world_size == 1:
        return obj
    box = [obj if rank == 0 else None]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def evaluate_run(run_dir: str | Path, *, samplers: Iterable[str] | None = None,
                 nfe: Iterable[int] | None = None, num_samples: int | None = None,
                 batch: int | None = None, snapshots: str | None = None,
                 metric: str | None = None, inception_path: str | Path | None = None,
                 reference_path: str | Path | None = None, cache_dir: str | Path | None = None,
                 device: torch.device | str = "cpu", save_grids: bool = True,
                 feature_chunk: int = FEATURE_CHUNK) -> list[dict]:
    """Evaluate the run's snapshots × samplers × NFE; append new records to evals.jsonl.

    Defaults come from the run's spec: samplers and NFE from `evaluation.samplers`, which
    snapshots from `evaluation.at` ("snapshots" → all, "final" → latest), num_samples and batch
    from `evaluation`. Returns the records written by this call (skipped entries are not redone).
    """
    paths = _check_run_dir(run_dir)
    first = load_snapshot(paths.list_checkpoints()[-1][1], device="cpu")
    ev = first.job.evaluation
    which = snapshots or ("latest" if ev.at == "final" else "all")
    pairs = sampler_plan(first.job, samplers, nfe)
    num_samples, batch = num_samples or ev.num_samples, batch or ev.batch
    with cpu_threads(first.job.training.num_threads):
        evaluator = Evaluator(first.job, metric=metric, inception_path=inception_path,
                              reference_path=reference_path, cache_dir=cache_dir, device=device)
        done = _broadcast(_done_keys(paths))
        ticks = read_metrics(paths)
        rank, _ = distributed_rank_and_size()
        written = []
        for nimg, path in list_snapshots(paths, which):
            todo = [(s, n) for s, n in pairs
                    if (s, n, nimg, evaluator.metric, num_samples) not in done]
            if not todo:
                continue
            snapshot = load_snapshot(path, device=device)
            for sampler, value in todo:
                grid = paths.sample_grid(nimg, f"{sampler}-nfe{value}") if save_grids else None
                record = evaluator.evaluate(snapshot, sampler=sampler, nfe=value,
                                            num_samples=num_samples, batch=batch,
                                            seed_offset=ev.seed_offset, grid_path=grid,
                                            feature_chunk=feature_chunk)
                record["device_hours"] = device_hours(snapshot, ticks)
                record["run_id"] = snapshot.job.run_id
                if rank == 0:
                    append_eval(paths, record)
                written.append(record)
    return written
