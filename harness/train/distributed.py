"""Data-parallel setup from the environment that torchrun or SLURM/submitit exports.

torchrun and submitit's `TorchDistributedEnvironment().export()` both set RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT. Without them the job is one process and needs no
process group. The backend is NCCL on CUDA and gloo on CPU.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.errors import HarnessError

_ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # True when setup_distributed created the process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def read_env(environ: dict[str, str] | None = None) -> DistEnv:
    """Rank, world size and local rank from the environment (one process when unset)."""
    environ = dict(os.environ if environ is None else environ)
    if "WORLD_SIZE" not in environ or int(environ["WORLD_SIZE"]) <= 1:
        return DistEnv()
    missing = [k for k in _ENV_KEYS if k not in environ and k != "LOCAL_RANK"]
    if missing:
        raise HarnessError(f"WORLD_SIZE={environ['WORLD_SIZE']} but {missing} are not set; "
                           "launch with torchrun or export submitit's distributed environment")
    return DistEnv(rank=int(environ["RANK"]), world_size=int(environ["WORLD_SIZE"]),
                   local_rank=int(environ.get("LOCAL_RANK", 0)))


def pick_device(env: DistEnv, requested: str | torch.device | None = None) -> torch.device:
    """The requested device, else this process's GPU (LOCAL_RANK), else the CPU."""
    if requested is not None:
        device = torch.device(requested)
        if device.type == "cuda" and device.index is None and env.enabled:
            device = torch.device("cuda", env.local_rank)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", env.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup_distributed(device: torch.device, environ: dict[str, str] | None = None,
                      timeout_min: float = 30.0) -> DistEnv:
    """Join (or create) the default process group when the environment asks for several ranks."""
    env = read_env(environ)
    if not env.enabled:
        return env
    if dist.is_initialized():  # the caller already set it up (e.g. a test or a launcher)
        return DistEnv(dist.get_rank(), dist.get_world_size(), env.local_rank, owns_group=False)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", rank=env.rank,
                            world_size=env.world_size,
                            timeout=_dt.timedelta(minutes=timeout_min))
    return DistEnv(env.rank, env.world_size, env.local_rank, owns_group=True)


def teardown_distributed(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True on every rank when `flag` is true on any (a stop request that reached one rank)."""
    if not env.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def broadcast_object(obj: object, env: DistEnv) -> object:
    """Rank 0's value of `obj` on every rank."""
    if not env.enabled:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
