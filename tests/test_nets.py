"""harness.nets: backbones (exact paper sizes, conditioning, train/eval behaviour, small nets) and
the denoiser D(x; σ) = c_skip x + c_out F(c_in x, c_noise)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness import diffusion
from harness.errors import SpecError
from harness.nets import ARCH_DEFAULTS, Denoiser, build_backbone, count_parameters, small_defaults
from harness.nets.layers import Resample, resample_kernel, self_attention

# -------------------------------------------------------------------------------- helpers


def randomize_(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Replace every parameter with N(0, 1/fan_in) draws (norm scales around 1), so that the
    zero-initialised output layers do not hide how the output depends on the inputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(net.named_parameters()):
            z = torch.randn(p.shape, generator=g)
            if p.ndim >= 2:
                p.copy_(z / math.sqrt(p[0].numel()))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * z)
            else:
                p.copy_(0.1 * z)
    return net


def small_net(res: int = 8, *, label_dim: int = 10, augment_dim: int = 9, **kwargs) -> torch.nn.Module:
    net = build_backbone(arch="small", img_resolution=res, img_channels=1, label_dim=label_dim,
                         augment_dim=augment_dim, **kwargs)
    return randomize_(net)


def one_hot(labels: list[int], num_classes: int = 10) -> torch.Tensor:
    return F.one_hot(torch.tensor(labels), num_classes).float()


# ------------------------------------------------------------------ exact paper parameter counts

CIFAR = dict(img_resolution=32, img_channels=3, label_dim=10, augment_dim=9)
FACES = dict(img_resolution=64, img_channels=3, label_dim=0, augment_dim=9)
PAPER_SIZES = [
    ("ddpmpp", CIFAR, [2, 2, 2], 55_735_299),  # EDM / EDM-FDM on CIFAR-10
    ("ddpmpp", CIFAR, [1, 2, 2, 2], 61_806_979),  # VP / VP-FDM on CIFAR-10
    ("ncsnpp", CIFAR, [1, 2, 2, 2], 62_763_907),  # VE / VE-FDM on CIFAR-10
    ("ddpmpp", FACES, [1, 2, 2, 2], 61_805_571),  # FFHQ / AFHQv2 64×64
    ("ncsnpp", FACES, [1, 2, 2, 2], 62_761_091),
]


@pytest.mark.parametrize("arch, geometry, channel_mult, expected", PAPER_SIZES)
def test_paper_networks_have_exactly_the_published_parameter_count(arch, geometry, channel_mult, expected):
    with torch.device("meta"):
        net = build_backbone(arch=arch, channel_mult=channel_mult, **geometry)
    assert count_parameters(net) == expected


def test_ncsnpp_defaults_differ_from_ddpmpp_only_in_embedding_encoder_and_filter():
    ddpmpp, ncsnpp = ARCH_DEFAULTS["ddpmpp"], ARCH_DEFAULTS["ncsnpp"]
    differing = {k for k in ddpmpp if ddpmpp[k] != ncsnpp[k]}
    assert differing == {"embedding_type", "encoder_type", "channel_mult_noise", "resample_filter"}
    assert (ncsnpp["embedding_type"], ncsnpp["encoder_type"], ncsnpp["channel_mult_noise"],
            ncsnpp["resample_filter"]) == ("fourier", "residual", 2, [1, 3, 3, 1])
    assert (ddpmpp["model_channels"], ddpmpp["channel_mult"], ddpmpp["num_blocks"],
            ddpmpp["attn_resolutions"], ddpmpp["dropout"]) == (128, [2, 2, 2], 4, [16], 0.13)


def test_count_parameters_skips_frozen_parameters():
    net = build_backbone(arch="small", img_resolution=8, img_channels=1)
    total = sum(p.numel() for p in net.parameters())
    net.map_layer0.requires_grad_(False)
    assert count_parameters(net) == total - sum(p.numel() for p in net.map_layer0.parameters())


def test_initialisation_comes_from_the_generator_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a = build_backbone(arch="ncsnpp", img_resolution=8, img_channels=1, model_channels=8, channel_mult=[1, 2],
                       num_blocks=1, attn_resolutions=[4], generator=torch.Generator().manual_seed(5))
    b = build_backbone(arch="ncsnpp", img_resolution=8, img_channels=1, model_channels=8, channel_mult=[1, 2],
                       num_blocks=1, attn_resolutions=[4], generator=torch.Generator().manual_seed(5))
    c = build_backbone(arch="ncsnpp", img_resolution=8, img_channels=1, model_channels=8, channel_mult=[1, 2],
                       num_blocks=1, attn_resolutions=[4], generator=torch.Generator().manual_seed(6))
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, x), (_, y), (_, z) in zip(a.state_dict().items(), b.state_dict().items(), c.state_dict().items()):
        assert torch.equal(x, y), name
    assert not torch.equal(a.state_dict()["map_noise.freqs"], c.state_dict()["map_noise.freqs"])
    assert not torch.equal(a.state_dict()["enc.8x8_conv.weight"], c.state_dict()["enc.8x8_conv.weight"])


def test_initialisation_follows_edm_xavier_uniform_bounds():
    net = build_backbone(arch="ddpmpp", img_resolution=8, img_channels=3, model_channels=16,
                         channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4])
    w = net.enc["8x8_conv"].weight  # 3×3 conv 3 → 16: a = sqrt(6 / (27 + 144))
    assert w.abs().max() <= math.sqrt(6 / (27 + 144))
    assert w.abs().max() > 0.9 * math.sqrt(6 / (27 + 144))
    block = net.enc["4x4_block0"]
    assert block.conv1.weight.abs().max() <= 1e-5 * math.sqrt(6 / (32 * 9 * 2))  # zero-init scale
    assert block.qkv.weight.abs().max() <= math.sqrt(0.2) * math.sqrt(6 / (32 + 96))
    assert torch.all(block.norm0.weight == 1) and torch.all(block.conv0.bias == 0)


# --------------------------------------------------------------------------- argument checks


def test_unknown_arch_names_the_argument_and_the_valid_values():
    with pytest.raises(ValueError, match=r"arch: .*'ddpm'.*ddpmpp, ncsnpp, small.*did you mean 'ddpmpp'"):
        build_backbone(arch="ddpm", img_resolution=32, img_channels=3)


def test_unknown_keyword_names_it_and_lists_the_arch_fields():
    with pytest.raises(SpecError, match=r"channel_mults: not an argument of arch 'ddpmpp'.*model_channels.*"
                                        r"did you mean 'channel_mult'"):
        build_backbone(arch="ddpmpp", img_resolution=32, img_channels=3, channel_mults=[1, 2])


def test_small_rejects_encoder_and_decoder_variants_it_does_not_have():
    with pytest.raises(SpecError, match="encoder_type: not an argument of arch 'small'"):
        build_backbone(arch="small", img_resolution=8, img_channels=1, encoder_type="residual")


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(embedding_type="sinusoidal"), r"embedding_type: 'sinusoidal' is not one of positional, fourier"),
    (dict(encoder_type="resid"), r"encoder_type: 'resid' is not one of standard, residual, skip.*'residual'"),
    (dict(decoder_type="residual"), r"decoder_type: 'residual' is not one of standard, skip"),
    (dict(channel_mult=[1, 2, 2, 2]), r"channel_mult: .* 4 levels, so img_resolution must be divisible by 8; got 28"),
    (dict(channel_mult=[]), r"channel_mult: must be a non-empty list of positive integers"),
    (dict(attn_resolutions=[16]), r"attn_resolutions: 16 is not a resolution of this network; valid: 28, 14, 7"),
    (dict(resample_filter=[1, 2, 1]), r"resample_filter: \[1, 2, 1\] has odd length"),
    (dict(dropout=1.0), r"dropout: must be a probability in \[0, 1\), got 1.0"),
    (dict(num_blocks=0), r"num_blocks: must be an integer >= 1, got 0"),
])
def test_bad_backbone_arguments_raise_spec_errors_naming_the_field(kwargs, pattern):
    with pytest.raises(SpecError, match=pattern):
        build_backbone(arch="ddpmpp", img_resolution=28, img_channels=1,
                       **{"channel_mult": [1, 2, 2], "attn_resolutions": [], **kwargs})


def test_bad_geometry_is_rejected():
    with pytest.raises(SpecError, match="label_dim: must be an integer >= 0, got -1"):
        build_backbone(arch="small", img_resolution=8, img_channels=1, label_dim=-1)


def test_none_means_the_default():
    a = build_backbone(arch="small", img_resolution=8, img_channels=1, model_channels=None)
    assert count_parameters(a) == count_parameters(build_backbone(arch="small", img_resolution=8, img_channels=1))


# ------------------------------------------------------------------- conditioning and modes


def test_eval_mode_is_deterministic_even_with_dropout_and_label_dropout():
    net = small_net(dropout=0.5, label_dropout=0.5).eval()
    x, c = torch.randn(4, 1, 8, 8), torch.randn(4)
    y = one_hot([0, 1, 2, 3])
    assert torch.equal(net(x, c, y), net(x, c, y))


def test_dropout_changes_the_output_in_train_mode_only():
    net = small_net(dropout=0.3, label_dim=0, augment_dim=0)
    x, c = torch.randn(4, 1, 8, 8), torch.randn(4)
    torch.manual_seed(0)
    a, b = net.train()(x, c), net(x, c)
    assert (a - b).abs().max() > 1e-3
    net.eval()
    assert torch.equal(net(x, c), net(x, c))


def test_label_dropout_replaces_whole_labels_by_the_zero_label():
    net = small_net(label_dropout=0.5)
    x = torch.randn(1, 1, 8, 8).expand(64, 1, 8, 8)
    c = torch.full((64,), 0.3)
    y = one_hot([3] * 64)
    net.eval()
    with_label, without = net(x, c, y)[0], net(x, c, torch.zeros_like(y))[0]
    torch.manual_seed(0)
    out = net.train()(x, c, y)
    kept = [(o - with_label).abs().max() < 1e-5 for o in out]
    dropped = [(o - without).abs().max() < 1e-5 for o in out]
    assert all(k != d for k, d in zip(kept, dropped))  # each sample is exactly one of the two
    assert 16 < sum(dropped) < 48


def test_class_labels_condition_the_output_and_none_equals_the_zero_label():
    net = small_net().eval()
    x, c = torch.randn(2, 1, 8, 8), torch.randn(2)
    a, b = net(x, c, one_hot([1, 1])), net(x, c, one_hot([2, 2]))
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(net(x, c, None), net(x, c, torch.zeros(2, 10)), rtol=0, atol=0)


def test_augment_labels_condition_the_output_and_none_equals_zero():
    net = small_net().eval()
    x, c, y = torch.randn(2, 1, 8, 8), torch.randn(2), one_hot([4, 5])
    a = net(x, c, y, torch.randn(2, 9))
    assert (a - net(x, c, y, None)).abs().max() > 1e-3
    torch.testing.assert_close(net(x, c, y, None), net(x, c, y, torch.zeros(2, 9)))


def test_noise_labels_condition_the_output():
    net = small_net(label_dim=0, augment_dim=0).eval()
    x = torch.randn(2, 1, 8, 8)
    assert (net(x, torch.zeros(2)) - net(x, torch.ones(2))).abs().max() > 1e-3


def test_samples_in_a_batch_do_not_interact():
    net = randomize_(build_backbone(arch="ncsnpp", img_resolution=16, img_channels=3, label_dim=10,
                                    augment_dim=9, model_channels=16, channel_mult=[1, 2], num_blocks=1,
                                    attn_resolutions=[8])).eval()
    x, c, y, a = torch.randn(3, 3, 16, 16), torch.randn(3), one_hot([1, 2, 3]), torch.randn(3, 9)
    whole = net(x, c, y, a)
    for i in range(3):
        torch.testing.assert_close(net(x[i:i + 1], c[i:i + 1], y[i:i + 1], a[i:i + 1]), whole[i:i + 1],
                                   rtol=1e-4, atol=1e-5)


def test_channels_last_input_gives_the_same_output():
    net = randomize_(build_backbone(arch="ddpmpp", img_resolution=16, img_channels=3, model_channels=16,
                                    channel_mult=[1, 2], num_blocks=1, attn_resolutions=[8])).eval()
    x, c = torch.randn(2, 3, 16, 16), torch.randn(2)
    reference = net(x, c)
    net = net.to(memory_format=torch.channels_last)
    out = net(x.contiguous(memory_format=torch.channels_last), c)
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- layers


def test_attention_equals_softmax_attention_in_edm_channel_layout():
    """qkv output channel = head·3c + i·3 + j holds component i of q (j=0), k (1), v (2)."""
    torch.manual_seed(0)
    net = randomize_(build_backbone(arch="ddpmpp", img_resolution=8, img_channels=1, model_channels=8,
                                    channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4]))
    block = net.enc["4x4_block0"]
    x = torch.randn(2, 16, 4, 4)
    for heads in (1, 2):
        out = self_attention(x, block.norm2, block.qkv, block.proj, heads)
        qkv = F.conv2d(block.norm2(x), block.qkv.weight, block.qkv.bias)  # [N, 3C, H, W]
        q, k, v = qkv.reshape(2 * heads, 16 // heads, 3, 16).unbind(2)  # [N·h, c, HW]
        w = torch.softmax(torch.einsum("ncq,nck->nqk", q, k) / math.sqrt(16 // heads), dim=2)
        a = torch.einsum("nqk,nck->ncq", w, v).reshape(2, 16, 4, 4)
        expected = F.conv2d(a, block.proj.weight, block.proj.bias)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["down", "up"])
def test_box_resampling_equals_the_fir_filter_convolution(mode):
    x = torch.randn(2, 3, 8, 8)
    f = resample_kernel([1, 1]).expand(3, 1, 2, 2)
    if mode == "down":
        expected = F.conv2d(x, f, stride=2, groups=3)
    else:
        expected = F.conv_transpose2d(x, f * 4, stride=2, groups=3)
    torch.testing.assert_close(Resample(mode, [1, 1])(x), expected)


def test_fir_resampling_keeps_constants_away_from_the_border_and_halves_or_doubles_any_even_size():
    x = torch.full((1, 2, 14, 14), 3.0)
    down, up = Resample("down", [1, 3, 3, 1])(x), Resample("up", [1, 3, 3, 1])(x)
    assert down.shape[-2:] == (7, 7) and up.shape[-2:] == (28, 28)
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full((1, 2, 5, 5), 3.0))
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full((1, 2, 24, 24), 3.0))


def test_noise_embedding_is_sin_then_cos_of_geometric_frequencies():
    net = build_backbone(arch="ddpmpp", img_resolution=8, img_channels=1, model_channels=8, channel_mult=[1],
                         attn_resolutions=[])
    c = torch.tensor([0.0, 2.5])
    emb = net.map_noise(c)  # 8 channels: ω_j = 10000^(-j/3), j = 0..3
    omega = torch.tensor([10000 ** (-j / 3) for j in range(4)])
    torch.testing.assert_close(emb, torch.cat([torch.sin(c[:, None] * omega), torch.cos(c[:, None] * omega)], 1))


# ------------------------------------------------------------------------------ small nets


@pytest.mark.parametrize("res", [8, 28, 32])
def test_small_nets_run_forward_and_backward_at_their_sizes(res):
    net = build_backbone(arch="small", img_resolution=res, img_channels=1, label_dim=10, augment_dim=9)
    x = torch.randn(3, 1, res, res)
    out = net(x, torch.randn(3), one_hot([0, 1, 2]), torch.zeros(3, 9))
    assert out.shape == x.shape and out.dtype == torch.float32
    out.square().sum().backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["out_conv.weight"].abs().sum() > 0  # the zero-initialised output layer learns first


def test_small_defaults_are_tuned_per_resolution():
    assert small_defaults(8) == ARCH_DEFAULTS["small"]
    assert small_defaults(28)["channel_mult"] == [1, 2, 4]  # 28 → 14 → 7
    assert set(small_defaults(28)) == set(ARCH_DEFAULTS["small"])


def test_small_net_learns_to_denoise_digits():
    """20 Adam steps on 64 8×8 digits lower the EDM loss at fixed σ and noise to about half."""
    from sklearn.datasets import load_digits

    images = torch.tensor(load_digits().images[:64], dtype=torch.float32)[:, None] / 8 - 1
    g = torch.Generator().manual_seed(0)
    net = build_backbone(arch="small", img_resolution=8, img_channels=1, generator=g)
    denoiser = Denoiser(net, kind="edm")
    sigma = torch.exp(-1.2 + 1.2 * torch.randn(64, generator=g))
    noisy = images + torch.randn(images.shape, generator=g) * sigma[:, None, None, None]
    weight = diffusion.loss_weight("edm", sigma)[:, None, None, None]

    def loss() -> torch.Tensor:
        return (weight * (denoiser(noisy, sigma) - images) ** 2).mean()

    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    with torch.no_grad():
        before = float(loss())
    for _ in range(20):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        assert float(loss()) < 0.6 * before  # 0.51 measured


# ------------------------------------------------------------------------------- denoiser

FDM_PARAMS = dict(damping=0.8, multiplier=2.0, beta_min=0.2, beta_d=15.0, sigma_data=0.6)


@pytest.mark.parametrize("kind", diffusion.KINDS)
def test_denoiser_is_c_skip_x_plus_c_out_times_backbone_of_c_in_x(kind):
    net = small_net().eval()
    denoiser = Denoiser(net, kind=kind, label_dim=10, **FDM_PARAMS)
    x, sigma = torch.randn(3, 1, 8, 8), torch.tensor([0.05, 1.0, 20.0])
    y, a = one_hot([1, 2, 3]), torch.randn(3, 9)
    c_skip, c_out, c_in, c_noise = diffusion.scalings(kind, sigma.reshape(3, 1, 1, 1), **FDM_PARAMS)
    expected = c_skip * x + c_out * net(c_in * x, c_noise.flatten(), y, a)
    torch.testing.assert_close(denoiser(x, sigma, y, a), expected, rtol=1e-5, atol=1e-6)
    assert (denoiser.kind, (denoiser.sigma_min, denoiser.sigma_max)) == (kind, diffusion.sigma_range(kind))


def test_denoiser_accepts_a_scalar_sigma_for_the_whole_batch():
    denoiser = Denoiser(small_net(label_dim=0, augment_dim=0).eval(), kind="fdm-vp", multiplier=2.0)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(denoiser(x, 3.0), denoiser(x, torch.full((2,), 3.0)))
    torch.testing.assert_close(denoiser(x, torch.tensor(3.0)), denoiser(x, torch.full((2,), 3.0)))


def test_fdm_denoiser_differs_from_its_baseline_only_through_c_in():
    net = small_net(label_dim=0, augment_dim=0).eval()
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 5.0])
    fdm = Denoiser(net, kind="fdm-edm", multiplier=2.0)(x, sigma)
    base = Denoiser(net, kind="edm")(x, sigma)
    c_skip, c_out, _, c_noise = diffusion.scalings("edm", sigma.reshape(2, 1, 1, 1))
    gamma = diffusion.fdm_input_scale("fdm-edm", sigma, multiplier=2.0).float().reshape(2, 1, 1, 1)
    torch.testing.assert_close(fdm, c_skip * x + c_out * net(gamma * x, c_noise.flatten()))
    assert (fdm - base).abs().max() > 1e-3


def test_denoiser_returns_float32_under_bf16_autocast():
    net = small_net(label_dim=0, augment_dim=0).eval()
    denoiser = Denoiser(net, kind="edm")
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 3.0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = denoiser(x, sigma)
        assert net(x, torch.zeros(2)).dtype == torch.bfloat16  # the backbone does run in bf16
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, denoiser(x, sigma), rtol=0.05, atol=0.05)


def test_unconditional_denoiser_ignores_class_labels():
    net = small_net(label_dim=0, augment_dim=0).eval()
    denoiser = Denoiser(net, kind="ve")
    x, sigma = torch.randn(2, 1, 8, 8), torch.tensor([0.5, 5.0])
    torch.testing.assert_close(denoiser(x, sigma, one_hot([1, 2])), denoiser(x, sigma))


def test_denoiser_rejects_an_unknown_kind_and_a_bad_fdm_parameter():
    net = small_net(label_dim=0, augment_dim=0)
    with pytest.raises(ValueError, match="kind must be one of vp, ve, edm, fdm-vp, fdm-ve, fdm-edm"):
        Denoiser(net, kind="fdm")
    with pytest.raises(ValueError, match="multiplier"):
        Denoiser(net, kind="fdm-edm", multiplier=-1.0)
