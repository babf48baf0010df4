"""`harness data prepare NAME --dest PATH [--source PATH] [--resolution N] ...`."""

from __future__ import annotations

import argparse

from harness.data.dataset import DATASET_NAMES
from harness.data.prepare import prepare_dataset


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="dataset preparation",
                                 description="Dataset preparation.")
    commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    commands.required = True
    prepare = commands.add_parser(
        "prepare", help="convert a dataset to EDM's zip format",
        description="Convert a dataset (CIFAR-10 tarball, MNIST npz/IDX, digits, an image folder "
                    "or zip) to EDM's format: PNGs 00000/img00000000.png, ... and dataset.json "
                    "labels. DEST ending in .zip gives a zip, otherwise a folder.")
    prepare.add_argument("name", metavar="NAME", help=f"dataset: {', '.join(DATASET_NAMES)}")
    prepare.add_argument("--source", metavar="PATH",
                         help="file or folder to read (default: search ./data, $HARNESS_DATA_DIR, "
                              "../shared/data)")
    prepare.add_argument("--dest", metavar="PATH", required=True, help="output .zip or folder")
    prepare.add_argument("--resolution", metavar="N", type=int,
                         help="output size N x N (MNIST-like: zero pad; others: crop and resize)")
    prepare.add_argument("--split", choices=("train", "test"), default="train")
    prepare.add_argument("--max-images", metavar="N", type=int, help="only the first N images")
    prepare.add_argument("--no-labels", action="store_true", help="write no class labels")
    prepare.add_argument("--overwrite", action="store_true", help="replace an existing DEST")
    prepare.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    dataset = prepare_dataset(
        args.name, dest=args.dest, source=args.source, resolution=args.resolution,
        split=args.split, use_labels=False if args.no_labels else None,
        max_images=args.max_images, overwrite=args.overwrite)
    labels = f"{dataset.num_classes} classes" if dataset.labels is not None else "no labels"
    print(f"wrote {len(dataset)} images ({dataset.channels}x{dataset.resolution}x"
          f"{dataset.resolution}, {labels}) from {dataset.source} to {args.dest}")
    return 0
