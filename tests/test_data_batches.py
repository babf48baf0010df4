"""Seeded batches as a pure function of images seen; uint8 ↔ float; the device-resident dataset."""

from __future__ import annotations

import pytest
import torch

from harness.data import (
    DeviceDataset,
    ImageDataset,
    batch_indices,
    epoch_permutation,
    to_float,
    to_uint8,
)


def test_batch_indices_is_a_pure_function_of_seed_and_nimg():
    a = batch_indices(3, 1000, 64, 1797)
    epoch_permutation.cache_clear()  # a resumed process starts with an empty cache
    b = batch_indices(3, 1000, 64, 1797)
    assert a.dtype == torch.int64 and a.shape == (64,) and torch.equal(a, b)
    assert not torch.equal(a, batch_indices(4, 1000, 64, 1797))
    assert not torch.equal(a, batch_indices(3, 1064, 64, 1797))


def test_each_image_appears_exactly_once_per_epoch():
    N, B = 120, 8
    for epoch in (0, 1, 5):
        seen = torch.cat([batch_indices(0, epoch * N + k, B, N) for k in range(0, N, B)])
        assert torch.equal(seen.sort().values, torch.arange(N))
    assert not torch.equal(batch_indices(0, 0, N, N), batch_indices(0, N, N, N))  # new order


def test_a_batch_straddling_an_epoch_boundary_continues_into_the_next_permutation():
    N = 10
    batch = batch_indices(9, 8, 4, N)
    assert batch[:2].tolist() == epoch_permutation(9, 0, N)[8:].tolist()
    assert batch[2:].tolist() == epoch_permutation(9, 1, N)[:2].tolist()
    big = batch_indices(9, 3, 25, N)  # longer than an epoch: epochs 0 (from 3), 1, 2 (to 8)
    expected = [*epoch_permutation(9, 0, N)[3:], *epoch_permutation(9, 1, N),
                *epoch_permutation(9, 2, N)[:8]]
    assert big.tolist() == expected


@pytest.mark.parametrize("nimg", [0, 96, 1790])
def test_two_half_batches_concatenate_to_the_full_batch(nimg):
    """Gradient accumulation / rank r of w: a contiguous slice of the global batch."""
    B, N = 64, 1797
    full = batch_indices(5, nimg, B, N)
    halves = torch.cat([batch_indices(5, nimg, B // 2, N),
                        batch_indices(5, nimg + B // 2, B // 2, N)])
    assert torch.equal(full, halves)
    quarters = [batch_indices(5, nimg + r * B // 4, B // 4, N) for r in range(4)]
    assert torch.equal(torch.cat(quarters), full)


def test_bad_batch_arguments_are_rejected():
    with pytest.raises(ValueError, match="batch_size >= 1"):
        batch_indices(0, 0, 0, 10)
    with pytest.raises(ValueError, match="nimg >= 0"):
        batch_indices(0, -1, 4, 10)


def test_to_float_maps_0_255_onto_minus_one_one_and_to_uint8_inverts_it():
    u = torch.arange(256, dtype=torch.uint8)
    x = to_float(u)
    assert x.dtype == torch.float32 and x[0] == -1 and x[255] == 1
    assert torch.allclose(x[1:] - x[:-1], torch.full((255,), 2 / 255))
    assert torch.equal(to_uint8(x), u)
    assert to_uint8(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]


def _dataset(n=20):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=g)
    return ImageDataset(images, torch.arange(n) % 3, 3, "test")


def test_device_dataset_batch_gives_float_images_and_labels_of_the_indices():
    ds = _dataset()
    device_ds = DeviceDataset(ds, "cpu")
    idx = batch_indices(0, 7, 6, len(ds))
    x, y = device_ds.batch(idx)
    assert device_ds.resident and x.dtype == torch.float32
    assert torch.equal(x, to_float(ds.images[idx])) and torch.equal(y, ds.labels[idx])


@pytest.mark.gpu
def test_device_dataset_keeps_a_small_dataset_on_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    ds = _dataset()
    resident = DeviceDataset(ds, "cuda")
    streamed = DeviceDataset(ds, "cuda", max_gpu_fraction=0.0)
    idx = batch_indices(0, 0, 8, len(ds))
    assert resident.resident and resident.images.is_cuda
    assert not streamed.resident and streamed.images.is_pinned()
    for source in (resident, streamed):
        x, y = source.batch(idx)
        assert x.is_cuda and torch.equal(x.cpu(), to_float(ds.images[idx]))
        assert torch.equal(y.cpu(), ds.labels[idx])
