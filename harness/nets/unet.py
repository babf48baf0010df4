"""The U-Net of DDPM++ / NCSN++ (Song et al. 2021) in EDM's SongUNet configuration.

Module names and parameter shapes follow EDM's SongUNet (`enc['32x32_block0'].conv0.weight`, ...),
so its state dicts map onto this network one to one (apart from EDM's non-persistent-here
resampling-filter buffers) and the parameter counts are the paper's.

Resolutions are img_resolution >> level, so any size divisible by 2^(levels-1) works
(28 → 14 → 7 for MNIST with three levels).
"""

from __future__ import annotations

import math
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

# The U-Net's forward pass walks a plan of (step, module name) fixed at construction, so the
# structure is decided once and torch.compile sees straight-line code.
_ENC_STEPS = ("conv", "block", "aux_down", "aux_skip", "aux_residual")
_DEC_STEPS = ("block", "block_cat", "aux_up", "aux_out")


class UNet(MappingMixin, nn.Module):
    """F(x, c_noise, class_labels, augment_labels) of DDPM++ / NCSN++.

    Encoder: a 3×3 input conv, then per level (a downsampling block when level > 0) and
    `num_blocks` blocks; the encoder type adds a skip ('skip') or residual ('residual') branch
    from the downsampled input. Decoder: two middle blocks (the first with attention) at the
    lowest resolution, then per level (an upsampling block when not lowest) and
    `decoder_blocks` (= num_blocks + 1 in the paper) blocks that take the matching skip
    connection; the output comes from GroupNorm-SiLU-conv at the top level ('standard') or is
    summed over all levels ('skip').
    """

    def __init__(
        self,
        *,
        img_resolution: int,
        img_channels: int,
        label_dim: int = 0,
        augment_dim: int = 0,
        model_channels: int = 128,
        channel_mult: Sequence[int] = (2, 2, 2),
        channel_mult_emb: int = 4,
        num_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.10,
        label_dropout: float = 0.0,
        channel_mult_noise: int = 1,
        embedding_type: str = "positional",
        encoder_type: str = "standard",
        decoder_type: str = "standard",
        resample_filter: Sequence[int] = (1, 1),
        decoder_blocks: int | None = None,
        mid_attention: bool = True,
    ):
        super().__init__()
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        emb_channels = model_channels * channel_mult_emb
        noise_channels = model_channels * channel_mult_noise
        decoder_blocks = num_blocks + 1 if decoder_blocks is None else decoder_blocks
        block = dict(emb_channels=emb_channels, dropout=dropout, resample_filter=resample_filter)

        # Mapping network: noise embedding (+ class label, + augmentation label) → emb.
        self.build_mapping(noise_channels=noise_channels, emb_channels=emb_channels, embedding_type=embedding_type,
                           label_dim=label_dim, augment_dim=augment_dim, label_dropout=label_dropout)

        self.enc = nn.ModuleDict()
        self._enc_plan: list[tuple[str, str]] = []
        skips: list[int] = []
        cout, caux = img_channels, img_channels
        for level, mult in enumerate(channel_mult):
            res = img_resolution >> level
            if level == 0:
                self._add_enc("conv", f"{res}x{res}_conv", Conv2d(cout, model_channels, 3))
                cout = model_channels
                skips.append(cout)
            else:
                self._add_enc("block", f"{res}x{res}_down", UNetBlock(cout, cout, resample="down", **block))
                skips.append(cout)
                if encoder_type == "skip":
                    self._add_enc("aux_down", f"{res}x{res}_aux_down", Resample("down", resample_filter))
                    self._add_enc("aux_skip", f"{res}x{res}_aux_skip", Conv2d(caux, cout, 1))
                if encoder_type == "residual":
                    residual = Conv2d(caux, cout, 3, resample="down", resample_filter=resample_filter, fused_down=True)
                    self._add_enc("aux_residual", f"{res}x{res}_aux_residual", residual)
                    caux = cout
            for idx in range(num_blocks):
                attn = res in attn_resolutions
                self._add_enc("block", f"{res}x{res}_block{idx}",
                              UNetBlock(cout, model_channels * mult, attention=attn, **block))
                cout = model_channels * mult
                skips.append(cout)

        self.dec = nn.ModuleDict()
        self._dec_plan: list[tuple[str, str]] = []
        for level, mult in reversed(list(enumerate(channel_mult))):
            res = img_resolution >> level
            if level == len(channel_mult) - 1:
                self._add_dec("block", f"{res}x{res}_in0", UNetBlock(cout, cout, attention=mid_attention, **block))
                self._add_dec("block", f"{res}x{res}_in1", UNetBlock(cout, cout, **block))
            else:
                self._add_dec("block", f"{res}x{res}_up", UNetBlock(cout, cout, resample="up", **block))
            for idx in range(decoder_blocks):
                cin = cout + skips.pop()
                cout = model_channels * mult
                attn = idx == decoder_blocks - 1 and res in attn_resolutions
                self._add_dec("block_cat", f"{res}x{res}_block{idx}", UNetBlock(cin, cout, attention=attn, **block))
            if decoder_type == "skip" or level == 0:
                if decoder_type == "skip" and level < len(channel_mult) - 1:
                    self._add_dec("aux_up", f"{res}x{res}_aux_up", Resample("up", resample_filter))
                self.dec[f"{res}x{res}_aux_norm"] = GroupNorm(cout, eps=1e-6)
                self._add_dec("aux_out", f"{res}x{res}_aux_conv", Conv2d(cout, img_channels, 3, init_gain=1e-5))
        if skips:
            raise ValueError(
                f"decoder_blocks={decoder_blocks} leaves {len(skips)} encoder skip connections unused; "
                f"with num_blocks={num_blocks} it must be {num_blocks + 1}"
            )

    def _add_enc(self, step: str, name: str, module: nn.Module) -> None:
        self.enc[name] = module
        self._enc_plan.append((step, name))

    def _add_dec(self, step: str, name: str, module: nn.Module) -> None:
        self.dec[name] = module
        self._dec_plan.append((step, name))

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(noise_labels, class_labels, augment_labels)
        skips: list[torch.Tensor] = []
        aux = x
        for step, name in self._enc_plan:
            module = self.enc[name]
            if step == "conv":
                x = module(x)
                skips.append(x)
            elif step == "block":
                x = module(x, emb)
                skips.append(x)
            elif step == "aux_down":
                aux = module(aux)
            elif step == "aux_skip":
                x = skips[-1] = x + module(aux)
            else:  # aux_residual
                x = skips[-1] = aux = (x + module(aux)) * math.sqrt(0.5)

        out = None
        for step, name in self._dec_plan:
            module = self.dec[name]
            if step == "block":
                x = module(x, emb)
            elif step == "block_cat":
                x = module(torch.cat([x, skips.pop()], dim=1), emb)
            elif step == "aux_up":
                out = module(out)
            else:  # aux_out: GroupNorm-SiLU-conv to image channels, summed over levels for 'skip'
                norm = self.dec[name.replace("aux_conv", "aux_norm")]
                y = module(norm_silu(norm, x))
                out = y if out is None else out + y
        return out
