"""`harness data prepare`: convert any supported source into EDM's zip (or folder) format."""

from __future__ import annotations

import os
from pathlib import Path

from harness.data.dataset import ImageDataset, load_with_labels_mode
from harness.data.edm_format import write_edm


def prepare_dataset(name: str, *, dest: str | os.PathLike, source: str | os.PathLike | None = None,
                    resolution: int | None = None, split: str = "train",
                    use_labels: bool | None = None, max_images: int | None = None,
                    overwrite: bool = False) -> ImageDataset:
    """Read dataset `name` from `source` (or the search locations) and write it to `dest`.

    dest ending in .zip gives a zip, anything else a folder. use_labels: None keeps the labels
    when the source has them; True requires them; False drops them. Returns what was written.
    """
    labels_mode = {None: "optional", True: "require", False: "ignore"}[use_labels]
    dataset = load_with_labels_mode(name, path=source, resolution=resolution,
                                    labels_mode=labels_mode, max_images=max_images, split=split)
    labels = None if dataset.labels is None else dataset.labels.numpy()
    write_edm(Path(dest), dataset.images.numpy(), labels, overwrite=overwrite)
    return dataset
