"""Training schedules, each a pure function of the images seen before the step.

Resume, gradient accumulation and the number of processes therefore cannot change them
(shared/DESIGN.md, "Every schedule ... is a pure function of images seen").
"""

from __future__ import annotations

import math

from harness.diffusion import fdm_weight_cap, is_fdm


def learning_rate(nimg: int, lr: float, rampup_nimg: float) -> float:
    """EDM's linear warm-up: lr · min(nimg / rampup_nimg, 1), then constant."""
    if rampup_nimg <= 0:
        return lr
    return lr * min(nimg / rampup_nimg, 1.0)


def ema_halflife_nimg(nimg: int, halflife_nimg: float, rampup_ratio: float | None) -> float:
    """EDM's EMA half-life in images: min(halflife, nimg · ramp ratio) during the ramp."""
    if rampup_ratio is None:
        return halflife_nimg
    return min(halflife_nimg, nimg * rampup_ratio)


def ema_beta(nimg: int, batch_size: int, halflife_nimg: float,
             rampup_ratio: float | None) -> float:
    """Per-step EMA decay β = 0.5^(batch / half-life): the EMA halves every half-life images."""
    return 0.5 ** (batch_size / max(ema_halflife_nimg(nimg, halflife_nimg, rampup_ratio), 1e-8))


def loss_weight_cap(kind: str, nimg: int, warmup_nimg: float | None, *,
                    hold_final: bool = False) -> float:
    """FDM's cap on λ(σ) at the start of the step (FDM.md §1.3); baselines are never capped."""
    if not is_fdm(kind):
        return math.inf
    return fdm_weight_cap(nimg, warmup_nimg, hold_final=hold_final)
