"""Talking Head Anime 3: its five networks and the pipeline that chains them.

Variants (official folder names): standard_float, standard_half, separable_float, separable_half.
"separable" variants replace every body conv by depthwise + pointwise; "half" variants are the
same modules with float16 weights. Architecture facts: shared/reference/tha.md §4.

Pipeline (tha.md §4.1), image 4x512x512 in the network convention, pose 45:
  1. eyebrow_decomposer(face crop rows 64:192, cols 192:320)        (pose-independent: cached)
  2. eyebrow_morphing_combiner(background, eyebrow layer, pose[0:12])
  3. face_morpher(crop rows 32:224, cols 160:352 with step 2 pasted at [32:160, 32:160], pose[12:39])
  4. two_algo_face_body_rotator(whole image with step 3 pasted, halved to 256, pose[39:45])
  5. editor(full image, rotator warp and flow doubled to 512, pose[39:45]) -> final image
"""

import torch
import torch.nn.functional as F
from torch import nn

from ..pose.schema import get_schema
from . import blocks
from .blocks import apply_color_change, apply_grid_change, apply_rgb_change, paste, pose_planes
from .ort.stages import Stage
from .staged import StagedPipeline

FAMILY = "tha3"
SCHEMA = "tha3"
IMAGE_SIZE = 512
# NHWC on the CPU: 1.25-1.5x the speed of NCHW in the same runs at the same distance from the
# official output (bench/bench_poser.py; the end-to-end goldens in tests/neural/test_poser_tha3.py).
CPU_CHANNELS_LAST = True
VARIANTS = ("separable_float", "separable_half", "standard_float", "standard_half")
NETWORKS = (
    "eyebrow_decomposer",
    "eyebrow_morphing_combiner",
    "face_morpher",
    "two_algo_face_body_rotator",
    "editor",
)

# The pose slices each network takes: one definition, pose/schema.py's.
EYEBROW_POSE = get_schema(SCHEMA).slice_for("eyebrow_morphing_combiner")
FACE_POSE = get_schema(SCHEMA).slice_for("face_morpher")
ROTATION_POSE = get_schema(SCHEMA).slice_for("two_algo_face_body_rotator")

# Where the networks look (rows, cols) in the 512 picture.
EYEBROW_BOX = (slice(64, 192), slice(192, 320))
FACE_BOX = (slice(32, 224), slice(160, 352))
EYEBROW_IN_FACE = (slice(32, 160), slice(32, 160))


def pose_size(pose_slice):
    return pose_slice.stop - pose_slice.start


def named(outputs, names):
    """A network's output list keyed by the names its class declares in OUTPUTS (the official order)."""
    return dict(zip(names, outputs, strict=True))


class EyebrowDecomposer(nn.Module):
    """Splits the 128x128 eyebrow crop into an eyebrow layer and the background behind it."""

    OUTPUTS = (
        "eyebrow_layer",
        "eyebrow_layer_alpha",
        "eyebrow_layer_color_change",
        "background_layer",
        "background_layer_alpha",
        "background_layer_color_change",
    )

    def __init__(self, separable=False):
        super().__init__()
        self.body = blocks.PoserEncoderDecoder(
            image_size=128,
            in_channels=4,
            pose_size=0,
            start_channels=64,
            bottleneck_size=16,
            bottleneck_blocks=6,
            max_channels=512,
            activation=blocks.relu,
            separable=separable,
        )
        self.background_layer_alpha = blocks.alpha_head(64)
        self.background_layer_color_change = blocks.color_change_head(64)
        self.eyebrow_layer_alpha = blocks.alpha_head(64)
        self.eyebrow_layer_color_change = blocks.color_change_head(64)

    def forward(self, image):
        feature = self.body(image)
        background_alpha, background_change, eyebrow_alpha, eyebrow_change = blocks.run_heads(
            feature, self.background_layer_alpha, self.background_layer_color_change,
            self.eyebrow_layer_alpha, self.eyebrow_layer_color_change)
        background = apply_color_change(background_alpha, background_change, image)
        # Here alpha selects the image, not the change (official argument order).
        eyebrow = apply_color_change(eyebrow_alpha, image, eyebrow_change)
        return [eyebrow, eyebrow_alpha, eyebrow_change, background, background_alpha, background_change]


class EyebrowMorphingCombiner(nn.Module):
    """Warps and recolours the eyebrow layer for the eyebrow pose and lays it over the background."""

    OUTPUTS = (
        "eyebrow_image",
        "combine_alpha",
        "eyebrow_image_no_combine_alpha",
        "morphed_eyebrow_layer",
        "morphed_eyebrow_layer_alpha",
        "morphed_eyebrow_layer_color_change",
        "warped_eyebrow_layer",
        "morphed_eyebrow_layer_grid_change",
    )

    def __init__(self, separable=False):
        super().__init__()
        self.body = blocks.PoserEncoderDecoder(
            image_size=128,
            in_channels=8,
            pose_size=pose_size(EYEBROW_POSE),
            start_channels=64,
            bottleneck_size=16,
            bottleneck_blocks=6,
            max_channels=512,
            activation=blocks.relu,
            separable=separable,
        )
        self.morphed_eyebrow_layer_grid_change = blocks.grid_change_head(64)
        self.morphed_eyebrow_layer_alpha = blocks.alpha_head(64)
        self.morphed_eyebrow_layer_color_change = blocks.color_change_head(64)
        self.combine_alpha = blocks.alpha_head(64)

    def encode(self, background_layer, eyebrow_layer):
        """The pose-independent half: depends only on the picture."""
        return self.body.encode(torch.cat([background_layer, eyebrow_layer], dim=1))

    def forward(self, background_layer, eyebrow_layer, pose):
        return self.forward_encoded(self.encode(background_layer, eyebrow_layer), background_layer, eyebrow_layer, pose)

    def forward_encoded(self, encoded, background_layer, eyebrow_layer, pose):
        feature = self.body.decode(encoded, pose)
        grid_change, alpha, color_change, combine_alpha = blocks.run_heads(
            feature, self.morphed_eyebrow_layer_grid_change, self.morphed_eyebrow_layer_alpha,
            self.morphed_eyebrow_layer_color_change, self.combine_alpha)
        warped = apply_grid_change(grid_change, eyebrow_layer)
        morphed = apply_color_change(alpha, color_change, warped)
        eyebrow_image = apply_rgb_change(combine_alpha, morphed, background_layer)
        # The same blend weighted by the morphed layer's own alpha; the poser uses this one.
        no_combine_alpha = apply_rgb_change((morphed[:, 3:4] + 1) / 2, morphed, background_layer)
        return [eyebrow_image, combine_alpha, no_combine_alpha, morphed, alpha, color_change, warped, grid_change]


class FaceMorpherHeads(nn.Module):
    """The face morpher's output heads and blends: iris/mouth warp + change, then eye change."""

    OUTPUTS = (
        "output_image",
        "eye_alpha",
        "eye_color_change",
        "iris_mouth_image_1",
        "iris_mouth_alpha",
        "iris_mouth_color_change",
        "iris_mouth_image_0",
    )

    def add_heads(self, channels=64):
        self.iris_mouth_grid_change = blocks.grid_change_head(channels)
        self.iris_mouth_color_change = blocks.color_change_head(channels)
        self.iris_mouth_alpha = blocks.alpha_head(channels)
        self.eye_color_change = blocks.color_change_head(channels)
        self.eye_alpha = blocks.alpha_head(channels)

    def heads(self, feature, image):
        iris_mouth_grid_change, iris_mouth_color_change, iris_mouth_alpha, eye_color_change, eye_alpha = (
            blocks.run_heads(feature, self.iris_mouth_grid_change, self.iris_mouth_color_change,
                             self.iris_mouth_alpha, self.eye_color_change, self.eye_alpha))
        iris_mouth_image_0 = apply_grid_change(iris_mouth_grid_change, image)
        iris_mouth_image_1 = apply_color_change(iris_mouth_alpha, iris_mouth_color_change, iris_mouth_image_0)
        output = apply_color_change(eye_alpha, eye_color_change, iris_mouth_image_1)
        return [
            output,
            eye_alpha,
            eye_color_change,
            iris_mouth_image_1,
            iris_mouth_alpha,
            iris_mouth_color_change,
            iris_mouth_image_0,
        ]


class StandardFaceMorpher(blocks.PoserEncoderDecoder, FaceMorpherHeads):
    """FaceMorpher08: the encoder-decoder's blocks sit directly on the module (no `body.`)."""

    def __init__(self):
        blocks.PoserEncoderDecoder.__init__(self, **_face_morpher_body(separable=False))
        self.add_heads()

    def forward(self, image, pose):
        return self.forward_encoded(self.encode(image), image, pose)

    def forward_encoded(self, encoded, image, pose):
        return self.heads(self.decode(encoded, pose), image)


class SeparableFaceMorpher(FaceMorpherHeads):
    """FaceMorpher09: the same with separable convs, nested under `body.`."""

    def __init__(self):
        super().__init__()
        self.body = blocks.PoserEncoderDecoder(**_face_morpher_body(separable=True))
        self.add_heads()

    def encode(self, image):
        return self.body.encode(image)

    def decode(self, encoded, pose):
        return self.body.decode(encoded, pose)

    def forward(self, image, pose):
        return self.forward_encoded(self.encode(image), image, pose)

    def forward_encoded(self, encoded, image, pose):
        return self.heads(self.decode(encoded, pose), image)


def _face_morpher_body(separable):
    """The encoder-decoder both face morphers use, as keyword arguments for PoserEncoderDecoder."""
    return dict(
        image_size=192,
        in_channels=4,
        pose_size=pose_size(FACE_POSE),
        start_channels=64,
        bottleneck_size=24,
        bottleneck_blocks=6,
        max_channels=512,
        activation=blocks.relu,
        separable=separable,
    )


def face_morpher(separable=False):
    return SeparableFaceMorpher() if separable else StandardFaceMorpher()


def _downsample_activation(separable):
    # The standard variants' stride-2 blocks use plain ReLU (as the official weights were trained).
    return blocks.leaky_relu if separable else blocks.relu


class ResizeConvEncoderDecoder(nn.Module):
    """The rotator's body: conv7 in, stride-2 downsampling, ResNet bottleneck, resize-conv up."""

    def __init__(self, in_channels, separable=False):
        super().__init__()
        act, down_act = blocks.leaky_relu, _downsample_activation(separable)
        self.downsample_blocks = nn.ModuleList(
            [
                blocks.conv_block(in_channels, 64, 7, 1, act, separable),
                blocks.downsample_block(64, 128, down_act, separable),
                blocks.downsample_block(128, 256, down_act, separable),
                blocks.downsample_block(256, 512, down_act, separable),
            ]
        )
        self.bottleneck_blocks = nn.ModuleList([blocks.ResnetBlock(512, act, separable) for _ in range(6)])
        self.upsample_blocks = nn.ModuleList(
            [
                blocks.resize_conv_block(512, 256, act, separable),
                blocks.resize_conv_block(256, 128, act, separable),
                blocks.resize_conv_block(128, 64, act, separable),
            ]
        )

    def forward(self, x):
        for block in (*self.downsample_blocks, *self.bottleneck_blocks, *self.upsample_blocks):
            x = block(x)
        return x


class TwoAlgoFaceBodyRotator(nn.Module):
    """Turns head and body at 256x256: a directly drawn image and a flow-warped one."""

    OUTPUTS = ("direct_image", "warped_image", "grid_change")

    def __init__(self, separable=False):
        super().__init__()
        self.encoder_decoder = ResizeConvEncoderDecoder(4 + 6, separable)
        self.direct_creator = blocks.color_change_head(64)
        self.grid_change_creator = blocks.grid_change_head(64)

    def forward(self, image, pose, direct_image=True):
        """The three outputs; with direct_image=False the directly drawn image may be left out
        (None): the THA3 poser never reads it (nor does the official one: its editor takes the
        warped image and the flow). Then, in channels-last inference, only the flow head runs
        (blocks.conv3x3_by_taps); elsewhere (export: the shipped graphs) both heads, as always."""
        n, _, h, w = image.shape
        feature = self.encoder_decoder(blocks.cat_channels([image, pose_planes(pose, h, w)]))
        if not direct_image and blocks.conv3x3_by_taps_applies(feature):
            grid_change, direct = blocks.conv3x3_by_taps(feature, self.grid_change_creator.weight,
                                                         self.grid_change_creator), None
        else:
            grid_change, direct = blocks.run_heads(feature, self.grid_change_creator, self.direct_creator)
        warped_image = apply_grid_change(grid_change, image)
        return [direct, warped_image, grid_change]


class ResizeConvUNet(nn.Module):
    """The editor's body: a U-Net whose decoder resizes (nearest) then concatenates the skip."""

    def __init__(self, in_channels, separable=False):
        super().__init__()
        act, down_act = blocks.leaky_relu, _downsample_activation(separable)
        self.downsample_blocks = nn.ModuleList(
            [
                blocks.conv_block(in_channels, 32, 3, 1, act, separable),
                blocks.downsample_block(32, 64, down_act, separable),
                blocks.downsample_block(64, 128, down_act, separable),
                blocks.downsample_block(128, 256, down_act, separable),
            ]
        )
        self.bottleneck_blocks = nn.ModuleList([blocks.ResnetBlock(256, act, separable) for _ in range(6)])
        self.upsample_blocks = nn.ModuleList(
            [
                blocks.conv_block(256 + 128, 128, 3, 1, act, separable),
                blocks.conv_block(128 + 64, 64, 3, 1, act, separable),
                blocks.conv_block(64 + 32, 32, 3, 1, act, separable),
            ]
        )

    def forward(self, x):
        skips = []
        for block in self.downsample_blocks:
            x = block(x)
            skips.append(x)
        for block in self.bottleneck_blocks:
            x = block(x)
        for block, skip in zip(self.upsample_blocks, reversed(skips[:-1])):
            x = blocks.upsample_cat_conv_block(block, x, skip)
        return x


class Editor(nn.Module):
    """Refines the rotation at 512x512: corrects the flow, re-warps the original, retouches colour."""

    OUTPUTS = ("color_changed_image", "color_change_alpha", "color_change_image", "warped_image", "grid_change")

    def __init__(self, separable=False):
        super().__init__()
        self.body = ResizeConvUNet(4 + 4 + 2 + 6, separable)
        self.color_change_creator = blocks.color_change_head(32)
        self.alpha_creator = blocks.alpha_head(32, 4)
        self.grid_change_creator = blocks.grid_change_head(32)

    def forward(self, original_image, warped_image, grid_change, pose):
        n, _, h, w = original_image.shape
        feature = self.body(blocks.cat_channels([original_image, warped_image, grid_change, pose_planes(pose, h, w)]))
        grid_correction, color_change, alpha = blocks.run_heads(
            feature, self.grid_change_creator, self.color_change_creator, self.alpha_creator)
        output_grid_change = grid_change + grid_correction
        output_warped = apply_grid_change(output_grid_change, original_image)
        color_changed = apply_color_change(alpha, color_change, output_warped)
        return [color_changed, alpha, color_change, output_warped, output_grid_change]


_CONSTRUCTORS = {
    "eyebrow_decomposer": EyebrowDecomposer,
    "eyebrow_morphing_combiner": EyebrowMorphingCombiner,
    "face_morpher": face_morpher,
    "two_algo_face_body_rotator": TwoAlgoFaceBodyRotator,
    "editor": Editor,
}


def variant_dtype(variant):
    return torch.float16 if variant.endswith("_half") else torch.float32


def build_network(name, variant):
    """A network of `variant` with freshly initialised weights (to load a state_dict into)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown THA3 variant {variant!r}; variants are {', '.join(VARIANTS)}")
    if name not in _CONSTRUCTORS:
        raise ValueError(f"THA3 has no network {name!r}; networks are {', '.join(NETWORKS)}")
    network = _CONSTRUCTORS[name](separable=variant.startswith("separable"))
    return network.to(variant_dtype(variant)).eval()


class Pipeline(StagedPipeline):
    """The five THA3 networks chained as the official poser does (see neural/poser.py for the
    protocol), in four stages (neural/ort/stages.py).

    Work is done once where its inputs allow: per picture the eyebrow decomposer and the eyebrow
    combiner's encoder, whose inputs are the picture alone; per distinct eyebrow pose the
    combiner's decoder and the face morpher's encoder; per distinct face pose (eyebrows, eyes,
    mouth) the face morpher's decoder. Both are kept in small caches: animation changes the
    eyebrows far less often than the mouth or the head, and a head that sways or breathes while
    the face holds still needs only the rotator and the editor.
    """

    STAGES = (
        Stage("picture", ("image",), ("eyebrow_layer", "background_layer", "eyebrow_encoded"), per_pose=False),
        Stage("eyebrows", ("image", "eyebrow_layer", "background_layer", "eyebrow_encoded", "pose"),
              ("face", "face_encoded"), cache_slice=(EYEBROW_POSE.start, EYEBROW_POSE.stop)),
        Stage("face", ("image", "face", "face_encoded", "pose"), ("face_morphed_image",),
              cache_slice=(EYEBROW_POSE.start, FACE_POSE.stop)),
        Stage("rotation", ("face_morphed_image", "pose"), ("final_image",)),
    )

    def __init__(self, networks):
        self.eyebrow_decomposer = networks["eyebrow_decomposer"]
        self.eyebrow_morphing_combiner = networks["eyebrow_morphing_combiner"]
        self.face_morpher = networks["face_morpher"]
        self.rotator = networks["two_algo_face_body_rotator"]
        self.editor = networks["editor"]
        super().__init__()

    def picture(self, image):
        crop = image[:, :, EYEBROW_BOX[0], EYEBROW_BOX[1]]
        decomposed = named(self.eyebrow_decomposer(crop), EyebrowDecomposer.OUTPUTS)
        eyebrow_layer, background = decomposed["eyebrow_layer"], decomposed["background_layer"]
        return {
            "eyebrow_layer": eyebrow_layer,
            "background_layer": background,
            "eyebrow_encoded": self.eyebrow_morphing_combiner.encode(background, eyebrow_layer),
        }

    def eyebrows(self, image, eyebrow_layer, background_layer, eyebrow_encoded, pose):
        """Face crops with the morphed eyebrows pasted in, and their face-morpher encodings."""
        n = pose.shape[0]
        morphed = self.eyebrow_morphing_combiner.forward_encoded(
            eyebrow_encoded.expand(n, -1, -1, -1),
            background_layer.expand(n, -1, -1, -1),
            eyebrow_layer.expand(n, -1, -1, -1),
            pose[:, EYEBROW_POSE],
        )
        # The blend by the morphed layer's own alpha (not combine_alpha) is what the official poser uses.
        eyebrow_image = named(morphed, EyebrowMorphingCombiner.OUTPUTS)["eyebrow_image_no_combine_alpha"]
        face = paste(image[:, :, FACE_BOX[0], FACE_BOX[1]], eyebrow_image, EYEBROW_IN_FACE)
        return {"face": face, "face_encoded": self.face_morpher.encode(face)}

    def face(self, image, face, face_encoded, pose):
        """The picture with the face morphed (eyes, mouth, iris) and pasted back."""
        morphed = named(self.face_morpher.forward_encoded(face_encoded, face, pose[:, FACE_POSE]),
                        FaceMorpherHeads.OUTPUTS)
        return {"face_morphed_image": paste(image, morphed["output_image"], FACE_BOX)}

    def rotation(self, face_morphed_image, pose):
        edited = self.rotate(face_morphed_image, pose[:, ROTATION_POSE])
        return {
            "final_image": edited["color_changed_image"],
            "alpha": edited["color_change_alpha"],
            "grid_change": edited["grid_change"],
        }

    def rotate(self, face_morphed, rotation_pose):
        half = F.interpolate(face_morphed, size=(256, 256), mode="bilinear", align_corners=False)
        rotated = named(self.rotator(half, rotation_pose, direct_image=False), TwoAlgoFaceBodyRotator.OUTPUTS)
        size = face_morphed.shape[-2:]
        warped = F.interpolate(rotated["warped_image"], size=size, mode="bilinear", align_corners=False)
        # Offsets are in normalised units, so the doubled flow needs no rescaling.
        grid_change = F.interpolate(rotated["grid_change"], size=size, mode="bilinear", align_corners=False)
        edited = self.editor(face_morphed, warped, grid_change, rotation_pose)
        return named(edited, Editor.OUTPUTS)
