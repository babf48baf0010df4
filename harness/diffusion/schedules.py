"""Noise-level schedules σ(t) of the three base processes and their nominal σ ranges.

VP (Song et al. 2021, in EDM's notation, EDM Table 1):
    σ(t) = sqrt(exp(½ β_d t² + β_min t) − 1),  t ∈ [ε_t, 1],  β_d = 19.9, β_min = 0.1, ε_t = 1e-5
VE: σ ∈ [0.02, 100].   EDM: σ ∈ [0.002, 80], σ_data = 0.5.
"""

from __future__ import annotations

import math

import torch

VP_BETA_D = 19.9
VP_BETA_MIN = 0.1
VP_EPSILON_T = 1e-5
VP_M = 1000  # number of discrete DDPM steps; c_noise = (M − 1) t
VE_SIGMA_MIN, VE_SIGMA_MAX = 0.02, 100.0
EDM_SIGMA_MIN, EDM_SIGMA_MAX = 0.002, 80.0
SIGMA_DATA = 0.5


def vp_sigma(t, beta_d: float = VP_BETA_D, beta_min: float = VP_BETA_MIN):
    """σ_VP(t) = sqrt(exp(½β_d t² + β_min t) − 1); expm1 keeps small t accurate."""
    t = torch.as_tensor(t, dtype=torch.float64) if not torch.is_tensor(t) else t
    return torch.sqrt(torch.expm1(0.5 * beta_d * t * t + beta_min * t))


def vp_sigma_inv(sigma, beta_d: float = VP_BETA_D, beta_min: float = VP_BETA_MIN):
    """t_VP(σ) = (sqrt(β_min² + 2β_d ln(1 + σ²)) − β_min) / β_d, the inverse of `vp_sigma`."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64) if not torch.is_tensor(sigma) else sigma
    return (torch.sqrt(beta_min**2 + 2 * beta_d * torch.log1p(sigma * sigma)) - beta_min) / beta_d


def _vp_sigma_float(t: float) -> float:
    return math.sqrt(math.expm1(0.5 * VP_BETA_D * t * t + VP_BETA_MIN * t))


# The official code evaluates these two in float32 (`float(self.sigma(epsilon_t))`), which moves
# σ_min by ~3% (1.0005e-3 → ~1.04e-3) and t(σ) by < 3e-7: we keep the exact values.
VP_SIGMA_MIN = _vp_sigma_float(VP_EPSILON_T)  # ≈ 1.0005e-3
VP_SIGMA_MAX = _vp_sigma_float(1.0)  # ≈ 152.167
