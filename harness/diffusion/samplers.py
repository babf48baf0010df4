"""Samplers for the probability-flow ODE dx/dσ = (x − D(x; σ))/σ, shared by every kind.

One contract (k-diffusion's): `sampler(denoiser, x, sigmas, **options) -> x` where
`denoiser(x, sigma)` returns D(x; σ) with `sigma` a tensor of shape [batch], `x` starts at noise
level sigmas[0] (x = σ_0 · z), and `sigmas` is a decreasing grid, usually ending in 0 (see
`harness.diffusion.grids`). FDM needs no sampler change: its input scaling lives inside D
(FDM.md §4). Stochastic noise comes only from the `generator` passed in, never the global RNG.

NFE for a grid of N positive σ followed by 0 (`nfe(name, N)`):
    euler N;  heun 2N − 1 (no correction on the step to 0);  dpmpp_2m N;
    dpmpp_3s sum(orders) + 1 (singlestep DPM-Solver++ over N − 1 intervals, then D(x; σ_min)).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
SAMPLERS = ("euler", "heun", "dpmpp_2m", "dpmpp_3s")


# ----------------------------------------------------------------------------- plumbing


def _check_sigmas(sigmas) -> torch.Tensor:
    sigmas = torch.as_tensor(sigmas, dtype=torch.float64).cpu()
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"sigmas must be a 1-D grid with at least 2 entries, got shape {tuple(sigmas.shape)}")
    if bool((sigmas < 0).any()) or bool((sigmas[1:] >= sigmas[:-1]).any()):
        raise ValueError("sigmas must be strictly decreasing and >= 0")
    if float(sigmas[-2]) <= 0:
        raise ValueError("only the last entry of sigmas may be 0")
    return sigmas


def _evaluate(denoiser: Denoiser, x: torch.Tensor, sigma: float) -> torch.Tensor:
    return denoiser(x, x.new_full((x.shape[0],), sigma))


def randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    """Standard normal noise shaped like x from `generator`: one torch.Generator, one generator
    per sample (a sequence of length batch: sample i's noise depends only on its generator), or
    an object with a `randn_like(x)` method."""
    if generator is None:
        raise ValueError("a stochastic step needs a generator (pass generator=...); the global RNG is never used")
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if hasattr(generator, "randn_like"):
        return generator.randn_like(x)
    if isinstance(generator, Sequence):
        if len(generator) != x.shape[0]:
            raise ValueError(f"got {len(generator)} generators for a batch of {x.shape[0]}")
        return torch.stack([torch.randn(x.shape[1:], generator=g, device=x.device, dtype=x.dtype) for g in generator])
    raise TypeError(f"generator must be a torch.Generator, a sequence of them, or have randn_like(); got {type(generator)!r}")


def _report(callback, i: int, x, sigma: float, sigma_hat: float, denoised) -> None:
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_hat": sigma_hat, "denoised": denoised})


# ----------------------------------------------------------------------------- first / second order


def euler(denoiser: Denoiser, x: torch.Tensor, sigmas, *, callback=None, generator=None) -> torch.Tensor:
    """Euler steps of the PF-ODE (deterministic). NFE = number of steps."""
    sigmas = _check_sigmas(sigmas)
    for i in range(len(sigmas) - 1):
        t_cur, t_next = float(sigmas[i]), float(sigmas[i + 1])
        denoised = _evaluate(denoiser, x, t_cur)
        d_cur = (x - denoised) / t_cur
        _report(callback, i, x, t_cur, t_cur, denoised)
        x = x + (t_next - t_cur) * d_cur
    return x


def _churn(t_cur: float, num_steps: int, s_churn: float, s_min: float, s_max: float) -> float:
    """γ_i of EDM Algorithm 2: min(S_churn/N, √2 − 1) inside [S_min, S_max], else 0."""
    if s_churn > 0 and s_min <= t_cur <= s_max:
        return min(s_churn / num_steps, math.sqrt(2) - 1)
    return 0.0


def heun(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas,
    *,
    s_churn: float = 0.0,
    s_min: float = 0.0,
    s_max: float = math.inf,
    s_noise: float = 1.0,
    generator=None,
    callback=None,
) -> torch.Tensor:
    """EDM Algorithm 2 (stochastic Heun sampler); deterministic when s_churn = 0.

    Each step optionally raises the noise level t̂ = t (1 + γ) with fresh noise, takes an Euler
    step to t_next and, unless t_next = 0, corrects it with the trapezoidal rule. NFE = 2N − 1.
    """
    sigmas = _check_sigmas(sigmas)
    num_steps = len(sigmas) - 1
    for i in range(num_steps):
        t_cur, t_next = float(sigmas[i]), float(sigmas[i + 1])
        gamma = _churn(t_cur, num_steps, s_churn, s_min, s_max)
        t_hat = t_cur * (1 + gamma)
        x_hat = x
        if gamma > 0:
            x_hat = x + math.sqrt(t_hat**2 - t_cur**2) * s_noise * randn_like(x, generator)
        denoised = _evaluate(denoiser, x_hat, t_hat)
        d_cur = (x_hat - denoised) / t_hat
        _report(callback, i, x_hat, t_cur, t_hat, denoised)
        x = x_hat + (t_next - t_hat) * d_cur
        if t_next > 0:  # second-order correction
            d_prime = (x - _evaluate(denoiser, x, t_next)) / t_next
            x = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x


# ----------------------------------------------------------------------------- DPM-Solver++
#
# Exponential integrator for data prediction with α = 1, σ_t = t, λ = −ln σ (EDM's noise schedule
# as DPM-Solver sees it). Over one interval h = λ_next − λ_s:
#     x_next = (σ_next/σ_s) x_s + σ_next ∫ e^λ D(λ) dλ,
# and with φ_1 = expm1(−h), φ_2 = φ_1/h + 1 the first two Taylor terms of D integrate to
#     −φ_1 D_s  and  h φ_2 D'_s.


def _first_order(x, sigma_s: float, sigma_t: float, denoised):
    """x_t = (σ_t/σ_s) x − φ_1 D_s with φ_1 = σ_t/σ_s − 1 (exact for constant D)."""
    ratio = sigma_t / sigma_s
    return ratio * x + (1 - ratio) * denoised


def dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas, *, callback=None, generator=None) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep; the first step and the step to 0 are first order.

    D'_s is estimated from the previous step's denoised value: with r = h_prev/h,
    D_eff = (1 + 1/(2r)) D_s − (1/(2r)) D_prev. NFE = number of steps.
    """
    sigmas = _check_sigmas(sigmas)
    denoised_prev, h_prev = None, None
    for i in range(len(sigmas) - 1):
        sigma_s, sigma_t = float(sigmas[i]), float(sigmas[i + 1])
        denoised = _evaluate(denoiser, x, sigma_s)
        _report(callback, i, x, sigma_s, sigma_s, denoised)
        if sigma_t == 0:
            x = denoised
            break
        h = math.log(sigma_s / sigma_t)
        d_eff = denoised
        if denoised_prev is not None:
            r = h_prev / h
            d_eff = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * denoised_prev
        x = _first_order(x, sigma_s, sigma_t, d_eff)
        denoised_prev, h_prev = denoised, h
    return x


def dpm_solver_orders(num_intervals: int, order: int = 3) -> list[int]:
    """Orders of the singlestep intervals for a logSNR grid (DPM-Solver, 'singlestep').

    With K outer intervals, the last ones step down to lower order: order 3 gives
    [3]·(K−2) + [2, 1]; order 2 gives [2]·(K−1) + [1]. Fewer intervals than that: [1]·K.
    """
    if num_intervals < 1:
        raise ValueError(f"num_intervals must be >= 1, got {num_intervals}")
    if order == 3 and num_intervals >= 3:
        return [3] * (num_intervals - 2) + [2, 1]
    if order >= 2 and num_intervals >= 2:
        return [2] * (num_intervals - 1) + [1]
    return [1] * num_intervals


def _singlestep_2(denoiser, x, sigma_s, sigma_t, denoised_s, r1=0.5):
    """Second-order singlestep DPM-Solver++ (2S) over one interval; one extra evaluation."""
    h = math.log(sigma_s / sigma_t)
    sigma_1 = sigma_s * math.exp(-r1 * h)
    x_1 = _first_order(x, sigma_s, sigma_1, denoised_s)
    denoised_1 = _evaluate(denoiser, x_1, sigma_1)
    phi_1 = math.expm1(-h)
    return _first_order(x, sigma_s, sigma_t, denoised_s) - (0.5 / r1) * phi_1 * (denoised_1 - denoised_s)


def _singlestep_3(denoiser, x, sigma_s, sigma_t, denoised_s, r1=1 / 3, r2=2 / 3):
    """Third-order singlestep DPM-Solver++ (3S) over one interval; two extra evaluations at
    λ_s + r1 h and λ_s + r2 h. The second inner point uses the slope from the first."""
    h = math.log(sigma_s / sigma_t)
    sigma_1, sigma_2 = sigma_s * math.exp(-r1 * h), sigma_s * math.exp(-r2 * h)
    x_1 = _first_order(x, sigma_s, sigma_1, denoised_s)
    denoised_1 = _evaluate(denoiser, x_1, sigma_1)
    phi_22 = math.expm1(-r2 * h) / (r2 * h) + 1  # φ_2 of the sub-interval r2 h
    x_2 = _first_order(x, sigma_s, sigma_2, denoised_s) + (r2 / r1) * phi_22 * (denoised_1 - denoised_s)
    denoised_2 = _evaluate(denoiser, x_2, sigma_2)
    phi_2 = math.expm1(-h) / h + 1
    return _first_order(x, sigma_s, sigma_t, denoised_s) + (1 / r2) * phi_2 * (denoised_2 - denoised_s)


def dpmpp_3s(
    denoiser: Denoiser, x: torch.Tensor, sigmas, *, orders: Sequence[int] | None = None, callback=None, generator=None
) -> torch.Tensor:
    """DPM-Solver++ third-order singlestep with a final denoising step (FDM.md §4).

    The positive σ of the grid are the outer points; each interval between them takes one
    singlestep update of the order in `orders` (default `dpm_solver_orders(K, 3)`); a final 0 in the
    grid means x = D(x; σ_last) (DPM-Solver's denoise_to_zero, +1 NFE).
    """
    sigmas = _check_sigmas(sigmas)
    to_zero = float(sigmas[-1]) == 0
    outer = sigmas[:-1] if to_zero else sigmas
    num_intervals = len(outer) - 1
    orders = list(orders) if orders is not None else (dpm_solver_orders(num_intervals) if num_intervals else [])
    if len(orders) != num_intervals or any(o not in (1, 2, 3) for o in orders):
        raise ValueError(f"orders must list {num_intervals} values in (1, 2, 3), got {orders}")
    for i, order in enumerate(orders):
        sigma_s, sigma_t = float(outer[i]), float(outer[i + 1])
        denoised = _evaluate(denoiser, x, sigma_s)
        _report(callback, i, x, sigma_s, sigma_s, denoised)
        if order == 1:
            x = _first_order(x, sigma_s, sigma_t, denoised)
        elif order == 2:
            x = _singlestep_2(denoiser, x, sigma_s, sigma_t, denoised)
        else:
            x = _singlestep_3(denoiser, x, sigma_s, sigma_t, denoised)
    if to_zero:
        denoised = _evaluate(denoiser, x, float(outer[-1]))
        _report(callback, num_intervals, x, float(outer[-1]), float(outer[-1]), denoised)
        x = denoised
    return x


# ----------------------------------------------------------------------------- registry and NFE


def get_sampler(name: str):
    """The sampler function for `name` (a literal match; no lookup by string in globals)."""
    if name == "euler":
        return euler
    if name == "heun":
        return heun
    if name == "dpmpp_2m":
        return dpmpp_2m
    if name == "dpmpp_3s":
        return dpmpp_3s
    raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {name!r}")


def nfe(name: str, num_steps: int, *, to_zero: bool = True) -> int:
    """Exact number of denoiser evaluations for `num_steps` positive σ (then 0 when to_zero)."""
    get_sampler(name)
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if name in ("euler", "dpmpp_2m"):
        return num_steps if to_zero else num_steps - 1
    if name == "heun":
        return 2 * num_steps - 1 if to_zero else 2 * (num_steps - 1)
    intervals = num_steps - 1
    return (sum(dpm_solver_orders(intervals)) if intervals else 0) + (1 if to_zero else 0)


def steps_for_nfe(name: str, target_nfe: int) -> int:
    """The number of positive σ (grid ending in 0) whose NFE is exactly `target_nfe`."""
    reachable = {nfe(name, n): n for n in range(1, max(4, int(target_nfe) + 2))}
    if target_nfe in reachable:
        return reachable[target_nfe]
    nearby = sorted(reachable, key=lambda v: (abs(v - target_nfe), v))[:3]
    raise ValueError(f"no step count gives NFE {target_nfe} with sampler {name!r}; nearby: {sorted(nearby)}")


def default_sigmas(name: str, num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
    """The grid each sampler is run on by default: EDM's ρ-grid, logSNR-uniform for dpmpp_3s."""
    from harness.diffusion.grids import edm_sigmas, logsnr_sigmas

    get_sampler(name)
    if name == "dpmpp_3s":
        return logsnr_sigmas(num_steps, sigma_min, sigma_max)
    return edm_sigmas(num_steps, sigma_min, sigma_max, rho)
