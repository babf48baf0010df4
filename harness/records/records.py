"""Typed records of a run: training ticks (metrics.jsonl), evaluations (evals.jsonl), env.json.

The JSONL files are append-only. A resumed run replays the ticks after its last checkpoint, so a
file may hold two records for the same `nimg`; the readers keep the last one written for each
`nimg` (a resumed run reproduces the same losses bitwise, only the timings differ).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.records.io import append_jsonl, read_json, read_jsonl, write_json_atomic
from harness.records.paths import RunPaths


@dataclass(frozen=True)
class TrainTick:
    """One line of metrics.jsonl: the state of training after `nimg` images.

    `wall_s` counts training time only (summed over restarts); `device_hours` is
    `wall_s × number of processes / 3600`, the cost axis of the comparison.
    `extra` holds further scalars (EMA beta, loss-weight cap, peak memory, ...), flattened into
    the line.
    """

    nimg: int
    step: int
    loss: float
    lr: float
    img_per_s: float
    wall_s: float
    device_hours: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict:
        return _flatten_extra(self)


def _flatten_extra(record_obj) -> dict:
    """The dataclass as one flat JSON line: its fields, then `extra`, which may not shadow a field."""
    record = asdict(record_obj)
    extra = record.pop("extra")
    clash = set(extra) & set(record)
    if clash:
        raise ValueError(f"extra metrics may not reuse the names {sorted(clash)}")
    return {**record, **extra}


@dataclass(frozen=True)
class EvalRecord:
    """One line of evals.jsonl: a quality metric of the snapshot at `nimg`.

    `seed_start` / `seed_stop` are the half-open range of image seeds generated; `reference`
    names the reference statistics (dataset split and feature extractor).
    """

    nimg: int
    metric: str
    value: float
    sampler: str
    nfe: int
    num_samples: int
    reference: str
    seed_start: int
    seed_stop: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict:
        return _flatten_extra(self)


def append_tick(paths: RunPaths, tick: TrainTick | Mapping[str, Any]) -> None:
    record = tick.to_record() if isinstance(tick, TrainTick) else dict(tick)
    _require(record, ("nimg",), paths.metrics)
    append_jsonl(paths.metrics, record)


def append_eval(paths: RunPaths, record: EvalRecord | Mapping[str, Any]) -> None:
    record = record.to_record() if isinstance(record, EvalRecord) else dict(record)
    _require(record, ("nimg", "metric", "value"), paths.evals)
    append_jsonl(paths.evals, record)


def _require(record: Mapping[str, Any], keys: tuple[str, ...], path: Path) -> None:
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"{path.name} record lacks {missing}: {dict(record)}")


def read_metrics(run_dir: str | Path | RunPaths) -> list[dict]:
    """Training ticks in order of `nimg`, one per `nimg` (the last written wins after a resume)."""
    paths = run_dir if isinstance(run_dir, RunPaths) else RunPaths(run_dir)
    by_nimg: dict[int, dict] = {}
    for record in read_jsonl(paths.metrics):
        if "nimg" in record:
            by_nimg[int(record["nimg"])] = record
    return [by_nimg[n] for n in sorted(by_nimg)]


def read_evals(run_dir: str | Path | RunPaths) -> list[dict]:
    """Evaluation records, the last one written for each (nimg, metric, sampler, nfe, reference)."""
    paths = run_dir if isinstance(run_dir, RunPaths) else RunPaths(run_dir)
    latest: dict[tuple, dict] = {}
    for record in read_jsonl(paths.evals):
        key = tuple(record.get(k) for k in ("nimg", "metric", "sampler", "nfe", "reference"))
        latest.pop(key, None)  # re-insert so that order is the order of the last write
        latest[key] = record
    return list(latest.values())


# --------------------------------------------------------------------------------------- env.json

_PACKAGES = ("harness", "torch", "numpy", "scipy", "pydantic", "PyYAML", "wandb", "submitit",
             "optuna", "pandas")


def git_state(directory: str | Path | None = None) -> dict:
    """{"commit": sha or None, "dirty": bool or None} of the repository holding `directory`."""
    directory = Path(directory or Path(__file__).resolve().parent)
    try:
        commit = _git(directory, "rev-parse", "HEAD")
        status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status)}


def _git(directory: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True,
                            timeout=10, check=True)
    return result.stdout.strip()


def package_versions(names: tuple[str, ...] = _PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def describe_device(device: Any = None) -> dict:
    """Name, count and memory of the accelerator (or the CPU) a run uses."""
    import torch

    device = torch.device(device or "cpu")
    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads(),
                            "cpu_count": os.cpu_count(), "processor": platform.processor()}
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        info.update(name=props.name, memory_bytes=props.total_memory,
                    capability=f"{props.major}.{props.minor}", count=torch.cuda.device_count(),
                    cuda=torch.version.cuda)
    return info


def collect_env(*, device: Any = None, world_size: int = 1, extra: Mapping[str, Any] = ()) -> dict:
    return {
        "start_time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "device": describe_device(device),
        "world_size": int(world_size),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        **dict(extra),
    }


def write_env(paths: RunPaths, env: Mapping[str, Any]) -> dict:
    """Write env.json; earlier starts of the same run (resumes) are kept under `previous_starts`."""
    previous: list = []
    if paths.env.exists():
        try:
            old = read_json(paths.env)
            previous = [*old.pop("previous_starts", []), old]
        except (ValueError, OSError):
            previous = []
    record = {**dict(env), "previous_starts": previous}
    write_json_atomic(paths.env, record)
    return record
