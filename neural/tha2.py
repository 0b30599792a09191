"""THA2 (2021, official mode_20): five networks and the pipeline that chains them.

* eyebrow_decomposer, eyebrow_morphing_combiner, face_morpher: the same architectures (and key names) as
  THA3 standard's EyebrowDecomposer00, EyebrowMorphingCombiner00 and FaceMorpher08, so they are tha3.py's
  classes built non-separable.
* two_algo_face_rotator, combiner: THA1's networks (tha1.py), reused by THA2 as they were; only the rotator's
  output list differs (THA2 returns the flow as (n, 2, h, w) and no grid).

Pipeline (tha.md §3.1), image 4x256x256 in the network convention, pose 42:
  1. eyebrow_decomposer(centre crop rows/cols 64:192)                       (pose-independent: cached)
  2. eyebrow_morphing_combiner(background, eyebrow layer, pose[0:12])
  3. face_morpher(crop 32:224 with step 2's no-combine-alpha image pasted at [32:160, 32:160], pose[12:39])
  4. two_algo_face_rotator(whole image with step 3 pasted at 32:224, pose[39:42])
  5. combiner(rotator's colour-changed and resampled images, pose[39:42]) -> final image
"""

from torch import Tensor

from ..pose.schema import get_schema
from . import tha1, tha3
from .blocks import paste
from .ort.stages import Stage
from .staged import StagedPipeline

FAMILY = "tha2"
SCHEMA = "tha2"
IMAGE_SIZE = 256
# The official files are float32 (the only variant THA2 was released in).
VARIANTS = ("float",)
NETWORKS = (
    "eyebrow_decomposer",
    "eyebrow_morphing_combiner",
    "face_morpher",
    "two_algo_face_rotator",
    "combiner",
)

# Where the networks look (rows, cols) in the 256 picture.
EYEBROW_BOX = (slice(64, 192), slice(64, 192))
FACE_BOX = (slice(32, 224), slice(32, 224))
EYEBROW_IN_FACE = (slice(32, 160), slice(32, 160))

# The pose slices each network takes: one definition, pose/schema.py's.
EYEBROW_POSE = get_schema(SCHEMA).slice_for("eyebrow_morphing_combiner")
FACE_POSE = get_schema(SCHEMA).slice_for("face_morpher")
ROTATION_POSE = get_schema(SCHEMA).slice_for("two_algo_face_rotator")

# Which eyebrow-combiner output feeds the face morpher (the official default: the image blended by the
# morphed layer's own alpha, not by combine_alpha).
EYEBROW_IMAGE_INDEX = 2


class TwoAlgoFaceRotator(tha1.TwoAlgoFaceRotator):
    """THA1's rotator as THA2 calls it: [color_changed_image, resampled_image, color_change, alpha_mask,
    grid_change (n, 2, h, w)]."""

    def forward(self, image: Tensor, pose: Tensor) -> list:
        r = self.rotate(image, pose)
        return [r["color_changed_image"], r["resampled_image"], r["color_change"], r["alpha_mask"], r["grid_change"]]


_CONSTRUCTORS = {
    "eyebrow_decomposer": lambda: tha3.EyebrowDecomposer(separable=False),
    "eyebrow_morphing_combiner": lambda: tha3.EyebrowMorphingCombiner(separable=False),
    "face_morpher": tha3.StandardFaceMorpher,
    "two_algo_face_rotator": TwoAlgoFaceRotator,
    "combiner": tha1.Combiner,
}


def build_network(name: str, variant: str = "float"):
    """A THA2 network with freshly initialised weights (to load a state_dict into)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown THA2 variant {variant!r}; variants are {', '.join(VARIANTS)}")
    if name not in _CONSTRUCTORS:
        raise ValueError(f"THA2 has no network {name!r}; networks are {', '.join(NETWORKS)}")
    return _CONSTRUCTORS[name]().eval()


class Pipeline(StagedPipeline):
    """The five THA2 networks chained as the official mode_20 poser does (protocol: neural/poser.py).

    The eyebrow decomposer sees only the picture, so it runs once per picture."""

    STAGES = (
        Stage("picture", ("image",), ("eyebrow_layer", "background_layer"), per_pose=False),
        Stage("posed", ("image", "eyebrow_layer", "background_layer", "pose"), ("final_image",)),
    )

    def __init__(self, networks: dict):
        self.eyebrow_decomposer = networks["eyebrow_decomposer"]
        self.eyebrow_morphing_combiner = networks["eyebrow_morphing_combiner"]
        self.face_morpher = networks["face_morpher"]
        self.rotator = networks["two_algo_face_rotator"]
        self.combiner = networks["combiner"]
        super().__init__()

    def picture(self, image: Tensor) -> dict:
        rows, cols = EYEBROW_BOX
        decomposed = self.eyebrow_decomposer(image[:, :, rows, cols])
        return {"eyebrow_layer": decomposed[0], "background_layer": decomposed[3]}

    def posed(self, image: Tensor, eyebrow_layer: Tensor, background_layer: Tensor, pose: Tensor) -> dict:
        n = pose.shape[0]
        eyebrow_image = self.eyebrow_morphing_combiner(
            background_layer.expand(n, -1, -1, -1), eyebrow_layer.expand(n, -1, -1, -1), pose[:, EYEBROW_POSE]
        )[EYEBROW_IMAGE_INDEX]
        rows, cols = FACE_BOX
        face = paste(image[:, :, rows, cols], eyebrow_image, EYEBROW_IN_FACE)
        face_morphed = paste(image, self.face_morpher(face, pose[:, FACE_POSE])[0], FACE_BOX)
        rotated = tha1.rotate_and_combine(self.rotator, self.combiner, face_morphed, pose[:, ROTATION_POSE])
        return {"final_image": rotated.pop("image"), "eyebrow_image": eyebrow_image,
                "face_morphed_image": face_morphed, **rotated}
