"""One reader interface over every supported dataset: `load_dataset(name, ...) -> ImageDataset`."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from harness.data import readers
from harness.data.edm_format import read_edm
from harness.data.readers import RawImages
from harness.data.resize import pad_centered, resize_square
from harness.data.sources import idx_files_present, resolve_data_path, verify_known_file
from harness.errors import DataError, HarnessError, SpecError, did_you_mean

DATASET_NAMES = ("digits", "mnist", "fashion-mnist", "cifar10", "ffhq-64", "afhqv2-64",
                 "folder", "zip")
SPLITS = ("train", "test")
# Datasets of centred strokes on a black background: a larger resolution pads with zeros
# (MNIST 28 → 32 as in the usual diffusion set-ups); everything else is resized.
_PAD_TO_GROW = ("digits", "mnist", "fashion-mnist")
_CLASS_NAMES = {"digits": readers.DIGIT_NAMES, "mnist": readers.DIGIT_NAMES,
                "fashion-mnist": readers.FASHION_NAMES}
_NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10}


@dataclass(frozen=True, eq=False)
class ImageDataset:
    """A whole dataset in memory: uint8 images [N, C, H, W] on the CPU and int64 labels [N].

    `num_classes` is 0 when the dataset is used without labels (`labels` is None).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    num_classes: int
    name: str
    source: str = ""
    split: str = "train"
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels is not None and (self.labels.dtype != torch.int64
                                        or self.labels.shape != (len(self.images),)):
            raise ValueError(f"labels must be int64 [{len(self.images)}], got "
                             f"{self.labels.dtype} {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    @property
    def channels(self) -> int:
        return self.images.shape[1]


def load_dataset(name: str, *, path: str | os.PathLike | None = None,
                 resolution: int | None = None, use_labels: bool = True,
                 max_images: int | None = None, split: str = "train") -> ImageDataset:
    """Load a dataset into memory.

    name: one of DATASET_NAMES. path: the file/folder to read (else the search locations of
    harness.data.sources). resolution: pad (digits, MNIST, Fashion-MNIST growing) or centre-crop
    and resize (everything else) to R x R. use_labels: False drops the labels (num_classes 0);
    True requires them. max_images: the first N images in file order. split: "train" | "test".
    """
    return load_with_labels_mode(name, path=path, resolution=resolution,
                 labels_mode="require" if use_labels else "ignore",
                 max_images=max_images, split=split)


def load_with_labels_mode(name: str, *, path, resolution, labels_mode: str, max_images,
                          split) -> ImageDataset:
    """`load_dataset` with labels "require" | "optional" (kept when present) | "ignore"."""
    _check_arguments(name, resolution, max_images, split)
    location = resolve_data_path(name, path)
    raw = _read(name, location, split, labels_mode, resolution, max_images)
    pixels = raw.images if max_images is None or max_images >= len(raw.images) \
        else raw.images[:max_images].copy()  # a copy lets the rest be freed
    images = torch.from_numpy(pixels)
    labels = None if raw.labels is None or labels_mode == "ignore" else \
        torch.from_numpy(raw.labels[:len(images)])
    images = _to_resolution(name, images.contiguous(), resolution)
    num_classes = 0 if labels is None else _num_classes(name, labels, raw.class_names)
    return ImageDataset(images, labels, num_classes, name, raw.source, split,
                        (raw.class_names or _CLASS_NAMES.get(name)) if labels is not None else None)


def _check_arguments(name, resolution, max_images, split) -> None:
    if name not in DATASET_NAMES:
        raise SpecError("dataset", f"unknown dataset '{name}'{did_you_mean(name, DATASET_NAMES)} "
                                   f"(valid: {', '.join(DATASET_NAMES)})")
    if split not in SPLITS:
        raise SpecError("split", f"'{split}' is not a split{did_you_mean(split, SPLITS)} "
                                 f"(valid: {', '.join(SPLITS)})")
    if resolution is not None and (not isinstance(resolution, int) or resolution < 1):
        raise SpecError("resolution", f"{resolution!r} must be a positive integer")
    if max_images is not None and (not isinstance(max_images, int) or max_images < 1):
        raise SpecError("max_images", f"{max_images!r} must be a positive integer")


def _read(name, location: Path | None, split, labels_mode, resolution, max_images) -> RawImages:
    """Dispatch on what the resolved location is; the name only picks defaults."""
    if location is None:
        return readers.read_digits(split)
    verify_known_file(location)
    suffixes = "".join(location.suffixes[-2:]).lower()
    is_edm = location.suffix.lower() == ".zip" or (location.is_dir() and not _is_cifar_dir(
        location) and not idx_files_present(location))
    if split != "train" and is_edm:
        raise HarnessError(f"{location}: an EDM zip/folder has no '{split}' split; prepare the "
                           f"split you want into its own zip")
    if is_edm:
        return read_edm(location, labels_mode=labels_mode, resolution=resolution,
                        max_images=max_images)
    if location.suffix.lower() == ".npz":
        return _named(readers.read_npz(location, split), name)
    if suffixes.endswith((".tar.gz", ".tgz", ".tar")):
        return readers.read_cifar_tarball(location, split)
    if location.is_dir() and _is_cifar_dir(location):
        return readers.read_cifar_folder(location, split)
    if location.is_dir():
        return readers.read_idx_folder(location, split, _CLASS_NAMES.get(name))
    raise DataError(f"{location}: unknown dataset format for '{name}'; expected .npz, an IDX "
                    f"folder, a CIFAR-10 .tar.gz, or an EDM .zip / image folder")


def _is_cifar_dir(folder: Path) -> bool:
    inner = folder / readers.CIFAR_FOLDER
    return any((f / "test_batch").is_file() or (f / "data_batch_1").is_file()
               for f in (folder, inner))


def _named(raw: RawImages, name: str) -> RawImages:
    raw.class_names = raw.class_names or _CLASS_NAMES.get(name)
    return raw


def _to_resolution(name: str, images: torch.Tensor, resolution: int | None) -> torch.Tensor:
    if resolution is None or (images.shape[-2:] == (resolution, resolution)):
        return images
    if name in _PAD_TO_GROW and resolution >= max(images.shape[-2:]):
        return pad_centered(images, resolution)
    return resize_square(images, resolution)


def _num_classes(name: str, labels: torch.Tensor, class_names) -> int:
    observed = int(labels.max()) + 1 if len(labels) else 0
    declared = _NUM_CLASSES.get(name) or (len(class_names) if class_names else 0)
    return max(observed, declared)


def dataset_fingerprint(dataset: ImageDataset) -> str:
    """sha256 (hex) of the dataset's content: shape, uint8 pixels and labels.

    Two loads of the same data give the same fingerprint whatever file they came from, so
    reference statistics can be cached by content.
    """
    digest = hashlib.sha256()
    digest.update(f"images uint8 {tuple(dataset.images.shape)};".encode())
    digest.update(memoryview(dataset.images.contiguous().numpy()).cast("B"))
    if dataset.labels is None:
        digest.update(b"labels none;")
    else:
        digest.update(f"labels int64le {len(dataset.labels)};".encode())
        digest.update(dataset.labels.numpy().astype("<i8").tobytes())
    return digest.hexdigest()
