"""Which images each step trains on, and getting them to the device fast.

`batch_indices(seed, nimg, ...)` is a pure function of the images seen so far, so a resumed run
continues the same order, and gradient accumulation or several processes can slice the global
batch: round/rank r of w takes the contiguous slice [r*B/w, (r+1)*B/w) of the global batch B,
which equals `batch_indices(seed, nimg + r*B/w, B/w, num_images)`.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from harness.data.dataset import ImageDataset


@functools.lru_cache(maxsize=4)
def epoch_permutation(seed: int, epoch: int, num_images: int) -> np.ndarray:
    """The order of epoch `epoch`: a permutation drawn from SeedSequence([seed, epoch]).

    Cached (read-only) because consecutive batches mostly fall in the same epoch.
    """
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, epoch])))
    order = rng.permutation(num_images)
    order.flags.writeable = False
    return order


def batch_indices(seed: int, nimg: int, batch_size: int, num_images: int) -> torch.Tensor:
    """Dataset indices [batch_size] (int64) of the batch that starts after `nimg` images seen.

    Image number k (counting from 0 over the whole run) is epoch_permutation(seed, k // N)[k % N]
    with N = num_images: every image once per epoch, a batch that straddles an epoch boundary
    continues into the next epoch's permutation.
    """
    if min(seed, nimg) < 0 or batch_size < 1 or num_images < 1:
        raise ValueError(f"need seed >= 0, nimg >= 0, batch_size >= 1, num_images >= 1; got "
                         f"{seed}, {nimg}, {batch_size}, {num_images}")
    out = np.empty(batch_size, dtype=np.int64)
    filled, k = 0, nimg
    while filled < batch_size:
        epoch, offset = divmod(k, num_images)
        take = min(batch_size - filled, num_images - offset)
        out[filled:filled + take] = epoch_permutation(seed, epoch, num_images)[offset:offset + take]
        filled, k = filled + take, k + take
    return torch.from_numpy(out)


def to_float(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 0..255 → [-1, 1] (0 → -1, 255 → 1), as EDM's training loop scales images."""
    return images.to(dtype) / 127.5 - 1


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] → uint8 with rounding and clipping; to_uint8(to_float(x)) == x."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


class DeviceDataset:
    """The training set where the step needs it.

    On a CUDA device the uint8 images move to GPU memory when they take at most
    `max_gpu_fraction` of the free memory (CIFAR-10: 150 MB); otherwise they stay in pinned CPU
    memory and each batch is copied asynchronously. On the CPU nothing moves.
    """

    def __init__(self, dataset: ImageDataset, device: torch.device | str = "cpu", *,
                 max_gpu_fraction: float = 0.25):
        self.device = torch.device(device)
        self.num_classes = dataset.num_classes
        self.resident = self.device.type == "cpu" or _fits(dataset, self.device, max_gpu_fraction)
        home = self.device if self.resident else torch.device("cpu")
        images, labels = dataset.images, dataset.labels
        if not self.resident and self.device.type == "cuda":
            images = images.pin_memory()
        self.images = images.to(home)
        self.labels = None if labels is None else labels.to(self.device)

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(images float32 in [-1, 1] [B, C, H, W], labels int64 [B] or None) on the device."""
        x = self.images.index_select(0, indices.to(self.images.device))
        if not self.resident:
            if self.device.type == "cuda":
                x = x.pin_memory()
            x = x.to(self.device, non_blocking=True)
        labels = None if self.labels is None else self.labels.index_select(
            0, indices.to(self.device))
        return to_float(x), labels


def _fits(dataset: ImageDataset, device: torch.device, max_gpu_fraction: float) -> bool:
    if device.type != "cuda":
        return True
    free_bytes, _ = torch.cuda.mem_get_info(device)
    return dataset.images.numel() <= max_gpu_fraction * free_bytes
