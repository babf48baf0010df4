"""The TF-Inception network (inception-2015-12-05) used by FID, written in the project.

The architecture is the one that the pytorch-fid port (mseitzer/pytorch-fid) loads its weights
`pt_inception-2015-12-05-6726825d.pth` into: torchvision's Inception-v3 key layout without the
auxiliary classifier, a 1008-way `fc`, and four changes that make it match the TensorFlow graph
the FID was defined with:

- the average-pool branches of the A, C and first E blocks exclude the zero padding from the mean
  (TensorFlow's `avg_pool` with SAME padding), `count_include_pad=False`;
- the last E block (Mixed_7c) pools its fourth branch with a 3×3 *max* pool instead of an average.

Features are the 2048-d global average pool after Mixed_7c ("pool3"). Input: images resized to
299×299 with bilinear interpolation (no antialiasing) and scaled to [-1, 1]; grey images are
repeated over three channels.

The weights are never downloaded: they are read from a local file (spec field
`evaluation.inception_path`, the `--inception` flag, `$HARNESS_INCEPTION`, or the cache
`~/.cache/harness/`). Values computed with this port agree closely with, but not bitwise with,
EDM's TorchScript pickle of the same TensorFlow graph (the resize differs).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.evaluate.features import NetworkExtractor

INCEPTION_NAME = "inception-2015-12-05"
INCEPTION_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                 "pt_inception-2015-12-05-6726825d.pth")
# sha256 of the released file (95,628,359 bytes, 566 state-dict entries); the file name carries
# its first 8 hex digits, as torch.hub names its files.
INCEPTION_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_RESOLUTION = 299
INCEPTION_DIM = 2048
INCEPTION_NUM_CLASSES = 1008  # the TF graph's 1008-way softmax; unused for FID, but in the file


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as TF), ReLU. Keys: conv.*, bn.*."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                              padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's SAME-padded average pool divides by the number of real pixels in the window.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    """35×35 block (Mixed_5b/5c/5d): 1×1 | 1×1→5×5 | 1×1→3×3→3×3 | avgpool→1×1."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([self.branch1x1(x), b5, b3, bp], dim=1)


class BlockB(nn.Module):
    """Grid reduction 35→17 (Mixed_6a): 3×3/2 | 1×1→3×3→3×3/2 | maxpool/2."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), b3, bp], dim=1)


class BlockC(nn.Module):
    """17×17 block with factorised 7×7 convolutions (Mixed_6b–6e)."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([self.branch1x1(x), b7, bd, bp], dim=1)


class BlockD(nn.Module):
    """Grid reduction 17→8 (Mixed_7a)."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], dim=1)


class BlockE(nn.Module):
    """8×8 block with split 1×3 / 3×1 outputs (Mixed_7b, Mixed_7c).

    `pool` is "avg" for Mixed_7b and "max" for Mixed_7c: the FID graph max-pools there.
    """

    def __init__(self, in_channels: int, pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(h3), self.branch3x3_2b(h3)], dim=1)
        hd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(hd), self.branch3x3dbl_3b(hd)], dim=1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_tf(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], dim=1)


class FIDInception(nn.Module):
    """Inception-v3 as in the FID graph; `forward(x in [-1, 1], 299×299) -> pool3 [N, 2048]`."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = BlockA(192, pool_features=32)
        self.Mixed_5c = BlockA(256, pool_features=64)
        self.Mixed_5d = BlockA(288, pool_features=64)
        self.Mixed_6a = BlockB(288)
        self.Mixed_6b = BlockC(768, channels_7x7=128)
        self.Mixed_6c = BlockC(768, channels_7x7=160)
        self.Mixed_6d = BlockC(768, channels_7x7=160)
        self.Mixed_6e = BlockC(768, channels_7x7=192)
        self.Mixed_7a = BlockD(768)
        self.Mixed_7b = BlockE(1280, pool="avg")
        self.Mixed_7c = BlockE(2048, pool="max")
        # The classifier head is part of the weight file; pool3 features do not use it.
        self.fc = nn.Linear(INCEPTION_DIM, INCEPTION_NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                      self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                      self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))  # pool3: global average over the 8×8 grid


def inception_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float32 [N, 3, 299, 299] in [-1, 1] (pytorch-fid's preprocessing)."""
    x = images.to(torch.float32) / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(INCEPTION_RESOLUTION, INCEPTION_RESOLUTION), mode="bilinear",
                      align_corners=False)
    return 2.0 * x - 1.0


# ------------------------------------------------------------------------------------ weight file

def default_inception_locations() -> list[Path]:
    """Where the weight file is looked for when no path is given, in order."""
    locations = []
    if os.environ.get("HARNESS_INCEPTION"):
        locations.append(Path(os.environ["HARNESS_INCEPTION"]).expanduser())
    cache = Path(os.environ.get("HARNESS_CACHE", "~/.cache/harness")).expanduser()
    locations.append(cache / INCEPTION_FILENAME)
    if cache != Path("~/.cache/harness").expanduser():
        locations.append(Path("~/.cache/harness").expanduser() / INCEPTION_FILENAME)
    return locations


def _missing_weights_message(tried: list[Path]) -> str:
    places = ", ".join(str(p) for p in tried)
    return (f"the FID Inception weights {INCEPTION_FILENAME} were not found (looked at: {places}). "
            f"Download it yourself from {INCEPTION_URL} and put it at "
            f"~/.cache/harness/{INCEPTION_FILENAME}, or pass its path with --inception / the spec "
            f"field evaluation.inception_path / $HARNESS_INCEPTION. The harness never downloads "
            f"it. On machines without it, evaluate the offline datasets with their fd-<dataset> "
            f"metric instead.")


def find_inception_weights(path: str | Path | None = None) -> Path:
    """The weight file to use: `path` when given (it must exist), else the default locations."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise HarnessError(_missing_weights_message([path]))
        return path
    tried = default_inception_locations()
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise HarnessError(_missing_weights_message(tried))


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_inception_state(net: FIDInception, state: dict, source: str) -> None:
    """Load a state dict strictly, except BatchNorm step counters (older files lack them)."""
    expected = set(net.state_dict())
    given = set(state)
    missing = {k for k in expected - given if not k.endswith("num_batches_tracked")}
    unexpected = given - expected
    if missing or unexpected:
        raise HarnessError(f"{source}: not the FID Inception state dict: "
                           f"{len(missing)} missing keys (e.g. {sorted(missing)[:3]}), "
                           f"{len(unexpected)} unexpected keys (e.g. {sorted(unexpected)[:3]})")
    for key, value in state.items():
        want = net.state_dict()[key].shape
        if tuple(value.shape) != tuple(want):
            raise HarnessError(f"{source}: {key} has shape {tuple(value.shape)}, expected "
                               f"{tuple(want)}")
    net.load_state_dict(state, strict=False)


def load_inception(path: str | Path | None = None, *,
                   expected_sha256: str | None = INCEPTION_SHA256,
                   device: torch.device | str = "cpu", batch_size: int = 64) -> NetworkExtractor:
    """The Inception feature extractor from a local weight file (see `find_inception_weights`).

    `expected_sha256=None` skips the digest check (only for tests with made-up weights).
    """
    path = find_inception_weights(path)
    sha256 = file_sha256(path)
    if expected_sha256 is not None and sha256 != expected_sha256:
        raise HarnessError(f"{path}: sha256 {sha256} differs from the released "
                           f"{INCEPTION_FILENAME} ({expected_sha256}); the file is damaged or a "
                           f"different network. Get it again from {INCEPTION_URL}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file: name it
        raise HarnessError(f"{path}: cannot read the Inception weights ({exc})") from exc
    if not isinstance(state, dict):
        raise HarnessError(f"{path}: expected a state dict, found {type(state).__name__}")
    net = FIDInception()
    load_inception_state(net, state, str(path))
    return NetworkExtractor(name=INCEPTION_NAME, metric="fid", dim=INCEPTION_DIM, sha256=sha256,
                            net=net, preprocess=inception_input, channels=None,
                            batch_size=batch_size, device=device)
