"""EDM-style non-leaking augmentation: identity at p = 0, exact flips, label → transform."""

from __future__ import annotations

import math

import pytest
import torch

from harness.data import AugmentPipe, apply_transform
from harness.data.augment import AugmentParams

FLIPS_ONLY = dict(xflip=1, yflip=0, scale=0, rotate_frac=0, aniso=0, translate_frac=0)
NONE = dict(xflip=0, yflip=0, scale=0, rotate_frac=0, aniso=0, translate_frac=0)


def images(n=64, c=3, size=16, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, c, size, size, generator=g) * 2 - 1).to(dtype)


def gen(seed=1):
    return torch.Generator().manual_seed(seed)


def test_fdm_default_pipe_writes_edms_nine_value_label():
    pipe = AugmentPipe(0.12)
    assert pipe.augment_dim == 9
    assert pipe.label_names == ("xflip", "yflip", "scale", "rotate_cos_minus_1", "rotate_sin",
                                "aniso_w_cos_2r", "aniso_w_sin_2r", "translate_frac_x",
                                "translate_frac_y")
    assert AugmentPipe(0.12, translate_int=1).augment_dim == 11


def test_p_zero_is_the_identity_with_an_all_zero_label():
    x = images()
    out, labels = AugmentPipe(0.0)(x, generator=gen())
    assert torch.equal(out, x)
    assert labels.shape == (64, 9) and labels.dtype == torch.float32 and not labels.any()


def test_flip_only_pipe_flips_exactly_the_images_whose_label_says_so():
    x = images()
    out, labels = AugmentPipe(1.0, **FLIPS_ONLY)(x, generator=gen())
    assert labels.shape == (64, 1)
    flipped = labels[:, 0] == 1
    assert 10 < flipped.sum() < 54  # both outcomes occur
    assert torch.equal(out[flipped], x[flipped].flip(3))
    assert torch.equal(out[~flipped], x[~flipped])


@pytest.mark.parametrize("extra", [{}, {"translate_int": 1.0}, {"aniso_rotate_prob": 1.0}])
def test_the_label_determines_the_transform(extra):
    """Rebuild the transform from the label alone and apply it: the same output (non-leaking)."""
    pipe = AugmentPipe(1.0, yflip=1, **extra)
    x = images(n=128)
    out, labels = pipe(x, generator=gen(3))
    rebuilt = apply_transform(x, pipe.transform_from_labels(labels, 16, 16))
    assert (out - rebuilt).abs().max() < 2e-5
    params = pipe.params_from_labels(labels, 16, 16)
    assert torch.equal(pipe.labels(params, 16, 16).round(decimals=4), labels.round(decimals=4))


def test_aniso_label_is_a_function_of_the_stretch_not_of_its_parametrisation():
    """(w, r) and (-w, r + π/2) are the same stretch and get the same label; (-w, r + π), which
    EDM's label (w cos r, w sin r) cannot tell from (w, r), is another stretch and another label."""
    pipe = AugmentPipe(1.0, **{**NONE, "aniso": 1})
    w, r = torch.tensor([1.3]), torch.tensor([0.4])

    def params(w_, r_):
        z = torch.zeros(1)
        return AugmentParams(z.bool(), z.bool(), torch.zeros(2, 1), z, z, w_, r_, torch.zeros(2, 1))

    same, other = params(-w, r + math.pi / 2), params(-w, r + math.pi)
    base = params(w, r)
    assert torch.allclose(pipe.matrix(same, 8, 8), pipe.matrix(base, 8, 8), atol=1e-6)
    assert torch.allclose(pipe.labels(same, 8, 8), pipe.labels(base, 8, 8), atol=1e-6)
    assert not torch.allclose(pipe.matrix(other, 8, 8), pipe.matrix(base, 8, 8), atol=1e-2)
    assert not torch.allclose(pipe.labels(other, 8, 8), pipe.labels(base, 8, 8), atol=1e-2)


def test_rotation_label_of_half_a_turn_is_a_flip_of_both_axes():
    pipe = AugmentPipe(1.0, **{**NONE, "rotate_frac": 1})
    x = images(n=4, size=9)
    label = torch.tensor([[-2.0, 0.0]]).expand(4, 2)  # cos π - 1, sin π
    out = apply_transform(x, pipe.transform_from_labels(label, 9, 9))
    assert (out - x.flip(2).flip(3)).abs().max() < 1e-5


def test_fractional_translation_label_of_one_pixel_shifts_right_with_reflection():
    pipe = AugmentPipe(1.0, **{**NONE, "translate_frac": 1})
    x = images(n=2, size=8)
    label = torch.tensor([[1.0, 0.0]]).expand(2, 2)  # w * size * 0.125 = 1 pixel in x
    out = apply_transform(x, pipe.transform_from_labels(label, 8, 8))
    assert (out[..., 1:] - x[..., :-1]).abs().max() < 1e-5
    assert (out[..., 0] - x[..., 1]).abs().max() < 1e-5  # reflected about the border pixel


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_dtype_and_range_are_preserved(dtype):
    x = images(dtype=dtype)
    out, labels = AugmentPipe(1.0)(x, generator=gen())
    assert out.shape == x.shape and out.dtype == dtype and labels.shape == (64, 9)
    assert out.float().min() >= -1 - 1e-6 and out.float().max() <= 1 + 1e-6


def test_same_generator_seed_gives_the_same_result_and_another_seed_does_not():
    x = images()
    pipe = AugmentPipe(0.5)
    a, la = pipe(x, generator=gen(7))
    b, lb = pipe(x, generator=gen(7))
    c, lc = pipe(x, generator=gen(8))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(la, lc)


def test_untouched_images_are_returned_bit_exact():
    x = images(n=256)
    out, labels = AugmentPipe(0.12)(x, generator=gen())
    untouched = (labels == 0).all(dim=1)
    assert untouched.sum() > 50
    assert torch.equal(out[untouched], x[untouched])


def test_probabilities_and_distributions_follow_edm():
    """p = 0.12 with the FDM weights: xflip fires always (1e8 * p >= 1) and flips half, the
    others fire with probability 0.12; rotation uniform on (-π, π); aniso axis 0 half the time."""
    n = 20000
    _, labels = AugmentPipe(0.12)(torch.zeros(n, 1, 2, 2), generator=gen(11))
    frac = lambda mask: mask.float().mean().item()  # noqa: E731
    assert abs(frac(labels[:, 0] == 1) - 0.5) < 0.015
    assert abs(frac(labels[:, 1] == 1) - 0.06) < 0.01
    for column in (2, 3, 5, 7):  # scale, rotation, aniso, translation fired
        assert abs(frac(labels[:, column] != 0) - 0.12) < 0.01
    theta = torch.atan2(labels[:, 4], labels[:, 3] + 1)[labels[:, 3] != 0]
    assert abs(theta.abs().mean().item() - math.pi / 2) < 0.1
    fired = labels[:, 5] != 0
    assert abs(frac(labels[fired, 6] == 0) - 0.5) < 0.04
    scale_w = labels[labels[:, 2] != 0, 2]
    assert abs(scale_w.std().item() - 1) < 0.06 and abs(scale_w.mean().item()) < 0.08


def test_bad_input_is_rejected_with_the_reason():
    with pytest.raises(ValueError, match="float images"):
        AugmentPipe(0.1)(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), generator=gen())
    with pytest.raises(ValueError, match="must be >= 0"):
        AugmentPipe(-0.1)


@pytest.mark.gpu
def test_on_cuda_with_a_cpu_generator_matches_the_cpu_result():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    x = images(n=512)
    pipe = AugmentPipe(0.5)
    cpu, cpu_labels = pipe(x, generator=gen(5))
    cuda, cuda_labels = pipe(x.cuda(), generator=gen(5))
    assert torch.allclose(cuda_labels.cpu(), cpu_labels, atol=1e-6)
    assert (cuda.cpu() - cpu).abs().max() < 1e-4
