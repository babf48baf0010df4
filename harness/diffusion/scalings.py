"""Preconditioning of D(x; σ) = c_skip x + c_out F(c_in x, c_noise) for every kind (EDM Table 1),
and FDM as a parameter of it: the base kind's c_skip, c_out, c_noise with c_in replaced by the
momentum coefficient γ_ζ(B(t)) (FDM.md §1.2).
"""

from __future__ import annotations

import math

import torch

from harness.diffusion.damping import _check_damping, damped_scale
from harness.diffusion.schedules import (
    EDM_SIGMA_MAX,
    EDM_SIGMA_MIN,
    SIGMA_DATA,
    VE_SIGMA_MAX,
    VE_SIGMA_MIN,
    VP_M,
    VP_SIGMA_MAX,
    VP_SIGMA_MIN,
    vp_sigma_inv,
)

BASE_KINDS = ("vp", "ve", "edm")
KINDS = ("vp", "ve", "edm", "fdm-vp", "fdm-ve", "fdm-edm")
FDM_BETA_MIN = 0.1
FDM_BETA_D = 19.9

_SIGMA_RANGES = {
    "vp": (VP_SIGMA_MIN, VP_SIGMA_MAX),
    "ve": (VE_SIGMA_MIN, VE_SIGMA_MAX),
    # FDM_EDMPrecond's range; EDM's own class uses (0, inf), which would make t ≡ 0 and
    # silently turn FDM off (FDM.md §6.2 pitfall 5). The baseline does not depend on it.
    "edm": (EDM_SIGMA_MIN, EDM_SIGMA_MAX),
}


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    return kind


def is_fdm(kind: str) -> bool:
    return check_kind(kind).startswith("fdm-")


def base_kind(kind: str) -> str:
    """'fdm-edm' -> 'edm'; a base kind maps to itself."""
    return check_kind(kind).removeprefix("fdm-")


def sigma_range(kind: str) -> tuple[float, float]:
    """The variant's own nominal (σ_min, σ_max); FDM kinds share their base kind's range."""
    return _SIGMA_RANGES[base_kind(kind)]


def fdm_time(sigma, sigma_min: float, sigma_max: float):
    """t(σ) = (σ − σ_min) / (σ_max − σ_min): linear in σ, not the base process's time; unclamped."""
    return (sigma - sigma_min) / (sigma_max - sigma_min)


def fdm_rate(t, multiplier: float, beta_min: float = FDM_BETA_MIN, beta_d: float = FDM_BETA_D):
    """B(t) = k (β_min t + ½ β_d t²): the integrated oscillator rate, B(1) = 10.05 k."""
    return multiplier * (beta_min * t + 0.5 * beta_d * t * t)


def fdm_input_scale(kind, sigma, *, damping=1.0, multiplier=1.0, beta_min=FDM_BETA_MIN, beta_d=FDM_BETA_D):
    """c_in of an FDM kind: γ_ζ(B(t(σ))) over the variant's own σ range (FDM.md §1.2, §2.4)."""
    sigma_min, sigma_max = sigma_range(kind)
    sigma64 = torch.as_tensor(sigma).to(torch.float64)
    B = fdm_rate(fdm_time(sigma64, sigma_min, sigma_max), multiplier, beta_min, beta_d)
    return damped_scale(B, damping)


def _base_scalings(kind: str, sigma: torch.Tensor, sigma_data: float):
    if kind == "edm":  # EDM Table 1, "Ours"
        c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
        c_out = sigma * sigma_data / torch.sqrt(sigma**2 + sigma_data**2)
        c_in = 1 / torch.sqrt(sigma**2 + sigma_data**2)
        c_noise = torch.log(sigma) / 4
    elif kind == "vp":  # EDM Table 1, VP column
        c_skip = torch.ones_like(sigma)
        c_out = -sigma
        c_in = 1 / torch.sqrt(sigma**2 + 1)
        c_noise = (VP_M - 1) * vp_sigma_inv(sigma)
    else:  # "ve", EDM Table 1, VE column
        c_skip = torch.ones_like(sigma)
        c_out = sigma
        c_in = torch.ones_like(sigma)
        c_noise = torch.log(sigma / 2)
    return c_skip, c_out, c_in, c_noise


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value


def scalings(
    kind: str,
    sigma,
    *,
    damping: float = 1.0,
    multiplier: float = 1.0,
    beta_min: float = FDM_BETA_MIN,
    beta_d: float = FDM_BETA_D,
    sigma_data: float = SIGMA_DATA,
):
    """(c_skip, c_out, c_in, c_noise) at noise level σ for `kind` in KINDS.

    FDM parameters (ignored by the baselines, validated always): `damping` ζ > 0 (1 = critical, the
    official kernel), `multiplier` k > 0 (the official CLI default is 2; the classes default to 1;
    the official VE-FDM ignores it, which a preset reproduces by setting k = 1), `beta_min`,
    `beta_d`. σ outside the nominal range is legal (the official code does not clamp).
    Returns tensors shaped like σ, in σ's floating dtype (float64 for Python numbers).
    """
    check_kind(kind)
    _check_damping(damping)
    _check_positive("multiplier", multiplier)
    _check_positive("sigma_data", sigma_data)
    sigma = torch.as_tensor(sigma)
    if not sigma.is_floating_point():
        sigma = sigma.to(torch.float64)
    c_skip, c_out, c_in, c_noise = _base_scalings(base_kind(kind), sigma, sigma_data)
    if is_fdm(kind):
        c_in = fdm_input_scale(kind, sigma, damping=damping, multiplier=multiplier, beta_min=beta_min, beta_d=beta_d)
    return tuple(c.to(sigma.dtype) for c in (c_skip, c_out, c_in, c_noise))
