"""The denoiser D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x, c_noise(σ)) (EDM Eq. 7, Table 1).

One class for every kind: the preconditioning comes from `harness.diffusion.scalings`, where FDM is
a parameter (the input scale c_in = γ_ζ(B(t(σ)))), never a copied class.
"""

from __future__ import annotations

import torch
from torch import nn

from harness import diffusion


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameter elements (works on the meta device)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class Denoiser(nn.Module):
    """D(x; σ) around a backbone F, with the outer math in float32.

    F may run in lower precision (bf16 autocast); its output is cast to float32 before it is
    scaled, so D, the loss and the sampler state stay float32. `label_dim` is the number of
    classes the backbone was built with (0 = unconditional); class labels are one-hot float
    [N, label_dim] and are ignored (set to None) when label_dim is 0.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        kind: str,
        sigma_data: float = 0.5,
        damping: float = 1.0,
        multiplier: float = 1.0,
        beta_min: float = 0.1,
        beta_d: float = 19.9,
        label_dim: int = 0,
    ):
        super().__init__()
        self.kind = diffusion.check_kind(kind)
        self.model = backbone
        self.sigma_data = float(sigma_data)
        self.damping = float(damping)
        self.multiplier = float(multiplier)
        self.beta_min = float(beta_min)
        self.beta_d = float(beta_d)
        self.label_dim = int(label_dim)
        self.sigma_min, self.sigma_max = diffusion.sigma_range(kind)
        # Fail at construction, not at the first step, on a bad FDM parameter.
        self.scalings(torch.ones(1))

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(c_skip, c_out, c_in, c_noise) of this denoiser's kind at σ."""
        return diffusion.scalings(self.kind, sigma, damping=self.damping, multiplier=self.multiplier,
                                  beta_min=self.beta_min, beta_d=self.beta_d, sigma_data=self.sigma_data)

    def forward(self, x: torch.Tensor, sigma, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        x = x.to(torch.float32)
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        sigma = sigma.reshape(-1, 1, 1, 1).expand(x.shape[0], 1, 1, 1)
        c_skip, c_out, c_in, c_noise = self.scalings(sigma)
        labels = class_labels.to(torch.float32) if (self.label_dim and class_labels is not None) else None
        F_x = self.model(c_in * x, c_noise.flatten(), labels, augment_labels)
        return c_skip * x + c_out * F_x.to(torch.float32)
