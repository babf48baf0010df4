"""Closed-form checks of the diffusion math: scalings, the damped scale, σ densities, weights, grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from harness.diffusion import (
    KINDS,
    damped_scale,
    edm_sigmas,
    fdm_weight_cap,
    logsnr_sigmas,
    loss_weight,
    sample_sigma,
    scalings,
    sigma_range,
    vp_sigma,
    vp_sigma_inv,
)

SIGMAS = torch.tensor([0.002, 0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 20.0, 40.0, 80.0], dtype=torch.float64)
DAMPINGS = [0.5, 0.9, 1.0, 1.0 + 1e-9, 1.5, 3.0]


# ----------------------------------------------------------------------------- γ_ζ(B)


def closed_form_gamma(B: np.ndarray, zeta: float) -> np.ndarray:
    """FDM.md §2.2, written directly (cosh/sinh form: fine in float64 for these B)."""
    if zeta == 1.0:
        return np.exp(-B) * (1 + B)
    if zeta < 1:
        w = math.sqrt(1 - zeta**2)
        return np.exp(-zeta * B) * (np.cos(w * B) + zeta / w * np.sin(w * B))
    k = math.sqrt(zeta**2 - 1)
    return np.exp(-zeta * B) * (np.cosh(k * B) + zeta / k * np.sinh(k * B))


@pytest.mark.parametrize("zeta", [0.5, 0.9, 1.0, 1.5, 3.0])
def test_damped_scale_matches_closed_forms(zeta):
    B = np.linspace(0.0, 40.0, 401)
    got = damped_scale(torch.from_numpy(B), zeta).numpy()
    np.testing.assert_allclose(got, closed_form_gamma(B, zeta), rtol=1e-12, atol=1e-15)


def test_damped_scale_critical_is_exactly_the_official_kernel():
    B = torch.linspace(0, 100, 1001, dtype=torch.float64)
    assert torch.equal(damped_scale(B, 1.0), torch.exp(-B) * (1 + B))
    B32 = B.float()
    B32_64 = B32.double()
    assert torch.equal(damped_scale(B32, 1.0), (torch.exp(-B32_64) * (1 + B32_64)).float())


@pytest.mark.parametrize("zeta", DAMPINGS)
def test_damped_scale_solves_the_oscillator_ode(zeta):
    """γ'' + 2ζγ' + γ = 0, γ(0) = 1, γ'(0) = 0, integrated numerically."""
    B = np.linspace(0, 20, 81)
    sol = solve_ivp(lambda _, y: [y[1], -2 * zeta * y[1] - y[0]], (0, 20), [1.0, 0.0], t_eval=B, rtol=1e-12, atol=1e-14, method="DOP853")
    np.testing.assert_allclose(damped_scale(torch.from_numpy(B), zeta).numpy(), sol.y[0], atol=1e-10)


@pytest.mark.parametrize("zeta", DAMPINGS + [20.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_damped_scale_is_finite_up_to_B_100(zeta, dtype):
    B = torch.linspace(-0.01, 100, 2001, dtype=dtype)
    gamma = damped_scale(B, zeta)
    assert gamma.dtype == dtype
    assert torch.isfinite(gamma).all()
    assert (gamma.abs() <= 1 + 1e-6).all()


def test_damped_scale_is_smooth_through_critical_damping():
    B = torch.linspace(0, 30, 301, dtype=torch.float64)
    critical = damped_scale(B, 1.0)
    for eps in (1e-12, 1e-9, 1e-6):
        for zeta in (1 - eps, 1 + eps):
            # dγ/dζ is O(B² e^{-B}) ≤ ~0.6, so a step eps moves γ by at most ~eps.
            assert (damped_scale(B, zeta) - critical).abs().max() <= 2 * eps
    # Just off the series region the closed forms take over; the two must join continuously.
    for zeta in (0.99, 1.01):
        near = damped_scale(B, zeta).numpy()
        np.testing.assert_allclose(near, closed_form_gamma(B.numpy(), zeta), atol=1e-12)


def test_underdamped_zero_crossing_at_the_stated_B():
    # FDM.md §2.4: first zero at B* = (π − arctan(ω_d/ζ))/ω_d; B* = 2.42 for ζ = 0.5.
    zeta = 0.5
    w = math.sqrt(1 - zeta**2)
    b_star = (math.pi - math.atan(w / zeta)) / w
    assert b_star == pytest.approx(2.42, abs=5e-3)
    assert abs(float(damped_scale(torch.tensor(b_star, dtype=torch.float64), zeta))) < 1e-12


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_non_positive_damping_is_rejected_with_the_argument_name(bad):
    with pytest.raises(ValueError, match="damping"):
        damped_scale(torch.ones(3), bad)
    with pytest.raises(ValueError, match="damping"):
        scalings("fdm-edm", 1.0, damping=bad)


# ----------------------------------------------------------------------------- scalings


def test_unknown_kind_names_the_argument_and_the_valid_kinds():
    with pytest.raises(ValueError) as info:
        scalings("ddpm", 1.0)
    message = str(info.value)
    assert "kind" in message and all(kind in message for kind in KINDS)


def test_edm_scalings_satisfy_c_skip_plus_c_out_sq_over_sigma_data_sq_equals_one():
    c_skip, c_out, c_in, c_noise = scalings("edm", SIGMAS)
    torch.testing.assert_close(c_skip + c_out**2 / 0.25, torch.ones_like(SIGMAS), rtol=0, atol=1e-15)
    # Unit-variance input: c_in² (σ² + σ_d²) = 1; c_noise = ln(σ)/4.
    torch.testing.assert_close(c_in**2 * (SIGMAS**2 + 0.25), torch.ones_like(SIGMAS))
    torch.testing.assert_close(c_noise, torch.log(SIGMAS) / 4)


def test_vp_scalings_follow_edm_table_1():
    c_skip, c_out, c_in, c_noise = scalings("vp", SIGMAS)
    assert torch.equal(c_skip, torch.ones_like(SIGMAS))
    assert torch.equal(c_out, -SIGMAS)
    torch.testing.assert_close(c_in, 1 / torch.sqrt(SIGMAS**2 + 1))
    t = (torch.sqrt(0.1**2 + 2 * 19.9 * torch.log(1 + SIGMAS**2)) - 0.1) / 19.9
    torch.testing.assert_close(c_noise, 999 * t)


def test_ve_scalings_follow_edm_table_1():
    c_skip, c_out, c_in, c_noise = scalings("ve", SIGMAS)
    assert torch.equal(c_skip, torch.ones_like(SIGMAS)) and torch.equal(c_in, torch.ones_like(SIGMAS))
    assert torch.equal(c_out, SIGMAS)
    torch.testing.assert_close(c_noise, torch.log(SIGMAS / 2))


@pytest.mark.parametrize("base", ["vp", "ve", "edm"])
@pytest.mark.parametrize("damping", [0.7, 1.0, 2.0])
def test_fdm_changes_only_c_in(base, damping):
    baseline = scalings(base, SIGMAS)
    momentum = scalings(f"fdm-{base}", SIGMAS, damping=damping, multiplier=2.0)
    for index in (0, 1, 3):
        assert torch.equal(baseline[index], momentum[index])
    assert not torch.equal(baseline[2], momentum[2])


def official_fdm_c_in(sigma: torch.Tensor, sigma_min: float, sigma_max: float, k: float) -> torch.Tensor:
    """The official `s()` (FDM.md §1.2): t linear in σ, B₁ = 0.1 t + 9.95 t², exp(−k B₁)(1 + k B₁)."""
    t = (sigma - sigma_min) / (sigma_max - sigma_min)
    b1 = 0.1 * t + 0.5 * 19.9 * t**2
    return torch.exp(-k * b1) * (1 + k * b1)


@pytest.mark.parametrize("kind", ["fdm-edm", "fdm-vp", "fdm-ve"])
@pytest.mark.parametrize("k", [1.0, 2.0])
def test_fdm_c_in_equals_the_official_kernel_over_each_variants_range(kind, k):
    sigma_min, sigma_max = sigma_range(kind)
    sigma = torch.linspace(sigma_min, sigma_max, 997, dtype=torch.float64)
    got = scalings(kind, sigma, multiplier=k)[2]
    torch.testing.assert_close(got, official_fdm_c_in(sigma, sigma_min, sigma_max, k), rtol=1e-12, atol=1e-300)


def test_variant_ranges_are_the_official_ones():
    assert sigma_range("fdm-edm") == (0.002, 80.0)
    assert sigma_range("fdm-ve") == (0.02, 100.0)
    vp_min, vp_max = sigma_range("fdm-vp")
    assert vp_min == pytest.approx(1.0005e-3, rel=1e-4) and vp_max == pytest.approx(152.167, rel=1e-5)


# Published values of s(σ) (FDM.md §1.2 table, 2-3 significant digits).
PUBLISHED_C_IN = {
    ("fdm-edm", 2.0): {5: 0.996, 10: 0.955, 20: 0.629, 30: 0.219, 40: 0.038, 50: 3.3e-3, 60: 1.5e-4, 80: 3.9e-8},
    ("fdm-edm", 1.0): {5: 0.999, 10: 0.987, 20: 0.862, 30: 0.579, 40: 0.280, 50: 0.095, 60: 0.023, 80: 4.8e-4},
    ("fdm-vp", 2.0): {10: 0.995, 20: 0.946, 30: 0.804, 40: 0.582, 50: 0.351, 60: 0.175, 80: 0.024, 100: 1.6e-3, 152: 4.1e-8},
    ("fdm-vp", 1.0): {20: 0.985, 30: 0.937, 40: 0.839, 50: 0.696, 60: 0.529, 80: 0.231, 100: 0.068, 152: 4.9e-4},
    ("fdm-ve", 1.0): {10: 0.994, 20: 0.934, 30: 0.763, 40: 0.515, 50: 0.280, 60: 0.122, 80: 0.012, 100: 4.8e-4},
}


@pytest.mark.parametrize(("kind", "k"), list(PUBLISHED_C_IN))
def test_fdm_c_in_reproduces_the_published_table(kind, k):
    for sigma, value in PUBLISHED_C_IN[(kind, k)].items():
        got = float(scalings(kind, torch.tensor(float(sigma), dtype=torch.float64), multiplier=k)[2])
        assert got == pytest.approx(value, rel=0.05, abs=6e-4 * value + 1e-12), (sigma, got, value)


def test_sigma_outside_the_nominal_range_is_legal_and_unclamped():
    below = torch.tensor([1e-4, 1e-3], dtype=torch.float64)  # t < 0 for EDM-FDM
    c_in = scalings("fdm-edm", below, multiplier=2.0)[2]
    assert torch.isfinite(c_in).all() and (c_in <= 1).all()
    t = (below - 0.002) / (80 - 0.002)
    assert (t < 0).all()
    torch.testing.assert_close(c_in, official_fdm_c_in(below, 0.002, 80.0, 2.0))
    above = scalings("edm", torch.tensor([200.0]))
    assert torch.isfinite(torch.stack(above)).all()


def test_scalings_keep_sigma_dtype_and_shape():
    sigma = torch.rand(4, 1, 1, 1) * 10 + 0.01
    out = scalings("fdm-vp", sigma, multiplier=2.0)
    assert all(c.shape == sigma.shape and c.dtype == torch.float32 for c in out)


def test_vp_sigma_inverse_round_trip():
    t = torch.linspace(1e-5, 1, 50, dtype=torch.float64)
    torch.testing.assert_close(vp_sigma_inv(vp_sigma(t)), t, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- training σ and weights


def test_edm_training_sigma_is_lognormal():
    sigma = sample_sigma("fdm-edm", 200_000, generator=torch.Generator().manual_seed(0))
    log_sigma = torch.log(sigma.double())
    assert float(log_sigma.mean()) == pytest.approx(-1.2, abs=0.01)
    assert float(log_sigma.std()) == pytest.approx(1.2, abs=0.01)


def test_ve_training_sigma_is_log_uniform_on_its_range():
    sigma = sample_sigma("ve", 100_000, generator=torch.Generator().manual_seed(1)).double()
    u = torch.log(sigma / 0.02) / math.log(5000)
    assert float(u.min()) >= 0 and float(u.max()) <= 1
    assert float(u.mean()) == pytest.approx(0.5, abs=0.01)
    assert float(u.var()) == pytest.approx(1 / 12, abs=0.003)


def test_vp_training_sigma_comes_from_uniform_t():
    sigma = sample_sigma("fdm-vp", 100_000, generator=torch.Generator().manual_seed(2)).double()
    t = vp_sigma_inv(sigma)
    assert float(t.min()) >= 1e-5 - 1e-9 and float(t.max()) <= 1 + 1e-6
    assert float(t.mean()) == pytest.approx((1 + 1e-5) / 2, abs=0.01)


def test_training_sigma_is_reproducible_from_the_generator():
    a = sample_sigma("edm", 16, generator=torch.Generator().manual_seed(5))
    b = sample_sigma("edm", 16, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.dtype == torch.float32


def test_loss_weights():
    torch.testing.assert_close(loss_weight("edm", SIGMAS), 4 + 1 / SIGMAS**2)
    torch.testing.assert_close(loss_weight("fdm-vp", SIGMAS), 1 / SIGMAS**2)
    torch.testing.assert_close(loss_weight("ve", SIGMAS), 1 / SIGMAS**2)
    # λ(σ) c_out(σ)² = 1 for EDM: the effective target has unit weight (EDM eq. 8).
    c_out = scalings("edm", SIGMAS)[1]
    torch.testing.assert_close(loss_weight("edm", SIGMAS) * c_out**2, torch.ones_like(SIGMAS))


def test_fdm_weight_cap_warms_up_geometrically_then_disappears():
    warmup = 102_400
    assert fdm_weight_cap(0, warmup) == 5.0
    assert fdm_weight_cap(warmup / 2, warmup) == pytest.approx(50.0)
    assert fdm_weight_cap(warmup / 4, warmup) == pytest.approx(5 * 100**0.25)
    assert fdm_weight_cap(warmup - 1, warmup) < 500
    assert fdm_weight_cap(warmup, warmup) == math.inf
    assert fdm_weight_cap(10 * warmup, warmup) == math.inf
    assert fdm_weight_cap(10 * warmup, warmup, hold_final=True) == 500.0
    assert fdm_weight_cap(123, None) == math.inf and fdm_weight_cap(123, 0) == math.inf


def test_fdm_weight_cap_matches_the_official_counter_per_loss_call():
    """Official: cap_n = 5·100^{n/W} applied on loss call n while cap_n < 500 (W = warmup_ite).
    With one call per step of `batch` images the images seen at call n are n·batch."""
    W, batch = 200, 512
    clamp, step = 5.0, math.exp(math.log(100) / W)
    for n in range(W + 5):
        official = clamp if clamp < 500 else math.inf
        ours = fdm_weight_cap(n * batch, W * batch)
        if official == math.inf or ours == math.inf:
            # Float rounding lets the official counter run W or W+1 calls (FDM.md §1.3).
            assert n >= W
        else:
            assert ours == pytest.approx(official, rel=1e-9)
        if clamp < 500:
            clamp *= step


# ----------------------------------------------------------------------------- grids


def test_edm_sigmas_follow_the_formula_and_end_in_zero():
    N, smin, smax, rho = 18, 0.002, 80.0, 7.0
    sigmas = edm_sigmas(N, smin, smax, rho)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (N + 1,)
    for i in range(N):
        expected = (smax ** (1 / rho) + i / (N - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
        assert float(sigmas[i]) == pytest.approx(expected, rel=1e-14)
    assert float(sigmas[0]) == pytest.approx(80.0) and float(sigmas[N - 1]) == pytest.approx(0.002)
    assert float(sigmas[-1]) == 0.0 and bool((sigmas[1:] < sigmas[:-1]).all())


def test_logsnr_sigmas_are_uniform_in_log_sigma():
    sigmas = logsnr_sigmas(10, 0.002, 80.0)
    steps = torch.diff(torch.log(sigmas[:-1]))
    torch.testing.assert_close(steps, torch.full_like(steps, math.log(0.002 / 80) / 9))
    assert float(sigmas[-1]) == 0.0


@pytest.mark.parametrize("args", [(0, 0.002, 80.0), (5, 0.0, 80.0), (5, 90.0, 80.0)])
def test_bad_grid_arguments_are_rejected(args):
    with pytest.raises(ValueError):
        edm_sigmas(*args)
