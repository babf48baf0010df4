"""Changing the resolution of uint8 image batches: centred zero padding, or crop and resize.

Both work on uint8 tensors [N, C, H, W] and return uint8, vectorised over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_RESIZE_CHUNK = 2048  # images per interpolate call: bounds the float32 copy (~100 MB at 64x64x3)


def pad_centered(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Zero-pad [N, C, H, W] to [N, C, R, R], the original centred.

    An odd margin puts the extra row/column after the image (bottom, right). MNIST's 28 → 32 adds
    2 zero rows/columns on each side, so the digit stays centred on the black background.
    """
    _, _, H, W = images.shape
    if resolution < max(H, W):
        raise ValueError(f"cannot pad {H}x{W} images to the smaller {resolution}x{resolution}")
    top, left = (resolution - H) // 2, (resolution - W) // 2
    return F.pad(images, (left, resolution - W - left, top, resolution - H - top))


def center_crop_square(images: torch.Tensor) -> torch.Tensor:
    """The largest centred square of [N, C, H, W] (EDM dataset_tool's 'center-crop')."""
    _, _, H, W = images.shape
    side = min(H, W)
    top, left = (H - side) // 2, (W - side) // 2
    return images[:, :, top:top + side, left:left + side]


def resize_square(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Centre-crop to a square, then resize to R x R: bicubic, antialiased when shrinking."""
    images = center_crop_square(images)
    if images.shape[-1] == resolution:
        return images.contiguous()
    chunks = [_resize_chunk(chunk, resolution) for chunk in images.split(_RESIZE_CHUNK)]
    if not chunks:
        return images.new_empty((0, images.shape[1], resolution, resolution))
    return torch.cat(chunks)


def _resize_chunk(images: torch.Tensor, resolution: int) -> torch.Tensor:
    x = F.interpolate(images.float(), size=(resolution, resolution), mode="bicubic",
                      antialias=True, align_corners=False)
    return x.round_().clamp_(0, 255).to(torch.uint8)
