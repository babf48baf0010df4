"""Training-time pieces: the σ density, the loss weight λ(σ), and FDM's loss-weight cap.

σ densities and weights are EDM's (EDM Table 1; FDM.md §1.3) and identical for a base kind and
its FDM variant. The per-pixel loss is λ(σ) ‖D(y + n; σ) − y‖² with n ~ N(0, σ² I) at the base σ.
"""

from __future__ import annotations

import math

import torch

from harness.diffusion.scalings import base_kind
from harness.diffusion.schedules import SIGMA_DATA, VE_SIGMA_MAX, VE_SIGMA_MIN, VP_EPSILON_T, vp_sigma

EDM_P_MEAN = -1.2
EDM_P_STD = 1.2
FDM_CAP_START = 5.0
FDM_CAP_END = 500.0


def sample_sigma(kind: str, n: int, *, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Draw n training noise levels from the kind's density (float32)."""
    base = base_kind(kind)
    if base == "edm":  # ln σ ~ N(P_mean, P_std²)
        z = torch.randn(n, generator=generator, device=device, dtype=torch.float64)
        sigma = torch.exp(EDM_P_MEAN + EDM_P_STD * z)
    else:
        u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        if base == "vp":  # t = 1 + u (ε_t − 1) ∈ (ε_t, 1]
            sigma = vp_sigma(1 + u * (VP_EPSILON_T - 1))
        else:  # ve: log-uniform on [σ_min, σ_max]
            sigma = VE_SIGMA_MIN * (VE_SIGMA_MAX / VE_SIGMA_MIN) ** u
    return sigma.to(torch.float32)


def loss_weight(kind: str, sigma, *, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """λ(σ): EDM (σ² + σ_d²)/(σ σ_d)²; VP and VE 1/σ²."""
    sigma = torch.as_tensor(sigma)
    if base_kind(kind) == "edm":
        return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    return 1 / sigma**2


def fdm_weight_cap(nimg: float, warmup_nimg: float | None, *, hold_final: bool = False) -> float:
    """Cap on λ after `nimg` images: 5 · 100^(nimg / warmup_nimg) while below 500.

    This is the official warm-up (FDM.md §1.3) as a pure function of images seen, so resume,
    gradient accumulation and the number of processes cannot change it. After the warm-up the
    official code removes the cap entirely (math.inf); `hold_final=True` keeps 500 instead.
    A missing or zero warm-up means no cap.
    """
    if warmup_nimg is None or warmup_nimg <= 0:
        return FDM_CAP_END if hold_final else math.inf
    if nimg < 0:
        raise ValueError(f"nimg must be >= 0, got {nimg}")
    cap = FDM_CAP_START * (FDM_CAP_END / FDM_CAP_START) ** (nimg / warmup_nimg)
    if cap < FDM_CAP_END:
        return cap
    return FDM_CAP_END if hold_final else math.inf
