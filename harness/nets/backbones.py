"""`build_backbone`: the one factory for F, with each architecture's defaults and argument checks.

"ddpmpp" and "ncsnpp" are EDM's SongUNet settings for CIFAR-10 (EDM `train.py`, `--arch`), with
the paper's dropout 0.13; pass `channel_mult=[1, 2, 2, 2]` for the VP/VE and 64×64 networks.
"small" is the CPU network of `harness.nets.small`; its defaults suit 8×8 digits, and
`small_defaults(img_resolution)` gives the tuned settings for 28×28 and 32×32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from harness.errors import SpecError, did_you_mean
from harness.nets.layers import reset_all_parameters
from harness.nets.small import SmallUNet
from harness.nets.unet import UNet

_SONG_UNET_CIFAR: dict[str, Any] = {
    "model_channels": 128,
    "channel_mult": [2, 2, 2],
    "channel_mult_emb": 4,
    "num_blocks": 4,
    "attn_resolutions": [16],
    "dropout": 0.13,
    "label_dropout": 0.0,
    "channel_mult_noise": 1,
    "embedding_type": "positional",
    "encoder_type": "standard",
    "decoder_type": "standard",
    "resample_filter": [1, 1],
}

ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    # DDPM++ (Song et al. 2021) as EDM trains it on CIFAR-10: positional noise embedding,
    # standard encoder, box resampling filter.
    "ddpmpp": dict(_SONG_UNET_CIFAR),
    # NCSN++: Fourier noise embedding of twice the width, residual encoder, [1,3,3,1] filter.
    "ncsnpp": {
        **_SONG_UNET_CIFAR,
        "channel_mult_noise": 2,
        "embedding_type": "fourier",
        "encoder_type": "residual",
        "resample_filter": [1, 3, 3, 1],
    },
    # The CPU network, sized for 8×8 digits (see docs/networks.md for the measurements).
    "small": {
        "model_channels": 32,
        "channel_mult": [1, 2],
        "channel_mult_emb": 4,
        "num_blocks": 1,
        "attn_resolutions": [],
        "dropout": 0.0,
        "label_dropout": 0.0,
        "channel_mult_noise": 1,
        "embedding_type": "positional",
        "resample_filter": [1, 1],
    },
}

# The small network's width and depth per image size; everything else as ARCH_DEFAULTS["small"].
_SMALL_BY_RESOLUTION: dict[int, dict[str, Any]] = {
    28: {"model_channels": 16, "channel_mult": [1, 2, 4]},
    32: {"model_channels": 16, "channel_mult": [1, 2, 4]},
}

_CHOICES = {
    "embedding_type": ("positional", "fourier"),
    "encoder_type": ("standard", "residual", "skip"),
    "decoder_type": ("standard", "skip"),
}


def small_defaults(img_resolution: int) -> dict[str, Any]:
    """ARCH_DEFAULTS["small"] with the width and levels tuned for this image size (8, 28, 32)."""
    return {**ARCH_DEFAULTS["small"], **_SMALL_BY_RESOLUTION.get(img_resolution, {})}


def build_backbone(
    *,
    arch: str,
    img_resolution: int,
    img_channels: int,
    label_dim: int = 0,
    augment_dim: int = 0,
    generator: torch.Generator | None = None,
    **arch_kwargs: Any,
) -> nn.Module:
    """The backbone F(x, c_noise, class_labels=None, augment_labels=None) -> F_x.

    `arch_kwargs` override ARCH_DEFAULTS[arch] (names as in that dict; for "small" the base is
    `small_defaults(img_resolution)`); None means "the default". Weights are initialised
    from `generator` (a CPU torch.Generator; seed 0 when omitted), never from the global RNG;
    under `torch.device("meta")` nothing is drawn, so counting parameters is free.
    Raises SpecError (a ValueError) naming the bad argument and the valid values.
    """
    if arch not in ARCH_DEFAULTS:
        raise SpecError("arch", f"unknown architecture {arch!r}; valid: {', '.join(ARCH_DEFAULTS)}"
                        + did_you_mean(str(arch), ARCH_DEFAULTS))
    defaults = small_defaults(img_resolution) if arch == "small" else ARCH_DEFAULTS[arch]
    for name in arch_kwargs:
        if name not in defaults:
            raise SpecError(name, f"not an argument of arch '{arch}'; valid: {', '.join(defaults)}"
                            + did_you_mean(name, defaults))
    kwargs = {**defaults, **{k: v for k, v in arch_kwargs.items() if v is not None}}
    _check_geometry(img_resolution, img_channels, label_dim, augment_dim)
    _check_arch_kwargs(kwargs, img_resolution)
    common = dict(img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
                  augment_dim=augment_dim)
    if arch == "small":
        net: nn.Module = SmallUNet(**common, **kwargs)
    else:
        net = UNet(**common, **kwargs)
    reset_all_parameters(net, generator if generator is not None else torch.Generator().manual_seed(0))
    return net


def _check_geometry(img_resolution: int, img_channels: int, label_dim: int, augment_dim: int) -> None:
    for name, value, low in (("img_resolution", img_resolution, 1), ("img_channels", img_channels, 1),
                             ("label_dim", label_dim, 0), ("augment_dim", augment_dim, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SpecError(name, f"must be an integer >= {low}, got {value!r}")


def _check_int_list(name: str, value: Any, *, allow_empty: bool = False) -> list[int]:
    ok = isinstance(value, Sequence) and not isinstance(value, str) and (allow_empty or len(value) > 0)
    if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        kind = "a list of positive integers" if allow_empty else "a non-empty list of positive integers"
        raise SpecError(name, f"must be {kind}, got {value!r}")
    return list(value)


def _check_arch_kwargs(kwargs: dict[str, Any], img_resolution: int) -> None:
    for name in ("model_channels", "channel_mult_emb", "num_blocks", "channel_mult_noise"):
        value = kwargs[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SpecError(name, f"must be an integer >= 1, got {value!r}")
    for name in ("dropout", "label_dropout"):
        value = kwargs[name]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            raise SpecError(name, f"must be a probability in [0, 1), got {value!r}")
    for name, choices in _CHOICES.items():
        if name in kwargs and kwargs[name] not in choices:
            raise SpecError(name, f"{kwargs[name]!r} is not one of {', '.join(choices)}"
                            + did_you_mean(str(kwargs[name]), choices))
    channel_mult = _check_int_list("channel_mult", kwargs["channel_mult"])
    resample_filter = _check_int_list("resample_filter", kwargs["resample_filter"])
    if len(resample_filter) % 2:
        raise SpecError("resample_filter", f"{resample_filter} has odd length; an even-length filter "
                                           "such as [1, 1] or [1, 3, 3, 1] halves and doubles exactly")
    levels = len(channel_mult)
    if img_resolution % 2 ** (levels - 1):
        raise SpecError("channel_mult", f"{channel_mult} has {levels} levels, so img_resolution must be "
                                        f"divisible by {2 ** (levels - 1)}; got {img_resolution}")
    resolutions = [img_resolution >> level for level in range(levels)]
    attn = _check_int_list("attn_resolutions", kwargs["attn_resolutions"], allow_empty=True)
    for res in attn:
        if res not in resolutions:
            raise SpecError("attn_resolutions", f"{res} is not a resolution of this network; "
                                                f"valid: {', '.join(map(str, resolutions))}")


def load_edm_state_dict(module: nn.Module, state_dict: dict[str, torch.Tensor]) -> None:
    """Load weights saved by EDM / FDM (a SongUNet's, or a preconditioner's with the backbone
    under `model.`, which is also where `Denoiser` keeps it) into `module`, strictly.

    EDM stores each resampling filter as a buffer derived from the filter list; those keys are
    dropped, every other key must match in name and shape.
    """
    kept = {k: v for k, v in state_dict.items() if not k.endswith("resample_filter")}
    module.load_state_dict(kept, strict=True)
