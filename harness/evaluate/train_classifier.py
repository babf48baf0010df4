"""The recipe that made the committed fd-<dataset> classifiers (run once; its output is committed).

    python -m harness.evaluate.train_classifier [--datasets mnist fashion-mnist digits]

For each dataset: the train split from `harness.data`, a `ClassifierNet` initialised from a seeded
generator, Adam with a cosine learning-rate decay, random shifts of up to 2 pixels, on the CPU.
The weights go to `harness/evaluate/weights/classifier-<dataset>.pt` and the manifest records
their sha256, the test accuracy, the recipe's settings and the data fingerprint. Rerunning on
another machine gives a classifier of the same accuracy, not necessarily the same bytes (CPU
kernels differ); the metric is defined by the committed file, not by rerunning this script.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.evaluate.classifier import (
    MANIFEST_NAME,
    WEIGHTS_DIR,
    ClassifierNet,
    classifier_input,
)
from harness.evaluate.inception import file_sha256
from harness.records import write_atomic

RECIPE_SEED = 20240601


@dataclass(frozen=True)
class Recipe:
    epochs: int
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    max_shift_px: int = 2
    widths: tuple[int, ...] = (16, 32, 64)
    feature_dim: int = 128
    seed_index: int = 0  # the dataset's entry in SeedSequence([RECIPE_SEED, seed_index])


RECIPES = {
    "mnist": Recipe(epochs=4, seed_index=0),
    "fashion-mnist": Recipe(epochs=10, seed_index=1),
    "digits": Recipe(epochs=60, batch_size=64, max_shift_px=1, widths=(32, 64), seed_index=2),
}


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    fingerprint: str


def load_split(dataset: str, split: str) -> Split:
    from harness.data import dataset_fingerprint, load_dataset

    data = load_dataset(dataset, split=split)
    if data.labels is None:
        raise ValueError(f"{dataset}/{split} has no labels; a classifier needs them")
    return Split(images=data.images, labels=data.labels.long(),
                 fingerprint=dataset_fingerprint(data))


def init_parameters(net: nn.Module, generator: torch.Generator) -> None:
    """He-normal weights, zero biases, unit BN scales, all from one seeded generator."""
    for module in net.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def random_shift(x: torch.Tensor, max_shift_px: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by an integer offset in [-s, s]² with background (-1) fill."""
    if max_shift_px == 0:
        return x
    s = max_shift_px
    padded = F.pad(x, (s, s, s, s), value=-1.0)
    offsets = torch.randint(0, 2 * s + 1, (2, x.shape[0]), generator=generator)
    h, w = x.shape[-2:]
    shifted = torch.empty_like(x)
    for dy in range(2 * s + 1):  # one slice per offset, not per image
        for dx in range(2 * s + 1):
            chosen = (offsets[0] == dy) & (offsets[1] == dx)
            shifted[chosen] = padded[chosen, :, dy:dy + h, dx:dx + w]
    return shifted


def train_one(dataset: str, recipe: Recipe, train: Split) -> ClassifierNet:
    seed = np.random.SeedSequence([RECIPE_SEED, recipe.seed_index]).generate_state(1)[0]
    generator = torch.Generator().manual_seed(int(seed))
    channels, resolution = train.images.shape[1], train.images.shape[-1]
    net = ClassifierNet(channels=channels, resolution=resolution,
                        num_classes=int(train.labels.max()) + 1, widths=recipe.widths,
                        feature_dim=recipe.feature_dim)
    init_parameters(net, generator)
    optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    num_images = train.images.shape[0]
    steps_per_epoch = -(-num_images // recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + np.cos(np.pi * step / total_steps)))
    x_all = classifier_input(train.images, resolution)
    net.train()
    for epoch in range(recipe.epochs):
        order = torch.randperm(num_images, generator=generator)
        for start in range(0, num_images, recipe.batch_size):
            index = order[start:start + recipe.batch_size]
            x = random_shift(x_all[index], recipe.max_shift_px, generator)
            loss = F.cross_entropy(net(x), train.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        print(f"{dataset}: epoch {epoch + 1}/{recipe.epochs} loss {loss.item():.4f}", flush=True)
    return net.eval()


@torch.no_grad()
def accuracy(net: ClassifierNet, split: Split, batch_size: int = 2000) -> float:
    net.eval()
    correct = 0
    for start in range(0, split.images.shape[0], batch_size):
        x = classifier_input(split.images[start:start + batch_size], net.resolution)
        correct += int((net(x).argmax(1) == split.labels[start:start + batch_size]).sum())
    return correct / split.images.shape[0]


def build(dataset: str, weights_dir: Path) -> dict:
    recipe = RECIPES[dataset]
    train, test = load_split(dataset, "train"), load_split(dataset, "test")
    start = time.perf_counter()
    net = train_one(dataset, recipe, train)
    train_s = time.perf_counter() - start
    test_accuracy = accuracy(net, test)
    file_name = f"classifier-{dataset}.pt"
    path = weights_dir / file_name
    torch.save(net.state_dict(), path)
    print(f"{dataset}: test accuracy {test_accuracy:.4f}, {path.stat().st_size} bytes, "
          f"{train_s:.0f} s", flush=True)
    return {
        "file": file_name,
        "sha256": file_sha256(path),
        "bytes": path.stat().st_size,
        "arch": {"channels": train.images.shape[1], "resolution": net.resolution,
                 "num_classes": net.head.out_features, "widths": list(recipe.widths),
                 "feature_dim": recipe.feature_dim},
        "parameters": sum(p.numel() for p in net.parameters()),
        "test_accuracy": test_accuracy,
        "test_images": int(test.images.shape[0]),
        "train_images": int(train.images.shape[0]),
        "data_fingerprint": {"train": train.fingerprint, "test": test.fingerprint},
        "recipe": {**asdict(recipe), "seed": RECIPE_SEED, "optimizer": "adam, cosine decay"},
        "train_s": round(train_s, 1),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    # One thread: the fastest on a shared 2-core machine, and it fixes the order of reductions.
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest_path = args.out / MANIFEST_NAME
    manifest = (json.loads(manifest_path.read_text()) if manifest_path.exists()
                else {"format": 1, "classifiers": {}})
    for dataset in args.datasets:
        manifest["classifiers"][dataset] = build(dataset, args.out)
        write_atomic(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        manifest_path.chmod(0o644)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
