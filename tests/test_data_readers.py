"""Dataset readers on small files in the real formats, written here; errors name the file."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from harness.data import dataset_fingerprint, load_dataset, resolve_data_path
from harness.data import sources
from harness.errors import DataError, SpecError

SHARED_DATA = sources.REPO_ROOT.parent / "shared" / "data"
CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]


# ---------------------------------------------------------------------------------------------
# writers of the real formats (also used by test_data_cli.py)

def write_cifar_tarball(path: Path, per_batch: int = 5, num_test: int = 5, seed: int = 0):
    """A tarball laid out like cifar-10-python.tar.gz: 5 train batches + test_batch + meta.

    Returns (train_data [N, 3072], train_labels, test_data, test_labels).
    """
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, (5 * per_batch, 3072), dtype=np.uint8)
    test = rng.integers(0, 256, (num_test, 3072), dtype=np.uint8)
    train_labels = [(3 * i + 1) % 10 for i in range(len(train))]
    test_labels = [(7 * i + 2) % 10 for i in range(len(test))]

    def batch(name, data, labels):  # Python 2 cPickle protocol 2, keys as bytes, like the original
        return pickle.dumps({b"batch_label": name.encode(), b"labels": labels, b"data": data,
                             b"filenames": [f"img_{i}.png".encode() for i in range(len(data))]},
                            protocol=2)

    members = {f"data_batch_{k + 1}": batch(f"training batch {k + 1} of 5",
                                             train[k * per_batch:(k + 1) * per_batch],
                                             train_labels[k * per_batch:(k + 1) * per_batch])
               for k in range(5)}
    members["test_batch"] = batch("testing batch 1 of 1", test, test_labels)
    members["batches.meta"] = pickle.dumps(
        {b"label_names": [n.encode() for n in CIFAR_NAMES], b"num_cases_per_batch": per_batch,
         b"num_vis": 3072}, protocol=2)
    members["readme.html"] = b"<html>CIFAR-10</html>"
    with tarfile.open(path, "w:gz") as archive:
        folder = tarfile.TarInfo("cifar-10-batches-py")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return train, np.array(train_labels), test, np.array(test_labels)


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as stream:
            stream.write(data)
    else:
        path.write_bytes(data)


def write_idx_folder(folder: Path, n_train=12, n_test=7, gz=True, seed=1):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    arrays = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images, 2051)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels, 2049)
        arrays[split] = (images, labels)
    return arrays


def write_npz(path: Path, n_train=20, n_test=6, seed=2, keras_keys=False):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n_train, 28, 28, 1), dtype=np.uint8)
    labels = (np.arange(n_train) % 10).astype(np.uint8)
    test_images = rng.integers(0, 256, (n_test, 28, 28, 1), dtype=np.uint8)
    test_labels = (np.arange(n_test) * 3 % 10).astype(np.uint8)
    if keras_keys:
        np.savez_compressed(path, x_train=images[..., 0], y_train=labels,
                            x_test=test_images[..., 0], y_test=test_labels)
    else:
        np.savez_compressed(path, images=images, labels=labels, test_images=test_images,
                            test_labels=test_labels)
    return images, labels, test_images, test_labels


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format="png")
    return buffer.getvalue()


def edm_members(n=7, size=16, channels=3, seed=3):
    """{relative name: HWC/HW uint8 array} in EDM's layout, and the labels by name."""
    rng = np.random.default_rng(seed)
    shape = (size, size, 3) if channels == 3 else (size, size)
    images = {f"{i // 3:05d}/img{i:08d}.png": rng.integers(0, 256, shape, dtype=np.uint8)
              for i in range(n)}
    labels = {name: (5 * i) % 4 for i, name in enumerate(images)}
    return images, labels


def labels_json(labels: dict) -> str:
    return json.dumps({"labels": [[name, label] for name, label in labels.items()]})


def write_edm_zip(path: Path, images: dict, labels: dict | None):
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in images.items():
            archive.writestr(name, png_bytes(array))
        if labels is not None:
            archive.writestr("dataset.json", labels_json(labels))


def write_edm_folder(folder: Path, images: dict, labels: dict | None):
    for name, array in images.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png_bytes(array))
    if labels is not None:
        (folder / "dataset.json").write_text(labels_json(labels))


def to_nchw(array: np.ndarray) -> np.ndarray:
    return array[:, None] if array.ndim == 3 else array.transpose(0, 3, 1, 2)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Search locations that hold nothing: $HARNESS_DATA_DIR and ./data point into tmp_path."""
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ---------------------------------------------------------------------------------------------
# CIFAR-10 tarball

def test_cifar_tarball_reads_the_five_train_batches_in_order_with_cifar_pixel_layout(tmp_path):
    path = tmp_path / "cifar10-tiny.tar.gz"
    train, train_labels, _, _ = write_cifar_tarball(path)
    ds = load_dataset("cifar10", path=path)
    assert ds.images.shape == (25, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == train_labels.tolist()
    assert (ds.resolution, ds.channels, ds.num_classes) == (32, 3, 10)
    assert ds.class_names == tuple(CIFAR_NAMES)
    # row layout: 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane
    i, c, y, x = 13, 2, 5, 30
    assert ds.images[i, c, y, x] == train[i, c * 1024 + y * 32 + x]
    assert torch.equal(ds.images.reshape(25, -1), torch.from_numpy(train))


def test_cifar_tarball_test_split_is_test_batch_and_nothing_is_extracted(tmp_path):
    path = tmp_path / "cifar10-tiny.tar.gz"
    _, _, test, test_labels = write_cifar_tarball(path)
    ds = load_dataset("cifar10", path=path, split="test")
    assert len(ds) == 5 and ds.labels.tolist() == test_labels.tolist()
    assert torch.equal(ds.images.reshape(5, -1), torch.from_numpy(test))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar10-tiny.tar.gz"]


def test_cifar_extracted_folder_reads_the_same_as_the_tarball(tmp_path):
    path = tmp_path / "c.tar.gz"
    write_cifar_tarball(path)
    with tarfile.open(path) as archive:  # extract by hand: extractall's filter= needs 3.11.4
        for member in archive.getmembers():
            target = tmp_path / "x" / member.name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.write_bytes(archive.extractfile(member).read())
    from_tar = load_dataset("cifar10", path=path)
    from_folder = load_dataset("cifar10", path=tmp_path / "x")  # holds cifar-10-batches-py/
    assert dataset_fingerprint(from_tar) == dataset_fingerprint(from_folder)


def test_truncated_cifar_tarball_is_a_data_error_naming_the_file(tmp_path):
    path = tmp_path / "cifar10-cut.tar.gz"
    write_cifar_tarball(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cifar10-cut.tar.gz.*truncated"):
        load_dataset("cifar10", path=path)


def test_cifar_tarball_refuses_pickles_that_would_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for name in [f"data_batch_{k}" for k in range(1, 6)]:
            data = pickle.dumps({b"data": Evil()}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    with pytest.raises(DataError, match=r"evil.tar.gz:cifar-10-batches-py/data_batch_1.*refusing"):
        load_dataset("cifar10", path=path)


# ---------------------------------------------------------------------------------------------
# IDX and npz (MNIST / Fashion-MNIST)

@pytest.mark.parametrize("gz", [True, False])
def test_idx_pair_reader_reads_images_and_labels_of_both_splits(tmp_path, gz):
    arrays = write_idx_folder(tmp_path / "mnist", gz=gz)
    for split in ("train", "test"):
        ds = load_dataset("mnist", path=tmp_path / "mnist", split=split)
        images, labels = arrays[split]
        assert ds.images.shape == (len(images), 1, 28, 28) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert ds.labels.tolist() == labels.tolist() and ds.num_classes == 10


def test_idx_folder_is_found_as_mnist_subfolder_of_a_data_dir(isolated):
    write_idx_folder(isolated / "env" / "mnist")
    assert resolve_data_path("mnist") == isolated / "env" / "mnist"
    assert len(load_dataset("mnist")) == 12


def test_idx_wrong_magic_and_truncation_name_the_file(tmp_path):
    write_idx_folder(tmp_path / "m")
    labels = tmp_path / "m" / "train-labels-idx1-ubyte.gz"
    write_idx(labels, np.zeros((12, 2), np.uint8), 2051)  # an images header in the labels file
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: IDX magic number 2051, "
                                        "expected 2049"):
        load_dataset("mnist", path=tmp_path / "m")
    images = tmp_path / "m" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(images.read_bytes())
    images.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: holds 5388 data bytes"):
        load_dataset("mnist", path=tmp_path / "m", split="test")
    images.write_bytes(gzip.compress(raw)[:200])  # a cut gzip stream
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: cannot read"):
        load_dataset("mnist", path=tmp_path / "m", split="test")


@pytest.mark.parametrize("keras_keys", [False, True])
def test_npz_reader_reads_shared_data_and_keras_layouts(tmp_path, keras_keys):
    path = tmp_path / "tiny.npz"
    images, labels, test_images, test_labels = write_npz(path, keras_keys=keras_keys)
    ds = load_dataset("fashion-mnist", path=path)
    assert ds.images.shape == (20, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.equal(ds.images, torch.from_numpy(to_nchw(images[..., 0])))
    assert ds.labels.tolist() == labels.tolist() and ds.class_names[9] == "Ankle boot"
    test = load_dataset("fashion-mnist", path=path, split="test")
    assert test.labels.tolist() == test_labels.tolist() and len(test) == 6


def test_mnist_resolution_32_zero_pads_two_pixels_on_each_side(tmp_path):
    path = tmp_path / "tiny.npz"
    images, *_ = write_npz(path)
    ds = load_dataset("mnist", path=path, resolution=32)
    assert ds.images.shape == (20, 1, 32, 32)
    assert torch.equal(ds.images[:, 0, 2:30, 2:30], torch.from_numpy(images[..., 0]))
    border = ds.images.clone()
    border[:, :, 2:30, 2:30] = 0
    assert border.sum() == 0


def test_max_images_and_use_labels_false(tmp_path):
    path = tmp_path / "tiny.npz"
    images, *_ = write_npz(path)
    ds = load_dataset("mnist", path=path, max_images=4, use_labels=False)
    assert len(ds) == 4 and ds.labels is None and ds.num_classes == 0
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images[:4, ..., 0]))


def test_npz_without_the_split_keys_names_file_and_keys(tmp_path):
    path = tmp_path / "odd.npz"
    np.savez(path, pixels=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError, match="odd.npz: no train arrays; expected keys images/labels or "
                                        "x_train/y_train, found pixels"):
        load_dataset("mnist", path=path)


def test_real_shared_mnist_has_the_published_class_counts():
    if not (SHARED_DATA / "mnist.npz").is_file():
        pytest.skip(f"{SHARED_DATA / 'mnist.npz'} not present")
    train = load_dataset("mnist", path=SHARED_DATA / "mnist.npz")  # sha256 is checked on load
    assert train.images.shape == (60000, 1, 28, 28)
    assert train.labels.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265,
                                                5851, 5949]
    test = load_dataset("mnist", path=SHARED_DATA / "mnist.npz", split="test")
    assert test.labels.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974,
                                               1009]
    mean = train.images.double().mean().item() / 255
    assert abs(mean - 0.13066) < 5e-5  # shared/data/README.md


# ---------------------------------------------------------------------------------------------
# digits

def test_digits_are_the_sklearn_digits_rescaled_with_a_fixed_split():
    from sklearn.datasets import load_digits

    reference = load_digits()
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert (len(train), len(test)) == (1500, 297)
    assert train.images.shape == (1500, 1, 8, 8) and train.images.dtype == torch.uint8
    expected = np.floor(reference.images * 255 / 16 + 0.5).astype(np.uint8)
    assert torch.equal(torch.cat([train.images, test.images])[:, 0], torch.from_numpy(expected))
    assert torch.cat([train.labels, test.labels]).tolist() == reference.target.tolist()
    assert test.labels.bincount().tolist() == [27, 31, 27, 30, 33, 30, 30, 30, 28, 31]
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


# ---------------------------------------------------------------------------------------------
# EDM zip / folder

def test_edm_zip_with_labels_reads_sorted_images_and_their_labels(tmp_path):
    images, labels = edm_members()
    write_edm_zip(tmp_path / "d.zip", images, labels)
    ds = load_dataset("zip", path=tmp_path / "d.zip")
    names = sorted(images)
    assert ds.images.shape == (7, 3, 16, 16) and ds.images.dtype == torch.uint8
    expected = np.stack([images[n] for n in names]).transpose(0, 3, 1, 2)
    assert torch.equal(ds.images, torch.from_numpy(expected))
    assert ds.labels.tolist() == [labels[n] for n in names] and ds.num_classes == 4


def test_edm_folder_of_greyscale_pngs(tmp_path):
    images, labels = edm_members(channels=1)
    write_edm_folder(tmp_path / "f", images, labels)
    ds = load_dataset("folder", path=tmp_path / "f")
    assert ds.images.shape == (7, 1, 16, 16)
    expected = np.stack([images[n] for n in sorted(images)])
    assert torch.equal(ds.images[:, 0], torch.from_numpy(expected))
    assert ds.labels.tolist() == [labels[n] for n in sorted(images)]


def test_zip_without_dataset_json_errors_when_labels_are_requested(tmp_path):
    images, _ = edm_members()
    write_edm_zip(tmp_path / "nolabels.zip", images, None)
    with pytest.raises(DataError, match="nolabels.zip: no dataset.json.*labels were requested"):
        load_dataset("zip", path=tmp_path / "nolabels.zip")
    ds = load_dataset("zip", path=tmp_path / "nolabels.zip", use_labels=False)
    assert ds.labels is None and ds.num_classes == 0 and len(ds) == 7


def test_dataset_json_missing_an_image_names_that_image(tmp_path):
    images, labels = edm_members()
    del labels["00001/img00000004.png"]
    write_edm_zip(tmp_path / "d.zip", images, labels)
    with pytest.raises(DataError, match=r"d.zip: dataset.json: no label for 00001/img00000004.png"):
        load_dataset("zip", path=tmp_path / "d.zip")


def test_images_of_mixed_sizes_name_the_odd_file_unless_a_resolution_is_given(tmp_path):
    images, labels = edm_members(channels=1)
    images["00001/img00000005.png"] = np.zeros((20, 16), np.uint8)
    write_edm_folder(tmp_path / "f", images, labels)
    with pytest.raises(DataError, match="00001/img00000005.png is 20x16 .HxW. but "
                                        "00000/img00000000.png is 16x16"):
        load_dataset("folder", path=tmp_path / "f")
    assert load_dataset("folder", path=tmp_path / "f", resolution=8).images.shape == (7, 1, 8, 8)


def test_resolution_centre_crops_then_resizes(tmp_path):
    image = np.zeros((16, 24, 3), np.uint8)
    image[:, 4:20] = 200                                    # the centred 16x16 square
    write_edm_folder(tmp_path / "f", {"a.png": image, "b.png": image}, None)
    same = load_dataset("folder", path=tmp_path / "f", resolution=16, use_labels=False)
    assert torch.all(same.images == 200)
    smaller = load_dataset("folder", path=tmp_path / "f", resolution=8, use_labels=False)
    assert smaller.images.shape == (2, 3, 8, 8) and torch.all(smaller.images == 200)


# ---------------------------------------------------------------------------------------------
# locations, checksums, fingerprints

def test_missing_dataset_names_the_file_the_places_searched_and_the_checksum(isolated):
    with pytest.raises(DataError) as error:
        load_dataset("cifar10")
    message = str(error.value)
    for part in ("cifar-10-python.tar.gz", str(isolated / "env"), str(isolated / "data"),
                 "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                 "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
                 "c58f30108f718f92721af3b95e74349a"):
        assert part in message


def test_explicit_missing_path_is_named(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope.npz'}: no such file"):
        load_dataset("mnist", path=tmp_path / "nope.npz")


def test_wrong_checksum_names_file_expected_and_actual_digest(tmp_path):
    path = tmp_path / "mnist.npz"
    write_npz(path)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DataError) as error:
        load_dataset("mnist", path=path)
    message = str(error.value)
    assert str(path) in message and "wrong checksum" in message and actual in message
    assert "d9e6bb4ae1c9b32635733aff7838c1466781213a73610cead6fdd784be804d8e" in message


def test_search_order_env_dir_then_working_dir_data_then_shared(isolated, monkeypatch):
    (isolated / "data").mkdir()
    write_npz(isolated / "data" / "mnist.npz")
    assert resolve_data_path("mnist") == isolated / "data" / "mnist.npz"
    (isolated / "env").mkdir()
    write_npz(isolated / "env" / "mnist.npz")
    assert resolve_data_path("mnist") == isolated / "env" / "mnist.npz"
    assert resolve_data_path("mnist", isolated / "data") == isolated / "data" / "mnist.npz"
    monkeypatch.delenv("HARNESS_DATA_DIR")
    (isolated / "data" / "mnist.npz").unlink()
    if (SHARED_DATA / "mnist.npz").is_file():
        assert resolve_data_path("mnist") == SHARED_DATA / "mnist.npz"


def test_file_hash_is_computed_once_per_unchanged_file(tmp_path):
    path = tmp_path / "blob"
    path.write_bytes(b"a" * 1000)
    sources._sha256_cached.cache_clear()
    first = sources.file_sha256(path)
    assert sources.file_sha256(path) == first == hashlib.sha256(b"a" * 1000).hexdigest()
    assert sources._sha256_cached.cache_info().hits == 1
    path.write_bytes(b"b" * 1001)  # new size: hashed again
    assert sources.file_sha256(path) == hashlib.sha256(b"b" * 1001).hexdigest()


def test_fingerprint_depends_on_content_not_on_the_file(tmp_path):
    write_npz(tmp_path / "a.npz")
    write_npz(tmp_path / "b.npz", keras_keys=True)  # same arrays, other keys and file
    a = load_dataset("mnist", path=tmp_path / "a.npz")
    b = load_dataset("mnist", path=tmp_path / "b.npz")
    assert dataset_fingerprint(a) == dataset_fingerprint(b)
    a.labels[0] += 1
    assert dataset_fingerprint(a) != dataset_fingerprint(b)
    assert dataset_fingerprint(load_dataset("mnist", path=tmp_path / "a.npz", use_labels=False)) \
        != dataset_fingerprint(b)


def test_unknown_name_and_split_suggest_valid_values():
    with pytest.raises(SpecError, match="unknown dataset 'minst'; did you mean 'mnist'"):
        load_dataset("minst")
    with pytest.raises(SpecError, match="'tset' is not a split; did you mean 'test'"):
        load_dataset("digits", split="tset")
