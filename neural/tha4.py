"""THA4 student ("character model"): two small SIREN networks trained for one character.

The face morpher draws the 128x128 face crop from the pose alone (no image input); the body morpher warps and
recolours the whole 512x512 picture. Attribute names follow the official modules, so the official per-character
`face_morpher.pt` and `body_morpher.pt` load with strict=True (shared/reference/tha.md §5).

Conventions that matter for parity:
* SIREN layer: sin(omega_0 * (W x + b)) with omega_0 = 30 on every layer, as 1x1 convolutions over an image of
  coordinates; the coordinates are pixel centres in [-1, 1] (x first), i.e. `affine_grid(identity,
  align_corners=False)`.
* Between body-morpher levels the features are resized bilinearly (align_corners=False) and the coordinates and
  pose are concatenated again after them.
* The body morpher's 7 outputs are grid change (2), alpha (1, no sigmoid), colour (4); the final image is
  (1 - alpha) * warp(image) + alpha * colour.
* The THA4 networks work on RGB premultiplied by alpha (unlike THA1-THA3); the pipeline converts the
  Poser's straight-alpha picture on the way in and its result back on the way out.

Pipeline (official mode_14): face = face_morpher(pose[0:39]) pasted into rows 80:208, cols 192:320 of the
picture; final = body_morpher(that picture, pose). Neither network sees the picture before the paste, so
there is no pose-independent picture work beyond the premultiplication.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import blocks

FAMILY = "tha4"
SCHEMA = "tha4"
IMAGE_SIZE = 512
# Only the per-character students are implemented (the THA4 teacher is not): "student" is float32 as
# trained, "student_half" the same networks with float16 weights (our converted files).
VARIANTS = ("student", "student_half")
NETWORKS = ("face_morpher", "body_morpher")
# A character model folder may hold the picture the students were distilled for.
CHARACTER_IMAGE = "character.png"

OMEGA_0 = 30.0

# Where the face morpher's 128x128 output goes in the 512x512 picture (centre x 256, centre y 144).
FACE_ROWS = slice(80, 208)
FACE_COLS = slice(192, 320)

FACE_POSE_SIZE = 39
BODY_POSE_SIZE = 45


def position_image(n: int, size: int, device, dtype=torch.float32) -> Tensor:
    """(n, 2, size, size) pixel-centre coordinates in [-1, 1]: channel 0 = x, channel 1 = y."""
    identity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], device=device, dtype=dtype)
    grid = F.affine_grid(identity, [1, 1, size, size], align_corners=False)  # (1, size, size, 2)
    return grid.permute(0, 3, 1, 2).expand(n, 2, size, size)


class SineLayer(nn.Module):
    """sin(omega_0 * linear(x)), linear being a 1x1 convolution with bias."""

    def __init__(self, in_channels: int, out_channels: int, omega_0: float = OMEGA_0):
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega_0 * self.linear(x))


class Siren(nn.Module):
    """A stack of sine layers and a plain 1x1 output layer."""

    def __init__(self, in_channels: int, out_channels: int, width: int, num_sine_layers: int):
        super().__init__()
        widths = [in_channels] + [width] * num_sine_layers
        self.sine_layers = nn.ModuleList(SineLayer(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.last_linear = nn.Conv2d(width, out_channels, kernel_size=1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.sine_layers:
            x = layer(x)
        return self.last_linear(x)


class SirenFaceMorpher(nn.Module):
    """The face student: pose[:, 0:39] -> 4x128x128 RGBA face crop (official SirenFaceMorpher00)."""

    def __init__(self, image_size: int = 128, pose_size: int = FACE_POSE_SIZE, width: int = 128,
                 num_sine_layers: int = 8):
        super().__init__()
        self.image_size = image_size
        self.siren = Siren(2 + pose_size, 4, width, num_sine_layers)

    def forward(self, pose: Tensor) -> Tensor:
        size = self.image_size
        position = position_image(pose.shape[0], size, pose.device, pose.dtype)
        return self.siren(torch.cat([position, blocks.pose_planes(pose, size, size)], dim=1))


@dataclass(frozen=True)
class SirenLevel:
    image_size: int
    width: int
    num_sine_layers: int = 3


# The official mode_14 body morpher: 128 -> 256 -> 512, narrowing as the resolution grows.
BODY_LEVELS = (SirenLevel(128, 360), SirenLevel(256, 180), SirenLevel(512, 90))


class SirenBodyMorpher(nn.Module):
    """The body student (official SirenMorpher03): multi-resolution SIREN predicting warp, alpha and colour.

    forward(image, pose) -> [blended_image, alpha, color_change, warped_image, grid_change].
    """

    def __init__(self, pose_size: int = BODY_POSE_SIZE, levels=BODY_LEVELS, image_channels: int = 4):
        super().__init__()
        self.levels = tuple(levels)
        conditioning = 2 + pose_size
        self.siren_layers = nn.ModuleList()
        for i, level in enumerate(self.levels):
            first_in = conditioning if i == 0 else level.width + conditioning
            last_out = self.levels[i + 1].width if i + 1 < len(self.levels) else level.width
            widths = [first_in] + [level.width] * (level.num_sine_layers - 1) + [last_out]
            self.siren_layers.append(nn.Sequential(*(SineLayer(a, b) for a, b in zip(widths[:-1], widths[1:]))))
        self.last_linear = nn.Conv2d(self.levels[-1].width, 2 + 1 + image_channels, kernel_size=1, bias=True)

    def features(self, pose: Tensor) -> Tensor:
        """The last level's features (n, width, 512, 512); they depend on the pose only."""
        n = pose.shape[0]
        x = None
        for level, layers in zip(self.levels, self.siren_layers):
            size = level.image_size
            conditioning = torch.cat([position_image(n, size, pose.device, pose.dtype), blocks.pose_planes(pose, size, size)], dim=1)
            if x is None:
                x = conditioning
            else:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
                x = torch.cat([x, conditioning], dim=1)
            x = layers(x)
        return x

    def forward(self, image: Tensor, pose: Tensor) -> list:
        output = self.last_linear(self.features(pose))
        grid_change = output[:, 0:2]
        alpha = output[:, 2:3]
        color_change = output[:, 3:]
        warped_image = blocks.apply_grid_change(grid_change, image, align_corners=False)
        blended_image = (1 - alpha) * warped_image + alpha * color_change
        return [blended_image, alpha, color_change, warped_image, grid_change]


def premultiply(image: Tensor) -> Tensor:
    """Straight-alpha network image -> RGB premultiplied by alpha (both in [-1, 1])."""
    alpha = (image[:, 3:4] + 1) / 2
    return torch.cat([(image[:, 0:3] + 1) * alpha - 1, image[:, 3:4]], dim=1)


def unpremultiply(image: Tensor) -> Tensor:
    """Premultiplied network image -> straight alpha; alpha clipped to [0, 1], RGB 0 where it is 0."""
    alpha = ((image[:, 3:4] + 1) / 2).clamp(0, 1)
    colour = ((image[:, 0:3] + 1) / 2).clamp(min=0)
    straight = torch.where(alpha > 0, colour / alpha.clamp(min=1e-6), torch.zeros_like(colour)).clamp(max=1)
    return torch.cat([straight * 2 - 1, alpha * 2 - 1], dim=1)


def compose_face(image: Tensor, face: Tensor) -> Tensor:
    """The picture with the face student's crop pasted in (a new tensor; `image` is left as it is).

    A single picture (batch 1) is repeated to the batch of faces."""
    image = image.expand(face.shape[0], -1, -1, -1).clone()
    image[:, :, FACE_ROWS, FACE_COLS] = face
    return image


_CONSTRUCTORS = {"face_morpher": SirenFaceMorpher, "body_morpher": SirenBodyMorpher}


def variant_dtype(variant: str) -> torch.dtype:
    return torch.float16 if variant.endswith("_half") else torch.float32


def build_network(name: str, variant: str = "student") -> nn.Module:
    """A THA4 student network with freshly initialised weights (to load a state_dict into)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown THA4 variant {variant!r}; variants are {', '.join(VARIANTS)}")
    if name not in _CONSTRUCTORS:
        raise ValueError(f"THA4 has no network {name!r}; networks are {', '.join(NETWORKS)}")
    return _CONSTRUCTORS[name]().to(variant_dtype(variant)).eval()


class Pipeline:
    """The two THA4 students chained as the official mode_14 poser does (protocol: neural/poser.py)."""

    def __init__(self, networks: dict):
        self.face_morpher = networks["face_morpher"]
        self.body_morpher = networks["body_morpher"]

    def prepare(self, image: Tensor) -> dict:
        return {"premultiplied_image": premultiply(image)}

    def pose(self, cache: dict, pose: Tensor) -> dict:
        face = self.face_morpher(pose[:, 0:FACE_POSE_SIZE])
        body = self.body_morpher(compose_face(cache["premultiplied_image"], face), pose)
        return {
            "image": unpremultiply(body[0]),
            "premultiplied_image": body[0],
            "face_image": face,
            "alpha": body[1],
            "grid_change": body[4],
        }


def character_image_file(weight_set):
    """The character picture beside a student's weight files (official character model folders hold one), or None."""
    for path in weight_set.sources.values():
        candidate = Path(path).parent / CHARACTER_IMAGE
        if candidate.is_file():
            return candidate
    return None
