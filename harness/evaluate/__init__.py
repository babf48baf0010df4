"""Evaluation: generation, feature extractors, Fréchet distance, evaluation of runs."""

from harness.evaluate.frechet import frechet_distance, trace_sqrt_product

__all__ = ["frechet_distance", "trace_sqrt_product"]
