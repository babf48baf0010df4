"""Feature extractors: one interface for the Inception network and the small per-dataset classifiers.

A feature extractor maps uint8 images [N, C, H, W] (0–255, the format of saved samples and of
`harness.data` datasets) to float64 features [N, D]. Everything that depends on the extractor
(reference statistics, the cache key, the metric name) reads it from these attributes:

- `name`   – names the network and its weights, e.g. ``inception-2015-12-05``, ``classifier-mnist``
- `metric` – the name under which its Fréchet distance is recorded: ``fid`` only for the standard
  Inception weights, ``fd-<dataset>`` for a classifier (never called FID)
- `dim`    – feature dimension D
- `sha256` – digest of the weights file; part of every reference-statistics cache key
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from harness.errors import HarnessError


@runtime_checkable
class FeatureExtractor(Protocol):
    name: str
    metric: str
    dim: int
    sha256: str

    def features(self, images: torch.Tensor) -> np.ndarray:
        """uint8 [N, C, H, W] -> float64 [N, dim]."""
        ...


def check_uint8_images(images: torch.Tensor, channels: int | None = None) -> torch.Tensor:
    """The images as a uint8 tensor [N, C, H, W]; a clear error for anything else."""
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise HarnessError(f"feature extraction needs uint8 images [N, C, H, W]; got "
                           f"{images.dtype} with shape {tuple(images.shape)}")
    if channels is not None and images.shape[1] != channels:
        raise HarnessError(f"this feature extractor takes {channels}-channel images; got "
                           f"{images.shape[1]} channels (shape {tuple(images.shape)})")
    return images


@dataclass
class NetworkExtractor:
    """A frozen network `net(preprocess(images)) -> [N, D]`, run in batches without gradients.

    `preprocess` turns a uint8 batch (already on `device`) into the network's input. Features are
    returned as float64 on the CPU, so statistics accumulate in float64 like EDM's fid.py.
    """

    name: str
    metric: str
    dim: int
    sha256: str
    net: nn.Module
    preprocess: Callable[[torch.Tensor], torch.Tensor]
    channels: int | None = None
    batch_size: int = 256
    device: torch.device | str = "cpu"

    def __post_init__(self) -> None:
        self.net = self.net.eval().requires_grad_(False).to(self.device)

    def to(self, device: torch.device | str) -> "NetworkExtractor":
        self.device = device
        self.net = self.net.to(device)
        return self

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        images = check_uint8_images(images, self.channels)
        chunks = [self._features_of_batch(images[i:i + self.batch_size])
                  for i in range(0, images.shape[0], self.batch_size)]
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float64)
        return np.concatenate(chunks, axis=0)

    def _features_of_batch(self, batch: torch.Tensor) -> np.ndarray:
        x = self.preprocess(batch.to(self.device))
        phi = self.net(x)
        if phi.ndim != 2 or phi.shape[1] != self.dim:
            raise RuntimeError(f"{self.name} returned features of shape {tuple(phi.shape)}, "
                               f"expected [N, {self.dim}]")
        return phi.double().cpu().numpy()


def features_of_batches(extractor: FeatureExtractor,
                        batches: Iterable[torch.Tensor]) -> np.ndarray:
    """Concatenated features of an iterable of uint8 image batches."""
    chunks = [extractor.features(batch) for batch in batches]
    if not chunks:
        return np.zeros((0, extractor.dim), dtype=np.float64)
    return np.concatenate(chunks, axis=0)
