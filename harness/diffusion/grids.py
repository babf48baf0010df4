"""Sampling σ grids. Each returns `num_steps` decreasing positive σ followed by a final 0 (float64)."""

from __future__ import annotations

import math

import torch


def _check_grid_args(num_steps: int, sigma_min: float, sigma_max: float) -> None:
    if int(num_steps) != num_steps or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not (0 < sigma_min < sigma_max) or not math.isfinite(sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def edm_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """EDM eq. 5: σ_i = (σ_max^{1/ρ} + i/(N−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i < N, σ_N = 0."""
    _check_grid_args(num_steps, sigma_min, sigma_max)
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    i = torch.arange(num_steps, dtype=torch.float64)
    frac = i / max(num_steps - 1, 1)
    sigmas = (sigma_max ** (1 / rho) + frac * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


def logsnr_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> torch.Tensor:
    """σ uniform in log-SNR (λ = −ln σ for α = 1) from σ_max to σ_min, then 0 (DPM-Solver's 'logSNR')."""
    _check_grid_args(num_steps, sigma_min, sigma_max)
    frac = torch.arange(num_steps, dtype=torch.float64) / max(num_steps - 1, 1)
    log_sigma = math.log(sigma_max) + frac * (math.log(sigma_min) - math.log(sigma_max))
    return torch.cat([torch.exp(log_sigma), torch.zeros(1, dtype=torch.float64)])
