"""One optimizer step, in the small pieces of EDM's training loop.

    sample_batch     the global batch of the step: images, labels, σ, noise, augmentation
    compute_loss     λ(σ) ‖D(y + n; σ) − y‖² per sample (EDM's loss; FDM only caps λ)
    accumulate       forward + backward over this process's accumulation rounds
    optimizer_step   lr from images seen, nan_to_num on gradients, Adam (with loss scaling)
    update_ema       EMA with β from images seen

Randomness of a step is a pure function of (seed, images seen), drawn for the *global* batch and
then sliced: process r of w takes the contiguous slice [r·B/w, (r+1)·B/w) of every tensor, split
further into accumulation rounds. Each sample therefore gets the same image, σ, noise and
augmentation whatever the number of processes or rounds. Only dropout differs, because torch's
dropout draws from the global RNG for the tensor it is given; that RNG is reseeded from
(seed, rank, images seen, round) before every forward so that a resumed run repeats it exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from harness.diffusion import loss_weight, sample_sigma
from harness.train.seeding import PURPOSE_BATCH, PURPOSE_TORCH, derive_seed, make_generator


@dataclass
class Batch:
    """Training inputs for some samples of a step (the global batch or a slice of it)."""

    y: torch.Tensor                        # clean images in [-1, 1] [N, C, H, W]
    sigma: torch.Tensor                    # noise levels [N] (float32)
    noise: torch.Tensor                    # N(0, I) [N, C, H, W]; the step uses σ·noise
    class_labels: torch.Tensor | None      # one-hot [N, label_dim] or None
    augment_labels: torch.Tensor | None    # [N, 9] or None

    def __len__(self) -> int:
        return self.y.shape[0]

    def slice(self, start: int, stop: int) -> Batch:
        def part(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[start:stop]

        return Batch(self.y[start:stop], self.sigma[start:stop], self.noise[start:stop],
                     part(self.class_labels), part(self.augment_labels))


@dataclass(frozen=True)
class StepPlan:
    """How the global batch of a step is split: this process's slice, then rounds."""

    batch: int               # global batch B
    rank: int
    world_size: int
    batch_per_round: int     # samples per forward/backward on this process

    @property
    def batch_per_process(self) -> int:
        return self.batch // self.world_size

    @property
    def num_rounds(self) -> int:
        return self.batch_per_process // self.batch_per_round

    def round_bounds(self) -> Iterator[tuple[int, int]]:
        """(start, stop) of each round within the global batch."""
        first = self.rank * self.batch_per_process
        for index in range(self.num_rounds):
            start = first + index * self.batch_per_round
            yield start, start + self.batch_per_round


def make_plan(batch: int, batch_per_process: int | None, rank: int, world_size: int) -> StepPlan:
    """Split the global batch; raises ValueError when the sizes do not divide."""
    if batch % world_size:
        raise ValueError(f"training.batch {batch} is not divisible by the {world_size} processes")
    per_process = batch // world_size
    per_round = per_process if batch_per_process is None else min(batch_per_process, per_process)
    if per_process % per_round:
        raise ValueError(f"training.batch_per_process {batch_per_process} does not divide the "
                         f"{per_process} images each of the {world_size} processes gets")
    return StepPlan(batch, rank, world_size, per_round)


def sample_batch(*, kind: str, seed: int, nimg: int, indices: torch.Tensor,
                 images: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
                 label_dim: int, augment: Callable | None, device: torch.device) -> Batch:
    """The whole global batch of the step that starts after `nimg` images.

    `indices` are the dataset indices of the batch (harness.data.batch_indices), `images` maps
    them to (float images on the device, int labels or None). σ, the noise and the augmentation
    come, in this order, from one generator seeded by (seed, nimg).
    """
    generator = make_generator(seed, PURPOSE_BATCH, nimg, device=device)
    y, labels = images(indices)
    sigma = sample_sigma(kind, len(indices), generator=generator, device=device)
    noise = torch.randn(y.shape, generator=generator, device=device, dtype=torch.float32)
    augment_labels = None
    if augment is not None:
        y, augment_labels = augment(y, generator=generator)
    class_labels = None
    if label_dim and labels is not None:
        class_labels = nn.functional.one_hot(labels, label_dim).to(torch.float32)
    return Batch(y, sigma, noise, class_labels, augment_labels)


def compute_loss(denoiser: Callable, batch: Batch, *, kind: str, sigma_data: float,
                 weight_cap: float, channels_last: bool = False) -> torch.Tensor:
    """Per-sample loss [N]: min(λ(σ), cap) · Σ_pixels (D(y + σn; σ) − y)² (EDM eq. 2, FDM §1.3)."""
    y = batch.y
    x = y + batch.sigma.view(-1, 1, 1, 1) * batch.noise
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    D_x = denoiser(x, batch.sigma, class_labels=batch.class_labels,
                   augment_labels=batch.augment_labels)
    weight = loss_weight(kind, batch.sigma, sigma_data=sigma_data).to(torch.float32)
    weight = weight.clamp(max=weight_cap)  # cap = inf leaves λ unchanged
    return weight * (D_x.to(torch.float32) - y).square().sum(dim=(1, 2, 3))


def accumulate(model: Callable, batch: Batch, plan: StepPlan, *, seed: int, nimg: int,
               kind: str, sigma_data: float, weight_cap: float, scaler: torch.amp.GradScaler,
               autocast: Callable[[], contextlib.AbstractContextManager],
               no_sync: Callable[[], contextlib.AbstractContextManager],
               channels_last: bool = False) -> torch.Tensor:
    """Forward and backward over this process's rounds; returns the sum of per-sample losses.

    Each round's loss is scaled by 1 / (B / w): DDP averages gradients over the w processes, so
    the result is the gradient of the loss summed over pixels and averaged over the global batch.
    """
    loss_sum = torch.zeros((), device=batch.y.device)
    bounds = list(plan.round_bounds())
    for index, (start, stop) in enumerate(bounds):
        # Dropout and label dropout use torch's global RNG: reseed it from the position in the run.
        torch.manual_seed(derive_seed(seed, PURPOSE_TORCH, plan.rank, nimg, index))
        part = batch.slice(start, stop)
        last = index == len(bounds) - 1
        with (contextlib.nullcontext() if last else no_sync()):
            with autocast():
                per_sample = compute_loss(model, part, kind=kind, sigma_data=sigma_data,
                                          weight_cap=weight_cap, channels_last=channels_last)
            loss = per_sample.sum() / plan.batch_per_process
            scaler.scale(loss).backward()
        loss_sum += per_sample.detach().sum()
    return loss_sum


def optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   params: list[torch.Tensor], *, lr: float, nan_to_num: bool) -> None:
    """Set the lr, clean the gradients as EDM does, step, and clear the gradients."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    scaler.unscale_(optimizer)  # records overflow for the scaler before the cleaning below
    if nan_to_num:
        for p in params:
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0.0, posinf=1e5, neginf=-1e5, out=p.grad)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)


@torch.no_grad()
def update_ema(ema: nn.Module, net: nn.Module, beta: float) -> None:
    """ema ← β·ema + (1 − β)·net for parameters; buffers are copied."""
    ema_params = [p for p in ema.parameters()]
    net_params = [p.detach() for p in net.parameters()]
    if beta == 0.0:
        torch._foreach_copy_(ema_params, net_params)
    else:
        torch._foreach_lerp_(ema_params, net_params, 1.0 - beta)
    for b_ema, b_net in zip(ema.buffers(), net.buffers()):
        b_ema.copy_(b_net)
