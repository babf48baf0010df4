"""The FID Inception network: structure of the released weight file, loading, plumbing.

The real weights (95 MB) are not in the repository; these tests use random weights in the real
file's layout. With the real file present (HARNESS_INCEPTION), the last test checks it too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from harness.errors import HarnessError
from harness.evaluate.frechet import frechet_distance
from harness.evaluate.inception import (
    INCEPTION_FILENAME,
    INCEPTION_SHA256,
    INCEPTION_URL,
    FIDInception,
    _avg_pool_tf,
    find_inception_weights,
    inception_input,
    load_inception,
)
from harness.evaluate.stats import feature_stats

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.one_thread


# torchvision's inception_v3 (aux classifier, 1000 classes) has 27,161,264 parameters (its
# published num_params). The FID graph drops the aux head (conv0 128·768 + BN 2·128, conv1
# 768·128·25 + BN 2·768, fc 768·1000 + 1000 = 3,326,696) and has a 1008-way fc instead of 1000.
TORCHVISION_INCEPTION_V3 = 27_161_264
AUX_HEAD = (128 * 768 + 2 * 128) + (768 * 128 * 25 + 2 * 768) + (768 * 1000 + 1000)
FC_1000, FC_1008 = 2048 * 1000 + 1000, 2048 * 1008 + 1008
# The released pt_inception-2015-12-05-6726825d.pth has 566 state-dict entries: 94 conv+BN
# units × (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var,
# bn.num_batches_tracked) + fc.weight + fc.bias.
RELEASED_ENTRIES = 566


@pytest.fixture(scope="module")
def net() -> FIDInception:
    torch.manual_seed(0)
    return FIDInception().eval()


def test_parameter_count_is_torchvision_inception_without_aux_head_and_with_1008_classes(net):
    total = sum(p.numel() for p in net.parameters())
    assert total == TORCHVISION_INCEPTION_V3 - AUX_HEAD - FC_1000 + FC_1008 == 23_850_960
    pool3 = sum(p.numel() for name, p in net.named_parameters() if not name.startswith("fc."))
    assert pool3 == 21_785_568


def test_state_dict_has_the_released_files_layout(net):
    state = net.state_dict()
    assert len(state) == RELEASED_ENTRIES
    expected_shapes = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
        "fc.weight": (1008, 2048),
        "fc.bias": (1008,),
    }
    for key, shape in expected_shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("AuxLogits") for k in state)
    assert all(not k.endswith(".bias") or k.startswith("fc.") or ".bn." in k for k in state)


def test_tf_average_pool_ignores_the_zero_padding():
    ones = torch.ones(1, 2, 5, 5)
    assert torch.equal(_avg_pool_tf(ones), ones)  # torch's default would give 4/9 at corners
    assert float(torch.nn.functional.avg_pool2d(ones, 3, 1, 1)[0, 0, 0, 0]) == pytest.approx(4 / 9)


def test_only_the_last_block_max_pools(net):
    assert net.Mixed_7b.pool == "avg" and net.Mixed_7c.pool == "max"
    x = torch.zeros(1, 2048, 3, 3)
    x[0, :, 1, 1] = 1.0  # one bright pixel: a max pool spreads it, an average divides it
    pooled = torch.nn.functional.max_pool2d(x, 3, 1, 1)
    assert float(pooled[0, 0, 0, 0]) == 1.0 and float(_avg_pool_tf(x)[0, 0, 0, 0]) == 0.25


def test_input_is_resized_to_299_and_scaled_to_minus_one_one():
    images = torch.stack([torch.zeros(1, 4, 4), torch.full((1, 4, 4), 255.0)]).to(torch.uint8)
    x = inception_input(images)
    assert x.shape == (2, 3, 299, 299)  # grey repeated to RGB
    assert torch.allclose(x[0], torch.tensor(-1.0), atol=1e-6, rtol=0)
    assert torch.allclose(x[1], torch.tensor(1.0), atol=1e-6, rtol=0)


def test_missing_weights_error_names_file_place_and_url(tmp_path, monkeypatch):
    monkeypatch.delenv("HARNESS_INCEPTION", raising=False)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(HarnessError) as info:
        find_inception_weights()
    message = str(info.value)
    assert INCEPTION_FILENAME in message and INCEPTION_URL in message
    assert "~/.cache/harness" in message and "--inception" in message
    with pytest.raises(HarnessError, match="nowhere.pth"):
        find_inception_weights(tmp_path / "nowhere.pth")


def test_environment_and_cache_locations_are_searched(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / INCEPTION_FILENAME).write_bytes(b"x")
    monkeypatch.delenv("HARNESS_INCEPTION", raising=False)
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    assert find_inception_weights() == cache / INCEPTION_FILENAME
    other = tmp_path / "elsewhere.pth"
    other.write_bytes(b"y")
    monkeypatch.setenv("HARNESS_INCEPTION", str(other))
    assert find_inception_weights() == other


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory, net) -> Path:
    path = tmp_path_factory.mktemp("inception") / INCEPTION_FILENAME
    torch.save(net.state_dict(), path)
    return path


def test_a_file_that_is_not_the_released_one_is_refused_by_its_sha256(random_weights):
    with pytest.raises(HarnessError, match=INCEPTION_SHA256[:16]):
        load_inception(random_weights)


def test_a_foreign_state_dict_is_refused_naming_the_keys(tmp_path):
    path = tmp_path / "foreign.pth"
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(HarnessError, match="not the FID Inception state dict"):
        load_inception(path, expected_sha256=None)


@pytest.fixture(scope="module")
def six_images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    bright = torch.randint(0, 256, (3, 3, 16, 16), generator=g, dtype=torch.uint8)
    dark = torch.randint(0, 128, (3, 3, 16, 16), generator=g, dtype=torch.uint8)
    return torch.cat([bright, dark])


@pytest.fixture(scope="module")
def six_features(random_weights, six_images) -> np.ndarray:
    # Inception at 299×299 is slow on a CPU: six images, in batches of 4 and 2, shared below.
    extractor = load_inception(random_weights, expected_sha256=None, batch_size=4)
    assert (extractor.name, extractor.metric, extractor.dim) == ("inception-2015-12-05", "fid", 2048)
    return extractor.features(six_images)


def test_random_weights_give_2048_d_features_independent_of_the_batch(six_features, six_images,
                                                                       net):
    assert six_features.shape == (6, 2048) and six_features.dtype == np.float64
    with torch.no_grad():  # the first two images again, now in a batch of their own
        direct = net(inception_input(six_images[:2])).double().numpy()
    np.testing.assert_allclose(six_features[:2], direct, rtol=1e-5, atol=1e-6)


def test_a_file_without_batchnorm_counters_loads(tmp_path, net):
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    path = tmp_path / "old.pth"
    torch.save(state, path)
    extractor = load_inception(path, expected_sha256=None)
    loaded = extractor.net.state_dict()
    assert torch.equal(loaded["Mixed_7c.branch_pool.conv.weight"],
                       state["Mixed_7c.branch_pool.conv.weight"])


def test_fid_plumbing_gives_the_closed_form_frechet_distance(six_features):
    # Project to 2 dimensions so that 3 points give full-rank covariances (sqrtm well defined).
    project = np.random.default_rng(0).normal(size=(2048, 2))
    sa, sb = feature_stats(six_features[:3] @ project), feature_stats(six_features[3:] @ project)
    covmean = scipy.linalg.sqrtm(sa.sigma @ sb.sigma).real
    expected = np.sum((sa.mu - sb.mu) ** 2) + np.trace(sa.sigma + sb.sigma - 2 * covmean)
    assert expected > 0
    assert frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(sa.mu, sa.sigma, sa.mu, sa.sigma) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.skipif(not os.environ.get("HARNESS_INCEPTION"), reason="set HARNESS_INCEPTION to "
                    "the real pt_inception-2015-12-05-6726825d.pth to check it")
def test_the_released_weight_file_loads_and_passes_its_checksum():
    extractor = load_inception()
    assert extractor.sha256 == INCEPTION_SHA256
    phi = extractor.features(torch.full((2, 3, 32, 32), 128, dtype=torch.uint8))
    assert phi.shape == (2, 2048) and (phi >= 0).all()  # pool3 averages ReLU outputs
