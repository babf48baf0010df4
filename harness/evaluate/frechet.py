"""Fréchet distance between two Gaussians N(mu1, cov1) and N(mu2, cov2).

    d² = ‖mu1 − mu2‖² + Tr(cov1) + Tr(cov2) − 2 Tr((cov1 cov2)^{1/2})

Method (stable for nearly singular covariances): cov1 cov2 is not symmetric, so instead of a
general matrix square root (scipy.linalg.sqrtm, which can return complex parts and fails on
singular inputs) we use the similar symmetric matrix

    M = cov1^{1/2} cov2 cov1^{1/2},   Tr((cov1 cov2)^{1/2}) = Tr(M^{1/2}) = Σ sqrt(λ_i(M)),

since cov1 cov2 = cov1^{1/2} M cov1^{-1/2} has the eigenvalues of M (also when cov1 is singular,
by continuity). cov1^{1/2} comes from a symmetric eigendecomposition with negative round-off
eigenvalues clipped to 0; the eigenvalues of M are clipped the same way. Everything is float64.
"""

from __future__ import annotations

import numpy as np


def _as_float64(name: str, value, ndim: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    sym = 0.5 * (cov + cov.T)
    eigenvalues, eigenvectors = np.linalg.eigh(sym)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(cov1, cov2) -> float:
    """Tr((cov1 cov2)^{1/2}) for symmetric positive semi-definite cov1, cov2."""
    root1 = _psd_sqrt(np.asarray(cov1, dtype=np.float64))
    middle = root1 @ np.asarray(cov2, dtype=np.float64) @ root1
    eigenvalues = np.linalg.eigvalsh(0.5 * (middle + middle.T))
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Fréchet distance (the quantity FID reports) between two Gaussians."""
    mu1, mu2 = _as_float64("mu1", mu1, 1), _as_float64("mu2", mu2, 1)
    cov1, cov2 = _as_float64("cov1", cov1, 2), _as_float64("cov2", cov2, 2)
    dim = mu1.shape[0]
    for name, value in (("mu2", mu2), ("cov1", cov1), ("cov2", cov2)):
        if value.shape[0] != dim or (value.ndim == 2 and value.shape != (dim, dim)):
            raise ValueError(f"{name} has shape {value.shape}; expected dimension {dim} from mu1")
    mean_term = float(np.sum((mu1 - mu2) ** 2))
    trace_term = float(np.trace(cov1) + np.trace(cov2)) - 2.0 * trace_sqrt_product(cov1, cov2)
    # Round-off can make a distance of two equal Gaussians come out at -1e-12.
    return max(mean_term + trace_term, 0.0)
