"""Feature statistics, their EDM-compatible npz files, and KID."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from harness.errors import DataError
from harness.evaluate.frechet import frechet_distance
from harness.evaluate.stats import (
    FeatureStats,
    feature_stats,
    kid,
    kid_subset,
    load_stats,
    mmd2_unbiased,
    polynomial_kernel,
    save_stats,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) + shift


def test_feature_stats_are_the_mean_and_unbiased_covariance():
    phi = _features(50, 4, 0)
    stats = feature_stats(phi)
    np.testing.assert_allclose(stats.mu, phi.mean(0), rtol=0, atol=1e-14)
    np.testing.assert_allclose(stats.sigma, np.cov(phi, rowvar=False, ddof=1), rtol=1e-12)
    assert stats.num_images == 50 and stats.dim == 4


def test_frechet_distance_of_stats_matches_the_closed_form_for_diagonal_gaussians():
    # Two diagonal Gaussians: d² = Σ (μ1 − μ2)² + Σ (s1 − s2)² with s the standard deviations.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    s1, s2 = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((s1 - s2) ** 2)
    a = FeatureStats(mu=mu1, sigma=np.diag(s1 ** 2), num_images=10)
    b = FeatureStats(mu=mu2, sigma=np.diag(s2 ** 2), num_images=10)
    assert frechet_distance(a.mu, a.sigma, b.mu, b.sigma) == pytest.approx(expected, rel=1e-12)


def test_stats_npz_round_trip_is_exact_and_keeps_kid_features_and_meta(tmp_path):
    stats = feature_stats(_features(30, 5, 1), meta={"label": "digits-train", "extractor": "x"})
    save_stats(tmp_path / "ref.npz", stats)
    back = load_stats(tmp_path / "ref.npz")
    assert np.array_equal(back.mu, stats.mu) and np.array_equal(back.sigma, stats.sigma)
    assert np.array_equal(back.kid_features, stats.kid_features)
    assert back.num_images == 30 and back.meta == {"label": "digits-train", "extractor": "x"}
    with np.load(tmp_path / "ref.npz", allow_pickle=False) as raw:  # EDM reads exactly these two
        assert raw["mu"].shape == (5,) and raw["sigma"].shape == (5, 5)
        assert raw["mu"].dtype == np.float64


def test_an_edm_reference_file_with_only_mu_and_sigma_loads(tmp_path):
    mu, sigma = np.arange(3.0), np.eye(3) * 2
    np.savez(tmp_path / "cifar10-32x32.npz", mu=mu, sigma=sigma)  # what EDM's `fid.py ref` writes
    stats = load_stats(tmp_path / "cifar10-32x32.npz")
    assert np.array_equal(stats.mu, mu) and np.array_equal(stats.sigma, sigma)
    assert stats.kid_features is None and stats.num_images == -1


def test_a_reference_file_without_sigma_is_a_data_error_naming_the_file(tmp_path):
    np.savez(tmp_path / "bad.npz", mu=np.zeros(3))
    with pytest.raises(DataError, match=r"bad\.npz.*'sigma'"):
        load_stats(tmp_path / "bad.npz")
    np.savez(tmp_path / "shape.npz", mu=np.zeros(3), sigma=np.zeros((2, 2)))
    with pytest.raises(DataError, match=r"shape\.npz"):
        load_stats(tmp_path / "shape.npz")


def test_kid_subset_is_seeded_and_keeps_every_row_when_few():
    phi = _features(100, 2, 2)
    assert np.array_equal(kid_subset(phi, 200, 0), phi)
    a, b = kid_subset(phi, 10, 7), kid_subset(phi, 10, 7)
    assert a.shape == (10, 2) and np.array_equal(a, b)
    assert not np.array_equal(a, kid_subset(phi, 10, 8))


def _mmd2_by_loops(x: np.ndarray, y: np.ndarray) -> float:
    m, d = x.shape
    k = lambda u, v: (u @ v / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_unbiased_mmd2_matches_the_definition_term_by_term():
    x, y = _features(7, 3, 3), _features(7, 3, 4, shift=0.5)
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_by_loops(x, y), rel=1e-12)
    assert polynomial_kernel(x, y).shape == (7, 7)


def test_kid_with_one_full_subset_equals_the_unbiased_mmd2_of_all_rows():
    # MMD² is invariant to the order of rows, so a "subset" of every row is the full estimate.
    x, y = _features(12, 3, 5), _features(12, 3, 6, shift=1.0)
    assert kid(x, y, num_subsets=1, max_subset_size=1000) == pytest.approx(_mmd2_by_loops(x, y),
                                                                            rel=1e-12)


def test_kid_is_near_zero_for_one_distribution_and_grows_with_the_shift():
    base = _features(400, 8, 7)
    same = kid(base, _features(400, 8, 8), num_subsets=20, max_subset_size=200)
    shifted = [kid(base, _features(400, 8, 9, shift=s), num_subsets=20, max_subset_size=200)
               for s in (0.25, 0.5, 1.0)]
    assert abs(same) < 0.2 * shifted[0]
    assert shifted[0] < shifted[1] < shifted[2]


def test_kid_in_torch_float64_equals_kid_in_numpy():
    x, y = _features(60, 5, 10), _features(50, 5, 11, shift=0.3)
    numpy_value = kid(x, y, num_subsets=7, max_subset_size=40, seed=3, device=None)
    torch_value = kid(x, y, num_subsets=7, max_subset_size=40, seed=3, device="cpu")
    assert torch_value == pytest.approx(numpy_value, rel=1e-12)


def test_kid_rejects_mismatched_feature_dimensions():
    with pytest.raises(ValueError, match="equal D"):
        kid(np.zeros((5, 2)), np.zeros((5, 3)))
