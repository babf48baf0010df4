"""Small frozen classifiers whose penultimate features define the `fd-<dataset>` metric.

The Inception network is trained on ImageNet photographs and is not available offline. On the
small offline datasets (MNIST, Fashion-MNIST, scikit-learn digits) the harness instead measures the
Fréchet distance in the 128-d penultimate features of a small CNN trained once per dataset by
`harness/evaluate/train_classifier.py`. Its weights are committed in `harness/evaluate/weights/`
with their sha256 in `manifest.json`, checked on every load, so every machine computes the same
metric. The number is *not* FID and is not comparable with FIDs of any paper.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError, did_you_mean
from harness.evaluate.features import NetworkExtractor
from harness.evaluate.inception import file_sha256

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST_NAME = "manifest.json"


class ClassifierNet(nn.Module):
    """Three conv–BN–ReLU–maxpool stages, a 128-d ReLU layer (the features φ), a linear head.

    Sized for 28×28 and 8×8 grey images: the spatial size halves (floor) after each stage, so
    28 → 14 → 7 → 3 and 8 → 4 → 2 → 1. About 99k parameters at 28×28 (~0.4 MB in float32).
    """

    def __init__(self, *, channels: int, resolution: int, num_classes: int = 10,
                 widths: Sequence[int] = (16, 32, 64), feature_dim: int = 128):
        super().__init__()
        self.resolution = int(resolution)
        stages: list[nn.Module] = []
        size, previous = int(resolution), int(channels)
        for width in widths:
            stages += [nn.Conv2d(previous, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            size, previous = size // 2, width
        if size < 1:
            raise ValueError(f"resolution {resolution} is too small for {len(widths)} stages")
        self.stages = nn.Sequential(*stages)
        self.embed = nn.Linear(previous * size * size, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """φ(x): the penultimate layer, after its ReLU."""
        return F.relu(self.embed(self.stages(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class PenultimateFeatures(nn.Module):
    """`forward = classifier.features`, so a feature extractor can call it like any network."""

    def __init__(self, classifier: ClassifierNet):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x)


def classifier_input(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 in [-1, 1] at the classifier's resolution.

    Larger images are centre-cropped: `harness.data` grows MNIST, Fashion-MNIST and digits by
    zero-padding around the centre (28 → 32), and the crop undoes that exactly (the metric does
    not look at the padded border). Smaller images are resized bilinearly. Reference statistics go
    through the same transform as the samples.
    """
    x = images.to(torch.float32) / 127.5 - 1.0
    height, width = x.shape[-2:]
    if height >= resolution and width >= resolution:
        top, left = (height - resolution) // 2, (width - resolution) // 2
        return x[..., top:top + resolution, left:left + resolution]
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=True)


# ----------------------------------------------------------------------------- committed weights

def read_manifest(weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Any]:
    path = Path(weights_dir) / MANIFEST_NAME
    if not path.is_file():
        raise HarnessError(f"{path}: the classifier manifest is missing; rebuild the weights with "
                           f"`python -m harness.evaluate.train_classifier`")
    return json.loads(path.read_text(encoding="utf-8"))


def classifier_datasets(weights_dir: str | Path = WEIGHTS_DIR) -> list[str]:
    """Datasets that have a committed classifier (the `fd-<dataset>` metrics available)."""
    return sorted(read_manifest(weights_dir)["classifiers"])


def build_classifier(entry: dict[str, Any]) -> ClassifierNet:
    arch = entry["arch"]
    return ClassifierNet(channels=arch["channels"], resolution=arch["resolution"],
                         num_classes=arch["num_classes"], widths=tuple(arch["widths"]),
                         feature_dim=arch["feature_dim"])


def load_classifier_net(dataset: str, *, weights_dir: str | Path = WEIGHTS_DIR
                        ) -> tuple[ClassifierNet, dict[str, Any]]:
    """The frozen classifier of `dataset` and its manifest entry; checks the file's sha256."""
    classifiers = read_manifest(weights_dir)["classifiers"]
    if dataset not in classifiers:
        raise HarnessError(f"no fd classifier for dataset '{dataset}'{did_you_mean(dataset, classifiers)}"
                           f" (available: {', '.join(sorted(classifiers))}); use the FID Inception "
                           f"metric for other datasets")
    entry = classifiers[dataset]
    path = Path(weights_dir) / entry["file"]
    if not path.is_file():
        raise HarnessError(f"{path}: classifier weights for '{dataset}' are missing")
    digest = file_sha256(path)
    if digest != entry["sha256"]:
        raise HarnessError(f"{path}: sha256 {digest} differs from the manifest's {entry['sha256']};"
                           f" the committed classifier weights were changed or damaged")
    net = build_classifier(entry)
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval().requires_grad_(False), entry


def load_classifier(dataset: str, *, weights_dir: str | Path = WEIGHTS_DIR,
                    device: torch.device | str = "cpu", batch_size: int = 1000
                    ) -> NetworkExtractor:
    """Feature extractor of the `fd-<dataset>` metric (penultimate layer of the classifier)."""
    net, entry = load_classifier_net(dataset, weights_dir=weights_dir)
    resolution = entry["arch"]["resolution"]
    return NetworkExtractor(
        name=f"classifier-{dataset}", metric=f"fd-{dataset}", dim=entry["arch"]["feature_dim"],
        sha256=entry["sha256"], net=PenultimateFeatures(net),
        preprocess=lambda images: classifier_input(images, resolution),
        channels=entry["arch"]["channels"], batch_size=batch_size, device=device)
