"""`harness data prepare`: any source → EDM zip/folder, round-tripped through the reader."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.data import dataset_fingerprint, load_dataset
from harness.data.edm_format import edm_image_name
from tests.test_data_readers import edm_members, write_cifar_tarball, write_edm_folder, write_npz


def test_edm_image_names_put_1000_images_per_folder():
    assert [edm_image_name(i) for i in (0, 999, 1000, 123456)] == [
        "00000/img00000000.png", "00000/img00000999.png", "00001/img00001000.png",
        "00123/img00123456.png"]


def test_prepare_npz_to_zip_round_trips_pixels_and_labels(tmp_path, capsys):
    write_npz(tmp_path / "tiny.npz")
    dest = tmp_path / "out" / "mnist-28.zip"
    assert main(["data", "prepare", "mnist", "--source", str(tmp_path / "tiny.npz"),
                 "--dest", str(dest)]) == 0
    assert "wrote 20 images (1x28x28, 10 classes)" in capsys.readouterr().out
    original = load_dataset("mnist", path=tmp_path / "tiny.npz")
    prepared = load_dataset("zip", path=dest)
    assert torch.equal(prepared.images, original.images)
    assert torch.equal(prepared.labels, original.labels)
    with zipfile.ZipFile(dest) as archive:
        names = archive.namelist()
        meta = json.loads(archive.read("dataset.json"))
    assert names[0] == "00000/img00000000.png" and len(names) == 21
    assert meta["labels"][3] == ["00000/img00000003.png", 3]


def test_prepare_cifar_tarball_to_a_folder_at_another_split_round_trips(tmp_path):
    write_cifar_tarball(tmp_path / "c.tar.gz")
    dest = tmp_path / "cifar-test"
    assert main(["data", "prepare", "cifar10", "--source", str(tmp_path / "c.tar.gz"),
                 "--dest", str(dest), "--split", "test"]) == 0
    original = load_dataset("cifar10", path=tmp_path / "c.tar.gz", split="test")
    prepared = load_dataset("folder", path=dest)
    assert dataset_fingerprint(prepared) == dataset_fingerprint(original)


def test_prepare_with_resolution_pads_mnist_to_32(tmp_path):
    images, *_ = write_npz(tmp_path / "tiny.npz")
    dest = tmp_path / "m32.zip"
    assert main(["data", "prepare", "mnist", "--source", str(tmp_path / "tiny.npz"), "--dest",
                 str(dest), "--resolution", "32", "--max-images", "5"]) == 0
    prepared = load_dataset("zip", path=dest)
    assert prepared.images.shape == (5, 1, 32, 32)
    assert torch.equal(prepared.images[:, 0, 2:30, 2:30], torch.from_numpy(images[:5, ..., 0]))


def test_prepare_unlabelled_folder_writes_null_labels(tmp_path):
    images, _ = edm_members(n=4)
    write_edm_folder(tmp_path / "raw", images, None)
    dest = tmp_path / "u.zip"
    assert main(["data", "prepare", "folder", "--source", str(tmp_path / "raw"),
                 "--dest", str(dest)]) == 0
    with zipfile.ZipFile(dest) as archive:
        assert json.loads(archive.read("dataset.json")) == {"labels": None}
    ds = load_dataset("zip", path=dest, use_labels=False)
    expected = np.stack([images[n] for n in sorted(images)]).transpose(0, 3, 1, 2)
    assert torch.equal(ds.images, torch.from_numpy(expected))


def test_prepare_digits_needs_no_source(tmp_path):
    dest = tmp_path / "digits.zip"
    assert main(["data", "prepare", "digits", "--dest", str(dest), "--split", "test"]) == 0
    assert dataset_fingerprint(load_dataset("zip", path=dest)) == \
        dataset_fingerprint(load_dataset("digits", split="test"))


def test_prepare_errors_exit_2_and_name_the_file(tmp_path, capsys):
    missing = tmp_path / "nothere.npz"
    assert main(["data", "prepare", "mnist", "--source", str(missing), "--dest",
                 str(tmp_path / "x.zip")]) == 2
    assert f"harness data: error: {missing}: no such file" in capsys.readouterr().err
    write_npz(tmp_path / "tiny.npz")
    (tmp_path / "x.zip").write_bytes(b"old")
    args = ["data", "prepare", "mnist", "--source", str(tmp_path / "tiny.npz"), "--dest",
            str(tmp_path / "x.zip")]
    assert main(args) == 2
    assert f"{tmp_path / 'x.zip'}: already exists" in capsys.readouterr().err
    assert (tmp_path / "x.zip").read_bytes() == b"old"
    assert main(args + ["--overwrite"]) == 0
    assert len(load_dataset("zip", path=tmp_path / "x.zip")) == 20
    assert main(["data", "prepare", "minst", "--dest", str(tmp_path / "y.zip")]) == 2
    assert "did you mean 'mnist'" in capsys.readouterr().err


def test_prepare_help_lists_its_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "prepare", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in ("--source", "--dest", "--resolution", "--split", "--no-labels", "--overwrite"):
        assert option in out
