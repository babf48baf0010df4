"""Numeric precision of the training step: fp32 (TF32 off or on), bf16 autocast, fp16 + loss scaling.

Autocast wraps the backbone only; the denoiser's outer math (c_skip, c_out, the loss) stays in
float32 (docs/internals.md, Denoiser). TF32 is a process-wide switch of PyTorch, so it is set
inside a context manager that restores the previous flags when training returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from harness.errors import did_you_mean


@dataclass(frozen=True)
class Precision:
    name: str
    autocast_dtype: torch.dtype | None  # None: no autocast
    tf32: bool                          # TF32 for the float32 matmuls and convolutions on CUDA
    loss_scaling: bool                  # dynamic loss scaling (needed by fp16's small range)


PRECISIONS = {
    "fp32": Precision("fp32", None, tf32=False, loss_scaling=False),  # EDM's published setting
    "tf32": Precision("tf32", None, tf32=True, loss_scaling=False),
    "bf16": Precision("bf16", torch.bfloat16, tf32=True, loss_scaling=False),
    "fp16": Precision("fp16", torch.float16, tf32=True, loss_scaling=True),
}


def precision_mode(name: str) -> Precision:
    if name not in PRECISIONS:
        raise ValueError(f"precision {name!r}: must be one of {sorted(PRECISIONS)}"
                         f"{did_you_mean(name, PRECISIONS)}")
    return PRECISIONS[name]


@contextlib.contextmanager
def tf32_enabled(enabled: bool) -> Iterator[None]:
    """Set PyTorch's TF32 switches for the duration of the block, then restore them."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def autocast(precision: Precision, device: torch.device) -> contextlib.AbstractContextManager:
    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=precision.autocast_dtype)


def make_grad_scaler(precision: Precision, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is a no-op unless the precision needs loss scaling."""
    return torch.amp.GradScaler(device.type, enabled=precision.loss_scaling)
