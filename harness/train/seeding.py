"""Seeds derived from (seed, purpose, position) with numpy's SeedSequence.

Every random draw of training comes from a generator made fresh for the step from the run's seed
and the images seen so far. Resume is then exact without replaying any generator, and the draws
do not depend on how the global batch is split over processes or accumulation rounds.
"""

from __future__ import annotations

import numpy as np
import torch

# Fixed purpose codes keep the streams of different consumers independent. Never reorder.
PURPOSE_BATCH = 1      # σ, noise and augmentation of the whole global batch of a step
PURPOSE_TORCH = 2      # torch's global RNG (dropout, label dropout) for one process and round
PURPOSE_INIT = 3       # network initialisation
PURPOSE_BENCH = 4      # synthetic data of `harness bench`


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed that is a pure function of (seed, *keys)."""
    entropy = [int(seed) & 0xFFFFFFFFFFFFFFFF, *(int(k) for k in keys)]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & 0x7FFFFFFFFFFFFFFF


def make_generator(seed: int, *keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, *keys))
    return generator
