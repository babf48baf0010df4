"""Backbones F (DDPM++ / NCSN++ in EDM's SongUNet configuration, a small CPU U-Net) and the
denoiser D(x; σ) that wraps one with a preconditioning from `harness.diffusion`."""

from harness.nets.backbones import ARCH_DEFAULTS, build_backbone, load_edm_state_dict, small_defaults
from harness.nets.denoiser import Denoiser, count_parameters
from harness.nets.small import SmallUNet
from harness.nets.unet import UNet

__all__ = [
    "ARCH_DEFAULTS",
    "Denoiser",
    "SmallUNet",
    "UNet",
    "build_backbone",
    "count_parameters",
    "load_edm_state_dict",
    "small_defaults",
]
