"""Fréchet distance against closed forms and the eigenvalue formula."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from harness.evaluate import frechet_distance


def random_cov(rng, dim, rank=None):
    a = rng.normal(size=(dim, rank or dim + 5))
    return a @ a.T / a.shape[1]


def eigenvalue_formula(mu1, cov1, mu2, cov2):
    """‖Δμ‖² + Tr Σ1 + Tr Σ2 − 2 Σ sqrt(λ_i(Σ1 Σ2)); the eigenvalues of Σ1Σ2 are real and ≥ 0."""
    eig = np.linalg.eigvals(cov1 @ cov2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2 * np.sqrt(np.clip(eig.real, 0, None)).sum())


def test_matches_the_eigenvalue_formula_and_scipy_sqrtm():
    rng = np.random.default_rng(0)
    for dim in (1, 4, 32):
        mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
        cov1, cov2 = random_cov(rng, dim), random_cov(rng, dim)
        got = frechet_distance(mu1, cov1, mu2, cov2)
        assert got == pytest.approx(eigenvalue_formula(mu1, cov1, mu2, cov2), rel=1e-9)
        sqrtm = scipy.linalg.sqrtm(cov1 @ cov2).real
        assert got == pytest.approx(float(((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * sqrtm)), rel=1e-8)


def test_diagonal_covariances_have_the_closed_form():
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = 1 + 0 + 4 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_identical_gaussians_are_at_distance_zero_even_when_singular():
    rng = np.random.default_rng(1)
    cov = random_cov(rng, 64, rank=8)  # rank 8 of 64: nearly singular, as with few samples
    mu = rng.normal(size=64)
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-9)


def test_nearly_singular_covariances_stay_finite_real_and_symmetric():
    rng = np.random.default_rng(2)
    cov1, cov2 = random_cov(rng, 128, rank=10), random_cov(rng, 128, rank=12)
    mu1, mu2 = rng.normal(size=128), rng.normal(size=128)
    d12, d21 = frechet_distance(mu1, cov1, mu2, cov2), frechet_distance(mu2, cov2, mu1, cov1)
    assert np.isfinite(d12) and d12 >= 0
    assert d12 == pytest.approx(d21, rel=1e-9)
    assert d12 == pytest.approx(eigenvalue_formula(mu1, cov1, mu2, cov2), rel=1e-6)


def test_scaled_covariance():
    """Σ2 = c Σ1 ⇒ d² = (1 + c − 2√c) Tr Σ1 = (1 − √c)² Tr Σ1."""
    rng = np.random.default_rng(3)
    cov = random_cov(rng, 10)
    mu = np.zeros(10)
    assert frechet_distance(mu, cov, mu, 4 * cov) == pytest.approx(np.trace(cov), rel=1e-10)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)), "mu2"),
        ((np.zeros(3), np.eye(2), np.zeros(3), np.eye(3)), "cov1"),
        ((np.zeros((3, 1)), np.eye(3), np.zeros(3), np.eye(3)), "mu1"),
        ((np.zeros(3), np.eye(3) * np.nan, np.zeros(3), np.eye(3)), "cov1"),
    ],
)
def test_bad_shapes_name_the_argument(args, match):
    with pytest.raises(ValueError, match=match):
        frechet_distance(*args)
