"""Readers of the distributed dataset formats. Each returns `RawImages` (numpy, NCHW uint8).

- scikit-learn digits (embedded, 8x8, values 0..16);
- MNIST-style npz (keys images/labels/test_images/test_labels as in shared/data, or Keras's
  x_train/y_train/x_test/y_test);
- IDX files (MNIST / Fashion-MNIST, gzip or plain, big-endian header, magic 2051 / 2049);
- the CIFAR-10 python tarball, read from the archive without extracting, or its extracted folder.

Every failure to read becomes a `DataError` that names the file.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import pickle
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.data.sources import CIFAR_FOLDER, IDX_STEMS
from harness.errors import DataError

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

DIGIT_NAMES = tuple(str(k) for k in range(10))
FASHION_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot")
DIGITS_TEST_SIZE = 297  # the last 297 of scikit-learn's 1797 digits are the test split

CIFAR_MEMBERS = {
    "train": tuple(f"data_batch_{k}" for k in range(1, 6)),
    "test": ("test_batch",),
}
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, zipfile.BadZipFile, tarfile.TarError,
               pickle.UnpicklingError, KeyError, IndexError, TypeError, AttributeError)


@dataclass
class RawImages:
    images: np.ndarray              # uint8 [N, C, H, W]
    labels: np.ndarray | None       # int64 [N]
    source: str                     # what was read, for records and messages
    class_names: tuple[str, ...] | None = None


# ---------------------------------------------------------------------------------------------
# scikit-learn digits

def read_digits(split: str) -> RawImages:
    """scikit-learn's 1797 8x8 digits; values v in 0..16 become uint8 floor(v*255/16 + 0.5).

    Split: the first 1500 images are "train", the last 297 "test" (no shuffling; the file's own
    order, so the split is the same everywhere).
    """
    table = _digits_table()
    images = np.floor(table[:, :64].reshape(-1, 1, 8, 8) * (255.0 / 16.0) + 0.5).astype(np.uint8)
    labels = table[:, 64].astype(np.int64)
    cut = len(images) - DIGITS_TEST_SIZE
    part = slice(None, cut) if split == "train" else slice(cut, None)
    return RawImages(images[part], labels[part], "scikit-learn digits (load_digits)", DIGIT_NAMES)


@functools.lru_cache(maxsize=1)
def _digits_table() -> np.ndarray:
    """[1797, 65]: 64 pixel values 0..16 and the class, as scikit-learn's load_digits reads them.

    Read straight from the CSV embedded in the scikit-learn wheel (0.2 s) instead of importing
    sklearn.datasets (1.7 s on the 2-core CI machine); falls back to load_digits if it moved.
    """
    spec = importlib.util.find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        csv = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            table = np.loadtxt(csv, delimiter=",")
            if table.shape == (1797, 65) and table.min() >= 0 and table[:, :64].max() <= 16:
                return table
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.concatenate([digits.data, digits.target[:, None]], axis=1)


# ---------------------------------------------------------------------------------------------
# npz (shared/data layout or Keras layout)

NPZ_KEYS = {
    "train": (("images", "labels"), ("x_train", "y_train")),
    "test": (("test_images", "test_labels"), ("x_test", "y_test")),
}


def read_npz(path: Path, split: str) -> RawImages:
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
            pair = next((p for p in NPZ_KEYS[split] if set(p) <= keys), None)
            if pair is None:
                wanted = " or ".join("/".join(p) for p in NPZ_KEYS[split])
                raise DataError(f"{path}: no {split} arrays; expected keys {wanted}, "
                                f"found {', '.join(sorted(keys)) or 'none'}")
            images, labels = archive[pair[0]], archive[pair[1]]
    except DataError:
        raise
    except READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read the npz archive ({exc}); the file is truncated "
                        f"or not an npz") from exc
    return RawImages(_nhwc_to_nchw(images, path, pair[0]), _check_labels(labels, len(images), path),
                     str(path))


def _nhwc_to_nchw(images: np.ndarray, path: Path, key: str) -> np.ndarray:
    if images.dtype != np.uint8:
        raise DataError(f"{path}: '{key}' has dtype {images.dtype}; expected uint8 pixels 0..255")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{path}: '{key}' has shape {images.shape}; expected [N, H, W] or "
                        f"[N, H, W, C] with C = 1 or 3")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def _check_labels(labels: np.ndarray, count: int, path: Path) -> np.ndarray:
    if labels.ndim != 1 or len(labels) != count or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: labels have shape {labels.shape} and dtype {labels.dtype}; "
                        f"expected {count} integer class labels")
    if count and labels.min() < 0:
        raise DataError(f"{path}: negative class label {labels.min()}")
    return labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# IDX (MNIST / Fashion-MNIST originals)

def read_idx_folder(folder: Path, split: str, class_names: tuple[str, ...] | None) -> RawImages:
    images_stem, labels_stem = IDX_STEMS[split]
    images_path, labels_path = _idx_file(folder, images_stem), _idx_file(folder, labels_stem)
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                        f"{len(labels)} labels")
    return RawImages(np.ascontiguousarray(images[:, None]), _check_labels(labels, len(labels),
                     labels_path), str(images_path), class_names)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder / (stem + '.gz')} not found (nor {stem} unpacked) in the IDX "
                    f"folder {folder}")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX array: big-endian int32 magic, one big-endian int32 per dimension, then uint8 data."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as stream:
            data = stream.read()
    except READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read ({exc}); the file is truncated or damaged") from exc
    ndim = magic & 0xFF
    header_bytes = 4 * (1 + ndim)
    found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
    if found != magic:
        raise DataError(f"{path}: IDX magic number {found}, expected {magic} "
                        f"({'images' if magic == IDX_IMAGES_MAGIC else 'labels'} file)")
    if len(data) < header_bytes:
        raise DataError(f"{path}: truncated IDX header ({len(data)} bytes)")
    dims = tuple(int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim))
    expected = int(np.prod(dims))
    if len(data) - header_bytes != expected:
        raise DataError(f"{path}: holds {len(data) - header_bytes} data bytes, but its header "
                        f"says {dims} = {expected}; the file is truncated or damaged")
    return np.frombuffer(data, dtype=np.uint8, offset=header_bytes).reshape(dims).copy()


# ---------------------------------------------------------------------------------------------
# CIFAR-10 python version (pickled batches, inside the tarball or extracted)

class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a batch file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2; it only builds bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = module.replace("numpy.core.", "numpy._core.", 1)  # numpy 2 moved it
        return super().find_class(module, name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except READ_ERRORS as exc:
        raise DataError(f"{where}: cannot unpickle the batch ({exc})") from exc
    if not isinstance(batch, dict):
        raise DataError(f"{where}: expected a pickled dict, found {type(batch).__name__}")
    return batch


def _cifar_batch(batch: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", None)
        raise DataError(f"{where}: b'data' is {type(data).__name__} {shape}; expected uint8 "
                        f"[N, 3072]")
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (len(data),):
        raise DataError(f"{where}: {len(labels)} labels for {len(data)} images")
    # each row: 1024 red, 1024 green, 1024 blue values, each plane row-major 32x32
    return data.reshape(-1, 3, 32, 32), labels


def read_cifar_tarball(path: Path, split: str) -> RawImages:
    """The CIFAR-10 python tarball, read member by member without extracting."""
    wanted = {f"{CIFAR_FOLDER}/{m}": m for m in CIFAR_MEMBERS[split]}
    meta_name = f"{CIFAR_FOLDER}/batches.meta"
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:  # reading to the end also detects a truncated archive
                if member.name in wanted or member.name == meta_name:
                    found[member.name] = archive.extractfile(member).read()
    except READ_ERRORS as exc:
        raise DataError(f"{path}: cannot read the tar archive ({exc}); the file is truncated "
                        f"or damaged") from exc
    missing = [name for name in wanted if name not in found]
    if missing:
        raise DataError(f"{path}: member {missing[0]} not in the archive; expected the layout of "
                        f"cifar-10-python.tar.gz ({CIFAR_FOLDER}/data_batch_1..5, test_batch)")
    batches = [_cifar_batch(_unpickle(found[name], f"{path}:{name}"), f"{path}:{name}")
               for name in wanted]
    names = _cifar_names(found.get(meta_name), f"{path}:{meta_name}")
    return _join_batches(batches, str(path), names)


def read_cifar_folder(folder: Path, split: str) -> RawImages:
    """The extracted cifar-10-batches-py folder."""
    if (folder / CIFAR_FOLDER).is_dir():
        folder = folder / CIFAR_FOLDER
    batches = []
    for member in CIFAR_MEMBERS[split]:
        file = folder / member
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise DataError(f"{file}: cannot read the CIFAR-10 batch ({exc})") from exc
        batches.append(_cifar_batch(_unpickle(data, str(file)), str(file)))
    meta = folder / "batches.meta"
    names = _cifar_names(meta.read_bytes() if meta.is_file() else None, str(meta))
    return _join_batches(batches, str(folder), names)


def _cifar_names(meta: bytes | None, where: str) -> tuple[str, ...] | None:
    if meta is None:
        return None
    names = _unpickle(meta, where).get(b"label_names")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names) if names else None


def _join_batches(batches, source: str, names) -> RawImages:
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    if len(labels) and labels.min() < 0:
        raise DataError(f"{source}: negative class label {labels.min()}")
    return RawImages(np.ascontiguousarray(images), labels, source, names)
