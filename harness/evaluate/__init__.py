"""Evaluation: generation, feature extractors, Fréchet distance, evaluation of runs."""

from harness.evaluate.frechet import frechet_distance, trace_sqrt_product
from harness.evaluate.classifier import load_classifier
from harness.evaluate.features import FeatureExtractor
from harness.evaluate.inception import load_inception
from harness.evaluate.metrics import make_extractor, resolve_metric, score_features
from harness.evaluate.plans import evaluate_checkpoint, evaluate_run
from harness.evaluate.reference import Reference, dataset_reference, file_reference
from harness.evaluate.stats import FeatureStats, feature_stats, kid, load_stats, save_stats

__all__ = [
    "FeatureExtractor", "FeatureStats", "Reference", "dataset_reference", "evaluate_checkpoint",
    "evaluate_run", "feature_stats", "file_reference", "frechet_distance", "kid",
    "load_classifier", "load_inception", "load_stats", "make_extractor", "resolve_metric",
    "save_stats", "score_features", "trace_sqrt_product",
]
