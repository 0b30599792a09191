"""THA4 student ("character model"): two small SIREN networks trained for one character.

The face morpher draws the 128x128 face crop from the pose alone (no image input); the body morpher warps and
recolours the whole 512x512 picture. Attribute names follow the official modules, so the official per-character
`face_morpher.pt` and `body_morpher.pt` load with strict=True (shared/reference/tha.md §5).

Conventions that matter for parity:
* SIREN layer: sin(omega_0 * (W x + b)) with omega_0 = 30 on every layer, as 1x1 convolutions over an image of
  coordinates; the coordinates are pixel centres in [-1, 1] (x first), i.e. `affine_grid(identity,
  align_corners=False)`. We compute the same channels-last, with the pose folded into a bias (SineLayer).
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

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..pose.schema import get_schema
from . import blocks
from .ort.stages import Stage
from .ort.weight_sources import CHARACTER_IMAGE, character_image_file  # noqa: F401 (re-exported)
from .staged import StagedPipeline


FAMILY = "tha4"
SCHEMA = "tha4"
IMAGE_SIZE = 512
# Only the per-character students (float32, as released) are implemented, not the THA4 teacher.
VARIANTS = ("student",)
# Each SIREN layer takes the sine of 30x its sum, and float16 holds an argument near 30 only to
# 2^-5: on an H200 the face morpher's output came out 0.08 from the official one and the final
# picture 0.45 (bench/bench_poser_gpu.py).
FLOAT16 = False
FLOAT16_BREAKS = "take the sine of 30x their sums, which float16 holds only to 0.03 (pictures up to 0.45 off)"
NETWORKS = ("face_morpher", "body_morpher")
# The exported graphs pose one frame at a time, as the Pipeline does (torch.export cannot keep the
# SIREN's batch size symbolic).
ONNX_FIXED_BATCH = 1

OMEGA_0 = 30.0

# Where the face morpher's 128x128 output goes in the 512x512 picture (centre x 256, centre y 144).
FACE_ROWS = slice(80, 208)
FACE_COLS = slice(192, 320)

# The pose slice the face student takes (one definition, pose/schema.py's); the body student takes all 45.
FACE_POSE = get_schema(SCHEMA).slice_for("face_morpher")
FACE_POSE_SIZE = FACE_POSE.stop - FACE_POSE.start
BODY_POSE_SIZE = get_schema(SCHEMA).size


def positions(size: int, device, dtype=torch.float32) -> Tensor:
    """(1, size, size, 2) pixel-centre coordinates in [-1, 1], x then y: the grid of
    affine_grid(identity, align_corners=False), without its matrix product."""
    centres = (torch.arange(size, device=device, dtype=dtype) * 2 + 1) / size - 1
    return torch.stack(torch.meshgrid(centres, centres, indexing="xy"), dim=-1)[None]


class SineLayer(nn.Module):
    """sin(omega_0 * (W x + b)); W is stored as the official 1x1 convolution's weight.

    The official networks run it as a convolution over (n, C, H, W) images whose input channels are
    [previous features, x, y, pose...]. Here features are kept channels-last, (n, H, W, C), where a 1x1
    convolution is one matrix product, and the coordinate and pose channels are not materialised: their
    share of W x is added as a (1, H, W, out) coordinate term and an (n, 1, 1, out) pose term. The same
    arithmetic, summed in a different order (differences ~1e-6), and much less memory traffic.
    """

    def __init__(self, in_channels: int, out_channels: int, omega_0: float = OMEGA_0):
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=True)

    def scaled(self):
        """(omega_0 W, omega_0 b): the frequency folded into the (small) weights rather than applied to the
        (large) activations."""
        return self.omega_0 * self.linear.weight.flatten(1), self.omega_0 * self.linear.bias

    def forward(self, x: Tensor) -> Tensor:
        """x: (n, H, W, in_channels) channels-last features."""
        weight, bias = self.scaled()
        return torch.sin(F.linear(x, weight, bias))

    def forward_conditioned(self, features, position: Tensor, pose: Tensor) -> Tensor:
        """The layer on [features (n, H, W, F) or None, position (1, H, W, 2), pose (n, P) as planes]."""
        weight, bias = self.scaled()
        width = 0 if features is None else features.shape[-1]
        position_term = F.linear(position, weight[:, width:width + 2])  # (1, H, W, out): pose-independent
        pose_term = F.linear(pose, weight[:, width + 2:], bias)  # (n, out): constant over the picture
        if features is None:
            pre = position_term + pose_term[:, None, None, :]
        else:
            # Each sample's pose term is the bias of its own matrix product (no extra pass over the pixels).
            feature_weight = weight[:, :width]
            pre = torch.stack([F.linear(features[i], feature_weight, pose_term[i]) for i in range(len(pose))])
            pre = pre + position_term
        return torch.sin(pre)


def linear_channels_last(layer: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1x1 convolution applied to channels-last features (n, H, W, C)."""
    return F.linear(x, layer.weight.flatten(1), layer.bias)


class Siren(nn.Module):
    """A stack of sine layers and a plain 1x1 output layer (the first layer takes [x, y, pose])."""

    def __init__(self, in_channels: int, out_channels: int, width: int, num_sine_layers: int):
        super().__init__()
        widths = [in_channels] + [width] * num_sine_layers
        self.sine_layers = nn.ModuleList(SineLayer(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.last_linear = nn.Conv2d(width, out_channels, kernel_size=1, bias=True)

    def forward(self, position: Tensor, pose: Tensor) -> Tensor:
        """position (1, H, W, 2), pose (n, P) -> (n, H, W, out_channels)."""
        x = self.sine_layers[0].forward_conditioned(None, position, pose)
        for layer in self.sine_layers[1:]:
            x = layer(x)
        return linear_channels_last(self.last_linear, x)


class SirenFaceMorpher(nn.Module):
    """The face student: pose[:, 0:39] -> 4x128x128 RGBA face crop (official SirenFaceMorpher00)."""

    def __init__(self, image_size: int = 128, pose_size: int = FACE_POSE_SIZE, width: int = 128,
                 num_sine_layers: int = 8):
        super().__init__()
        self.image_size = image_size
        self.siren = Siren(2 + pose_size, 4, width, num_sine_layers)

    def forward(self, pose: Tensor) -> Tensor:
        position = positions(self.image_size, pose.device, pose.dtype)
        return self.siren(position, pose).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class SirenLevel:
    image_size: int
    width: int
    num_sine_layers: int = 3


# The official mode_14 body morpher: 128 -> 256 -> 512, narrowing as the resolution grows.
BODY_LEVELS = (SirenLevel(128, 360), SirenLevel(256, 180), SirenLevel(512, 90))


class SirenBodyMorpher(nn.Module):
    """The body student (official SirenMorpher03): multi-resolution SIREN predicting warp, alpha and colour.

    forward(image, pose) -> [blended_image, alpha, color_change, warped_image, grid_change] (NCHW).
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
        """The last level's features, channels-last (n, 512, 512, width); they depend on the pose only."""
        x = None
        for level, layers in zip(self.levels, self.siren_layers):
            size = level.image_size
            if x is not None:
                # Bilinear resize (align_corners=False) of the NCHW view; the result stays channels-last.
                x = F.interpolate(x.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=False)
                x = x.permute(0, 2, 3, 1)
            x = layers[0].forward_conditioned(x, positions(size, pose.device, pose.dtype), pose)
            for layer in layers[1:]:
                x = layer(x)
        return x

    def forward(self, image: Tensor, pose: Tensor) -> list:
        output = linear_channels_last(self.last_linear, self.features(pose))  # (n, H, W, 7)
        grid_change = output[..., 0:2]
        alpha = output[..., 2:3].permute(0, 3, 1, 2)
        color_change = output[..., 3:].permute(0, 3, 1, 2)
        image = image.expand(pose.shape[0], -1, -1, -1)
        grid = positions(image.shape[-1], image.device, image.dtype) + grid_change
        warped_image = blocks.grid_sample_bands(image, grid)
        blended_image = (1 - alpha) * warped_image + alpha * color_change
        return [blended_image, alpha, color_change, warped_image, grid_change.permute(0, 3, 1, 2)]


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


def build_network(name: str, variant: str = "student") -> nn.Module:
    """A THA4 student network with freshly initialised weights (to load a state_dict into)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown THA4 variant {variant!r}; variants are {', '.join(VARIANTS)}")
    if name not in _CONSTRUCTORS:
        raise ValueError(f"THA4 has no network {name!r}; networks are {', '.join(NETWORKS)}")
    return _CONSTRUCTORS[name]().eval()


class Pipeline(StagedPipeline):
    """The two THA4 students chained as the official mode_14 poser does (protocol: neural/poser.py)."""

    STAGES = (
        Stage("picture", ("image",), ("premultiplied_image",), per_pose=False),
        Stage("posed", ("premultiplied_image", "pose"), ("final_image",)),
    )

    def __init__(self, networks: dict):
        self.face_morpher = networks["face_morpher"]
        self.body_morpher = networks["body_morpher"]
        super().__init__()

    def picture(self, image: Tensor) -> dict:
        return {"premultiplied_image": premultiply(image)}

    def posed(self, premultiplied_image: Tensor, pose: Tensor) -> dict:
        face = self.face_morpher(pose[:, FACE_POSE])
        body = self.body_morpher(compose_face(premultiplied_image, face), pose)
        return {
            "final_image": unpremultiply(body[0]),
            "premultiplied_image": body[0],
            "face_image": face,
            "alpha": body[1],
            "grid_change": body[4],
        }

    def pose(self, cache: dict, pose: Tensor) -> dict:
        # One frame at a time: a frame's 512x512x90 activations (~100 MB each, a few alive at once) already
        # keep the matrix products busy (batch 8 measured no faster per frame), and a batch would multiply
        # the peak memory by its size.
        frames = [super(Pipeline, self).pose(cache, pose[i : i + 1]) for i in range(pose.shape[0])]
        return {key: torch.cat([frame[key] for frame in frames]) for key in frames[0]}


