"""EDM's dataset format: a zip file or folder of images plus an optional ``dataset.json``.

Layout written by `write_edm` (and by EDM's dataset_tool.py, the format of FFHQ-64 and AFHQv2-64):

    00000/img00000000.png ... 00000/img00000999.png, 00001/img00001000.png, ...
    dataset.json   {"labels": [["00000/img00000000.png", 6], ...]}   or {"labels": null}

Images are read in sorted order of their relative paths ('/'-separated). Labels are integer
class indices.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from harness.data.readers import READ_ERRORS, RawImages
from harness.data.resize import resize_square
from harness.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
LABELS_FILE = "dataset.json"
_PARALLEL_DECODE_MIN = 512  # below this, a thread pool costs more than it saves


class _Archive:
    """Uniform read access to a zip file or a folder: sorted member names and their bytes."""

    def __init__(self, path: Path):
        self.path = path
        self._zip = None
        try:
            if path.is_dir():
                self.names = sorted(p.relative_to(path).as_posix()
                                    for p in path.rglob("*") if p.is_file())
            else:
                self._zip = zipfile.ZipFile(path)
                self.names = sorted(n for n in self._zip.namelist() if not n.endswith("/"))
        except READ_ERRORS as exc:
            raise DataError(f"{path}: cannot open the dataset ({exc}); expected a zip file or "
                            f"a folder of images") from exc

    def read(self, name: str) -> bytes:
        try:
            if self._zip is not None:
                return self._zip.read(name)
            return (self.path / name).read_bytes()
        except READ_ERRORS as exc:
            raise DataError(f"{self.path}: cannot read {name} ({exc}); the file is truncated "
                            f"or damaged") from exc

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()


def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return (name.lower().endswith(IMAGE_SUFFIXES) and not base.startswith(".")
            and not name.startswith("__MACOSX/"))


def read_edm(path: Path, *, labels_mode: str, resolution: int | None,
             max_images: int | None) -> RawImages:
    """Read an EDM zip or folder. labels_mode: "require" | "optional" | "ignore"."""
    archive = _Archive(path)
    try:
        names = [n for n in archive.names if _is_image(n)]
        if not names:
            raise DataError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
        labels = _read_labels(archive, names, labels_mode)
        if max_images is not None:
            names, labels = names[:max_images], None if labels is None else labels[:max_images]
        blobs = [archive.read(n) for n in names]
    finally:
        archive.close()
    decode = _decoder(path, resolution)
    if len(blobs) >= _PARALLEL_DECODE_MIN:
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            arrays = list(pool.map(decode, names, blobs))
    else:
        arrays = [decode(n, b) for n, b in zip(names, blobs)]
    _check_uniform(path, names, arrays)
    return RawImages(np.stack(arrays), labels, str(path))


def _decoder(path: Path, resolution: int | None) -> Callable[[str, bytes], np.ndarray]:
    def decode(name: str, blob: bytes) -> np.ndarray:
        image = decode_image(blob, f"{path}: {name}")
        if resolution is not None:
            image = resize_square(torch.from_numpy(image)[None], resolution)[0].numpy()
        return image
    return decode


def decode_image(blob: bytes, where: str) -> np.ndarray:
    """One image file → uint8 [C, H, W] with C = 1 (greyscale) or 3 (colour; alpha dropped)."""
    try:
        with PIL.Image.open(io.BytesIO(blob)) as image:
            image.load()
            mode = image.mode
            if mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                raise DataError(f"{where}: {mode} images ({'16-bit' if 'I' in mode else 'float'}) "
                                f"are not supported; convert to 8-bit")
            if mode not in ("L", "RGB"):
                image = image.convert("L" if mode in ("1", "LA") else "RGB")
            array = np.array(image, dtype=np.uint8)  # a writable copy
    except DataError:
        raise
    except (READ_ERRORS + (PIL.UnidentifiedImageError,)) as exc:
        raise DataError(f"{where}: cannot decode the image ({exc})") from exc
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def _check_uniform(path: Path, names: list[str], arrays: list[np.ndarray]) -> None:
    first = arrays[0].shape
    for name, array in zip(names, arrays):
        if array.shape[0] != first[0]:
            raise DataError(f"{path}: {name} has {array.shape[0]} channel(s) but {names[0]} has "
                            f"{first[0]}; all images must be greyscale or all colour")
        if array.shape != first:
            raise DataError(
                f"{path}: {name} is {array.shape[1]}x{array.shape[2]} (HxW) but {names[0]} is "
                f"{first[1]}x{first[2]}; images of mixed sizes need a resolution to resize each")
    if first[1] != first[2]:
        raise DataError(f"{path}: images are {first[1]}x{first[2]} (HxW), not square; pass a "
                        f"resolution to centre-crop and resize them")


def _read_labels(archive: _Archive, names: list[str], mode: str) -> np.ndarray | None:
    if mode == "ignore":
        return None
    where = f"{archive.path}: {LABELS_FILE}"
    if LABELS_FILE not in archive.names:
        if mode == "require":
            raise DataError(f"{archive.path}: no {LABELS_FILE}, so no class labels, but labels "
                            f"were requested; use use_labels=False for an unconditional dataset")
        return None
    try:
        entries = json.loads(archive.read(LABELS_FILE)).get("labels")
    except (ValueError, AttributeError) as exc:
        raise DataError(f"{where}: not a JSON object with a 'labels' list ({exc})") from exc
    if entries is None:
        if mode == "require":
            raise DataError(f"{where}: \"labels\" is null, but labels were requested; use "
                            f"use_labels=False for an unconditional dataset")
        return None
    return _labels_in_order(entries, names, where)


def _labels_in_order(entries, names: list[str], where: str) -> np.ndarray:
    table: dict[str, int] = {}
    for entry in entries if isinstance(entries, list) else [entries]:
        ok = isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str) \
            and isinstance(entry[1], int) and not isinstance(entry[1], bool) and entry[1] >= 0
        if not ok:
            raise DataError(f"{where}: bad entry {entry!r}; expected [file name, class index >= 0]")
        table[entry[0].replace("\\", "/")] = entry[1]
    unlabelled = [n for n in names if n not in table]
    if unlabelled:
        raise DataError(f"{where}: no label for {unlabelled[0]} ({len(unlabelled)} images "
                        f"without labels)")
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise DataError(f"{where}: labels for {len(unknown)} files that are not images of the "
                        f"dataset, e.g. {unknown[0]}")
    return np.asarray([table[n] for n in names], dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# writing

def edm_image_name(index: int) -> str:
    """EDM's name for image `index`: 1000 images per folder, 00000/img00000000.png."""
    digits = f"{index:08d}"
    return f"{digits[:5]}/img{digits}.png"


def encode_png(image: np.ndarray) -> bytes:
    """uint8 [C, H, W] (C = 1 or 3) → PNG bytes (compression level 1: fast to read and write)."""
    array = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def write_edm(dest: Path, images: np.ndarray, labels: np.ndarray | None, *,
              overwrite: bool = False) -> Path:
    """Write images [N, C, H, W] uint8 (+ labels) as an EDM zip (dest ends in .zip) or folder.

    The result appears atomically: it is written under a temporary name and renamed at the end.
    """
    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise DataError(f"{dest}: already exists; remove it or pass --overwrite")
    dest.parent.mkdir(parents=True, exist_ok=True)
    names = [edm_image_name(i) for i in range(len(images))]
    meta = {"labels": None if labels is None else
            [[name, int(label)] for name, label in zip(names, labels)]}
    meta_bytes = json.dumps(meta).encode()
    if dest.suffix.lower() == ".zip":
        _write_zip(dest, names, images, meta_bytes)
    else:
        _write_folder(dest, names, images, meta_bytes)
    return dest


def _write_zip(dest: Path, names, images, meta_bytes: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as stream, zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED) as z:
            for name, image in zip(names, images):
                z.writestr(name, encode_png(image))
            z.writestr(LABELS_FILE, meta_bytes)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp made it private; give it normal permissions
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_folder(dest: Path, names, images, meta_bytes: bytes) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name, image in zip(names, images):
            (tmp / name).parent.mkdir(exist_ok=True)
            (tmp / name).write_bytes(encode_png(image))
        (tmp / LABELS_FILE).write_bytes(meta_bytes)
        os.chmod(tmp, 0o777 & ~_umask())
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
