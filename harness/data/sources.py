"""Where dataset files are looked for, and whether a file is the one we expect.

Nothing here downloads. A missing file becomes a `DataError` that names the file, every place
searched, where to get it on a machine with network access, and the checksum to expect.

Search order for a dataset name (first hit wins):

1. the explicit ``path`` (a file, the dataset folder itself, or a folder to look in);
2. each folder of ``$HARNESS_DATA_DIR`` (``os.pathsep``-separated);
3. ``./data`` (relative to the working directory), then ``<repo>/data``;
4. ``<repo>/../shared/data`` (the project's offline copies: mnist.npz, fashion-mnist.npz).
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DataError, HarnessError

REPO_ROOT = Path(__file__).resolve().parents[2]

IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CIFAR_FOLDER = "cifar-10-batches-py"


@dataclass(frozen=True)
class KnownFile:
    """A distributed file whose bytes we know: accepted sha256 digests and where to get it."""

    sha256: tuple[str, ...]
    get_it: str
    md5: str | None = None
    size_bytes: int | None = None


# Digests: mnist.npz / fashion-mnist.npz from shared/data/README.md (the first mnist digest) and
# Keras's tf-keras-datasets/mnist.npz (the second, same images with keys x_train, ...);
# cifar-10-python.tar.gz: md5 from the CIFAR page, sha256 as pinned by keras.datasets.cifar10.
KNOWN_FILES: dict[str, KnownFile] = {
    "mnist.npz": KnownFile(
        sha256=("d9e6bb4ae1c9b32635733aff7838c1466781213a73610cead6fdd784be804d8e",
                "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
        get_it="copy shared/data/mnist.npz of this project (see shared/data/README.md) or "
               "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz; or put the "
               "four IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
               "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) from "
               "https://yann.lecun.com/exdb/mnist/ in a folder named mnist/",
        size_bytes=11_490_538,
    ),
    "fashion-mnist.npz": KnownFile(
        sha256=("710ddc34ef2232c9099f8083a71f05adc1197973d04efdd5791c7d8183ba9744",),
        get_it="copy shared/data/fashion-mnist.npz of this project (see shared/data/README.md); or "
               "put the four IDX .gz files from https://github.com/zalandoresearch/fashion-mnist "
               "(data/fashion/) in a folder named fashion-mnist/ (Debian: apt-get install "
               "dataset-fashion-mnist puts them in /usr/share/datasets/fashion-mnist)",
        size_bytes=30_869_949,
    ),
    "cifar-10-python.tar.gz": KnownFile(
        sha256=("6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",),
        md5="c58f30108f718f92721af3b95e74349a",
        get_it="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (170,498,071 bytes); "
               "keep it packed, it is read directly",
        size_bytes=170_498_071,
    ),
}

# What to look for, per dataset name, inside each search folder (in this order).
CANDIDATES: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist.npz", "mnist"),
    "fashion-mnist": ("fashion-mnist.npz", "fashion-mnist"),
    "cifar10": ("cifar-10-python.tar.gz", CIFAR_FOLDER, "cifar10-32x32.zip"),
    "ffhq-64": ("ffhq-64x64.zip", "ffhq-64x64"),
    "afhqv2-64": ("afhqv2-64x64.zip", "afhqv2-64x64"),
}

GET_IT: dict[str, str] = {
    "mnist": KNOWN_FILES["mnist.npz"].get_it,
    "fashion-mnist": KNOWN_FILES["fashion-mnist.npz"].get_it,
    "cifar10": KNOWN_FILES["cifar-10-python.tar.gz"].get_it,
    "ffhq-64": "build it from the FFHQ images with EDM's dataset_tool.py (--resolution=64x64) or "
               "`harness data prepare folder --source <images> --dest ffhq-64x64.zip "
               "--resolution 64`",
    "afhqv2-64": "build it from AFHQv2 with EDM's dataset_tool.py (--resolution=64x64) or "
                 "`harness data prepare folder --source <images> --dest afhqv2-64x64.zip "
                 "--resolution 64`",
}


def search_dirs() -> list[tuple[str, Path]]:
    """The folders searched after an explicit path, as (how it was chosen, folder), deduplicated."""
    found: list[tuple[str, Path]] = []
    for entry in os.environ.get("HARNESS_DATA_DIR", "").split(os.pathsep):
        if entry:
            found.append(("$HARNESS_DATA_DIR", Path(entry).expanduser()))
    found += [("./data", Path.cwd() / "data"), ("<repo>/data", REPO_ROOT / "data"),
              ("<repo>/../shared/data", REPO_ROOT.parent / "shared" / "data")]
    unique, seen = [], set()
    for how, folder in found:
        key = os.path.abspath(folder)
        if key not in seen:
            seen.add(key)
            unique.append((how, folder))
    return unique


def _is_source(folder: Path, candidate: str) -> bool:
    """A candidate inside a folder counts when it is a file, or a folder with the right files."""
    target = folder / candidate
    if candidate in ("mnist", "fashion-mnist"):
        return target.is_dir() and bool(idx_files_present(target))
    if candidate == CIFAR_FOLDER:
        return (target / "test_batch").is_file() or (target / "data_batch_1").is_file()
    return target.is_file() if "." in candidate else target.is_dir()


def idx_files_present(folder: Path) -> list[Path]:
    """The IDX files (plain or .gz) of either split present in `folder`."""
    stems = [stem for pair in IDX_STEMS.values() for stem in pair]
    return [folder / f"{stem}{ext}" for stem in stems for ext in (".gz", "")
            if (folder / f"{stem}{ext}").is_file()]


def resolve_data_path(name: str, path: str | os.PathLike | None = None) -> Path | None:
    """The file or folder to read for dataset `name`; None for the embedded "digits".

    An explicit `path` that is a file is used as is; a folder is used as the dataset when it is
    one (IDX files, CIFAR batches, images), else searched like the data folders.
    """
    if name == "digits":
        if path is not None:
            raise HarnessError("dataset 'digits' is embedded in scikit-learn and takes no path")
        return None
    if name in ("folder", "zip"):
        if path is None:
            raise HarnessError(f"dataset '{name}' needs a path (the {name} that holds the images)")
        return _explicit(Path(path), name)
    if path is not None:
        return _explicit(Path(path), name)
    for _, folder in search_dirs():
        for candidate in CANDIDATES[name]:
            if _is_source(folder, candidate):
                return folder / candidate
    raise _missing(name, [folder for _, folder in search_dirs()])


def _explicit(path: Path, name: str) -> Path:
    path = path.expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder (the path given for dataset '{name}')")
    for candidate in CANDIDATES.get(name, ()):
        if _is_source(path, candidate):
            return path / candidate
    return path


def _missing(name: str, searched: list[Path]) -> DataError:
    wanted = " or ".join(f"{c}{'' if '.' in c else '/'}" for c in CANDIDATES[name])
    places = ", ".join(str(folder) for folder in searched)
    known = KNOWN_FILES.get(CANDIDATES[name][0])
    checksum = ""
    if known is not None:
        checksum = f"; expected sha256 {known.sha256[0]}"
        if known.md5:
            checksum += f" (md5 {known.md5})"
    return DataError(
        f"{wanted} not found for dataset '{name}'; searched: {places}. Get it (no download is "
        f"attempted): {GET_IT[name]}{checksum}. Put it in one of those folders, set "
        f"$HARNESS_DATA_DIR, or pass its path.")


@functools.lru_cache(maxsize=64)
def _sha256_cached(path: str, size_bytes: int, mtime_ns: int) -> str:
    """sha256 of a file; the cache key includes size and mtime, so a changed file is rehashed."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 hex digest of a file, computed at most once per process for unchanged files."""
    stat = os.stat(path)
    return _sha256_cached(os.path.abspath(path), stat.st_size, stat.st_mtime_ns)


def verify_known_file(path: Path) -> None:
    """Check a file whose name is in KNOWN_FILES against its published digest."""
    known = KNOWN_FILES.get(path.name)
    if known is None or not path.is_file():
        return
    actual = file_sha256(path)
    if actual in known.sha256:
        return
    expected = " or ".join(known.sha256)
    size = path.stat().st_size
    size_note = f" ({size:,} bytes; the published file has {known.size_bytes:,})" \
        if known.size_bytes and size != known.size_bytes else ""
    raise DataError(
        f"{path}: wrong checksum for {path.name}{size_note}: sha256 {actual}, expected {expected}. "
        f"The file is damaged or not the published one; replace it ({known.get_it}), or give a "
        f"file of your own another name.")
