"""A lean U-Net for small images on a CPU (8×8 digits, 28×28 / 32×32 MNIST).

On two CPU cores the cost is the 3×3 convolutions, so the network keeps the paper's block (GroupNorm,
SiLU, additive noise embedding, 1×1 skip, sqrt(1/2) residual scale) and removes the convolutions
that cost most per unit of benefit: resampling is parameter-free (pooling / nearest upsampling)
instead of a residual block, the decoder takes one skip connection per level instead of
num_blocks + 1, the middle is one block, and attention is off unless asked for. With the width
doubling as the resolution halves every convolution costs about the same, so the work is
~19 convolution-units for three levels against ~45 for SongUNet with one block per level.

Structure, for levels ℓ = 0..L-1 with widths C_ℓ = model_channels · channel_mult[ℓ]:
  stem 3×3 conv → for each ℓ: [downsample if ℓ > 0] → num_blocks blocks (C_{ℓ-1} → C_ℓ) → skip_ℓ
  middle block at the lowest resolution
  for each ℓ from L-1 down: [upsample if ℓ < L-1] → concat skip_ℓ → num_blocks blocks → C_ℓ
  GroupNorm → SiLU → 3×3 conv (zero-initialised scale) → image channels
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from harness.nets.layers import (
    Conv2d,
    GroupNorm,
    MappingMixin,
    Resample,
    UNetBlock,
    norm_silu,
)


class SmallUNet(MappingMixin, nn.Module):
    """F(x, c_noise, class_labels, augment_labels) for small images; same conditioning as UNet."""

    def __init__(
        self,
        *,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 1,
        attn_resolutions: Sequence[int] = (),
        dropout: float = 0.0,
        label_dropout: float = 0.0,
        channel_mult_noise: int = 1,
        embedding_type: str = "positional",
        resample_filter: Sequence[int] = (1, 1),
    ):
        super().__init__()
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        block = dict(emb_channels=emb_channels, dropout=dropout, resample_filter=resample_filter)
        widths = [model_channels * m for m in channel_mult]

        self.build_mapping(noise_channels=noise_channels, emb_channels=emb_channels, embedding_type=embedding_type,
                           label_dim=label_dim, augment_dim=augment_dim, label_dropout=label_dropout)

        self.stem = Conv2d(img_channels, widths[0], 3)
        self.down = Resample("down", resample_filter)
        self.up = Resample("up", resample_filter)
        self.enc = nn.ModuleList()
        cout = widths[0]
        for level, width in enumerate(widths):
            attn = (img_resolution >> level) in attn_resolutions
            blocks = [UNetBlock(cout if i == 0 else width, width, attention=attn, **block) for i in range(num_blocks)]
            self.enc.append(nn.ModuleList(blocks))
            cout = width
        lowest = img_resolution >> (len(widths) - 1)
        self.mid = UNetBlock(cout, cout, attention=lowest in attn_resolutions, **block)
        self.dec = nn.ModuleList()
        for level in reversed(range(len(widths))):
            width = widths[level]
            attn = (img_resolution >> level) in attn_resolutions
            cin = cout + width
            blocks = [UNetBlock(cin if i == 0 else width, width, attention=attn, **block) for i in range(num_blocks)]
            self.dec.append(nn.ModuleList(blocks))
            cout = width
        self.out_norm = GroupNorm(cout, eps=1e-6)
        self.out_conv = Conv2d(cout, img_channels, 3, init_gain=1e-5)

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(noise_labels, class_labels, augment_labels)
        x = self.stem(x)
        skips = []
        for level, blocks in enumerate(self.enc):
            if level > 0:
                x = self.down(x)
            for block in blocks:
                x = block(x, emb)
            skips.append(x)
        x = self.mid(x, emb)
        for level, blocks in enumerate(self.dec):
            if level > 0:
                x = self.up(x)
            x = torch.cat([x, skips.pop()], dim=1)
            for block in blocks:
                x = block(x, emb)
        return self.out_conv(norm_silu(self.out_norm, x))
