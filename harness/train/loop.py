"""The training job: `train(job, run_dir, ...)` trains one resolved job spec into its run directory.

Resume is "call it again with the same run_dir": it continues from the newest readable
checkpoint and, because every schedule and every random draw is a function of (seed, images
seen), ends with the same weights as an uninterrupted run, bit for bit.

Order of one iteration, at a step boundary:
    stop requested?  → checkpoint, return "preempted"
    train_step       → sample_batch, accumulate (forward/backward), optimizer_step, update_ema
    maybe_log        → a tick every training.tick_kimg: metrics.jsonl + mirrors
    maybe_checkpoint → every checkpoint_kimg (last keep_checkpoints kept) and snapshot_kimg (kept)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.diffusion import is_fdm
from harness.errors import HarnessError, SpecError
from harness.records import RunPaths, collect_env, read_json, write_atomic, write_env, \
    write_json_atomic
from harness.tracking import JsonlTracker, MultiTracker, ProgressTracker, Tracker
from harness.train import distributed as ddp
from harness.train.build import (
    build_denoiser,
    load_training_data,
    make_augment,
    make_ema,
    make_optimizer,
    maybe_compile,
)
from harness.train.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    choose_resume_checkpoint,
    crossed,
    prune_checkpoints,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from harness.train.precision import Precision, autocast, make_grad_scaler, precision_mode, \
    tf32_enabled
from harness.train.preemption import EXIT_PREEMPTED
from harness.train.schedules import ema_beta, learning_rate, loss_weight_cap
from harness.train.step import StepPlan, accumulate, make_plan, optimizer_step, sample_batch, \
    update_ema

log = logging.getLogger("harness.train")


@dataclass
class TrainResult:
    """What a training call ended with. `status` is "done" or "preempted" (see `exit_code`)."""

    status: str
    run_id: str
    run_dir: str
    nimg: int
    step: int
    total_nimg: int
    checkpoint: str | None
    loss: float | None
    wall_s: float
    device_hours: float
    resumed_from_nimg: int | None = None

    @property
    def exit_code(self) -> int:
        """0 when done; EXIT_PREEMPTED (75) when stopped at a checkpoint and worth requeueing."""
        return 0 if self.status == "done" else EXIT_PREEMPTED


@dataclass
class TrainContext:
    """Everything fixed for the whole run."""

    job: Any
    paths: RunPaths
    env: ddp.DistEnv
    device: torch.device
    precision: Precision
    plan: StepPlan
    total_nimg: int
    data: Any
    augment: Callable | None
    tracker: Tracker

    @property
    def t(self):  # the training section, read everywhere
        return self.job.training


@dataclass
class TrainState:
    """Everything that changes, and everything a checkpoint holds."""

    net: nn.Module                      # the Denoiser being trained (unwrapped)
    ema: nn.Module
    model: Callable                     # what the step calls: net, maybe DDP- and compile-wrapped
    ddp_module: nn.Module | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    nimg: int = 0
    step: int = 0
    wall_s: float = 0.0
    last_checkpoint_nimg: int | None = None
    resumed_from_nimg: int | None = None
    tick: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------- entry


def train(job: Any, run_dir: str | Path, *, tracker: Tracker | None = None,
          device: str | torch.device | None = None,
          stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train `job` (a resolved JobSpec) into `run_dir`, resuming from its checkpoints.

    tracker: mirrors of the records (W&B, a display, a test's recorder); None builds the spec's
        default mirrors (W&B as `tracking.wandb` says, a progress display). The JSONL records
        are written whatever is passed.
    device: overrides `training.device`. stop: polled at every step boundary; when it returns
        True the job writes a checkpoint and returns with status "preempted".
    """
    paths = RunPaths(run_dir)
    env = ddp.read_env()
    torch_device = _resolve_device(job, env, device)
    env = ddp.setup_distributed(torch_device)
    try:
        if env.is_main and paths.done.exists():
            finished = _already_done(job, paths)
            if finished is not None and not env.enabled:
                return finished
        with _threads(job.training.num_threads), tf32_enabled(precision_mode(
                job.training.precision).tf32):
            return _train(job, paths, env, torch_device, tracker, stop or (lambda: False))
    finally:
        ddp.teardown_distributed(env)


def _train(job: Any, paths: RunPaths, env: ddp.DistEnv, device: torch.device,
           tracker: Tracker | None, stop: Callable[[], bool]) -> TrainResult:
    ctx = _make_context(job, paths, env, device, tracker)
    state = build_state(ctx)
    _resume(ctx, state)
    if env.is_main:
        ctx.tracker.start(job.run_id, job.experiment, job.variant, _tracker_config(job))
    status = "done"
    try:
        status = _loop(ctx, state, stop)
    except BaseException:
        if env.is_main:
            ctx.tracker.finish(1)
        raise
    checkpoint = _finish(ctx, state, status)
    return TrainResult(status=status, run_id=job.run_id, run_dir=str(paths.root),
                       nimg=state.nimg, step=state.step, total_nimg=ctx.total_nimg,
                       checkpoint=str(checkpoint) if checkpoint else None,
                       loss=state.tick.get("last_loss"), wall_s=state.wall_s,
                       device_hours=_device_hours(state.wall_s, env),
                       resumed_from_nimg=state.resumed_from_nimg)


def _loop(ctx: TrainContext, state: TrainState, stop: Callable[[], bool]) -> str:
    _start_tick(ctx, state)
    # wall_s counts the whole loop (steps, ticks, checkpoints) over every restart; the time of a
    # tick's record and of a checkpoint lands in the next tick. Start-up is not counted.
    last = time.perf_counter()
    while state.nimg < ctx.total_nimg:
        if ddp.any_rank(bool(stop()), ctx.env, ctx.device):
            return "preempted"
        stats = train_step(ctx, state)
        now = time.perf_counter()
        state.wall_s, last = state.wall_s + (now - last), now
        maybe_log(ctx, state, stats)
        maybe_checkpoint(ctx, state)
    return "done"


# ------------------------------------------------------------------------------------ the step


def train_step(ctx: TrainContext, state: TrainState) -> dict:
    """One optimizer step on the global batch that starts after `state.nimg` images."""
    from harness.data import batch_indices

    t, diffusion, nimg = ctx.t, ctx.job.diffusion, state.nimg
    cap = loss_weight_cap(diffusion.kind, nimg, diffusion.warmup_kimg * 1e3,
                          hold_final=diffusion.cap_after_warmup == "hold")
    lr = learning_rate(nimg, t.lr, t.lr_rampup_mimg * 1e6)
    beta = ema_beta(nimg, t.batch, t.ema_halflife_mimg * 1e6, t.ema_rampup_ratio)
    indices = batch_indices(ctx.job.seed, nimg, t.batch, len(ctx.data))
    batch = sample_batch(kind=diffusion.kind, seed=ctx.job.seed, nimg=nimg, indices=indices,
                         images=ctx.data.batch, label_dim=ctx.job.label_dim,
                         augment=ctx.augment, device=ctx.device)
    state.net.train()
    loss_sum = accumulate(state.model, batch, ctx.plan, seed=ctx.job.seed, nimg=nimg,
                          kind=diffusion.kind, sigma_data=diffusion.sigma_data, weight_cap=cap,
                          scaler=state.scaler, autocast=lambda: autocast(ctx.precision, ctx.device),
                          no_sync=_no_sync(state), channels_last=t.channels_last)
    optimizer_step(state.optimizer, state.scaler, list(state.net.parameters()), lr=lr,
                   nan_to_num=t.grad_nan_to_num)
    update_ema(state.ema, state.net, beta)
    state.nimg += t.batch
    state.step += 1
    return {"loss_sum": loss_sum, "lr": lr, "ema_beta": beta, "weight_cap": cap}


def _no_sync(state: TrainState) -> Callable[[], contextlib.AbstractContextManager]:
    if state.ddp_module is None:
        return contextlib.nullcontext
    return state.ddp_module.no_sync


# ------------------------------------------------------------------------------ ticks and logs


def _start_tick(ctx: TrainContext, state: TrainState) -> None:
    state.tick.update(loss_sum=torch.zeros((), device=ctx.device), samples=0, steps=0,
                      nimg=state.nimg, wall_s=state.wall_s)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)


def maybe_log(ctx: TrainContext, state: TrainState, stats: dict) -> None:
    """Accumulate the step into the tick; at a tick boundary (or the end) write one record."""
    tick = state.tick
    tick["loss_sum"] += stats["loss_sum"]
    tick["samples"] += ctx.plan.batch_per_process
    tick["steps"] += 1
    if not (crossed(state.nimg, ctx.t.batch, kimg_to_nimg(ctx.t.tick_kimg))
            or state.nimg >= ctx.total_nimg):
        return
    # One host-device synchronisation per tick (not per step): the loss of every rank.
    totals = torch.stack([tick["loss_sum"], torch.tensor(float(tick["samples"]),
                                                         device=ctx.device)])
    if ctx.env.enabled:
        torch.distributed.all_reduce(totals)
    loss_sum, samples = totals.tolist()
    pixels = math.prod(ctx.data.images.shape[1:])
    loss = loss_sum / max(samples, 1) / pixels  # EDM reports the mean over samples and pixels
    elapsed = max(state.wall_s - tick["wall_s"], 1e-9)
    record = {
        "step": state.step, "loss": loss, "lr": stats["lr"],
        "img_per_s": (state.nimg - tick["nimg"]) / elapsed, "wall_s": state.wall_s,
        "device_hours": _device_hours(state.wall_s, ctx.env), "kimg": state.nimg / 1e3,
        "ema_beta": stats["ema_beta"], "sec_per_step": elapsed / tick["steps"],
    }
    if is_fdm(ctx.job.diffusion.kind):
        record["weight_cap"] = stats["weight_cap"]
    if ctx.device.type == "cuda":
        record["peak_mem_gb"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
    if ctx.env.is_main:
        ctx.tracker.log(record, step=state.nimg)
    state.tick["last_loss"] = loss
    _start_tick(ctx, state)


def _device_hours(wall_s: float, env: ddp.DistEnv) -> float:
    return wall_s * env.world_size / 3600.0


# --------------------------------------------------------------------------------- checkpoints


def maybe_checkpoint(ctx: TrainContext, state: TrainState) -> None:
    t = ctx.t
    if (crossed(state.nimg, t.batch, kimg_to_nimg(t.checkpoint_kimg))
            or crossed(state.nimg, t.batch, kimg_to_nimg(t.snapshot_kimg))):
        write_checkpoint(ctx, state)


def _is_snapshot(ctx: TrainContext, nimg: int) -> bool:
    return crossed(nimg, ctx.t.batch, kimg_to_nimg(ctx.t.snapshot_kimg)) or nimg >= ctx.total_nimg


def write_checkpoint(ctx: TrainContext, state: TrainState) -> Path | None:
    """Rank 0 writes the checkpoint of the current state; every rank waits for it."""
    path = None
    if ctx.env.is_main and state.last_checkpoint_nimg != state.nimg:
        path = save_checkpoint(ctx.paths, _checkpoint_dict(ctx, state))
        prune_checkpoints(ctx.paths, keep_last=ctx.t.keep_checkpoints,
                          keep=lambda nimg: _is_snapshot(ctx, nimg))
    elif ctx.env.is_main:
        path = ctx.paths.checkpoint(state.nimg)
    state.last_checkpoint_nimg = state.nimg
    ddp.barrier(ctx.env)
    return path


def _checkpoint_dict(ctx: TrainContext, state: TrainState) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "run_id": ctx.job.run_id,
        "spec_yaml": ctx.job.to_yaml(),
        "progress": {"nimg": state.nimg, "step": state.step, "wall_s": state.wall_s,
                     "world_size": ctx.env.world_size,
                     "snapshot": _is_snapshot(ctx, state.nimg),
                     "final": state.nimg >= ctx.total_nimg},
        "model": _cpu_state(state.net),
        "ema": _cpu_state(state.ema),
        "optimizer": state.optimizer.state_dict(),
        "grad_scaler": state.scaler.state_dict() if state.scaler.is_enabled() else {},
        "rng": rng_state(),
    }


def _cpu_state(module: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _resume(ctx: TrainContext, state: TrainState) -> None:
    """Load the newest readable checkpoint (rank 0 chooses, every rank loads the same file)."""
    found = None
    if ctx.env.is_main:
        found = choose_resume_checkpoint(ctx.paths, run_id=ctx.job.run_id)
    chosen = ddp.broadcast_object(str(found[0]) if found else None, ctx.env)
    if chosen is None:
        return
    if found is None:
        from harness.train.checkpoint import load_checkpoint

        found = (Path(chosen), load_checkpoint(chosen, run_id=ctx.job.run_id))
    checkpoint = found[1]
    state.net.load_state_dict(checkpoint["model"])
    state.ema.load_state_dict(checkpoint["ema"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    if checkpoint.get("grad_scaler") and state.scaler.is_enabled():
        state.scaler.load_state_dict(checkpoint["grad_scaler"])
    progress = checkpoint["progress"]
    state.nimg, state.step = int(progress["nimg"]), int(progress["step"])
    state.wall_s = float(progress["wall_s"])
    state.last_checkpoint_nimg = state.resumed_from_nimg = state.nimg
    restore_rng_state(checkpoint["rng"])
    if ctx.env.is_main:
        log.info("resumed %s from %s at %d images", ctx.job.run_id, found[0].name, state.nimg)


def _finish(ctx: TrainContext, state: TrainState, status: str) -> Path | None:
    """Final (or preemption) checkpoint, the done marker, the trackers' summary and end."""
    path = write_checkpoint(ctx, state)
    if ctx.env.is_main:
        if status == "done":
            write_json_atomic(ctx.paths.done, {
                "run_id": ctx.job.run_id, "nimg": state.nimg, "step": state.step,
                "checkpoint": path.name if path else None, "wall_s": state.wall_s,
                "device_hours": _device_hours(state.wall_s, ctx.env),
                "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
        ctx.tracker.summary({"nimg": state.nimg, "step": state.step,
                             "loss": state.tick.get("last_loss"), "status": status,
                             "wall_s": state.wall_s,
                             "device_hours": _device_hours(state.wall_s, ctx.env)})
        ctx.tracker.finish(0 if status == "done" else EXIT_PREEMPTED)
    return path


def _already_done(job: Any, paths: RunPaths) -> TrainResult | None:
    """A relaunched finished run returns at once (nothing is trained twice)."""
    try:
        done = read_json(paths.done)
    except (OSError, ValueError):
        return None
    if done.get("run_id") != job.run_id or not done.get("checkpoint"):
        return None
    checkpoint = paths.checkpoints / done["checkpoint"]
    if not checkpoint.exists():
        return None
    return TrainResult(status="done", run_id=job.run_id, run_dir=str(paths.root),
                       nimg=int(done["nimg"]), step=int(done["step"]),
                       total_nimg=total_nimg(job), checkpoint=str(checkpoint), loss=None,
                       wall_s=float(done["wall_s"]), device_hours=float(done["device_hours"]))


# ------------------------------------------------------------------------------- construction


def total_nimg(job: Any) -> int:
    return int(round(job.training.duration_mimg * 1e6))


def kimg_to_nimg(kimg: float) -> int:
    """An interval in whole images (0.016 kimg is 16 images, not 15.999...)."""
    return max(1, int(round(kimg * 1e3)))


def _resolve_device(job: Any, env: ddp.DistEnv, device: Any) -> torch.device:
    requested = device if device is not None else job.training.device
    if requested == "auto":
        requested = None
    resolved = ddp.pick_device(env, requested)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise SpecError("training.device", "'cuda' but this machine has no CUDA device; use "
                                           "'auto' or 'cpu'")
    return resolved


@contextlib.contextmanager
def _threads(num_threads: int | None):
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _make_context(job: Any, paths: RunPaths, env: ddp.DistEnv, device: torch.device,
                  tracker: Tracker | None) -> TrainContext:
    t = job.training
    try:
        plan = make_plan(t.batch, t.batch_per_process, env.rank, env.world_size)
    except ValueError as exc:
        raise SpecError("training.batch", str(exc)) from None
    if env.is_main:
        _write_run_files(job, paths, device, env)
    mirrors = [tracker] if tracker is not None else default_mirrors(job, paths)
    return TrainContext(job=job, paths=paths, env=env, device=device,
                        precision=precision_mode(t.precision), plan=plan,
                        total_nimg=total_nimg(job), data=load_training_data(job, device),
                        augment=make_augment(t.augment_p),
                        tracker=MultiTracker([JsonlTracker(paths), *mirrors], required=1))


def build_state(ctx: TrainContext) -> TrainState:
    """A fresh network, EMA, optimizer and scaler on the device, wrapped for DDP and compile."""
    t = ctx.t
    net = build_denoiser(ctx.job).to(ctx.device)
    if t.channels_last:
        net = net.to(memory_format=torch.channels_last)
    ema = make_ema(net)
    ddp_module = None
    model: nn.Module = net
    if ctx.env.enabled:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        ddp_module = torch.nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
        model = ddp_module
    optimizer = make_optimizer(list(net.parameters()), lr=t.lr, betas=tuple(t.adam_betas),
                               eps=t.adam_eps, fused=t.fused_optimizer, device=ctx.device)
    return TrainState(net=net, ema=ema, model=maybe_compile(model, t.compile),
                      ddp_module=ddp_module, optimizer=optimizer,
                      scaler=make_grad_scaler(ctx.precision, ctx.device))


def _write_run_files(job: Any, paths: RunPaths, device: torch.device, env: ddp.DistEnv) -> None:
    """spec.yaml (once; a different spec in the same directory is an error) and env.json."""
    paths.root.mkdir(parents=True, exist_ok=True)
    text = job.to_yaml()
    if paths.spec.exists() and paths.spec.read_text(encoding="utf-8") != text:
        existing = type(job).from_yaml(paths.spec)
        if existing.run_id != job.run_id:
            raise HarnessError(f"{paths.spec}: this run directory holds run {existing.run_id}, "
                               f"not {job.run_id}; use a new run directory")
    else:
        write_atomic(paths.spec, text)
    write_env(paths, collect_env(device=device, world_size=env.world_size,
                                 extra={"run_id": job.run_id}))


def default_mirrors(job: Any, paths: RunPaths) -> list[Tracker]:
    """The spec's W&B mirror (unless disabled) and a progress display."""
    from harness.tracking.wandb import WandbTracker

    wandb_spec = job.tracking.wandb
    mirrors: list[Tracker] = []
    # 'offline' is the spec's default; it yields to WANDB_MODE so a user can go online from the
    # environment. An explicit 'online' or 'disabled' in the spec wins.
    mode = None if wandb_spec.mode == "offline" else wandb_spec.mode
    tracker = WandbTracker(wandb_spec.project, entity=wandb_spec.entity, mode=mode,
                           directory=os.environ.get("WANDB_DIR") or paths.root,
                           tags=list(wandb_spec.tags))
    if tracker.mode != "disabled":
        mirrors.append(tracker)
    mirrors.append(ProgressTracker(total_nimg(job)))
    return mirrors


def _tracker_config(job: Any) -> dict:
    return {"run_id": job.run_id, **job.model_dump(mode="json")}
