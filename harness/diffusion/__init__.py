"""Pure diffusion math (imports torch only): schedules, preconditioning for VP/VE/EDM and their FDM
variants, the damped-oscillator scale, training σ densities and weights, σ grids, samplers."""

from harness.diffusion import samplers
from harness.diffusion.damping import damped_scale
from harness.diffusion.grids import edm_sigmas, logsnr_sigmas
from harness.diffusion.scalings import (
    BASE_KINDS,
    KINDS,
    base_kind,
    check_kind,
    fdm_input_scale,
    fdm_rate,
    fdm_time,
    is_fdm,
    scalings,
    sigma_range,
)
from harness.diffusion.schedules import SIGMA_DATA, vp_sigma, vp_sigma_inv
from harness.diffusion.training import fdm_weight_cap, loss_weight, sample_sigma

__all__ = [
    "BASE_KINDS",
    "KINDS",
    "SIGMA_DATA",
    "base_kind",
    "check_kind",
    "damped_scale",
    "edm_sigmas",
    "fdm_input_scale",
    "fdm_rate",
    "fdm_time",
    "fdm_weight_cap",
    "is_fdm",
    "logsnr_sigmas",
    "loss_weight",
    "sample_sigma",
    "samplers",
    "scalings",
    "sigma_range",
    "vp_sigma",
    "vp_sigma_inv",
]
