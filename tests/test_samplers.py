"""Samplers against exact solutions of the probability-flow ODE.

For Gaussian data N(μ, s²I) the ideal denoiser is D(x; σ) = μ + s²/(s² + σ²) (x − μ) and the
PF-ODE dx/dσ = (x − D)/σ has the closed-form solution x(σ) − μ = (x₀ − μ) √((s² + σ²)/(s² + σ₀²)).
For a Gaussian mixture the ideal denoiser is still exact and the reference is a fine numerical
solution (scipy, rtol 1e-11).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.integrate import solve_ivp

from harness.diffusion import edm_sigmas, logsnr_sigmas, samplers

MU, S = 0.3, 0.5
SIGMA_MAX, SIGMA_END = 80.0, 0.05
DETERMINISTIC = ["euler", "heun", "dpmpp_2m", "dpmpp_3s"]
ORDER = {"euler": 1, "heun": 2, "dpmpp_2m": 2, "dpmpp_3s": 3}


def gaussian_denoiser(x, sigma):
    sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def gaussian_solution(x0, sigma0, sigma):
    return MU + (x0 - MU) * math.sqrt((S**2 + sigma**2) / (S**2 + sigma0**2))


class Counting:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, sigma):
        assert sigma.shape == (x.shape[0],)
        self.calls += 1
        return self.fn(x, sigma)


def start(batch=4, dim=3, seed=0, sigma=SIGMA_MAX):
    z = torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return z * sigma


def run(name, x, sigmas, **options):
    kwargs = dict(options)
    if name == "dpmpp_3s" and "orders" not in kwargs and float(sigmas[-1]) > 0:
        kwargs["orders"] = [3] * (len(sigmas) - 1)  # full order on every interval, for the order test
    return samplers.get_sampler(name)(gaussian_denoiser, x, sigmas, **kwargs)


def truncated_logsnr_grid(num_intervals):
    return logsnr_sigmas(num_intervals + 1, SIGMA_END, SIGMA_MAX)[:-1]  # ends at SIGMA_END, no 0


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_convergence_order_on_an_exact_gaussian_denoiser(name):
    x0 = start()
    exact = gaussian_solution(x0, SIGMA_MAX, SIGMA_END)
    n = {"euler": 40, "heun": 20, "dpmpp_2m": 20, "dpmpp_3s": 16}[name]
    errors = [float((run(name, x0, truncated_logsnr_grid(m)) - exact).abs().max()) for m in (n, 2 * n, 4 * n)]
    observed = [math.log2(errors[0] / errors[1]), math.log2(errors[1] / errors[2])]
    assert errors[2] < errors[1] < errors[0]
    assert ORDER[name] - 0.25 <= observed[-1] <= ORDER[name] + 0.6, (errors, observed)


def gmm_parts():
    means = torch.tensor([[-1.0, 0.5], [0.8, -0.2], [0.3, 1.2]], dtype=torch.float64)
    stds = torch.tensor([0.35, 0.45, 0.4], dtype=torch.float64)
    weights = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    return means, stds, weights


def gmm_denoiser(x, sigma):
    """E[x0 | x_σ] for a mixture of isotropic Gaussians (exact)."""
    means, stds, weights = gmm_parts()
    sigma = sigma.reshape(-1, 1, 1)
    var = stds.reshape(1, -1, 1) ** 2 + sigma**2  # [N, K, 1]
    diff = x[:, None, :] - means[None]  # [N, K, D]
    log_p = torch.log(weights)[None] - 0.5 * (diff**2 / var).sum(-1) - x.shape[1] / 2 * torch.log(var[..., 0])
    resp = torch.softmax(log_p, dim=1)[..., None]
    posterior_means = means[None] + stds.reshape(1, -1, 1) ** 2 / var * diff
    return (resp * posterior_means).sum(1)


def gmm_reference(x0: torch.Tensor, sigma_min: float) -> torch.Tensor:
    """Fine solution of dx/d(ln σ) = x − D(x; σ) from σ_max to σ_min, then D(x; σ_min) (the step to 0)."""

    def rhs(log_sigma, flat):
        x = torch.from_numpy(flat.reshape(x0.shape))
        sigma = torch.full((x0.shape[0],), math.exp(log_sigma), dtype=torch.float64)
        return (x - gmm_denoiser(x, sigma)).numpy().ravel()

    sol = solve_ivp(rhs, (math.log(SIGMA_MAX), math.log(sigma_min)), x0.numpy().ravel(), method="DOP853", rtol=1e-11, atol=1e-12)
    x_end = torch.from_numpy(sol.y[:, -1].reshape(x0.shape))
    return gmm_denoiser(x_end, torch.full((x0.shape[0],), sigma_min, dtype=torch.float64))


@pytest.mark.parametrize(("name", "num_steps", "tol"), [("euler", 400, 1e-2), ("heun", 80, 3e-3), ("dpmpp_2m", 80, 3e-3), ("dpmpp_3s", 40, 3e-4)])
def test_samplers_match_a_fine_solution_for_a_gaussian_mixture(name, num_steps, tol):
    x0 = start(batch=6, dim=2, seed=3)
    sigma_min = 0.002
    reference = gmm_reference(x0, sigma_min)
    sigmas = samplers.default_sigmas(name, num_steps, sigma_min, SIGMA_MAX)
    got = samplers.get_sampler(name)(gmm_denoiser, x0, sigmas)
    assert float((got - reference).abs().max()) < tol


@pytest.mark.parametrize(("name", "num_steps", "expected"), [("heun", 18, 35), ("heun", 40, 79), ("heun", 13, 25), ("euler", 18, 18), ("dpmpp_2m", 25, 25), ("dpmpp_3s", 10, 25), ("dpmpp_3s", 18, 49), ("dpmpp_3s", 28, 79)])
def test_nfe_is_exact(name, num_steps, expected):
    counting = Counting(gaussian_denoiser)
    samplers.get_sampler(name)(counting, start(), samplers.default_sigmas(name, num_steps))
    assert counting.calls == expected == samplers.nfe(name, num_steps)
    assert samplers.steps_for_nfe(name, expected) == num_steps


def test_unreachable_nfe_names_nearby_values():
    with pytest.raises(ValueError, match=r"NFE 36 .*heun.*35, 37"):
        samplers.steps_for_nfe("heun", 36)


def edm_algorithm_2(D, x0, t_steps, s_churn, s_min, s_max, s_noise, noise):
    """EDM (Karras et al. 2022) Algorithm 2, transcribed step by step from the paper."""
    N = len(t_steps) - 1
    x_next = x0
    for i in range(N):
        t_cur, t_next = t_steps[i], t_steps[i + 1]
        gamma = min(s_churn / N, math.sqrt(2) - 1) if s_min <= t_cur <= s_max else 0.0
        t_hat = t_cur + gamma * t_cur
        eps = noise(x_next) * s_noise if gamma > 0 else 0.0
        x_hat = x_next + math.sqrt(t_hat**2 - t_cur**2) * eps
        d_i = (x_hat - D(x_hat, torch.full((x0.shape[0],), t_hat, dtype=x0.dtype))) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_i
        if t_next != 0:
            d_prime = (x_next - D(x_next, torch.full((x0.shape[0],), t_next, dtype=x0.dtype))) / t_next
            x_next = x_hat + (t_next - t_hat) * (0.5 * d_i + 0.5 * d_prime)
    return x_next


@pytest.mark.parametrize("churn", [0.0, 40.0])
def test_heun_matches_edm_algorithm_2(churn):
    t_steps = edm_sigmas(18, 0.002, 80.0, 7.0)
    x0 = start(batch=5, dim=4, seed=7)
    options = dict(s_churn=churn, s_min=0.05, s_max=50.0, s_noise=1.003)
    reference_gen = torch.Generator().manual_seed(11)
    reference = edm_algorithm_2(gmm_denoiser_4d, x0, [float(t) for t in t_steps], noise=lambda x: torch.randn(x.shape, generator=reference_gen, dtype=x.dtype), **options)
    got = samplers.heun(gmm_denoiser_4d, x0, t_steps, generator=torch.Generator().manual_seed(11), **options)
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-6)
    if churn == 0:
        assert torch.equal(got, samplers.heun(gmm_denoiser_4d, x0, t_steps))


def gmm_denoiser_4d(x, sigma):
    return torch.cat([gmm_denoiser(x[:, :2], sigma), gmm_denoiser(x[:, 2:], sigma)], dim=1)


def test_stochastic_noise_comes_from_per_sample_generators_only():
    """With one generator per sample, sample i does not depend on the batch it is drawn in."""
    t_steps = edm_sigmas(8)
    x0 = start(batch=3, dim=4, seed=1)
    options = dict(s_churn=30.0, s_min=0.01, s_max=80.0)
    batch = samplers.heun(gmm_denoiser_4d, x0, t_steps, generator=[torch.Generator().manual_seed(100 + i) for i in range(3)], **options)
    torch.manual_seed(0)  # the global RNG must play no part
    alone = [samplers.heun(gmm_denoiser_4d, x0[i : i + 1], t_steps, generator=[torch.Generator().manual_seed(100 + i)], **options) for i in range(3)]
    torch.testing.assert_close(batch, torch.cat(alone), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="generator"):
        samplers.heun(gmm_denoiser_4d, x0, t_steps, **options)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_callback_sees_every_outer_step(name):
    seen = []
    sigmas = samplers.default_sigmas(name, 6)
    samplers.get_sampler(name)(gaussian_denoiser, start(), sigmas, callback=seen.append)
    assert [step["i"] for step in seen] == list(range(len(seen)))
    assert len(seen) == 6  # six positive σ: six steps (for dpmpp_3s: 5 intervals + the final denoise)
    assert all({"x", "sigma", "sigma_hat", "denoised"} <= set(step) for step in seen)


def test_final_step_to_zero_returns_the_denoised_value():
    sigmas = torch.tensor([2.0, 0.5, 0.0], dtype=torch.float64)
    x0 = start(sigma=2.0)
    for name in ("euler", "dpmpp_2m"):
        seen = []
        out = samplers.get_sampler(name)(gaussian_denoiser, x0, sigmas, callback=seen.append)
        torch.testing.assert_close(out, seen[-1]["denoised"])


@pytest.mark.parametrize("bad", [[1.0], [1.0, 2.0, 0.0], [3.0, 0.0, 0.0], [[3.0, 1.0]]])
def test_bad_grids_are_rejected(bad):
    with pytest.raises(ValueError, match="sigmas"):
        samplers.euler(gaussian_denoiser, start(), torch.tensor(bad, dtype=torch.float64))


def test_unknown_sampler_lists_the_valid_names():
    with pytest.raises(ValueError, match="euler, heun, dpmpp_2m, dpmpp_3s"):
        samplers.get_sampler("ddim")


def test_dpm_solver_order_schedule():
    assert samplers.dpm_solver_orders(9) == [3] * 7 + [2, 1]
    assert samplers.dpm_solver_orders(2) == [2, 1]
    assert samplers.dpm_solver_orders(1) == [1]
    assert sum(samplers.dpm_solver_orders(27)) + 1 == 79


def test_samplers_keep_float32():
    x0 = start().float()
    for name in DETERMINISTIC:
        out = samplers.get_sampler(name)(gaussian_denoiser, x0, samplers.default_sigmas(name, 5))
        assert out.dtype == torch.float32 and torch.isfinite(out).all()
