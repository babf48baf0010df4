"""Metric names and their feature extractors; the Fréchet distance and KID of generated features.

- ``fid``: Fréchet distance in the pool3 features of the standard TF-Inception network
  (inception-2015-12-05). Comparable with published FIDs when the reference statistics are the
  published ones (and 50k samples).
- ``fd-<dataset>`` (digits, mnist, fashion-mnist): Fréchet distance in the features of the
  project's frozen classifier for that dataset. Not FID; comparable only with itself.

Beside each value: KID (unbiased MMD², cubic kernel) in the same features, and the
real-versus-real floor of the reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.errors import HarnessError, did_you_mean
from harness.evaluate.classifier import classifier_datasets, load_classifier
from harness.evaluate.features import FeatureExtractor
from harness.evaluate.inception import load_inception
from harness.evaluate.reference import Reference
from harness.evaluate.stats import feature_stats, kid
from harness.evaluate.frechet import frechet_distance


def metric_names() -> list[str]:
    return ["fid", *(f"fd-{name}" for name in classifier_datasets())]


def resolve_metric(metric: str | None, dataset: str) -> str:
    """'auto'/None → fd-<dataset> where the project has a classifier for it, else fid."""
    if metric in (None, "auto"):
        return f"fd-{dataset}" if dataset in classifier_datasets() else "fid"
    valid = metric_names()
    if metric not in valid:
        raise HarnessError(f"unknown metric '{metric}'{did_you_mean(metric, valid)} "
                           f"(valid: auto, {', '.join(valid)})")
    return metric


def make_extractor(metric: str, *, inception_path: str | Path | None = None,
                   device: torch.device | str = "cpu") -> FeatureExtractor:
    """The feature network behind a metric name."""
    if metric == "fid":
        return load_inception(inception_path, device=device)
    if metric.startswith("fd-"):
        return load_classifier(metric[len("fd-"):], device=device)
    valid = metric_names()
    raise HarnessError(f"unknown metric '{metric}'{did_you_mean(metric, valid)} "
                       f"(valid: {', '.join(valid)})")


@dataclass(frozen=True)
class Score:
    value: float       # Fréchet distance to the reference
    kid: float | None  # KID to the reference's stored features (None if it has none)
    num_images: int


def score_features(features: np.ndarray, reference: Reference, *, kid_seed: int = 0,
                   with_kid: bool = True, device: torch.device | str = "cpu") -> Score:
    """Fréchet distance and KID of generated features against a reference.

    `device` runs KID's kernel sums there (a GPU makes 2048-d KID take milliseconds)."""
    stats = feature_stats(features, kid_rows=features.shape[0])
    value = frechet_distance(stats.mu, stats.sigma, reference.stats.mu, reference.stats.sigma)
    kid_value = None
    if with_kid and reference.stats.kid_features is not None:
        kid_value = kid(features, reference.stats.kid_features, seed=kid_seed, device=device)
    return Score(value=value, kid=kid_value, num_images=int(features.shape[0]))
