"""Generation from a denoiser with one random generator per image seed.

Image i of an evaluation is a pure function of its seed (EDM's `StackedRandomGenerator` idea):
its latent z_i ~ N(0, I), its class label (conditional models) and any stochastic-sampler noise
come from `torch.Generator().manual_seed(seed_i)`, drawn on the CPU in that order. So the images
do not depend on the batch size, on the number of processes, or on the device that runs the
network (up to the network's own float rounding). Across processes the seeds are split into
contiguous blocks and the *features* (not the images) are gathered, in seed order.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from harness.data import to_uint8
from harness.diffusion import samplers as sampler_lib
from harness.diffusion import sigma_range
from harness.errors import HarnessError, did_you_mean
from harness.evaluate.features import FeatureExtractor
from harness.records import write_atomic

# FDM.md §4: every kind samples on [max(0.002, σ_min of the net), min(80, σ_max of the net)].
SAMPLER_SIGMA_MIN = 0.002
SAMPLER_SIGMA_MAX = 80.0
# Images per feature-extraction call, aligned to the seed index (see `process_share`).
FEATURE_CHUNK = 100


class SeedGenerators:
    """One CPU `torch.Generator` per image seed; stacked draws give row i from generator i.

    Implements `randn_like(x)` so the samplers' stochastic steps draw per-image noise from it.
    """

    def __init__(self, seeds: Sequence[int]):
        self.seeds = [int(s) for s in seeds]
        if any(s < 0 for s in self.seeds):
            raise ValueError(f"image seeds must be >= 0, got {min(self.seeds)}")
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]

    def randn(self, shape: Sequence[int], *, dtype=torch.float64,
              device: torch.device | str = "cpu") -> torch.Tensor:
        draws = [torch.randn(list(shape), generator=g, dtype=dtype) for g in self.generators]
        return torch.stack(draws).to(device)

    def randint(self, high: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
        draws = [torch.randint(high, (1,), generator=g) for g in self.generators]
        return torch.cat(draws).to(device)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(x.shape[1:], dtype=x.dtype, device=x.device)


def sampler_sigma_range(kind: str) -> tuple[float, float]:
    """(σ_min, σ_max) the sampler uses for a network of this kind (FDM.md §4)."""
    net_min, net_max = sigma_range(kind)
    return max(SAMPLER_SIGMA_MIN, float(net_min)), min(SAMPLER_SIGMA_MAX, float(net_max))


def steps_for_nfe(sampler: str, nfe: int) -> int:
    """Number of σ steps whose exact NFE is `nfe`; a HarnessError naming nearby valid NFEs."""
    if sampler not in sampler_lib.SAMPLERS:
        raise HarnessError(f"unknown sampler '{sampler}'{did_you_mean(sampler, sampler_lib.SAMPLERS)}"
                           f" (valid: {', '.join(sampler_lib.SAMPLERS)})")
    try:
        return sampler_lib.steps_for_nfe(sampler, int(nfe))
    except ValueError as exc:
        raise HarnessError(str(exc)) from None


@dataclass(frozen=True)
class SamplingPlan:
    """How to turn noise into images: the sampler, its σ grid, and the image geometry."""

    sampler: str
    num_steps: int
    sigma_min: float
    sigma_max: float
    channels: int
    resolution: int
    label_dim: int = 0
    options: dict = field(default_factory=dict)

    @property
    def nfe(self) -> int:
        return sampler_lib.nfe(self.sampler, self.num_steps)

    def sigmas(self) -> torch.Tensor:
        return sampler_lib.default_sigmas(self.sampler, self.num_steps, self.sigma_min,
                                          self.sigma_max)


@torch.no_grad()
def generate_batch(denoiser: Callable, seeds: Sequence[int], plan: SamplingPlan, *,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 images [len(seeds), C, H, W] for these seeds (EDM: x_0 = σ_0 · z in float64)."""
    generators = SeedGenerators(seeds)
    z = generators.randn([plan.channels, plan.resolution, plan.resolution], device=device)
    class_labels = None
    if plan.label_dim:
        class_labels = F.one_hot(generators.randint(plan.label_dim, device=device),
                                 plan.label_dim).to(torch.float32)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return denoiser(x, sigma, class_labels).to(torch.float64)

    sigmas = plan.sigmas()
    x = z * float(sigmas[0])
    x = sampler_lib.get_sampler(plan.sampler)(denoise, x, sigmas, generator=generators,
                                              **plan.options)
    return to_uint8(x).cpu()


def seed_batches(seeds: Sequence[int], batch: int) -> Iterator[list[int]]:
    seeds = list(seeds)
    for start in range(0, len(seeds), batch):
        yield seeds[start:start + batch]


def process_share(num_seeds: int, chunk: int, rank: int, world_size: int) -> range:
    """Indices of the seeds that process `rank` generates: a contiguous block of whole chunks.

    Feature extraction runs on chunks of `chunk` images aligned to the seed index, so every
    chunk holds the same images whatever the batch size or the number of processes, and the
    features (which can differ in the last bits with the batch composition) are identical too.
    """
    num_chunks = -(-num_seeds // chunk)
    mine = np.array_split(np.arange(num_chunks), world_size)[rank]
    if mine.size == 0:
        return range(0)
    return range(int(mine[0]) * chunk, min((int(mine[-1]) + 1) * chunk, num_seeds))


def distributed_rank_and_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_in_order(local: np.ndarray, world_size: int) -> np.ndarray:
    """Concatenate every process's rows in rank order (= seed order for contiguous blocks)."""
    if world_size == 1:
        return local
    parts: list = [None] * world_size
    torch.distributed.all_gather_object(parts, local)
    return np.concatenate(parts, axis=0)


@dataclass
class GeneratedFeatures:
    features: np.ndarray            # float64 [N, D], row i = seed i of the requested seeds
    grid_images: torch.Tensor | None  # uint8 images of the first seeds (rank 0), for a grid


def generate_features(denoiser: Callable, seeds: Sequence[int], plan: SamplingPlan,
                      extractor: FeatureExtractor, *, batch: int,
                      device: torch.device | str = "cpu", grid_count: int = 0,
                      feature_chunk: int = FEATURE_CHUNK) -> GeneratedFeatures:
    """Generate the images of `seeds` in batches of `batch` (split over processes when
    torch.distributed is initialised) and return their features, in seed order, on every
    process. Images are buffered and passed to the extractor `feature_chunk` at a time."""
    seeds = [int(s) for s in seeds]
    rank, world_size = distributed_rank_and_size()
    local_seeds = [seeds[i] for i in process_share(len(seeds), feature_chunk, rank, world_size)]
    chunks: list[np.ndarray] = []
    pending = torch.zeros((0, plan.channels, plan.resolution, plan.resolution), dtype=torch.uint8)
    grid: torch.Tensor | None = None
    for batch_seeds in seed_batches(local_seeds, batch):
        images = generate_batch(denoiser, batch_seeds, plan, device=device)
        if rank == 0 and grid_count and (grid is None or grid.shape[0] < grid_count):
            grid = images if grid is None else torch.cat([grid, images])
        pending = torch.cat([pending, images])
        while pending.shape[0] >= feature_chunk:
            chunks.append(extractor.features(pending[:feature_chunk]))
            pending = pending[feature_chunk:]
    if pending.shape[0]:
        chunks.append(extractor.features(pending))
    local = (np.concatenate(chunks, axis=0) if chunks
             else np.zeros((0, extractor.dim), dtype=np.float64))  # more processes than chunks
    features = gather_in_order(local, world_size)
    return GeneratedFeatures(features=features,
                             grid_images=None if grid is None else grid[:grid_count])


def image_grid(images: torch.Tensor, columns: int | None = None) -> np.ndarray:
    """Tile uint8 images [N, C, H, W] into one uint8 array [rows·H, columns·W, C]."""
    n, c, h, w = images.shape
    columns = columns or int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / columns))
    canvas = torch.zeros((rows * h, columns * w, c), dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, columns)
        canvas[r * h:(r + 1) * h, q * w:(q + 1) * w] = images[i].permute(1, 2, 0)
    return canvas.numpy()


def save_image_grid(images: torch.Tensor, path: str | Path, columns: int | None = None) -> Path:
    """Write a PNG grid of uint8 images [N, C, H, W] (grey or RGB)."""
    grid = image_grid(images, columns)
    picture = Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())
    return Path(path)
