"""The committed fd-<dataset> classifiers: checksums, sizes, test accuracies, metric names."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from harness.data import load_dataset
from harness.errors import HarnessError
from harness.evaluate.classifier import (
    WEIGHTS_DIR,
    ClassifierNet,
    classifier_datasets,
    classifier_input,
    load_classifier,
    load_classifier_net,
    read_manifest,
)
from harness.evaluate.inception import file_sha256
from harness.evaluate.metrics import make_extractor, resolve_metric

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


# Accuracy each committed classifier must reach on its dataset's full test split.
REQUIRED_ACCURACY = {"mnist": 0.98, "fashion-mnist": 0.88, "digits": 0.95}


def test_every_offline_dataset_has_a_classifier_with_matching_sha256_and_a_small_file():
    manifest = read_manifest()
    assert sorted(manifest["classifiers"]) == sorted(REQUIRED_ACCURACY) == classifier_datasets()
    for name, entry in manifest["classifiers"].items():
        path = WEIGHTS_DIR / entry["file"]
        assert file_sha256(path) == entry["sha256"], name
        assert path.stat().st_size == entry["bytes"] < 500_000, name


@torch.no_grad()
def _test_accuracy(dataset: str) -> tuple[float, float]:
    net, entry = load_classifier_net(dataset)
    test = load_dataset(dataset, split="test")
    correct = 0
    for start in range(0, len(test), 2000):
        x = classifier_input(test.images[start:start + 2000], entry["arch"]["resolution"])
        correct += int((net(x).argmax(1) == test.labels[start:start + 2000]).sum())
    return correct / len(test), entry["test_accuracy"]


@pytest.mark.parametrize("dataset", sorted(REQUIRED_ACCURACY))
def test_committed_classifier_reaches_its_test_accuracy_on_the_full_test_split(dataset):
    accuracy, recorded = _test_accuracy(dataset)
    assert accuracy >= REQUIRED_ACCURACY[dataset]
    assert accuracy == pytest.approx(recorded, abs=2e-4)  # the manifest states what it reaches


def test_features_are_the_penultimate_layer_and_batch_size_does_not_change_them_much():
    extractor = load_classifier("digits", batch_size=7)
    assert (extractor.name, extractor.metric, extractor.dim) == ("classifier-digits", "fd-digits", 128)
    images = load_dataset("digits", split="test").images[:20]
    phi = extractor.features(images)
    net, _ = load_classifier_net("digits")
    with torch.no_grad():
        direct = net.features(classifier_input(images, 8)).double().numpy()
    assert phi.shape == (20, 128) and phi.dtype == np.float64 and (phi >= 0).all()  # after ReLU
    np.testing.assert_allclose(phi, direct, rtol=1e-5, atol=1e-5)


def test_padded_images_are_cropped_back_to_the_classifier_resolution():
    native = load_dataset("mnist", split="test", max_images=4).images
    padded = load_dataset("mnist", split="test", max_images=4, resolution=32).images
    assert padded.shape[-1] == 32
    assert torch.equal(classifier_input(padded, 28), classifier_input(native, 28))


def test_changed_weights_are_refused_by_the_manifest_checksum(tmp_path):
    shutil.copytree(WEIGHTS_DIR, tmp_path / "weights")
    path = tmp_path / "weights" / "classifier-digits.pt"
    state = torch.load(path, weights_only=True)
    state["head.bias"] = state["head.bias"] + 1.0
    torch.save(state, path)
    with pytest.raises(HarnessError, match="sha256"):
        load_classifier("digits", weights_dir=tmp_path / "weights")


def test_unknown_dataset_suggests_the_nearest_classifier():
    with pytest.raises(HarnessError, match="did you mean 'mnist'"):
        load_classifier("mnits")


def test_metric_names_never_call_the_classifier_distance_fid():
    assert resolve_metric("auto", "mnist") == "fd-mnist"
    assert resolve_metric(None, "digits") == "fd-digits"
    assert resolve_metric("auto", "cifar10") == "fid"
    assert make_extractor("fd-fashion-mnist").metric == "fd-fashion-mnist"
    with pytest.raises(HarnessError, match="did you mean 'fd-digits'"):
        resolve_metric("fd-digit", "digits")


def test_the_manifest_records_the_recipe_and_the_data_it_was_trained_on():
    entry = read_manifest()["classifiers"]["mnist"]
    assert entry["recipe"]["seed"] == 20240601 and entry["train_images"] == 60000
    train = load_dataset("mnist", split="train", use_labels=True)
    from harness.data import dataset_fingerprint

    assert entry["data_fingerprint"]["train"] == dataset_fingerprint(train)
    net = ClassifierNet(**{k: v for k, v in entry["arch"].items() if k != "widths"},
                        widths=tuple(entry["arch"]["widths"]))
    assert sum(p.numel() for p in net.parameters()) == entry["parameters"]
    assert json.loads(json.dumps(entry)) == entry
