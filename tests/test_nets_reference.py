"""The backbones compute the same function as EDM's SongUNet (NVlabs/edm `training/networks.py`).

Golden values: each network below was built with `make_net`, its state dict loaded (strict, apart
from EDM's resampling-filter buffers, which EDM derives from the filter) into EDM's own SongUNet
at commit 0a2ff34, and EDM's output on `make_inputs` summarised by `summary`. The EDM code is not
part of this repository; the numbers were computed outside it once, on CPU in float32.
Parameter names are EDM's, so the loaded state dict is the one these tests build.
"""

from __future__ import annotations

import hashlib

import pytest
import torch
import torch.nn.functional as F

from harness.nets import Denoiser, build_backbone, load_edm_state_dict
from tests.test_nets import randomize_

TINY = dict(img_resolution=16, img_channels=3, model_channels=16, channel_mult=[1, 2], num_blocks=1,
            attn_resolutions=[8], dropout=0.1)
CONFIGS = {
    # DDPM++ layout: positional embedding, standard encoder, box filter, class + augment labels.
    "ddpmpp-tiny": dict(arch="ddpmpp", label_dim=10, augment_dim=9, **TINY),
    # NCSN++ layout: Fourier embedding ×2, residual encoder, [1,3,3,1] filter.
    "ncsnpp-tiny": dict(arch="ncsnpp", label_dim=10, augment_dim=9, **TINY),
    # The skip encoder and skip decoder (EDM supports them; the paper does not use them).
    "skip-skip-tiny": dict(arch="ncsnpp", label_dim=0, augment_dim=0, encoder_type="skip", decoder_type="skip",
                           **{**TINY, "channel_mult": [1, 2, 2], "attn_resolutions": [4]}),
    # Non-power-of-two sizes: 28 → 14 → 7.
    "ddpmpp-28px": dict(arch="ddpmpp", label_dim=0, augment_dim=0,
                        **{**TINY, "img_resolution": 28, "img_channels": 1, "channel_mult": [1, 2, 2],
                           "attn_resolutions": [7]}),
    # The paper's CIFAR-10 EDM network, DDPM++ [2,2,2], 55,735,299 parameters.
    "ddpmpp-cifar10": dict(arch="ddpmpp", img_resolution=32, img_channels=3, label_dim=10, augment_dim=9),
}

# summary(EDM SongUNet output): (sum, sum |·|, first four values, last value)
GOLDEN = {
    "ddpmpp-tiny": (215.269016, 676.105592, -0.24504903, -0.441493094, -0.639800727, 0.155082494, -0.034063112),
    "ncsnpp-tiny": (-43.4335907, 671.564306, -0.19277373, -0.0394581929, -0.32863304, 0.182689324, -0.251975775),
    "skip-skip-tiny": (-142.244261, 1114.1642, -0.477683425, -0.825110912, -0.352732569, 0.20103091, -0.190038174),
    "ddpmpp-28px": (130.194306, 775.506013, 0.209361196, 0.153556153, 0.316961229, -0.191947043, 0.381171405),
    "ddpmpp-cifar10": (13.5708007, 1402.39923, -0.383819699, -0.538107574, -0.215775013, 0.140244961, 0.335052311),
}


# EDM SongUNet's state dict without its resampling-filter buffers: (number of entries, first 16 hex
# digits of sha256 over the sorted "name:shape" lines).
EDM_STATE_DICT_LAYOUT = {
    "ddpmpp-tiny": (145, "49684a0efb355843"),
    "ncsnpp-tiny": (148, "a25cebc626f9290b"),
    "skip-skip-tiny": (213, "38212609abad069a"),
    "ddpmpp-28px": (200, "0b9449ff854c18dc"),
    "ddpmpp-cifar10": (419, "06f9109645925f65"),
}


def make_net(name: str) -> torch.nn.Module:
    """Build, then overwrite every parameter with seeded N(0, 1/fan_in) draws (norm scales ~1)."""
    net = build_backbone(generator=torch.Generator().manual_seed(0), **CONFIGS[name])
    return randomize_(net, seed=1).eval()


def make_inputs(name: str, batch: int = 2) -> tuple[torch.Tensor, ...]:
    cfg = CONFIGS[name]
    g = torch.Generator().manual_seed(2)
    res, ch = cfg["img_resolution"], cfg["img_channels"]
    x = torch.randn(batch, ch, res, res, generator=g)
    c_noise = torch.randn(batch, generator=g)
    labels = F.one_hot(torch.arange(batch) * 3 % 10, 10).float() if cfg["label_dim"] else None
    augment = 0.5 * torch.randn(batch, 9, generator=g) if cfg["augment_dim"] else None
    return x, c_noise, labels, augment


def summary(out: torch.Tensor) -> tuple[float, ...]:
    flat = out.detach().double().flatten()
    return (float(flat.sum()), float(flat.abs().sum()), *map(float, flat[:4]), float(flat[-1]))


def _check(name: str, batch: int = 2) -> None:
    net = make_net(name)
    x, c_noise, labels, augment = make_inputs(name, batch)
    with torch.no_grad():
        got = summary(net(x, c_noise, labels, augment))
    expected = GOLDEN[name]
    scale = expected[1] / x.numel()  # mean |output|
    assert got[1] == pytest.approx(expected[1], rel=1e-4)
    assert got[0] == pytest.approx(expected[0], abs=1e-4 * expected[1])
    assert got[2:] == pytest.approx(expected[2:], abs=1e-4 * scale)


@pytest.mark.parametrize("name", ["ddpmpp-tiny", "ncsnpp-tiny", "skip-skip-tiny", "ddpmpp-28px"])
def test_backbone_matches_edm_songunet_output(name):
    _check(name)


def test_paper_cifar10_network_matches_edm_songunet_output():
    _check("ddpmpp-cifar10", batch=1)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_dict_names_and_shapes_are_edms(name):
    with torch.device("meta"):
        net = build_backbone(**CONFIGS[name])
    lines = sorted(f"{k}:{tuple(v.shape)}" for k, v in net.state_dict().items())
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    assert (len(lines), digest) == EDM_STATE_DICT_LAYOUT[name]


def test_an_edm_preconditioner_state_dict_loads_into_a_denoiser():
    source = make_net("ncsnpp-tiny")
    edm_style = {f"model.{k}": v for k, v in source.state_dict().items()}
    edm_style["model.enc.8x8_down.conv0.resample_filter"] = torch.ones(1, 1, 4, 4) / 64  # EDM's derived buffer
    target = Denoiser(build_backbone(**CONFIGS["ncsnpp-tiny"], generator=torch.Generator().manual_seed(9)),
                      kind="ve", label_dim=10).eval()
    load_edm_state_dict(target, edm_style)
    x, c_noise, labels, augment = make_inputs("ncsnpp-tiny")
    with torch.no_grad():
        assert torch.equal(target.model(x, c_noise, labels, augment), source(x, c_noise, labels, augment))
    del edm_style["model.map_layer0.bias"]
    with pytest.raises(RuntimeError, match="map_layer0.bias"):
        load_edm_state_dict(target, edm_style)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_channels_last_on_gpu_stays_close_to_fp32():
    net = make_net("ddpmpp-tiny").cuda()
    x, c_noise, labels, augment = (t.cuda() for t in make_inputs("ddpmpp-tiny"))
    with torch.no_grad():
        reference = net(x, c_noise, labels, augment)
        net = net.to(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = net(x.contiguous(memory_format=torch.channels_last), c_noise, labels, augment)
    assert low.dtype == torch.bfloat16
    error = (low.float() - reference).abs().mean() / reference.abs().mean()
    assert error < 0.02
