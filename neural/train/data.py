"""A dataset folder of the builder (render/dataset/plan.py) as a torch Dataset of triplets.

Each item is one example: its model's rest image, the expression image, the fully posed image
(network images (4, H, W): straight alpha, linear RGB in [-1, 1]) and the pose vector. The
dataset.json says which schema (and rest convention) the images were made for; a folder made
for another schema is refused, naming the folder. Images are checked against the manifest's
sha256 the first time a process reads them (lazily: a million-image folder opens at once).

A missing or corrupt image is reported with its path; `on_bad="fatal"` stops, `"skip"` drops the
example from its batch (collate_batch) and says so on stderr.

Augmentation (off by default) keeps THA's conventions: a horizontal flip (the head box is centred)
with left/right parameters swapped and the turns about the vertical and view axes negated, and
a small colour jitter of RGB that leaves alpha as it is and RGB zero where alpha is zero. Its
randomness comes from (seed, epoch, example), so a resumed run sees the same pictures.
"""

from __future__ import annotations

import hashlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from ...errors import UserError
from ...pose.character_image import to_network
from ...pose.schema import get_schema
from ...render.dataset import manifest as manifests
from ...render.dataset.plan import CONFIG_NAME, DatasetError, read_config_file

IMAGE_ROLES = ("rest", "expression", "posed")
BAD_IMAGE_POLICIES = ("fatal", "skip")
# Parameters whose sign flips in a mirror image: turns about the vertical axis and the view axis.
MIRROR_NEGATED = ("head_y", "neck_z", "body_y", "body_z", "iris_rotation_y")


class DatasetFolderError(UserError, ValueError):
    """A dataset folder a trainer cannot use; names the folder and the problem."""


class BadImageError(UserError, ValueError):
    """An image of the manifest that is missing, unreadable or not what the manifest recorded."""


@dataclass(frozen=True)
class Example:
    model: str
    split: str
    index: int
    pose: tuple
    paths: dict  # role -> path relative to the folder
    sha256: dict  # role -> hex digest recorded by the builder


def read_config(folder, schema=None):
    """The folder's DatasetConfig; with `schema`, refuses a dataset made for another."""
    folder = Path(folder)
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise DatasetFolderError(f"{folder}: not a THA Studio dataset folder (no {CONFIG_NAME})")
    try:
        config = read_config_file(path)
    except DatasetError as error:
        raise DatasetFolderError(str(error)) from None
    if schema is not None and config.schema != schema:
        raise DatasetFolderError(
            f"{folder}: this dataset was made for {config.schema.upper()} (its rest images and pose vectors follow "
            f"{config.schema.upper()}'s convention, {get_schema(config.schema).rest_convention}), not for "
            f"{schema.upper()} ({get_schema(schema).rest_convention}); render one with --schema {schema}")
    return config


def read_examples(folder, split, schema=None):
    """The examples of one split in the merged manifest, sorted as the manifest is. With `schema`
    (a PoseSchema), each pose must be one of its vectors: a hand-edited or damaged line would
    otherwise train on NaN or on poses no renderer made."""
    folder = Path(folder)
    path = folder / manifests.MANIFEST_NAME
    if not path.is_file():
        raise DatasetFolderError(f"{folder}: no {manifests.MANIFEST_NAME} (merge the shards first: merge-shards)")
    rests, examples = {}, []
    for number, record in manifests.iter_records(path):
        if record.get("split") != split:
            continue
        if record["type"] == "model":
            rests[record.get("model")] = record
        elif record["type"] == "example":
            examples.append((number, record))
    result = []
    for number, record in examples:
        try:
            model = record["model"]
            if model not in rests:
                raise ValueError(f"an example of {model!r} whose model has no rest image")
            rest_record = rests[model]
            paths = {"rest": _image_path(rest_record["rest"]), "expression": _image_path(record["expression"]),
                     "posed": _image_path(record["posed"])}
            pose = _pose(record["pose"], schema)
            index = record["index"]
            if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                raise ValueError(f"index {index!r} is not a pose number")
            rest_sha = (rest_record.get("sha256") or {}).get("rest")
            digests = record.get("sha256") or {}
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            problem = f"no {error}" if isinstance(error, KeyError) else str(error)
            raise DatasetFolderError(f"{path}: line {number}: {problem}") from None
        result.append(Example(
            model, split, index, pose, paths,
            {"rest": rest_sha, "expression": digests.get("expression"), "posed": digests.get("posed")},
        ))
    return result


def _image_path(relative):
    """A manifest's image path, which must stay inside the dataset folder."""
    if not isinstance(relative, str) or not relative:
        raise ValueError(f"image path {relative!r} is not a file name")
    parts = Path(relative).parts
    if Path(relative).is_absolute() or ".." in parts or "\\" in relative:
        raise ValueError(f"image path {relative!r} leaves the dataset folder")
    return relative


def _pose(values, schema):
    """A manifest's pose as a tuple: finite numbers, and with `schema` its length and ranges."""
    if not isinstance(values, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ValueError("the pose is not a list of numbers")
    pose = tuple(float(v) for v in values)
    if not all(np.isfinite(pose)):
        raise ValueError(f"the pose holds a value that is not a finite number ({values})")
    if schema is not None:
        if len(pose) != len(schema.names):
            raise ValueError(f"the pose has {len(pose)} values; {schema.name.upper()} poses have {len(schema.names)}")
        outside = [f"{name}={value:g}" for name, value, low, high in zip(schema.names, pose, schema.minimums, schema.maximums)
                   if not low - 1e-6 <= value <= high + 1e-6]
        if outside:
            raise ValueError(f"the pose has {', '.join(outside)}, outside {schema.name.upper()}'s ranges")
    return pose


def select_examples(folder, split, hold_out, poses_per_model, schema=None):
    """The examples of `split`, or with `hold_out` > 0 the train split's: "train" without each
    model's last `hold_out` poses, "validation" those poses only (held-out poses of the training
    characters: a studio fine-tuning on its own few characters validates this way)."""
    if not hold_out:
        return read_examples(folder, split, schema)
    if not 0 < hold_out < poses_per_model:
        raise DatasetFolderError(f"{folder}: cannot hold out {hold_out} of {poses_per_model} poses per model")
    first_held = poses_per_model - hold_out
    examples = read_examples(folder, "train", schema)
    if split == "train":
        return [e for e in examples if e.index < first_held]
    return [e for e in examples if e.index >= first_held]


@dataclass(frozen=True)
class Augmentation:
    """What may be done to an example: each on with probability 1/2 (flip) or always (jitter)."""

    flip: bool = False
    jitter: float = 0.0  # the most RGB gain and offset change, e.g. 0.05

    @property
    def any(self):
        return self.flip or self.jitter > 0


def mirror_permutation(schema):
    """(index permutation, sign vector) that mirror a pose vector left to right."""
    names = list(schema.names)
    order = []
    for name in names:
        twin = _twin(name)
        order.append(names.index(twin) if twin in names else names.index(name))
    signs = np.array([-1.0 if name in MIRROR_NEGATED else 1.0 for name in names], np.float32)
    return order, signs


def _twin(name):
    for a, b in (("_left", "_right"), ("left_", "right_")):
        if a in name:
            return name.replace(a, b)
        if b in name:
            return name.replace(b, a)
    return name


class TripletDataset(torch.utils.data.Dataset):
    """The examples of one split of a dataset folder.

    `roles`: which images to load (a face morpher needs rest and expression only). `image_size`:
    resize to this square (area filter in linear light), e.g. a small size for a quick run.
    """

    def __init__(self, folder, schema, split="train", roles=IMAGE_ROLES, image_size=None, on_bad="fatal",
                 verify=True, augmentation=None, seed=0, limit=None, hold_out=0):
        if on_bad not in BAD_IMAGE_POLICIES:
            raise ValueError(f"on_bad must be one of {BAD_IMAGE_POLICIES}, not {on_bad!r}")
        self.folder = Path(folder)
        self.schema = get_schema(schema)
        self.config = read_config(self.folder, self.schema.name)
        self.split = split
        self.roles = tuple(roles)
        self.image_size = image_size
        self.on_bad = on_bad
        self.verify = verify
        self.augmentation = augmentation or Augmentation()
        self.seed = seed
        self.epoch = 0
        self.examples = select_examples(self.folder, split, hold_out, self.config.poses_per_model,
                                        self.schema)[:limit]
        if not self.examples:
            hint = "; validate on held-out poses of the training models instead: --hold-out N" if split == "validation" else ""
            raise DatasetFolderError(f"{self.folder}: no {split} examples in {manifests.MANIFEST_NAME}{hint}")
        self._verified = set()  # paths checked against their sha256 in this process
        self._rest_cache = {}  # rest images are shared by a model's examples
        self._mirror = mirror_permutation(self.schema)

    def __len__(self):
        return len(self.examples)

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __getitem__(self, index):
        example = self.examples[index]
        try:
            images = {role: self._image(example, role) for role in self.roles}
        except BadImageError as error:
            if self.on_bad == "fatal":
                raise
            print(f"train: skipping example {index}: {error}", file=sys.stderr)
            return None
        item = {"pose": torch.tensor(example.pose, dtype=torch.float32), "index": index, **images}
        if self.augmentation.any:
            item = self._augment(item, index)
        return item

    # --- images

    def _image(self, example, role):
        path = example.paths[role]
        if role == "rest" and path in self._rest_cache:
            return self._rest_cache[path]
        tensor = self.load_image(path, example.sha256.get(role))
        if role == "rest":
            self._rest_cache = {path: tensor}  # examples come model by model more often than not
        return tensor

    def load_image(self, relative, digest=None):
        """One image as a (4, S, S) network tensor; BadImageError names its path."""
        path = self.folder / relative
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BadImageError(f"{path}: missing (listed in {self.folder / manifests.MANIFEST_NAME})") from None
        except OSError as error:
            raise BadImageError(f"{path}: cannot read ({error.strerror})") from None
        if self.verify and digest and relative not in self._verified:
            if hashlib.sha256(data).hexdigest() != digest:
                raise BadImageError(f"{path}: corrupt (its sha256 is not the manifest's)")
            self._verified.add(relative)
        try:
            with Image.open(io.BytesIO(data)) as image:
                rgba = np.asarray(image.convert("RGBA"))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise BadImageError(f"{path}: not a readable PNG ({error})") from None
        tensor = torch.from_numpy(to_network(rgba))
        if self.image_size and tensor.shape[-1] != self.image_size:
            tensor = F.interpolate(tensor[None], size=(self.image_size, self.image_size), mode="area")[0]
        return tensor

    # --- augmentation

    def _augment(self, item, index):
        generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
        images = [role for role in self.roles]
        if self.augmentation.flip and torch.rand((), generator=generator) < 0.5:
            order, signs = self._mirror
            item["pose"] = item["pose"][order] * torch.from_numpy(signs)
            for role in images:
                item[role] = item[role].flip(-1)
        if self.augmentation.jitter > 0:
            gain = 1 + self.augmentation.jitter * (2 * torch.rand(3, 1, 1, generator=generator) - 1)
            offset = self.augmentation.jitter * (2 * torch.rand(3, 1, 1, generator=generator) - 1)
            for role in images:
                item[role] = jitter_colour(item[role], gain, offset)
        return item


def jitter_colour(image, gain, offset):
    """RGB * gain + offset in [0, 1] (the same for every image of an example); alpha untouched,
    RGB kept zero (-1) where alpha is zero."""
    rgb = ((image[:3] + 1) / 2 * gain + offset).clamp(0, 1) * 2 - 1
    transparent = image[3:4] <= -1
    rgb = torch.where(transparent, torch.full_like(rgb, -1.0), rgb)
    return torch.cat([rgb, image[3:4]])


def collate_batch(items):
    """default_collate of the examples that loaded (a skipped one is None); None if none did."""
    items = [item for item in items if item is not None]
    if not items:
        return None
    return torch.utils.data.default_collate(items)
