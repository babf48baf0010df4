"""Reference statistics: the content-hash cache, the real-versus-real floor, sensitivity to noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data import load_dataset, to_float, to_uint8
from harness.errors import DataError
from harness.evaluate.classifier import load_classifier
from harness.evaluate.metrics import score_features
from harness.evaluate.reference import (
    cache_root,
    dataset_reference,
    file_reference,
    reference_key,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


@pytest.fixture(scope="module")
def digits_extractor():
    return load_classifier("digits")


@pytest.fixture(scope="module")
def digits_reference(tmp_path_factory, digits_extractor):
    return dataset_reference("digits", digits_extractor,
                             cache_dir=tmp_path_factory.mktemp("cache"))


def test_train_split_against_test_split_equals_the_recorded_floor(digits_reference,
                                                                  digits_extractor):
    test = load_dataset("digits", split="test", use_labels=False)
    score = score_features(digits_extractor.features(test.images), digits_reference)
    assert score.value == digits_reference.floor
    assert score.kid == pytest.approx(digits_reference.floor_kid, rel=1e-12)  # thread sums
    assert digits_reference.floor_num_images == 297 and digits_reference.floor > 0
    fields = digits_reference.record_fields()
    assert fields["reference"] == "digits/train" and fields["floor"] == digits_reference.floor


def test_gaussian_noise_of_increasing_strength_increases_the_fd_monotonically(digits_reference,
                                                                            digits_extractor):
    test = load_dataset("digits", split="test", use_labels=False).images
    values = []
    noise = torch.randn(test.shape, generator=torch.Generator().manual_seed(0))
    for strength in (0.0, 0.3, 0.5, 0.8):  # noise std in units of the [-1, 1] pixel range
        noisy = to_uint8(to_float(test) + strength * noise)
        score = score_features(digits_extractor.features(noisy), digits_reference, with_kid=False)
        values.append(score.value)
    # (Below ~0.2 the 17 grey levels of digits hide the noise: the value stays at the floor.)
    assert values[0] == digits_reference.floor
    assert values[0] < values[1] < values[2] < values[3]


def test_reference_statistics_are_cached_by_content_and_reloaded(tmp_path, digits_extractor):
    first = dataset_reference("digits", digits_extractor, cache_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / "refs").iterdir())
    assert len(files) == 3 and any(first.key in f and f.startswith("digits-train") for f in files)
    assert any(f.startswith("floor-") for f in files)

    class Refusing:  # same identity as the extractor, but it may not compute anything
        name, metric, dim, sha256 = (digits_extractor.name, digits_extractor.metric,
                                     digits_extractor.dim, digits_extractor.sha256)

        def features(self, images):
            raise AssertionError("a cache hit must not extract features")

    second = dataset_reference("digits", Refusing(), cache_dir=tmp_path)
    assert np.array_equal(second.stats.mu, first.stats.mu)
    assert np.array_equal(second.stats.sigma, first.stats.sigma)
    assert second.floor == first.floor and second.key == first.key


def test_the_cache_key_changes_with_the_data_and_with_the_extractor_weights(digits_extractor):
    key = reference_key("a" * 64, digits_extractor)
    assert len(key) == 16 and key == reference_key("a" * 64, digits_extractor)
    assert key != reference_key("b" * 64, digits_extractor)

    class Retrained:
        name, sha256 = digits_extractor.name, "0" * 64

    assert key != reference_key("a" * 64, Retrained())


def test_cache_root_prefers_the_argument_then_harness_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("HARNESS_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "harness"


def test_a_published_npz_can_be_the_reference(tmp_path, digits_extractor, digits_reference):
    np.savez(tmp_path / "digits-8x8.npz", mu=digits_reference.stats.mu,
             sigma=digits_reference.stats.sigma)
    reference = file_reference(tmp_path / "digits-8x8.npz", digits_extractor)
    assert reference.name == "digits-8x8.npz" and reference.floor is None
    test = load_dataset("digits", split="test", use_labels=False)
    score = score_features(digits_extractor.features(test.images), reference)
    assert score.value == digits_reference.floor and score.kid is None
    np.savez(tmp_path / "wrong.npz", mu=np.zeros(3), sigma=np.eye(3))
    with pytest.raises(DataError, match="dimension 3"):
        file_reference(tmp_path / "wrong.npz", digits_extractor)


def test_mnist_floor_equals_train_against_test_and_another_dataset_is_far_above(tmp_path):
    # The first 5,000 images of each split keep this fast; the reference is computed the same way.
    extractor = load_classifier("mnist")
    reference = dataset_reference("mnist", extractor, cache_dir=tmp_path, max_images=5000)
    test = load_dataset("mnist", split="test", use_labels=False, max_images=5000)
    score = score_features(extractor.features(test.images), reference, with_kid=False)
    assert score.value == reference.floor and reference.floor_num_images == 5000
    fashion = load_dataset("fashion-mnist", split="test", use_labels=False, max_images=2000)
    far = score_features(extractor.features(fashion.images), reference, with_kid=False).value
    assert far > 20 * reference.floor
