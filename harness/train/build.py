"""Objects a job spec describes: the denoiser, its EMA, the optimizer, the data, augmentation."""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness.train.seeding import PURPOSE_INIT, derive_seed

log = logging.getLogger("harness.train")

# EDM / FDM training weights of the augmentation pipe (FDM.md §1.4): x-flip 1e8 (on whenever
# augmentation is), every other transform 1; the probability multiplier is training.augment_p.


def build_denoiser(job: Any) -> nn.Module:
    """The job's Denoiser D(x; σ), initialised on the CPU from a generator derived from the job's
    seed: the same weights on every process and every device, and the global RNG untouched."""
    from harness.nets import Denoiser, build_backbone
    from harness.specs import backbone_kwargs

    diffusion = job.diffusion
    generator = torch.Generator().manual_seed(derive_seed(job.seed, PURPOSE_INIT))
    backbone = build_backbone(**backbone_kwargs(job), generator=generator)
    return Denoiser(backbone, kind=diffusion.kind, sigma_data=diffusion.sigma_data,
                    damping=diffusion.damping, multiplier=diffusion.multiplier,
                    beta_min=diffusion.beta_min, beta_d=diffusion.beta_d, label_dim=job.label_dim)


def make_ema(net: nn.Module) -> nn.Module:
    ema = copy.deepcopy(net).eval()
    ema.requires_grad_(False)
    return ema


def make_optimizer(params: list[torch.Tensor], *, lr: float, betas: tuple[float, float],
                   eps: float, fused: bool, device: torch.device) -> torch.optim.Adam:
    """Adam as in EDM (no weight decay); `fused` uses the single-kernel implementation when the
    device supports it and falls back to the default (foreach) one otherwise."""
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, fused=True)
        except (RuntimeError, ValueError) as exc:
            warnings.warn(f"fused Adam unavailable on {device} ({exc}); using the default Adam",
                          RuntimeWarning, stacklevel=2)
    return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps)


def make_augment(augment_p: float) -> Callable | None:
    if augment_p <= 0:
        return None
    from harness.data import AugmentPipe

    return AugmentPipe(augment_p)


def load_training_data(job: Any, device: torch.device):
    """The training split on the device (GPU-resident when it fits), as harness.data.DeviceDataset."""
    from harness.data import DeviceDataset, load_dataset

    spec = job.dataset
    dataset = load_dataset(spec.name, path=spec.path, resolution=spec.resolution,
                           use_labels=bool(spec.use_labels), max_images=spec.max_images)
    return DeviceDataset(dataset, device)


class CompileFallback:
    """Calls a torch.compile'd module; if compiling fails on the first call, warns once and runs
    the eager module from then on (compilation errors surface lazily, at the first call)."""

    def __init__(self, eager: Callable, compiled: Callable | None):
        self.eager = eager
        self.compiled = compiled
        self._proven = False
        self.failure: str | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.compiled is None:
            return self.eager(*args, **kwargs)
        try:
            out = self.compiled(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: run eager instead
            if self._proven:
                raise
            self.failure = f"{type(exc).__name__}: {exc}"
            message = f"torch.compile failed ({self.failure}); training continues eagerly"
            log.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            self.compiled = None
            return self.eager(*args, **kwargs)
        self._proven = True
        return out


def maybe_compile(module: nn.Module, enabled: bool) -> CompileFallback:
    if not enabled:
        return CompileFallback(module, None)
    try:
        compiled = torch.compile(module)
    except Exception as exc:  # noqa: BLE001
        fallback = CompileFallback(module, None)
        fallback.failure = f"{type(exc).__name__}: {exc}"
        warnings.warn(f"torch.compile unavailable ({fallback.failure}); training eagerly",
                      RuntimeWarning, stacklevel=2)
        return fallback
    return CompileFallback(module, compiled)
