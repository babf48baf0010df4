"""Datasets in memory, seeded batches, and EDM's non-leaking augmentation (docs/data.md)."""

from harness.data.augment import AugmentParams, AugmentPipe, AugmentTransform, apply_transform
from harness.data.batches import (
    DeviceDataset,
    batch_indices,
    epoch_permutation,
    to_float,
    to_uint8,
)
from harness.data.dataset import (
    DATASET_NAMES,
    SPLITS,
    ImageDataset,
    dataset_fingerprint,
    load_dataset,
)
from harness.data.edm_format import write_edm
from harness.data.prepare import prepare_dataset
from harness.data.sources import KNOWN_FILES, file_sha256, resolve_data_path, search_dirs

__all__ = [
    "DATASET_NAMES", "KNOWN_FILES", "SPLITS", "AugmentParams", "AugmentPipe", "AugmentTransform",
    "DeviceDataset", "ImageDataset", "apply_transform", "batch_indices", "dataset_fingerprint",
    "epoch_permutation", "file_sha256", "load_dataset", "prepare_dataset", "resolve_data_path",
    "search_dirs", "to_float", "to_uint8", "write_edm",
]
