"""The bake cache of a sprite: posed pictures named by what made them, and the frames that show them.

Layout of a cache folder (e.g. `//tha_cache/<sprite>/` beside the .blend):

    poses/<key>.png        one posed picture per distinct pose; <key> hashes the picture, the
                           weights, the schema and the quantised pose, so an identical pose is
                           computed once and an edit recomputes only the poses it changed
    frames/frame_0001.png  the scene's frames as an image sequence (file number = scene frame,
                           but for a range starting below frame 0: see frame_number), each a
                           copy of (or a hard link to) its pose's file: any Blender, render
                           farm node included, plays them without THA Studio or torch
    bake.json              what was baked: picture, weights, schema, frame -> key, each pose
                           file's sha256

Nothing in a cache folder is trusted: a pose file is reused only when bake.json records it and
its sha256 still matches (a file truncated by a kill, or a folder deleted or edited between
bakes, is recomputed). Every file is written whole (write, then rename).

Pure: numpy and the stdlib.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...atomic_files import TEMP_SUFFIX, sha256_file, temp_path_for, write_bytes_atomic, write_text_atomic
from ...errors import UserError
from ... import json_text

INDEX_NAME = "bake.json"
INDEX_FORMAT = "tha_studio.bake"
INDEX_VERSION = 1
POSES_FOLDER = "poses"
FRAMES_FOLDER = "frames"
FRAME_PATTERN = "frame_{:04d}.png"

# Pose values are quantised before keying: a step of 1/1024 of a parameter's unit is far below a
# pixel's worth of motion (bench/bench_bake.py measures the largest pixel difference it causes),
# while float noise from F-curve evaluation (1e-7) no longer makes "new" poses.
POSE_STEP = 1.0 / 1024.0


def frame_number(frame, first_frame):
    """The file number of a scene frame in a bake whose range starts at `first_frame`: the frame
    itself, except in a range starting below 0, numbered from 0 there. Blender's image sequences
    show no file numbered below 0 (frames -3 to -1 all showed frame_0000.png)."""
    return frame - first_frame if first_frame < 0 else frame


class BakeCacheError(UserError):
    """A cache folder that cannot be used (unwritable, or a bake.json of another kind)."""


def picture_digest(rgba):
    """sha256 of a prepared picture's RGBA bytes (the picture's part of a pose key)."""
    return hashlib.sha256(np.ascontiguousarray(rgba, dtype=np.uint8).tobytes()).hexdigest()


def quantise_pose(pose, step=POSE_STEP):
    """Integer steps of a pose vector (the part of a key that is the pose)."""
    return np.round(np.asarray(pose, dtype=np.float64) / step).astype(np.int64)


def dequantise_pose(steps, step=POSE_STEP):
    """The pose the networks are given for a quantised pose (so equal keys give equal pictures)."""
    return (np.asarray(steps, dtype=np.float64) * step).astype(np.float32)


def pose_key(picture_digest, weights_id, schema_name, steps, step=POSE_STEP):
    """The file name stem of one posed picture: a hash of everything that decides its pixels."""
    digest = hashlib.sha256()
    digest.update(f"{picture_digest}\n{weights_id}\n{schema_name}\n{step!r}\n".encode())
    digest.update(np.asarray(steps, dtype="<i8").tobytes())
    return digest.hexdigest()[:32]


@dataclass
class BakeIndex:
    """What a cache folder holds (bake.json)."""

    picture: str = ""  # sha256 of the prepared picture
    weights: str = ""  # weights identity (family, variant, files' hashes)
    schema: str = ""
    step: float = POSE_STEP
    frames: dict = field(default_factory=dict)  # scene frame (int) -> pose key
    files: dict = field(default_factory=dict)  # pose key -> sha256 of poses/<key>.png

    def to_json(self):
        return json.dumps({
            "format": INDEX_FORMAT, "version": INDEX_VERSION, "picture": self.picture, "weights": self.weights,
            "schema": self.schema, "step": self.step,
            "frames": {str(frame): key for frame, key in sorted(self.frames.items())},
            "files": dict(sorted(self.files.items())),
        }, indent=1) + "\n"

    @classmethod
    def from_json(cls, text, source):
        try:
            data = json_text.loads(text)
            if data.get("format") != INDEX_FORMAT:
                raise BakeCacheError(f"{source}: not a THA Studio bake index")
            if data.get("version") != INDEX_VERSION:
                raise BakeCacheError(f"{source}: bake index version {data.get('version')}, this THA Studio reads {INDEX_VERSION}")
            return cls(data["picture"], data["weights"], data["schema"], float(data["step"]),
                       {int(frame): str(key) for frame, key in data["frames"].items()},
                       {str(key): str(sha) for key, sha in data["files"].items()})
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise BakeCacheError(f"{source}: unreadable bake index ({error})") from None


class BakeCache:
    """One sprite's cache folder."""

    def __init__(self, folder):
        self.folder = Path(folder)
        self.index = self._read_index()

    @property
    def index_path(self):
        return self.folder / INDEX_NAME

    def pose_path(self, key):
        return self.folder / POSES_FOLDER / f"{key}.png"

    def frame_path(self, frame, first_frame=None):
        """A frame's file; `first_frame`: the baked range's first frame (default: the index's)."""
        if first_frame is None:
            first_frame = min(self.index.frames, default=frame)
        return self.frame_file(self.folder, frame, first_frame)

    @staticmethod
    def frame_file(folder, frame, first_frame):
        """A frame's file in a cache folder whose baked range starts at `first_frame`, without
        reading its index (the panel asks each redraw)."""
        return Path(folder) / FRAMES_FOLDER / FRAME_PATTERN.format(frame_number(frame, first_frame))

    def _read_index(self):
        try:
            text = self.index_path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError):
            return BakeIndex()  # nothing baked there yet (writing will say if the place is unusable)
        except OSError as error:
            raise BakeCacheError(f"{self.index_path}: cannot read ({error.strerror or error})") from None
        except UnicodeDecodeError:
            return BakeIndex()  # damaged past its text: rebuilt, as below
        try:
            return BakeIndex.from_json(text, self.index_path)
        except BakeCacheError:
            return BakeIndex()  # a damaged index is rebuilt, never trusted

    def has_pose(self, key):
        """True when poses/<key>.png is recorded and its bytes are still the ones written."""
        recorded = self.index.files.get(key)
        path = self.pose_path(key)
        if recorded is None or not path.is_file():
            return False
        try:
            return sha256_file(path) == recorded
        except OSError:
            return False

    def store_pose(self, key, png_bytes):
        """Write one posed picture whole and record its hash (the index is saved by `save_index`)."""
        try:
            write_bytes_atomic(self.pose_path(key), png_bytes)
        except OSError as error:
            raise _cannot_write(self.pose_path(key), error) from None
        self.index.files[key] = hashlib.sha256(png_bytes).hexdigest()

    def save_index(self):
        try:
            write_text_atomic(self.index_path, self.index.to_json())
        except OSError as error:
            raise _cannot_write(self.index_path, error) from None

    def adopt_poses(self, other):
        """Take the posed pictures `other` (another cache folder) holds and this one lacks, each
        still the bytes `other` recorded: a hard link where the file system allows, else a copy.
        Returns how many were taken (the index is saved by `save_index`)."""
        taken = 0
        for key, sha in sorted(other.index.files.items()):
            if self.has_pose(key) or not other.has_pose(key):
                continue
            source, target = other.pose_path(key), self.pose_path(key)
            _link_or_copy(source, target)
            self.index.files[key] = sha
            taken += 1
        return taken

    def write_frames(self, frames):
        """frames/frame_NNNN.png for each scene frame -> pose key (a hard link where the file system
        allows, else a copy; NNNN: frame_number); frame files of frames no longer in the range are
        removed."""
        folder = self.folder / FRAMES_FOLDER
        first = min(frames, default=0)
        wanted = {self.frame_path(frame, first).name for frame in frames}
        for frame, key in sorted(frames.items()):
            target, source = self.frame_path(frame, first), self.pose_path(key)
            if _same_file(source, target):
                continue
            _link_or_copy(source, target)
        for stale in folder.glob("frame_*.png"):
            if stale.name not in wanted:
                stale.unlink(missing_ok=True)
        self.index.frames = dict(frames)

    def remove_unused(self, leftovers_older_than=3600.0):
        """Delete the posed pictures no baked frame shows (earlier takes, another picture's poses),
        and files a killed bake left half written (after `leftovers_older_than` seconds, so a bake
        running now in another Blender keeps its own). The cache otherwise keeps every pose ever
        baked, so that undoing an edit costs nothing. Returns (files removed, bytes freed, poses
        kept); the index is saved."""
        import time

        used = set(self.index.frames.values())
        removed = freed = 0
        folder = self.folder / POSES_FOLDER
        if not folder.is_dir():
            return 0, 0, 0  # nothing baked here (and no folder made for it)
        for path in sorted(folder.glob("*")):
            try:
                info = path.stat()
                leftover = path.name.endswith(TEMP_SUFFIX) and time.time() - info.st_mtime > leftovers_older_than
                unused = path.suffix == ".png" and path.stem not in used
                if path.is_file() and (leftover or unused):
                    path.unlink()
                    removed, freed = removed + 1, freed + info.st_size
            except FileNotFoundError:
                continue  # (removed meanwhile)
            except OSError as error:
                raise BakeCacheError(f"{path}: cannot remove ({error.strerror or error})") from None
        self.index.files = {key: sha for key, sha in self.index.files.items() if key in used}
        self.save_index()
        return removed, freed, len(self.index.files)


def _cannot_write(path, error):
    """The BakeCacheError of an OSError writing `path`; where its folder takes no writes (a
    read-only share, a protected folder), it says where a bake goes."""
    reason = error.strerror or str(error)
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        reason += "; a saved .blend's sprites bake beside it (//tha_cache/): save it in a folder you can write to"
    return BakeCacheError(f"{path}: cannot write ({reason})")


def _link_or_copy(source, target):
    """`target` made the same file as `source` whole or not at all: a hard link where the file
    system allows, else a copy."""
    temp = temp_path_for(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, temp)
        except OSError:
            temp.write_bytes(source.read_bytes())
        os.replace(temp, target)
    except OSError as error:
        with contextlib.suppress(OSError):  # (its folder may be what failed)
            temp.unlink(missing_ok=True)
        raise _cannot_write(target, error) from None


def _same_file(source, target):
    try:
        if os.path.samefile(source, target):
            return True
        return target.stat().st_size == source.stat().st_size and target.read_bytes() == source.read_bytes()
    except OSError:
        return False
