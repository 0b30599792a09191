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

from . import tha1, tha3

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


def build_network(name: str):
    """A THA2 network with freshly initialised weights (to load a state_dict into)."""
    if name not in _CONSTRUCTORS:
        raise ValueError(f"THA2 has no network {name!r}; networks are {', '.join(NETWORKS)}")
    return _CONSTRUCTORS[name]().eval()


def paste(image: Tensor, part: Tensor, box) -> Tensor:
    """A copy of `image` (repeated to part's batch) with `part` written into box (rows, cols)."""
    rows, cols = box
    result = image.expand(part.shape[0], -1, -1, -1).clone()
    result[:, :, rows, cols] = part
    return result
