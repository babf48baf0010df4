"""Layers of the U-Net backbones: linear, convolution with resampling, normalisation, attention,
noise embeddings and the residual block.

The layers follow the layout of EDM's SongUNet (Karras et al. 2022, `training/networks.py`) so that
parameter counts, parameter names and the function computed are the same, but they are written
for speed: no dtype casts inside the network (autocast decides the precision of every matmul and
convolution), resampling with [1,1] as pooling / nearest upsampling instead of depthwise
convolutions, and attention through `scaled_dot_product_attention` on the token layout that
channels_last memory already has.

Every layer with parameters has `reset_parameters(generator)`; weights are never drawn from the
global RNG. Initialisation follows EDM's SongUNet: Xavier-uniform weights scaled by `init_gain`,
zero biases, unit GroupNorm scales.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def xavier_uniform_(
    weight: torch.Tensor, fan_in: int, fan_out: int, gain: float, generator: torch.Generator
) -> None:
    """Fill `weight` with U(-a, a), a = gain·sqrt(6 / (fan_in + fan_out)), from a CPU generator."""
    if weight.is_meta:
        return
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        if weight.device.type == "cpu":
            weight.uniform_(-bound, bound, generator=generator)
        else:  # the generator lives on the CPU: draw there, then copy
            weight.copy_(torch.empty(weight.shape, device="cpu").uniform_(-bound, bound, generator=generator))


class Linear(nn.Module):
    """Fully connected layer, y = x Wᵀ + b."""

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True, init_gain: float = 1.0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.init_gain = init_gain
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None

    def reset_parameters(self, generator: torch.Generator) -> None:
        xavier_uniform_(self.weight, self.in_features, self.out_features, self.init_gain, generator)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def resample_kernel(resample_filter: Sequence[int]) -> torch.Tensor:
    """The separable 2-D filter f fᵀ / (Σf)², shaped [1, 1, k, k]."""
    f = torch.as_tensor(list(resample_filter), dtype=torch.float32)
    return (torch.outer(f, f) / f.sum().square())[None, None]


class Resample(nn.Module):
    """Downsampling or upsampling by 2 with a separable FIR filter (no parameters).

    [1,1] is average pooling (down) and nearest-neighbour upsampling (up); other filters, such as
    NCSN++'s [1,3,3,1], run as depthwise (transposed) convolutions with padding (k-1)//2, which
    halves or doubles any even size.
    """

    def __init__(self, mode: str, resample_filter: Sequence[int]):
        super().__init__()
        if mode not in ("up", "down"):
            raise ValueError(f"mode must be 'up' or 'down', got {mode!r}")
        self.mode = mode
        self.is_box = list(resample_filter) == [1, 1]
        self.register_buffer("kernel", resample_kernel(resample_filter), persistent=False)

    def forward(self, x: torch.Tensor, *, padded: bool = True) -> torch.Tensor:
        """`padded=False` (down only) drops the (k-1)//2 zero padding: the caller padded already."""
        if self.is_box:
            if self.mode == "down":
                return F.avg_pool2d(x, 2)
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        channels = x.shape[1]
        pad = (self.kernel.shape[-1] - 1) // 2 if padded else 0
        if self.mode == "down":
            f = self.kernel.to(x.dtype).expand(channels, 1, -1, -1)
            return F.conv2d(x, f, stride=2, padding=pad, groups=channels)
        f = (self.kernel * 4).to(x.dtype).expand(channels, 1, -1, -1)
        return F.conv_transpose2d(x, f, stride=2, padding=pad, groups=channels)


class Conv2d(nn.Module):
    """k×k convolution, optionally after a resampling by 2 (`resample` = 'up' | 'down').

    With `fused_down` the convolution runs first at full resolution with extra padding and the
    filter downsamples its output (NCSN++'s residual input branch); the bias is added last.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        *,
        bias: bool = True,
        resample: str | None = None,
        resample_filter: Sequence[int] = (1, 1),
        fused_down: bool = False,
        init_gain: float = 1.0,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel = kernel
        self.init_gain = init_gain
        self.fused_down = fused_down
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel, kernel))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.resample = Resample(resample, resample_filter) if resample else None
        if fused_down and resample != "down":
            raise ValueError("fused_down needs resample='down'")

    def reset_parameters(self, generator: torch.Generator) -> None:
        k2 = self.kernel * self.kernel
        xavier_uniform_(self.weight, self.in_channels * k2, self.out_channels * k2, self.init_gain, generator)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.kernel // 2
        if self.fused_down:
            extra = (self.resample.kernel.shape[-1] - 1) // 2
            x = self.resample(F.conv2d(x, self.weight, padding=pad + extra), padded=False)
            return x if self.bias is None else x + self.bias[:, None, None]
        if self.resample is not None:
            x = self.resample(x)
        return F.conv2d(x, self.weight, self.bias, padding=pad)


def num_groups(num_channels: int, max_groups: int = 32, min_channels_per_group: int = 4) -> int:
    """EDM's rule, min(32, C // 4) groups, lowered to the nearest divisor of C when it does not divide."""
    groups = max(1, min(max_groups, num_channels // min_channels_per_group))
    while num_channels % groups:
        groups -= 1
    return groups


class GroupNorm(nn.GroupNorm):
    """GroupNorm with EDM's group count (`num_groups`), so small layers keep >= 4 channels per group."""

    def __init__(self, num_channels: int, *, eps: float = 1e-6):
        super().__init__(num_groups(num_channels), num_channels, eps=eps)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        if self.weight is not None and not self.weight.is_meta:
            nn.init.ones_(self.weight)
            nn.init.zeros_(self.bias)


def norm_silu(norm: GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """silu(GroupNorm(x)): one pointwise chain that torch.compile fuses into the normalisation."""
    return F.silu(norm(x))


class PositionalEmbedding(nn.Module):
    """DDPM++ noise embedding: [sin(c ω_j), cos(c ω_j)], ω_j = 10000^(-j/(C/2 - 1)), j < C/2."""

    def __init__(self, num_channels: int, max_positions: int = 10000):
        super().__init__()
        half = num_channels // 2
        omega = (1.0 / max_positions) ** (torch.arange(half, dtype=torch.float32) / max(half - 1, 1))
        self.register_buffer("omega", omega, persistent=False)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        phase = c_noise.float()[:, None] * self.omega  # elementwise: autocast never lowers it
        return torch.cat([phase.sin(), phase.cos()], dim=1)


class FourierEmbedding(nn.Module):
    """NCSN++ noise embedding: [sin(2π c ω_j), cos(2π c ω_j)] with fixed random ω_j ~ N(0, 16²).

    The frequencies are a persistent buffer named `freqs` (as in EDM), drawn by `reset_parameters`.
    """

    def __init__(self, num_channels: int, scale: float = 16.0):
        super().__init__()
        self.scale = scale
        self.register_buffer("freqs", torch.empty(num_channels // 2))

    def reset_parameters(self, generator: torch.Generator) -> None:
        if self.freqs.is_meta:
            return
        draw = torch.randn(self.freqs.shape, generator=generator, dtype=torch.float32, device="cpu")
        self.freqs.copy_(draw * self.scale)

    def forward(self, c_noise: torch.Tensor) -> torch.Tensor:
        phase = c_noise.float()[:, None] * (self.freqs * (2 * math.pi))
        return torch.cat([phase.sin(), phase.cos()], dim=1)


def qkv_as_head_blocks(qkv: Conv2d, num_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The 1×1 qkv conv as a [3C, C] matrix whose rows are ordered (q|k|v, head, channel).

    EDM's layout interleaves them (output channel = head·3c + i·3 + j for q/k/v index j); permuting
    the small weight instead of the large activation gives contiguous q, k, v for the fused kernel.
    """
    C = qkv.in_channels
    c = C // num_heads
    w = qkv.weight.view(num_heads, c, 3, C).permute(2, 0, 1, 3).reshape(3 * C, C)
    b = qkv.bias.view(num_heads, c, 3).permute(2, 0, 1).reshape(3 * C)
    return w, b


def self_attention(x: torch.Tensor, norm: GroupNorm, qkv: Conv2d, proj: Conv2d, num_heads: int) -> torch.Tensor:
    """proj(softmax(q kᵀ/√c) v) over the H·W positions of norm(x); the caller adds the residual.

    Computed on the [N, H·W, C] token view, which channels_last memory already holds, with the
    1×1 convolutions as matmuls and the attention through scaled_dot_product_attention.
    """
    N, C, H, W = x.shape
    c = C // num_heads
    tokens = norm(x).flatten(2).transpose(1, 2)
    w, b = qkv_as_head_blocks(qkv, num_heads)
    q, k, v = F.linear(tokens, w, b).view(N, H * W, 3, num_heads, c).unbind(2)
    a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    out = F.linear(a.transpose(1, 2).reshape(N, H * W, C), proj.weight.view(C, C), proj.bias)
    return out.transpose(1, 2).reshape(N, C, H, W)


class UNetBlock(nn.Module):
    """SongUNet residual block (DDPM++/NCSN++ setting: additive embedding, 1×1 resampled skip).

    x ← (conv1(drop(silu(norm1(conv0(silu(norm0 x)) + affine(emb))))) + skip(x)) · s
    x ← (attention(x) + x) · s          when `attention`,   s = sqrt(1/2).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        *,
        resample: str | None = None,
        attention: bool = False,
        num_heads: int = 1,
        dropout: float = 0.0,
        skip_scale: float = math.sqrt(0.5),
        eps: float = 1e-6,
        resample_filter: Sequence[int] = (1, 1),
        zero_gain: float = 1e-5,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.dropout = dropout
        self.skip_scale = skip_scale
        self.norm0 = GroupNorm(in_channels, eps=eps)
        self.conv0 = Conv2d(in_channels, out_channels, 3, resample=resample, resample_filter=resample_filter)
        self.affine = Linear(emb_channels, out_channels)
        self.norm1 = GroupNorm(out_channels, eps=eps)
        self.conv1 = Conv2d(out_channels, out_channels, 3, init_gain=zero_gain)
        self.skip = None
        if out_channels != in_channels or resample:
            self.skip = Conv2d(in_channels, out_channels, 1, resample=resample, resample_filter=resample_filter)
        self.num_heads = num_heads if attention else 0
        if attention:
            if out_channels % num_heads:
                raise ValueError(f"channels ({out_channels}) must be divisible by num_heads ({num_heads})")
            self.norm2 = GroupNorm(out_channels, eps=eps)
            self.qkv = Conv2d(out_channels, out_channels * 3, 1, init_gain=math.sqrt(0.2))
            self.proj = Conv2d(out_channels, out_channels, 1, init_gain=zero_gain)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(norm_silu(self.norm0, x))
        h = norm_silu(self.norm1, h + self.affine(emb)[:, :, None, None])
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        x = (h + (x if self.skip is None else self.skip(x))) * self.skip_scale
        if self.num_heads:
            x = (self_attention(x, self.norm2, self.qkv, self.proj, self.num_heads) + x) * self.skip_scale
        return x


def reset_all_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """Initialise every layer of `module` in a fixed (registration) order from one generator."""
    for layer in module.modules():
        reset = getattr(layer, "reset_parameters", None)
        if reset is not None and layer is not module:
            reset(generator)


class MappingMixin:
    """The conditioning vector of DDPM++/NCSN++: emb = silu(W1 silu(W0 (e(c_noise) + W_y y + W_a a))).

    e is the noise embedding, y the one-hot class label scaled by sqrt(label_dim) (the zero vector
    when absent, so only W_y's bias acts, as in EDM), a the augmentation label. The layers are
    registered on the network itself (`map_noise`, `map_label`, ...), which keeps EDM's names.
    """

    label_dim: int
    label_dropout: float

    def build_mapping(self, *, noise_channels: int, emb_channels: int, embedding_type: str,
                      label_dim: int, augment_dim: int, label_dropout: float) -> None:
        self.label_dim = label_dim
        self.augment_dim = augment_dim
        self.label_dropout = label_dropout
        if embedding_type == "positional":
            self.map_noise = PositionalEmbedding(noise_channels)
        else:
            self.map_noise = FourierEmbedding(noise_channels)
        self.map_label = Linear(label_dim, noise_channels) if label_dim else None
        self.map_augment = Linear(augment_dim, noise_channels, bias=False) if augment_dim else None
        self.map_layer0 = Linear(noise_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)

    def embed(self, c_noise: torch.Tensor, class_labels: torch.Tensor | None,
              augment_labels: torch.Tensor | None) -> torch.Tensor:
        emb = self.map_noise(c_noise.reshape(-1))
        if self.map_label is not None:
            if class_labels is None:
                emb = emb + self.map_label.bias
            else:
                emb = emb + self.map_label(self.drop_labels(class_labels) * math.sqrt(self.label_dim))
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels)
        emb = F.silu(self.map_layer0(emb))
        return F.silu(self.map_layer1(emb))

    def drop_labels(self, class_labels: torch.Tensor) -> torch.Tensor:
        """Zero each sample's label with probability label_dropout in training mode (for guidance)."""
        if not (self.training and self.label_dropout):
            return class_labels
        keep = torch.rand(class_labels.shape[0], 1, device=class_labels.device) >= self.label_dropout
        return class_labels * keep.to(class_labels.dtype)
