"""Checkpoints: plain data, written atomically, read with `torch.load(weights_only=True)`.

Format (FORMAT_VERSION 1), a dict of tensors, dicts, lists, strings and numbers only:

    format          "harness-train-checkpoint"
    format_version  1
    run_id          the run's id (hash of the resolved job spec)
    spec_yaml       the resolved job spec as YAML text (JobSpec.from_yaml reads it)
    progress        {"nimg", "step", "wall_s", "world_size", "snapshot", "final"}
    model           state dict of the Denoiser being trained (unwrapped: no DDP/compile prefix)
    ema             state dict of its exponential moving average (what evaluation samples from)
    optimizer       torch.optim.Adam state dict
    grad_scaler     GradScaler state dict ({} unless fp16 loss scaling)
    rng             {"torch_cpu": uint8 tensor, "torch_cuda": [uint8 tensors], "numpy": {...},
                     "python": [...]} of rank 0 at save time

Training draws every random number from generators derived from (seed, images seen), so the RNG
states are not needed to resume exactly; they are kept so a checkpoint describes its process.

Files are `checkpoints/snapshot-<nimg>.pt` and `checkpoints/latest` names the newest complete
one. Both are replaced atomically, so a kill leaves the previous checkpoint intact.
"""

from __future__ import annotations

import logging
import random
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.records import RunPaths, atomic_writer, write_atomic

FORMAT = "harness-train-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "run_id", "spec_yaml", "progress", "model", "ema",
                 "optimizer")

log = logging.getLogger("harness.train")


class CheckpointError(HarnessError):
    """A checkpoint file cannot be used (unreadable, truncated, another format or run)."""


# ------------------------------------------------------------------------------------ RNG state


def rng_state() -> dict:
    """The global RNG states of this process as tensors, lists and numbers."""
    bit_generator, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "torch_cpu": torch.get_rng_state(),
        "torch_cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": {"bit_generator": bit_generator, "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "python": _plain_python_state(random.getstate()),
    }
    return state


def _plain_python_state(state: tuple) -> list:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def restore_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch_cpu"])
    cuda = list(state.get("torch_cuda", []))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["bit_generator"],
                         numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


# ------------------------------------------------------------------------------ save and load


def save_checkpoint(paths: RunPaths, checkpoint: Mapping[str, Any]) -> Path:
    """Write `snapshot-<nimg>.pt` atomically, then point `latest` at it."""
    _check_structure(checkpoint, "checkpoint to save")
    path = paths.checkpoint(checkpoint["progress"]["nimg"])
    with atomic_writer(path) as handle:
        torch.save(dict(checkpoint), handle)
    write_atomic(paths.latest, path.name + "\n")
    return path


def load_checkpoint(path: str | Path, *, map_location: Any = "cpu",
                    run_id: str | None = None) -> dict:
    """Read and check one checkpoint (safe loader: `weights_only=True`)."""
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, pickle error, I/O error
        raise CheckpointError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    _check_structure(checkpoint, str(path))
    if run_id is not None and checkpoint["run_id"] != run_id:
        raise CheckpointError(f"{path}: belongs to run {checkpoint['run_id']}, not {run_id}")
    return checkpoint


def _check_structure(checkpoint: Any, where: str) -> None:
    if not isinstance(checkpoint, Mapping) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a {FORMAT}")
    if checkpoint.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{where}: format version {checkpoint.get('format_version')}, "
                              f"this harness reads version {FORMAT_VERSION}")
    missing = [key for key in REQUIRED_KEYS if key not in checkpoint]
    if missing:
        raise CheckpointError(f"{where}: lacks {missing}")


def resume_candidates(paths: RunPaths) -> list[Path]:
    """Checkpoints to try, best first: the one `latest` names, then the others newest first."""
    ordered: list[Path] = []
    if paths.latest.exists():
        name = paths.latest.read_text(encoding="utf-8").strip()
        if name and (paths.checkpoints / name).exists():
            ordered.append(paths.checkpoints / name)
    for _, path in reversed(paths.list_checkpoints()):
        if path not in ordered:
            ordered.append(path)
    return ordered


def choose_resume_checkpoint(paths: RunPaths, *, run_id: str | None = None,
                             map_location: Any = "cpu") -> tuple[Path, dict] | None:
    """The newest readable checkpoint of the run, or None when there is none.

    An unreadable or foreign file is skipped with a warning that names it and the checkpoint
    used instead. If files exist but none can be read, that is an error (starting over silently
    would discard the run).
    """
    candidates = resume_candidates(paths)
    failures = []
    for path in candidates:
        try:
            checkpoint = load_checkpoint(path, map_location=map_location, run_id=run_id)
        except CheckpointError as exc:
            failures.append(str(exc))
            continue
        for failure in failures:
            message = f"skipped checkpoint {failure}; resuming from {path.name} instead"
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        return path, checkpoint
    if failures:
        raise CheckpointError("no usable checkpoint in " + str(paths.checkpoints) + ": "
                              + "; ".join(failures))
    return None


# -------------------------------------------------------------------------------- retention


def crossed(nimg: int, batch: int, interval_nimg: float) -> bool:
    """True when the step that ended at `nimg` (of `batch` images) crossed a multiple of the
    interval: the moments EDM-style loops write ticks, checkpoints and snapshots."""
    if interval_nimg <= 0 or nimg <= 0:
        return False
    return int(nimg // interval_nimg) > int((nimg - batch) // interval_nimg)


def prune_checkpoints(paths: RunPaths, *, keep_last: int,
                      keep: Callable[[int], bool] = lambda nimg: False) -> list[Path]:
    """Delete old checkpoints: the newest `keep_last` stay, and so does any `keep(nimg)` says
    to keep (evaluable snapshots) and the one `latest` names. Returns the deleted paths."""
    protected = set(resume_candidates(paths)[:1])
    existing = paths.list_checkpoints()
    newest = {path for _, path in existing[-keep_last:]} if keep_last > 0 else set()
    removed = []
    for nimg, path in existing:
        if path in newest or path in protected or keep(nimg):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed
