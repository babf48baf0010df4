"""Reference statistics of real data, computed once per (dataset split, extractor) and cached.

The cache key is a content hash: the dataset's fingerprint (`harness.data.dataset_fingerprint`,
which changes when the images change) together with the extractor's name and weights sha256. The
file lives in `$HARNESS_CACHE/refs/` (default `~/.cache/harness/refs/`) in EDM's npz format, so a
second evaluation (or another run on the same machine) loads it instead of recomputing it.

Beside the reference (the train split, as in EDM's protocol) the harness computes the
real-versus-real *floor*: the same metric between the test split and the train split. A generator
cannot be expected to score below it with the same number of images; every fd value is recorded
with its floor.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.evaluate.features import FeatureExtractor
from harness.evaluate.frechet import frechet_distance
from harness.evaluate.stats import FeatureStats, feature_stats, kid, load_stats, save_stats
from harness.records import write_atomic

CACHE_FORMAT = 1


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """`cache_dir`, else $HARNESS_CACHE, else ~/.cache/harness."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("HARNESS_CACHE", "~/.cache/harness")).expanduser()


def reference_key(fingerprint: str, extractor: FeatureExtractor) -> str:
    """16 hex digits of sha256 over (data fingerprint, extractor name, weights sha256, format)."""
    content = json.dumps({"data": fingerprint, "extractor": extractor.name,
                          "weights": extractor.sha256, "format": CACHE_FORMAT}, sort_keys=True)
    return hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]


def _image_batches(images: torch.Tensor, batch: int):
    for start in range(0, images.shape[0], batch):
        yield images[start:start + batch]


def compute_stats(images: torch.Tensor, extractor: FeatureExtractor, *, batch: int = 1000,
                  meta: dict[str, Any] | None = None) -> FeatureStats:
    """Feature statistics of uint8 images [N, C, H, W] (features extracted `batch` at a time)."""
    chunks = [extractor.features(b) for b in _image_batches(images, batch)]
    return feature_stats(np.concatenate(chunks, axis=0), meta=meta)


def cached_stats(label: str, fingerprint: str, images: Callable[[], torch.Tensor],
                 extractor: FeatureExtractor, *, cache_dir: str | Path | None = None
                 ) -> tuple[FeatureStats, str]:
    """(stats, key) from the cache, or computed from `images()` and written to the cache.

    `images` is called only on a cache miss, so a hit never touches the dataset's pixels.
    """
    key = reference_key(fingerprint, extractor)
    path = cache_root(cache_dir) / "refs" / f"{label}-{extractor.name}-{key}.npz"
    if path.is_file():
        return load_stats(path), key
    meta = {"label": label, "fingerprint": fingerprint, "extractor": extractor.name,
            "weights_sha256": extractor.sha256, "key": key}
    stats = compute_stats(images(), extractor, meta=meta)
    save_stats(path, stats)
    return stats, key


@dataclass(frozen=True)
class Reference:
    """Reference statistics a generator is compared against, and the real-versus-real floor.

    `name` (e.g. ``mnist/train``) and `key` (the cache hash) go into every evaluation record.
    `floor` is fd(test split, train split) and `floor_kid` the KID of the same pair, measured with
    `floor_num_images` test images; None where the dataset has no test split.
    """

    name: str
    key: str
    stats: FeatureStats
    extractor: str
    floor: float | None = None
    floor_kid: float | None = None
    floor_num_images: int | None = None

    def record_fields(self) -> dict[str, Any]:
        return {"reference": self.name, "reference_hash": self.key, "extractor": self.extractor,
                "floor": self.floor, "floor_kid": self.floor_kid,
                "floor_num_images": self.floor_num_images}


def fd_between(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def kid_between(a: FeatureStats, b: FeatureStats, *, seed: int = 0) -> float | None:
    if a.kid_features is None or b.kid_features is None:
        return None
    return kid(a.kid_features, b.kid_features, seed=seed)


def dataset_reference(dataset: str, extractor: FeatureExtractor, *,
                      cache_dir: str | Path | None = None, loader: Callable | None = None,
                      fingerprint: Callable | None = None, **dataset_kwargs: Any) -> Reference:
    """Reference stats of `dataset`'s train split and the floor against its test split.

    `loader(name, split=..., **dataset_kwargs)` and `fingerprint(dataset)` default to
    `harness.data.load_dataset` / `dataset_fingerprint`; `dataset_kwargs` (e.g. `resolution`) are
    passed on so the reference sees the images as the trained network does.
    """
    if loader is None or fingerprint is None:
        from harness.data import dataset_fingerprint, load_dataset
        loader, fingerprint = loader or load_dataset, fingerprint or dataset_fingerprint
    train_stats, key = _split_stats(dataset, "train", extractor, loader, fingerprint, cache_dir,
                                    dataset_kwargs)
    test = _try_split_stats(dataset, "test", extractor, loader, fingerprint, cache_dir,
                            dataset_kwargs)
    floor = {"floor": None, "floor_kid": None, "floor_num_images": None}
    if test is not None:
        floor = _cached_floor(test[0], test[1], train_stats, key, cache_dir)
    return Reference(name=f"{dataset}/train", key=key, stats=train_stats, extractor=extractor.name,
                     **floor)


def _cached_floor(test: FeatureStats, test_key: str, train: FeatureStats, train_key: str,
                  cache_dir) -> dict[str, Any]:
    """fd and KID of the test split against the train split, cached beside the statistics."""
    path = cache_root(cache_dir) / "refs" / f"floor-{train_key}-{test_key}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    floor = {"floor": fd_between(test, train), "floor_kid": kid_between(test, train),
             "floor_num_images": test.num_images}
    write_atomic(path, json.dumps(floor) + "\n")
    return floor


def _split_stats(dataset, split, extractor, loader, fingerprint, cache_dir, dataset_kwargs):
    data = loader(dataset, split=split, **dataset_kwargs)
    label = f"{dataset}-{split}"
    return cached_stats(label, fingerprint(data), lambda: data.images, extractor,
                        cache_dir=cache_dir)


def _try_split_stats(dataset, split, extractor, loader, fingerprint, cache_dir, dataset_kwargs):
    from harness.errors import HarnessError

    try:
        return _split_stats(dataset, split, extractor, loader, fingerprint, cache_dir,
                            dataset_kwargs)
    except HarnessError:  # the dataset has no such split
        return None


def file_reference(path: str | Path, extractor: FeatureExtractor) -> Reference:
    """A published reference npz (e.g. EDM's fid-refs/cifar10-32x32.npz); no floor is known."""
    from harness.evaluate.inception import file_sha256

    path = Path(path)
    stats = load_stats(path)
    if stats.dim != extractor.dim:
        from harness.errors import DataError
        raise DataError(f"{path}: reference features have dimension {stats.dim}, but "
                        f"{extractor.name} gives {extractor.dim}")
    return Reference(name=path.name, key=file_sha256(path)[:16], stats=stats,
                     extractor=extractor.name)
