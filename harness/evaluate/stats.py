"""Feature statistics (μ, Σ), their npz files, and the KID estimator.

The npz format is EDM's (`fid.py ref`): keys `mu` [D] and `sigma` [D, D], float64, so published
reference files (e.g. EDM's fid-refs/cifar10-32x32.npz) load here and ours load in EDM. We add
optional keys that EDM ignores: `num_images`, `kid_features` (a seeded subset of the features, for
KID) and `meta` (a JSON string naming the dataset split and the extractor).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import DataError
from harness.records import write_atomic

# KID needs features, not moments. References keep at most this many rows (a seeded random
# subset); KID draws its subsets of ≤ 1000 from them.
KID_REFERENCE_ROWS = 10_000


@dataclass(frozen=True)
class FeatureStats:
    """Mean μ [D] and unbiased covariance Σ [D, D] of N feature vectors (float64)."""

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int
    kid_features: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])


def feature_stats(features: np.ndarray, *, kid_rows: int = KID_REFERENCE_ROWS, kid_seed: int = 0,
                  meta: dict[str, Any] | None = None) -> FeatureStats:
    """μ and Σ (divisor N − 1, as EDM's fid.py) of float64 features [N, D]."""
    phi = np.asarray(features, dtype=np.float64)
    if phi.ndim != 2 or phi.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D]; got shape {phi.shape}")
    mu = phi.mean(axis=0)
    centred = phi - mu
    sigma = centred.T @ centred / (phi.shape[0] - 1)
    return FeatureStats(mu=mu, sigma=sigma, num_images=int(phi.shape[0]),
                        kid_features=kid_subset(phi, kid_rows, kid_seed), meta=dict(meta or {}))


def kid_subset(features: np.ndarray, rows: int, seed: int) -> np.ndarray:
    """At most `rows` rows of `features`, chosen by a seeded permutation (all rows if fewer)."""
    if features.shape[0] <= rows:
        return np.asarray(features, dtype=np.float64)
    order = np.random.default_rng(np.random.SeedSequence(seed)).permutation(features.shape[0])
    return np.asarray(features[np.sort(order[:rows])], dtype=np.float64)


def save_stats(path: str | Path, stats: FeatureStats) -> None:
    """Write an EDM-compatible npz (mu, sigma) plus our optional keys, atomically."""
    arrays: dict[str, np.ndarray] = {"mu": stats.mu, "sigma": stats.sigma,
                                     "num_images": np.asarray(stats.num_images, dtype=np.int64),
                                     "meta": np.asarray(json.dumps(stats.meta, sort_keys=True))}
    if stats.kid_features is not None:
        arrays["kid_features"] = stats.kid_features.astype(np.float64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def load_stats(path: str | Path) -> FeatureStats:
    """Read an npz with `mu` and `sigma` (EDM's reference files or ours)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            contents = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read reference statistics ({exc})") from exc
    missing = [k for k in ("mu", "sigma") if k not in contents]
    if missing:
        raise DataError(f"{path}: reference statistics need the keys 'mu' and 'sigma' (EDM's "
                        f"npz format); missing {missing}, found {sorted(contents)}")
    mu = np.asarray(contents["mu"], dtype=np.float64)
    sigma = np.asarray(contents["sigma"], dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise DataError(f"{path}: mu has shape {mu.shape} and sigma {sigma.shape}; expected "
                        f"[D] and [D, D]")
    meta = json.loads(str(contents["meta"])) if "meta" in contents else {}
    num_images = int(contents["num_images"]) if "num_images" in contents else -1
    kid = contents.get("kid_features")
    return FeatureStats(mu=mu, sigma=sigma, num_images=num_images,
                        kid_features=None if kid is None else np.asarray(kid, np.float64),
                        meta=meta)


# ------------------------------------------------------------------------------------------- KID

def polynomial_kernel(x, y):
    """k(x, y) = (xᵀy / D + 1)³, the cubic kernel of KID (Bińkowski et al. 2018)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x, y) -> float:
    """Unbiased MMD² of two equal-size samples: mean k over i≠j within each, minus 2·mean k(x, y).

    Works on numpy arrays and on torch tensors (float64; e.g. on the GPU that evaluates)."""
    m = x.shape[0]
    k_xx, k_yy, k_xy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum())
    return float(within / (m * (m - 1)) - 2.0 * k_xy.mean())


def kid(features_a: np.ndarray, features_b: np.ndarray, *, num_subsets: int = 100,
        max_subset_size: int = 1000, seed: int = 0, device: torch.device | str | None = "cpu"
        ) -> float:
    """Kernel Inception Distance: unbiased MMD² with the cubic kernel, averaged over subsets.

    As defined by Bińkowski et al. and computed by StyleGAN2-ADA / EDM-era tooling: `num_subsets`
    pairs of subsets of m = min(N_a, N_b, max_subset_size) rows drawn without replacement. The
    subsets come from a seeded numpy generator. The kernel sums run in torch float64 on `device`
    (torch's thread setting applies; "cuda" matters for 2048-d Inception features, ~1 TFLOP on a
    CPU); `device=None` computes them in numpy instead.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"KID needs two feature arrays [N, D] of equal D; got {a.shape}, {b.shape}")
    m = min(a.shape[0], b.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 rows on each side; got {a.shape[0]}, {b.shape[0]}")
    if device is not None:
        a, b = (torch.from_numpy(v).to(device) for v in (a, b))
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    total = 0.0
    for _ in range(num_subsets):
        rows_a = rng.choice(a.shape[0], m, replace=False)
        rows_b = rng.choice(b.shape[0], m, replace=False)
        if device is not None:
            rows_a, rows_b = torch.from_numpy(rows_a).to(device), torch.from_numpy(rows_b).to(device)
        total += mmd2_unbiased(a[rows_a], b[rows_b])
    return total / num_subsets
