"""THA1 networks (2019): face morpher, two-algorithm face rotator, combiner, and their pipeline.

THA1 names its modules its own way (`main_body.module_list.N`, ResNet blocks with `conv1/norm1/conv2/norm2`,
a U-Net with `downward_modules` / `bottleneck_modules` / `upsampling_modules` indexed from the output side), so
its encoder-decoder and U-Net are defined here, built from the shared blocks (blocks.py) whose keys match. THA2 reuses the rotator and combiner (tha2.py imports them).
Facts: shared/reference/tha.md §2.3-2.4.

Conventions that matter for parity:
* every body conv has no bias; InstanceNorm2d(affine=True); ReLU everywhere;
* heads are 7x7 convs with 4-channel alphas, and THA1 blends `alpha * input + (1 - alpha) * change`
  (alpha weights the *input*, the opposite of THA2+'s new networks);
* the rotator's appearance-flow warp uses `align_corners=True` with border padding.

Pipeline (official MorphRotateCombinePoser256Param6), image 4x256x256, pose 6 (head_x, head_y, neck_z,
left_eye, right_eye, mouth): face_morpher(image, pose[3:6]) -> rotator(morphed, pose[0:3]) ->
combiner(rotator's two images, pose[0:3]). Every network sees the pose at its input, so no work is
pose-independent: `prepare` only keeps the picture.
"""

import torch
from torch import Tensor, nn

from ..pose.schema import get_schema
from . import blocks
from .ort.stages import Stage
from .staged import StagedPipeline

FAMILY = "tha1"
SCHEMA = "tha1"
NETWORKS = ("face_morpher", "two_algo_face_rotator", "combiner")
# The official files are float32 (the only variant THA1 was released in).
VARIANTS = ("float",)

IMAGE_SIZE = 256
IMAGE_CHANNELS = 4
INTERMEDIATE_CHANNELS = 64
BOTTLENECK_SIZE = 32
BOTTLENECK_BLOCKS = 6


def conv7(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=7, stride=1, padding=3, bias=False)


def conv7_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return blocks.conv_block(in_channels, out_channels, kernel_size=7)


class EncoderDecoder(nn.Module):
    """Conv7 block, stride-2 downsamples to the bottleneck, ResNet blocks, transposed-conv upsamples back.

    All of it sits in one `module_list` (the official key names)."""

    def __init__(self, in_channels: int, out_channels: int = INTERMEDIATE_CHANNELS, image_size: int = IMAGE_SIZE,
                 bottleneck_size: int = BOTTLENECK_SIZE, bottleneck_blocks: int = BOTTLENECK_BLOCKS):
        super().__init__()
        self.module_list = nn.ModuleList([conv7_block(in_channels, out_channels)])
        size, channels = image_size, out_channels
        while size > bottleneck_size:
            self.module_list.append(blocks.downsample_block(channels, 2 * channels))
            size, channels = size // 2, channels * 2
        self.module_list.extend(blocks.LegacyResnetBlock(channels) for _ in range(bottleneck_blocks))
        while size < image_size:
            self.module_list.append(blocks.upsample_block(channels, channels // 2))
            size, channels = size * 2, channels // 2

    def forward(self, x: Tensor) -> Tensor:
        for module in self.module_list:
            x = module(x)
        return x


class UNet(nn.Module):
    """THA1's U-Net. `upsampling_modules[0]` is the last block applied (the official, output-side indexing);
    skips are concatenated as cat([decoder feature, encoder feature])."""

    def __init__(self, in_channels: int, out_channels: int = INTERMEDIATE_CHANNELS, image_size: int = IMAGE_SIZE,
                 bottleneck_size: int = BOTTLENECK_SIZE, bottleneck_blocks: int = BOTTLENECK_BLOCKS):
        super().__init__()
        self.downward_modules = nn.ModuleList([conv7_block(in_channels, out_channels)])
        channels_at = {image_size: out_channels}
        size, channels = image_size, out_channels
        while size > bottleneck_size:
            self.downward_modules.append(blocks.downsample_block(channels, 2 * channels))
            size, channels = size // 2, channels * 2
            channels_at[size] = channels
        self.bottleneck_modules = nn.ModuleList(blocks.LegacyResnetBlock(channels) for _ in range(bottleneck_blocks))
        # Built from the bottleneck outwards, then reversed so that index 0 is the output side.
        upsampling = []
        while size < image_size:
            block_in = channels if size == bottleneck_size else channels + channels_at[size]
            upsampling.append(blocks.upsample_block(block_in, channels // 2))
            size, channels = size * 2, channels // 2
        upsampling.append(conv7_block(channels + out_channels, out_channels))
        self.upsampling_modules = nn.ModuleList(reversed(upsampling))

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for module in self.downward_modules:
            x = module(x)
            skips.append(x)
        for module in self.bottleneck_modules:
            x = module(x)
        x = self.upsampling_modules[-1](x)
        for i in range(len(self.upsampling_modules) - 2, -1, -1):
            x = self.upsampling_modules[i](torch.cat([x, skips[i]], dim=1))
        return x


def pose_planes(pose: Tensor, like: Tensor) -> Tensor:
    """The pose vector (n, p) as p constant planes of `like`'s size."""
    return blocks.pose_planes(pose, like.shape[2], like.shape[3])


def head(in_channels: int, out_channels: int, activation: nn.Module) -> nn.Sequential:
    """A 7x7 output head (keys `<name>.0.weight`)."""
    return nn.Sequential(conv7(in_channels, out_channels), activation)


class FaceMorpher(nn.Module):
    """Closes eyes and opens the mouth: (image, pose[:, 3:6]) -> [output_image, alpha_mask, color_change]."""

    def __init__(self, pose_size: int = 3):
        super().__init__()
        self.main_body = EncoderDecoder(IMAGE_CHANNELS + pose_size)
        self.color_change = head(INTERMEDIATE_CHANNELS, IMAGE_CHANNELS, nn.Tanh())
        self.alpha_mask = head(INTERMEDIATE_CHANNELS, IMAGE_CHANNELS, nn.Sigmoid())

    def forward(self, image: Tensor, pose: Tensor) -> list:
        features = self.main_body(torch.cat([image, pose_planes(pose, image)], dim=1))
        color = self.color_change(features)
        alpha = self.alpha_mask(features)
        return [alpha * image + (1 - alpha) * color, alpha, color]


class TwoAlgoFaceRotator(nn.Module):
    """Turns the head two ways at once: a colour change (Pumarola) and an appearance flow (Zhou).

    forward(image, pose[:, 0:3]) -> [color_changed_image, resampled_image, color_change, alpha_mask,
    grid_change (n, h, w, 2), grid (n, h, w, 2)] (THA1's list; THA2 returns a different one, see tha2.py).
    """

    def __init__(self, pose_size: int = 3, align_corners: bool = True):
        super().__init__()
        self.align_corners = align_corners
        self.main_body = EncoderDecoder(IMAGE_CHANNELS + pose_size)
        self.pumarola_color_change = head(INTERMEDIATE_CHANNELS, IMAGE_CHANNELS, nn.Tanh())
        self.pumarola_alpha_mask = head(INTERMEDIATE_CHANNELS, IMAGE_CHANNELS, nn.Sigmoid())
        self.zhou_grid_change = conv7(INTERMEDIATE_CHANNELS, 2)

    def rotate(self, image: Tensor, pose: Tensor) -> dict:
        """Every intermediate by name; grid_change is the network's (n, 2, h, w) offset field."""
        features = self.main_body(torch.cat([image, pose_planes(pose, image)], dim=1))
        color_change = self.pumarola_color_change(features)
        alpha_mask = self.pumarola_alpha_mask(features)
        grid_change = self.zhou_grid_change(features)
        grid = blocks.identity_grid(image, self.align_corners) + grid_change.permute(0, 2, 3, 1)
        resampled = blocks.grid_sample_bands(image, grid, self.align_corners)
        return {
            "color_changed_image": alpha_mask * image + (1 - alpha_mask) * color_change,
            "resampled_image": resampled,
            "color_change": color_change,
            "alpha_mask": alpha_mask,
            "grid_change": grid_change,
            "grid": grid,
        }

    def forward(self, image: Tensor, pose: Tensor) -> list:
        r = self.rotate(image, pose)
        return [r["color_changed_image"], r["resampled_image"], r["color_change"], r["alpha_mask"],
                r["grid_change"].permute(0, 2, 3, 1), r["grid"]]


class Combiner(nn.Module):
    """Merges the rotator's two images and retouches the result.

    forward(first_image, second_image, pose[:, 0:3]) -> [final_image, combined_image, combine_alpha_mask,
    retouch_alpha_mask, retouch_color_change].
    """

    def __init__(self, pose_size: int = 3):
        super().__init__()
        self.main_body = UNet(2 * IMAGE_CHANNELS + pose_size)
        self.combine_alpha_mask = head(INTERMEDIATE_CHANNELS, IMAGE_CHANNELS, nn.Sigmoid())
        self.retouch_alpha_mask = head(INTERMEDIATE_CHANNELS, IMAGE_CHANNELS, nn.Sigmoid())
        self.retouch_color_change = head(INTERMEDIATE_CHANNELS, IMAGE_CHANNELS, nn.Tanh())

    def forward(self, first_image: Tensor, second_image: Tensor, pose: Tensor) -> list:
        x = torch.cat([first_image, second_image, pose_planes(pose, first_image)], dim=1)
        features = self.main_body(x)
        combine_alpha = self.combine_alpha_mask(features)
        combined = combine_alpha * first_image + (1 - combine_alpha) * second_image
        retouch_alpha = self.retouch_alpha_mask(features)
        retouch_color = self.retouch_color_change(features)
        final = retouch_alpha * combined + (1 - retouch_alpha) * retouch_color
        return [final, combined, combine_alpha, retouch_alpha, retouch_color]


_CONSTRUCTORS = {"face_morpher": FaceMorpher, "two_algo_face_rotator": TwoAlgoFaceRotator, "combiner": Combiner}


def build_network(name: str, variant: str = "float") -> nn.Module:
    """A THA1 network with freshly initialised weights (to load a state_dict into)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown THA1 variant {variant!r}; variants are {', '.join(VARIANTS)}")
    if name not in _CONSTRUCTORS:
        raise ValueError(f"THA1 has no network {name!r}; networks are {', '.join(NETWORKS)}")
    return _CONSTRUCTORS[name]().eval()


# The pose slices each network takes: one definition, pose/schema.py's.
MORPH_POSE = get_schema(SCHEMA).slice_for("face_morpher")
ROTATION_POSE = get_schema(SCHEMA).slice_for("two_algo_face_rotator")


class Pipeline(StagedPipeline):
    """The three THA1 networks chained as the official poser does (protocol: neural/poser.py)."""

    STAGES = (Stage("posed", ("image", "pose"), ("final_image",)),)

    def __init__(self, networks: dict):
        self.face_morpher = networks["face_morpher"]
        self.rotator = networks["two_algo_face_rotator"]
        self.combiner = networks["combiner"]
        super().__init__()

    def posed(self, image: Tensor, pose: Tensor) -> dict:
        image = image.expand(pose.shape[0], -1, -1, -1)
        morphed = self.face_morpher(image, pose[:, MORPH_POSE])[0]
        rotated = rotate_and_combine(self.rotator, self.combiner, morphed, pose[:, ROTATION_POSE])
        return {"final_image": rotated.pop("image"), "face_morphed_image": morphed, **rotated}


def rotate_and_combine(rotator, combiner, image: Tensor, rotation_pose: Tensor) -> dict:
    """THA1's second half, also THA2's: turn the face two ways, then combine and retouch."""
    # [0] colour-changed, [1] resampled image.
    color_changed, resampled = rotator(image, rotation_pose)[:2]
    combined = combiner(color_changed, resampled, rotation_pose)
    return {"image": combined[0], "color_changed_image": color_changed, "resampled_image": resampled}
