"""Non-leaking augmentation in the manner of EDM's AugmentPipe, vectorised on the device.

Each transform fires per image with probability (weight * p) (EDM's probability multipliers;
FDM and EDM train with xflip=1e8, yflip=1, scale=1, rotate_frac=1, aniso=1, translate_frac=1 and
p = --augment). The network is conditioned on the augmentation label, which determines the
transform, so it learns to generate un-augmented images when the label is zero ("non-leaking").

Transforms, parameter distributions and label columns (in this order, only for transforms whose
weight is > 0; the FDM/EDM defaults give the 9-value label). Defaults of the distribution
parameters are EDM's (translate_int_max 0.125, scale_std 0.2, rotate_frac_max 1, aniso_std 0.2,
aniso_rotate_prob 0.5, translate_frac_std 0.125):

| transform      | parameters                                              | label columns       |
|----------------|---------------------------------------------------------|---------------------|
| xflip          | f ~ {0, 1}                                              | f                   |
| yflip          | f ~ {0, 1}                                              | f                   |
| translate_int  | t = round(u * size * 0.125), u ~ U(-1, 1), per axis     | t / (size * 0.125)  |
| scale          | s = 2^(0.2 w), w ~ N(0, 1)                              | w                   |
| rotate_frac    | θ ~ U(-π, π)                                            | cos θ - 1, sin θ    |
| aniso          | stretch 2^(0.2 w) along angle r, its inverse across;    | w cos 2r, w sin 2r  |
|                | w ~ N(0, 1); r ~ U(-π, π) with probability 0.5, else 0  |                     |
| translate_frac | t = w * size * 0.125, w ~ N(0, 1), per axis             | w_x, w_y            |

One deliberate difference from EDM: EDM labels anisotropic scaling (w cos r, w sin r). The
draws (w, r) and (-w, r + π) then share a label but are different transforms (the stretch axis
swaps), so that label does not determine the transform. The transform depends on (w, r) only
through (w cos 2r, w sin 2r) [(w, r) and (-w, r + π/2) are the same stretch], which is the label
used here: it determines the transform exactly.

Execution: flips are exact pixel flips; integer translation, scaling, rotation, anisotropic
scaling and fractional translation are composed into one inverse affine matrix per image and
applied with one bilinear `grid_sample`, reflecting at the border (EDM pads with reflection
too; EDM additionally resamples at 2x with a wavelet filter against aliasing, which we omit).
Images whose geometric parameters are all zero are returned bit-exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_LABEL_COLUMNS = (("xflip", 1), ("yflip", 1), ("translate_int", 2), ("scale", 1),
                  ("rotate_frac", 2), ("aniso", 2), ("translate_frac", 2))
_GEOMETRIC = ("translate_int", "scale", "rotate_frac", "aniso", "translate_frac")


@dataclass(frozen=True)
class AugmentParams:
    """Per-image parameters [N] (zero where a transform did not fire)."""

    xflip: torch.Tensor         # bool
    yflip: torch.Tensor         # bool
    t_int: torch.Tensor         # [2, N] integer pixel shifts (x right, y down), as float
    scale_w: torch.Tensor       # log2 scale in units of scale_std
    theta: torch.Tensor         # rotation angle (radians)
    aniso_w: torch.Tensor       # log2 stretch in units of aniso_std
    aniso_r: torch.Tensor       # stretch axis angle
    t_frac_w: torch.Tensor      # [2, N] shift in units of translate_frac_std * size


@dataclass(frozen=True)
class AugmentTransform:
    """What happens to each image: flips, then the affine map G_inv.

    G_inv [N, 3, 3] maps an output pixel (x, y, 1), in pixels from the image centre with y
    pointing down, to the input position that is sampled there. `moved` [N] is False where
    G_inv is the identity (those images are not resampled).
    """

    xflip: torch.Tensor
    yflip: torch.Tensor
    G_inv: torch.Tensor
    moved: torch.Tensor


class AugmentPipe:
    """Augmentation with probability multiplier p; defaults are the FDM/EDM training weights.

    `__call__(images, *, generator) -> (images, labels [N, augment_dim])`. `images` are float
    [N, C, H, W] (any range, e.g. [-1, 1]); dtype, shape and range are preserved. Random numbers
    come only from `generator` (drawn on its device), never from the global RNG.
    """

    def __init__(self, p: float, *, xflip: float = 1e8, yflip: float = 1.0,
                 translate_int: float = 0.0, scale: float = 1.0, rotate_frac: float = 1.0,
                 aniso: float = 1.0, translate_frac: float = 1.0, translate_int_max: float = 0.125,
                 scale_std: float = 0.2, rotate_frac_max: float = 1.0, aniso_std: float = 0.2,
                 aniso_rotate_prob: float = 0.5, translate_frac_std: float = 0.125):
        self.p = float(p)
        self.weights = {"xflip": float(xflip), "yflip": float(yflip),
                        "translate_int": float(translate_int), "scale": float(scale),
                        "rotate_frac": float(rotate_frac), "aniso": float(aniso),
                        "translate_frac": float(translate_frac)}
        self.translate_int_max = float(translate_int_max)
        self.scale_std = float(scale_std)
        self.rotate_frac_max = float(rotate_frac_max)
        self.aniso_std = float(aniso_std)
        self.aniso_rotate_prob = float(aniso_rotate_prob)
        self.translate_frac_std = float(translate_frac_std)
        bad = {k: v for k, v in {"p": self.p, **self.weights}.items() if not v >= 0}
        if bad:
            raise ValueError(f"augmentation probabilities must be >= 0: {bad}")

    def enabled(self, transform: str) -> bool:
        return self.weights[transform] > 0

    @property
    def label_names(self) -> tuple[str, ...]:
        names = {"xflip": ("xflip",), "yflip": ("yflip",),
                 "translate_int": ("translate_int_x", "translate_int_y"), "scale": ("scale",),
                 "rotate_frac": ("rotate_cos_minus_1", "rotate_sin"),
                 "aniso": ("aniso_w_cos_2r", "aniso_w_sin_2r"),
                 "translate_frac": ("translate_frac_x", "translate_frac_y")}
        return tuple(n for t, _ in _LABEL_COLUMNS if self.enabled(t) for n in names[t])

    @property
    def augment_dim(self) -> int:
        """Length of the augmentation label (9 with the FDM/EDM defaults)."""
        return len(self.label_names)

    def __call__(self, images: torch.Tensor, *, generator: torch.Generator):
        if not images.is_floating_point() or images.ndim != 4 or min(images.shape[-2:]) < 2:
            raise ValueError(f"AugmentPipe needs float images [N, C, H, W] with H, W >= 2, got "
                             f"{images.dtype} {tuple(images.shape)}")
        N, _, H, W = images.shape
        if self.p == 0:  # nothing can fire: skip the draws and the pixel work
            return images, torch.zeros(N, self.augment_dim, device=images.device)
        params = self.draw(N, H, W, generator=generator, device=images.device)
        labels = self.labels(params, H, W)
        transform = AugmentTransform(params.xflip, params.yflip, self.matrix(params, H, W),
                                     self._moved(labels))
        return apply_transform(images, transform, warp=self._warps()), labels

    def _warps(self) -> bool:
        return self.p > 0 and any(self.enabled(t) for t in _GEOMETRIC)

    # -- drawing -----------------------------------------------------------------------------

    def draw(self, n: int, H: int, W: int, *, generator: torch.Generator,
             device: torch.device | str) -> AugmentParams:
        """Per-image parameters; EDM's distributions (see the module docstring)."""
        def uniform(*shape):  # U(0, 1), drawn where the generator lives
            return torch.rand(shape, generator=generator, device=generator.device).to(device)

        def normal(*shape):
            return torch.randn(shape, generator=generator, device=generator.device).to(device)

        def gated(transform, value):  # fires with probability weight * p, per image
            if not self.enabled(transform):
                return torch.zeros_like(value)
            fire = uniform(n) < self.weights[transform] * self.p
            return torch.where(fire, value, torch.zeros_like(value))

        def coin():
            return torch.randint(2, (n,), generator=generator, device=generator.device).to(device)

        size = torch.tensor([[W], [H]], device=device, dtype=torch.float32)
        t_int = (gated("translate_int", uniform(2, n) * 2 - 1) * size * self.translate_int_max)
        aniso_r = (uniform(n) * 2 - 1) * math.pi
        aniso_r = torch.where(uniform(n) < self.aniso_rotate_prob, aniso_r,
                              torch.zeros_like(aniso_r))
        xflip, yflip = gated("xflip", coin()).bool(), gated("yflip", coin()).bool()
        scale_w = gated("scale", normal(n))
        theta = gated("rotate_frac", (uniform(n) * 2 - 1) * (math.pi * self.rotate_frac_max))
        aniso_w = gated("aniso", normal(n))
        aniso_r = torch.where(aniso_w != 0, aniso_r, torch.zeros_like(aniso_r))  # canonical
        return AugmentParams(xflip=xflip, yflip=yflip, t_int=t_int.round(), scale_w=scale_w,
                             theta=theta, aniso_w=aniso_w, aniso_r=aniso_r,
                             t_frac_w=gated("translate_frac", normal(2, n)))

    # -- label <-> parameters ------------------------------------------------------------------

    def labels(self, params: AugmentParams, H: int, W: int) -> torch.Tensor:
        """The augmentation label [N, augment_dim] (float32)."""
        size = torch.tensor([[W], [H]], device=params.theta.device) * self.translate_int_max
        columns = {
            "xflip": [params.xflip], "yflip": [params.yflip],
            "translate_int": list(params.t_int / size), "scale": [params.scale_w],
            "rotate_frac": [params.theta.cos() - 1, params.theta.sin()],
            "aniso": [params.aniso_w * (2 * params.aniso_r).cos(),
                      params.aniso_w * (2 * params.aniso_r).sin()],
            "translate_frac": list(params.t_frac_w),
        }
        picked = [c.float() for t, _ in _LABEL_COLUMNS if self.enabled(t) for c in columns[t]]
        if not picked:
            return torch.zeros(params.theta.shape[0], 0, device=params.theta.device)
        return torch.stack(picked, dim=1)

    def params_from_labels(self, labels: torch.Tensor, H: int, W: int) -> AugmentParams:
        """Recover parameters from a label alone (up to transforms that are the same map)."""
        n, device = labels.shape[0], labels.device
        zeros = torch.zeros(n, device=device)
        found, k = {}, 0
        for transform, width in _LABEL_COLUMNS:
            if self.enabled(transform):
                found[transform] = labels[:, k:k + width].T
                k += width
        if k != labels.shape[1]:
            raise ValueError(f"label has {labels.shape[1]} columns; this pipe writes {k}")
        size = torch.tensor([[W], [H]], device=device) * self.translate_int_max
        rot = found.get("rotate_frac", torch.stack([zeros, zeros]))
        aniso = found.get("aniso", torch.stack([zeros, zeros]))
        return AugmentParams(
            xflip=found.get("xflip", zeros[None])[0] > 0.5,
            yflip=found.get("yflip", zeros[None])[0] > 0.5,
            t_int=(found.get("translate_int", torch.stack([zeros, zeros])) * size).round(),
            scale_w=found.get("scale", zeros[None])[0],
            theta=torch.atan2(rot[1], rot[0] + 1),
            aniso_w=torch.hypot(aniso[0], aniso[1]),
            aniso_r=torch.atan2(aniso[1], aniso[0]) / 2,
            t_frac_w=found.get("translate_frac", torch.stack([zeros, zeros])))

    def transform_from_labels(self, labels: torch.Tensor, H: int, W: int) -> AugmentTransform:
        """The transform a label stands for (the non-leaking property: label → transform)."""
        params = self.params_from_labels(labels, H, W)
        return AugmentTransform(params.xflip, params.yflip, self.matrix(params, H, W),
                                self._moved(labels))

    def _moved(self, labels: torch.Tensor) -> torch.Tensor:
        columns, k = [], 0
        for transform, width in _LABEL_COLUMNS:
            if self.enabled(transform):
                if transform in _GEOMETRIC:
                    columns += range(k, k + width)
                k += width
        return (labels[:, columns] != 0).any(dim=1)

    # -- geometry ------------------------------------------------------------------------------

    def matrix(self, params: AugmentParams, H: int, W: int) -> torch.Tensor:
        """G_inv [N, 3, 3]: output pixel → input pixel, composed as in EDM (inverse order)."""
        s = torch.exp2(params.scale_w * self.scale_std)
        s_a = torch.exp2(params.aniso_w * self.aniso_std)
        r = params.aniso_r
        size = torch.tensor([[W], [H]], device=s.device)
        shift = params.t_frac_w * size * self.translate_frac_std
        G_geo = (_scale(1 / s, 1 / s) @ _rotate(params.theta)
                 @ _rotate(-r) @ _scale(1 / s_a, s_a) @ _rotate(r)
                 @ _translate(-shift[0], -shift[1]))
        # integer translation acts on the image before the geometric part, so it is applied last
        return _translate(-params.t_int[0], -params.t_int[1]) @ G_geo


def _affine(a, b, c, d, e, f) -> torch.Tensor:
    """Batched [[a, b, c], [d, e, f], [0, 0, 1]]."""
    zeros, ones = torch.zeros_like(a), torch.ones_like(a)
    return torch.stack([a, b, c, d, e, f, zeros, zeros, ones], dim=-1).reshape(-1, 3, 3)


def _scale(sx, sy):
    zeros = torch.zeros_like(sx)
    return _affine(sx, zeros, zeros, zeros, sy, zeros)


def _rotate(theta):
    zeros = torch.zeros_like(theta)
    return _affine(theta.cos(), -theta.sin(), zeros, theta.sin(), theta.cos(), zeros)


def _translate(tx, ty):
    zeros, ones = torch.zeros_like(tx), torch.ones_like(tx)
    return _affine(ones, zeros, tx, zeros, ones, ty)


def apply_transform(images: torch.Tensor, transform: AugmentTransform, *,
                    warp: bool = True) -> torch.Tensor:
    """Flip, then resample the images whose transform moved them; the rest stay bit-exact."""
    images = torch.where(transform.xflip.view(-1, 1, 1, 1), images.flip(3), images)
    images = torch.where(transform.yflip.view(-1, 1, 1, 1), images.flip(2), images)
    if not warp:
        return images
    warped = warp_affine(images, transform.G_inv)
    return torch.where(transform.moved.view(-1, 1, 1, 1), warped, images)


def warp_affine(images: torch.Tensor, G_inv: torch.Tensor) -> torch.Tensor:
    """out(x, y) = in(G_inv (x, y, 1)) in centred pixel coordinates; bilinear, reflected border.

    With align_corners=True the normalised coordinates ±1 are the centres of the border pixels,
    so 'reflection' mirrors about them like F.pad(mode='reflect').
    """
    N, C, H, W = images.shape
    cx, cy = (W - 1) / 2, (H - 1) / 2
    G = G_inv.to(device=images.device, dtype=torch.float32)
    xs = torch.arange(W, device=images.device, dtype=torch.float32) - cx
    ys = torch.arange(H, device=images.device, dtype=torch.float32) - cy
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    out_xy1 = torch.stack([x, y, torch.ones_like(x)], dim=-1)          # [H, W, 3]
    src = torch.einsum("nij,hwj->nhwi", G[:, :2, :], out_xy1)          # [N, H, W, 2]
    grid = src / torch.tensor([cx, cy], device=images.device)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="reflection",
                        align_corners=True)
    return out.to(images.dtype)
