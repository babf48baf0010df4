"""The damped-oscillator mean coefficient γ_ζ(B) behind FDM's input scaling (FDM.md §2).

γ solves  γ''(B) + 2ζ γ'(B) + γ(B) = 0,  γ(0) = 1,  γ'(0) = 0  (data at rest, no momentum),
with B the dimensionless oscillator time. With q = 1 − ζ² the one-path form is

    γ_ζ(B) = e^{−ζB} [ C(B) + ζ B S(B) ],
    C = cos(√q B),  S = sin(√q B)/(√q B)          (under-damped, q > 0)
    C = cosh(√−q B), S = sinh(√−q B)/(√−q B)      (over-damped, q < 0)

and ζ = 1 (critical) gives the official FDM kernel e^{−B}(1 + B).
"""

from __future__ import annotations

import math

import torch

# Below this |q|·B² the Taylor series of C and S (to z³) is used: its truncation error
# z⁴/8! < 3e-13 there, and it avoids the 0/0 of sin(√q B)/(√q B) and the cancellation of the
# two-exponential form as ζ → 1.
_SERIES_LIMIT = 1e-2


def _check_damping(damping: float) -> float:
    damping = float(damping)
    if not math.isfinite(damping) or damping <= 0:
        raise ValueError(f"damping must be a finite number > 0 (1 = critical damping), got {damping!r}")
    return damping


def _series(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """C and S as power series in z = q B² (exact at q = 0)."""
    c = 1 - z / 2 * (1 - z / 12 * (1 - z / 30))
    s = 1 - z / 6 * (1 - z / 20 * (1 - z / 42))
    return c, s


def _underdamped(B: torch.Tensor, zeta: float, omega_d: float) -> torch.Tensor:
    # e^{−ζB}[cos(ω_d B) + (ζ/ω_d) sin(ω_d B)], ω_d = √(1 − ζ²): bounded, no overflow for B ≥ 0.
    return torch.exp(-zeta * B) * (torch.cos(omega_d * B) + zeta / omega_d * torch.sin(omega_d * B))


def _overdamped(B: torch.Tensor, zeta: float, kappa: float) -> torch.Tensor:
    # [(ζ+κ) e^{−(ζ−κ)B} − (ζ−κ) e^{−(ζ+κ)B}] / (2κ): the cosh/sinh form overflows for κB > ~710
    # (float64) while this form only has decaying exponentials. ζ − κ = 1/(ζ + κ) since ζ² − κ² = 1,
    # which keeps the slow rate exact for large ζ.
    slow, fast = 1.0 / (zeta + kappa), zeta + kappa
    return ((zeta + kappa) * torch.exp(-slow * B) - slow * torch.exp(-fast * B)) / (2 * kappa)


def damped_scale(B, damping: float = 1.0) -> torch.Tensor:
    """γ_ζ(B): the mean coefficient of the damped oscillator with damping ratio ζ = `damping`.

    Computed in float64 and returned in B's floating dtype (float32 for non-float input).
    `damped_scale(B, 1.0) == exp(-B) * (1 + B)`. Negative B (σ below the nominal σ_min) is legal.
    """
    zeta = _check_damping(damping)
    B = torch.as_tensor(B)
    out_dtype = B.dtype if B.is_floating_point() else torch.get_default_dtype()
    B64 = B.to(torch.float64)
    q = 1.0 - zeta * zeta
    if q == 0.0:  # critical damping: FDM's official kernel, exactly
        return (torch.exp(-B64) * (1 + B64)).to(out_dtype)
    z = q * B64 * B64
    c, s = _series(z)
    near_critical = torch.exp(-zeta * B64) * (c + zeta * B64 * s)
    if q > 0:
        far = _underdamped(B64, zeta, math.sqrt(q))
    else:
        far = _overdamped(B64, zeta, math.sqrt(-q))
    return torch.where(z.abs() < _SERIES_LIMIT, near_critical, far).to(out_dtype)
