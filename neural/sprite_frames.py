"""Frames for a talking-head sprite: one picture, one set of weights, pose vectors in, pictures out.

The Blender side (animation/blender) asks a `FrameSource` for the picture of a pose; this module
knows nothing of Blender. What it adds to the Poser:
- loaded Posers are shared by every sprite with the same weights, device and precision (loading
  weights takes seconds), each sprite keeping its own pose-independent picture work;
- each pose is keyed (animation/core/bake_cache.py: picture, weights, schema, quantised pose), and
  the networks are given the quantised pose, so a key always names the same pixels;
- recent pictures are kept in memory, so scrubbing back and forth does not run the networks again.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..animation.core.bake_cache import POSE_STEP, dequantise_pose, picture_digest, pose_key, quantise_pose
from ..atomic_files import sha256_file
from ..errors import UserError
from ..pose.character_image import prepare_character_image
from ..pose.schema import get_schema
from ..render.formats.png import encode_png
from .backends import open_poser, resolve_backend

_posers = {}
_posers_lock = threading.Lock()
_run_locks = weakref.WeakKeyDictionary()  # Poser -> the lock its network runs take
_file_hashes = {}


def shared_poser(weights="tha3", variant="", device="auto", precision="auto", backend="auto"):
    """One loaded poser per (weights, variant, device, precision, backend) in this process."""
    key = (str(weights or "tha3"), variant or None, device, precision, resolve_backend(backend, device, precision))
    with _posers_lock:
        if key not in _posers:
            _posers[key] = open_poser(key[0], key[1], device, precision, key[4])
        return _posers[key]


class SlidersError(UserError, ValueError):
    """Weights whose networks read other pose parameters than a sprite's sliders."""


def check_sliders(poser, schema, weights=None):
    """Refuse a poser whose pose vector is not `schema`'s: the sliders would drive the wrong
    parameters. The same parameters under another family's name pass: THA4 students read THA3's 45."""
    if tuple(poser.schema.names) != tuple(schema.names):
        source = f"the weights {weights}" if weights else "the weights"
        raise SlidersError(f"{source} are {poser.family.upper()} ({poser.schema.name} poses, {poser.schema.size} "
                           f"parameters), not the {schema.name} sliders of the sprite ({schema.size})")
    return poser


class CharacterError(UserError, ValueError):
    """A picture that weights trained on one character cannot pose."""


# Weights trained on one character: a THA4 student draws its character's face from its own
# weights (a SIREN of pixel coordinates and pose) and warps the picture only around it.
ONE_CHARACTER = {("tha4", "student")}
# How far (mean over pixels either picture covers, premultiplied RGBA, 8-bit levels) a picture
# may be from the model's own and count as it: a re-saved or re-compressed copy, not an edit.
SAME_PICTURE_LEVELS = 2.0


def check_character(poser, rgba, picture=None, weights=None):
    """Refuse a picture other than the one a single-character model was trained on (its
    character.png beside the weights): the student's face would be drawn over it. Weights
    with no picture beside them (a converted file) cannot be checked and pass."""
    if (poser.family, poser.variant) not in ONE_CHARACTER:
        return
    from .ort.weight_sources import character_image_file

    own_file = character_image_file(poser.weights)
    if own_file is None:
        return
    own = prepare_character_image(own_file, poser.schema)
    if own.shape == rgba.shape and premultiplied_distance(own, rgba) <= SAME_PICTURE_LEVELS:
        return
    named = f"{Path(picture).name} is another picture" if isinstance(picture, (str, Path)) else "this picture is another"
    source = f"the weights {weights}" if weights else "the weights"
    raise CharacterError(f"{source} are a {poser.family.upper()} {poser.variant} model: it draws only its own character, "
                         f"{own_file}; {named}, and posed by it would wear that character's face. Give {own_file.name} "
                         f"as the picture, or pose other pictures with THA3 weights")


def premultiplied_distance(first, second):
    """Mean absolute difference of two RGBA uint8 pictures, colours premultiplied by alpha, over
    the pixels either covers (in 8-bit levels; 0 where neither covers any)."""
    def premultiplied(rgba):
        rgba = rgba.astype(np.float32)
        return np.concatenate([rgba[..., :3] * (rgba[..., 3:] / 255.0), rgba[..., 3:]], axis=-1)

    covered = (first[..., 3] > 0) | (second[..., 3] > 0)
    if not covered.any():
        return 0.0
    return float(np.abs(premultiplied(first) - premultiplied(second))[covered].mean())


def forget_posers():
    """Drop loaded Posers (their memory, GPU memory included, is freed once no sprite holds them)."""
    with _posers_lock:
        _posers.clear()


def weights_identity(poser):
    """A short stable name of the weights a Poser runs: family, variant and its files' hashes."""
    digest = hashlib.sha256(f"{poser.family}\n{poser.variant}\n".encode())
    for name in sorted(poser.weights.sources):
        digest.update(f"{name}:{_file_hash(poser.weights.sources[name])}\n".encode())
    return digest.hexdigest()[:24]


def _file_hash(path):
    path = Path(path)
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _file_hashes:
        _file_hashes[memo] = sha256_file(path)
    return _file_hashes[memo]


class FrameSource:
    """Posed pictures of one character picture.

    `picture`: a path or RGBA array, checked and prepared for the schema (CharacterImageError
    names the file and the problem).
    """

    def __init__(self, picture, schema="tha3", weights="tha3", variant="", device="auto", precision="auto",
                 backend="auto", memory_frames=96, poser=None):
        self.schema = get_schema(schema)
        self.rgba = prepare_character_image(picture, self.schema)
        self.picture_digest = picture_digest(self.rgba)
        self.poser = poser or shared_poser(weights, variant, device, precision, backend)
        check_sliders(self.poser, self.schema, weights)
        check_character(self.poser, self.rgba, picture, weights)
        self.weights_id = weights_identity(self.poser)
        self._prepared = None
        self._memory = OrderedDict()
        self._memory_frames = memory_frames
        self._lock = threading.Lock()  # guards this source's memory of pictures
        with _posers_lock:
            # Sprites sharing a Poser take turns: a run switches the Poser to its own picture first.
            self._run_lock = _run_locks.setdefault(self.poser, threading.Lock())
        self.network_runs = 0

    def key(self, pose):
        return pose_key(self.picture_digest, self.weights_id, self.schema.name, quantise_pose(pose))

    def remembered(self, key):
        """The picture of a key if it is in memory, else None."""
        with self._lock:
            rgba = self._memory.get(key)
            if rgba is not None:
                self._memory.move_to_end(key)
            return rgba

    def remember(self, key, rgba):
        with self._lock:
            self._remember(key, rgba)

    def _remember(self, key, rgba):
        self._memory[key] = rgba
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_frames:
            self._memory.popitem(last=False)

    def pose_rgba(self, pose):
        """(key, RGBA uint8 (H, W, 4)) of one pose vector; from memory when it was posed lately."""
        pose = self.schema.clamp(np.asarray(pose, dtype=np.float32))
        key = self.key(pose)
        found = self.remembered(key)
        if found is not None:
            return key, found
        with self._run_lock:
            if self._prepared is None:
                self._prepared = self.poser.set_image(self.rgba).prepared
            self.poser.use_prepared(self._prepared)
            rgba = self.poser.pose_rgba(dequantise_pose(quantise_pose(pose))[None])[0]
            self.network_runs += 1
        self.remember(key, rgba)
        return key, rgba

    @staticmethod
    def png(rgba):
        return encode_png(rgba)

    @property
    def device(self):
        return str(self.poser.device)

    @property
    def backend(self):
        return self.poser.backend


__all__ = ["FrameSource", "POSE_STEP", "forget_posers", "picture_digest", "shared_poser", "weights_identity"]
