"""The bake: every frame of a range posed into the sprite's cache folder, then played as an image
sequence that any Blender renders without THA Studio or torch.

A steppable job (jobs.Job): `start` reads the pose of each frame (the scene is evaluated frame by
frame, so keyframes, NLA strips and drivers all count), keys each pose, and lists the distinct
poses whose picture is not already in the cache; each `step` poses one of them and writes it
whole; the last step writes the frame files and switches the material to the sequence.
Cancelling keeps every picture already written: the next bake reuses them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import bpy

from ...jobs import Job, Progress
from ...lipsync.curves import MAX_FRAME, MIN_FRAME
from ...neural.backends import hold_freed_memory
from ..core.bake_cache import BakeCache
from . import live
from . import sprite as sprites

CACHE_FOLDER = "tha_cache"


@dataclass
class BakeResult:
    folder: Path
    frames: int  # frames in the range
    distinct: int  # distinct poses among them
    computed: int  # poses the networks ran for in this bake
    reused: int  # distinct poses already in the cache
    seconds: float


def default_cache_dir(obj, fallback_folder=None):
    """`//tha_cache/<sprite>/` beside a saved .blend, else `<fallback_folder>/<sprite>/` (the
    extension's user folder from the UI; never the extension's own folder). <sprite> is the
    name as a folder name can hold it on every system (sprite.folder_name: "Con" is Con_, for
    Windows), numbered where another sprite already bakes there ("Anna.001" and "Anna 001" are
    both Anna_001)."""
    if bpy.data.filepath:
        parent = f"//{CACHE_FOLDER}/"
    elif fallback_folder is None:
        raise sprites.SpriteError("save the .blend first or choose a cache folder: the bake needs a place to write")
    else:
        parent = str(Path(fallback_folder)) + "/"
    safe = sprites.folder_name(obj.name)
    taken = sprites.folders_of_other_sprites(obj)
    name, number = safe, 1
    while Path(bpy.path.abspath(parent + name)) in taken:
        number += 1
        name = f"{safe}_{number}"
    return f"{parent}{name}/"


def left_in_fallback(cache_dir, fallback_folder):
    """Whether a sprite's bake folder is in the user folder the bake falls back to before the
    .blend is saved, while the .blend is saved now (see BakeJob)."""
    if not (cache_dir and fallback_folder and bpy.data.filepath) or cache_dir.startswith("//"):
        return False
    return Path(bpy.path.abspath(cache_dir)).resolve().is_relative_to(Path(fallback_folder).resolve())


class BakeJob(Job):
    title = "Bake talking head"

    def __init__(self, scene, obj, frame_start=None, frame_end=None, cache_dir=None, fallback_folder=None):
        super().__init__()
        self.scene = scene
        self.obj = obj
        self.frame_start = scene.frame_start if frame_start is None else int(frame_start)
        self.frame_end = scene.frame_end if frame_end is None else int(frame_end)
        if self.frame_end < self.frame_start:
            raise sprites.SpriteError(f"bake range {self.frame_start}-{self.frame_end} is empty")
        if self.frame_start < MIN_FRAME or self.frame_end > MAX_FRAME:
            raise sprites.SpriteError(f"bake range {self.frame_start:,}-{self.frame_end:,} reaches past Blender's frames "
                                      f"{MIN_FRAME:,} to {MAX_FRAME:,}")
        sprites.own_cache_dir(obj)  # a copied sprite came with its original's folder
        settings = sprites.settings_of(obj)
        self.cache_dir = cache_dir or settings.cache_dir or default_cache_dir(obj, fallback_folder)
        # Baked before the .blend was first saved, into the user folder: now that it has a place,
        # the bake moves beside it (a render farm gets the .blend and its folder, not the user's
        # data), taking the poses baked there instead of computing them again.
        self.adopt_from = None
        if cache_dir is None and left_in_fallback(self.cache_dir, fallback_folder):
            self.adopt_from = Path(bpy.path.abspath(self.cache_dir))
            self.cache_dir = default_cache_dir(obj, fallback_folder)
        self.computed = 0
        self.reused = 0

    def _start(self):
        self.began = time.perf_counter()
        # The poser reuses freed memory while the bake runs (see neural/backends.py), and gives
        # it back when the bake ends, is cancelled or fails (Job.run and the operator cancel).
        self._release_memory = hold_freed_memory()
        settings = sprites.settings_of(self.obj)
        if (settings.cache_dir, settings.baked_by) != (self.cache_dir, self.obj.name):
            settings.cache_dir, settings.baked_by = self.cache_dir, self.obj.name
            sprites.store_settings(self.obj, settings)
        self.folder = Path(bpy.path.abspath(self.cache_dir))
        self.cache = BakeCache(self.folder)
        if self.adopt_from is not None and self.adopt_from.is_dir():
            self.cache.adopt_poses(BakeCache(self.adopt_from))
        self.source = live.source_for(self.obj)
        self.frames, poses = {}, {}
        current = self.scene.frame_current
        with live.suspended():
            try:
                for frame in range(self.frame_start, self.frame_end + 1):
                    self.scene.frame_set(frame)
                    pose = sprites.sprite_pose(self.obj, frame)
                    key = self.source.key(pose)
                    self.frames[frame] = key
                    poses.setdefault(key, pose)
            finally:  # (the user's frame, whatever stopped the walk)
                self.scene.frame_set(current)
        self.distinct = len(poses)
        self.todo = [(key, pose) for key, pose in poses.items() if not self.cache.has_pose(key)]
        self.reused = self.distinct - len(self.todo)
        self.total = len(self.todo)
        self.progress = Progress(0.0, f"{self.reused} of {self.distinct} poses already baked")

    def _step(self):
        if self.todo:
            key, pose = self.todo.pop(0)
            _, rgba = self.source.pose_rgba(pose)
            self.cache.store_pose(key, self.source.png(rgba))
            self.cache.save_index()  # a killed bake keeps every finished picture
            self.computed += 1
            return Progress(0.98 * self.computed / max(self.total, 1), self._message())
        return self._finish_bake()

    def _message(self):
        elapsed = time.perf_counter() - self.began
        left = elapsed / max(self.computed, 1) * len(self.todo)
        return (f"{self.computed}/{self.total} poses ({self.reused} reused, {self.source.network_runs} network runs), "
                f"about {left:.0f} s left")

    def _stop(self):
        getattr(self, "_release_memory", lambda: None)()

    def _finish_bake(self):
        self._release_memory()
        index = self.cache.index
        index.picture, index.weights, index.schema = self.source.picture_digest, self.source.weights_id, self.source.schema.name
        self.cache.write_frames(self.frames)
        self.cache.save_index()
        sprites.use_sequence(self.obj, self.cache.frame_path(self.frame_start), self.frame_start, len(self.frames))
        return self.finish(BakeResult(self.folder, len(self.frames), self.distinct, self.computed, self.reused,
                                      time.perf_counter() - self.began))
