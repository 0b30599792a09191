"""Live preview: the sprite's plane shows THA's picture of its current pose.

Moving a slider, scrubbing or playing asks for the current pose of each live sprite. A picture
already made (in memory, or in the sprite's bake cache) is shown at once. Otherwise:
- headless (`blender -b`, scripts, tests) and while rendering, the frame is posed in line, so a
  render of frame N always shows frame N's pose;
- in an interactive Blender the pose goes to one worker thread; only the newest request per
  sprite is kept (stale ones are dropped), and a timer on the main thread puts finished pictures
  on the plane (Blender data may only be touched from the main thread).

The handlers and the timer are registered by the UI layer (addon/handlers.py); this module holds
what they call. The poser's backend (PyTorch, or the bundled ONNX Runtime where torch is absent)
is imported only when a sprite is first posed (the FrameSource).
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import bpy
import numpy as np
from PIL import Image

from ...errors import UserError
from ...neural.backends import hold_freed_memory
from ..core.bake_cache import INDEX_NAME, BakeCache, pose_key, quantise_pose
from . import sprite as sprites

_sources = {}  # sprite object's name -> (signature, FrameSource)
_shown = {}  # sprite object's name -> key of the picture on its plane
_status = {}  # sprite object's name -> one line for the panel
_suspended = 0
_rendering = False
_release_render_memory = None  # while rendering, the poser keeps its freed memory (see set_rendering)


# --- frame sources -------------------------------------------------------------------------


def _signature(settings):
    return (settings.schema, settings.weights, settings.variant, settings.device, settings.precision,
            settings.backend, settings.picture, settings.picture_digest)


def _known_source(obj):
    """The sprite's loaded FrameSource, or None when it has none yet or its settings changed."""
    known = _sources.get(obj.name)
    if known is None or known[0] != _signature(sprites.settings_of(obj)):
        return None
    return known[1]


def _load_source(name, settings, picture):
    """Make a FrameSource (loads the weights the first time: seconds). Safe off the main thread:
    it is given the picture's pixels, read from Blender on the main thread."""
    from ...neural.sprite_frames import FrameSource

    _status[name] = "loading the THA weights…"
    source = FrameSource(picture, settings.schema, settings.weights, settings.variant, settings.device,
                         settings.precision, settings.backend)
    _sources[name] = (_signature(settings), source)
    _status[name] = f"ready: {source.backend} on {source.device}"
    return source


def source_for(obj):
    """The sprite's FrameSource (weights loaded on first use, shared between sprites)."""
    return _known_source(obj) or _load_source(obj.name, sprites.settings_of(obj), sprites.picture_of(obj))


def check_weights(settings):
    """Load (or reuse) a sprite's weights now, so a bad weights source is reported when the sprite
    is made rather than at its first frame. Returns the Poser."""
    from ...neural.sprite_frames import check_sliders, shared_poser
    from ...pose.schema import get_schema

    poser = shared_poser(settings.weights, settings.variant, settings.device, settings.precision, settings.backend)
    return check_sliders(poser, get_schema(settings.schema), settings.weights)


def picture_check(settings):
    """A `check_picture` for sprite.create_sprite and replace_picture: loads (or reuses) the
    weights and refuses a picture they cannot pose (a THA4 student's other than its character)."""
    from ...neural.sprite_frames import check_character

    def check(rgba, path):
        check_character(check_weights(settings), rgba, path, settings.weights)

    return check


def forget():
    """Drop every sprite's source and state (a new file was loaded)."""
    worker.clear()
    _sources.clear()
    _shown.clear()
    _status.clear()


def status(obj):
    """One line for the panel: what the live preview is doing for this sprite."""
    return _status.get(obj.name, "not posed yet")


def cache_folder(obj):
    """The sprite's bake cache folder as an absolute path, or None when it has none yet."""
    settings = sprites.settings_of(obj)
    if not settings.cache_dir:
        return None
    return bpy.path.abspath(settings.cache_dir)


def missing_baked_frame(obj, frame):
    """For a baked sprite's panel: a line saying the frame has no baked picture (a .blend copied
    without its tha_cache folder, a frame outside the baked range: the plane shows nothing there,
    magenta in a render), or "" when it has one. One file check, no index read: it runs on
    every redraw."""
    folder = cache_folder(obj)
    try:
        node = sprites.frame_node(obj)
    except sprites.SpriteError:
        node = None
    baked = node is not None and node.image is not None and node.image.source == "SEQUENCE"
    first = node.image_user.frame_start if baked else frame  # the baked range's first frame
    if folder is not None and BakeCache.frame_file(folder, frame, first).is_file():
        return ""
    return f"Frame {frame} has no baked picture: bake again, or go Live"


def baked_frame_problem(obj, scene):
    """For a baked sprite's panel: a line saying that what the scene's current frame shows is not
    its pose (no baked picture there, or keys or sliders changed since the bake, which a baked
    plane does not show), or "" when it is. Read from the bake's index (bake.json, read again
    only when it changed): the panel asks on every redraw."""
    frame = scene.frame_current
    missing = missing_baked_frame(obj, frame)
    if missing:
        return missing
    index = _bake_index(cache_folder(obj))
    baked = index.frames.get(frame) if index is not None else None
    if baked is None:
        return ""
    settings = sprites.settings_of(obj)
    try:
        pose = sprites.sprite_pose(obj)
    except sprites.SpriteError as error:  # (the panel asks: it shows the problem)
        return str(error)
    now = pose_key(settings.picture_digest, index.weights, settings.schema, quantise_pose(pose, index.step), index.step)
    if now != baked:
        what = "picture" if settings.picture_digest != index.picture else "pose"
        return f"Frame {frame} shows the {what} baked before your edit: bake again, or go Live"
    return ""


_bake_indexes = {}  # bake.json -> ((inode, size, mtime), its BakeIndex)


def _bake_index(folder):
    if folder is None:
        return None
    path = Path(folder) / INDEX_NAME
    try:
        stat = path.stat()
    except OSError:
        return None
    stamp = (stat.st_ino, stat.st_size, stat.st_mtime_ns)  # (each bake writes a new file and renames it)
    held = _bake_indexes.get(path)
    if held is None or held[0] != stamp:
        held = _bake_indexes[path] = (stamp, BakeCache(folder).index)
    return held[1]


def _from_bake_cache(obj, key):
    folder = cache_folder(obj)
    if folder is None:
        return None
    cache = BakeCache(folder)
    if not cache.has_pose(key):
        return None
    with Image.open(cache.pose_path(key)) as picture:
        return np.asarray(picture.convert("RGBA"))


# --- showing frames ------------------------------------------------------------------------


@contextlib.contextmanager
def suspended():
    """No live posing inside (a bake steps through frames itself)."""
    global _suspended
    _suspended += 1
    try:
        yield
    finally:
        _suspended -= 1


def set_rendering(active):
    """Rendering poses each frame in line; meanwhile the poser reuses its freed memory
    (neural/backends.py), handed back when the render ends."""
    global _rendering, _release_render_memory
    _rendering = bool(active)
    if _rendering and _release_render_memory is None:
        _release_render_memory = hold_freed_memory()
    elif not _rendering and _release_render_memory is not None:
        _release_render_memory()
        _release_render_memory = None


def in_line():
    """Pose in the calling thread: headless, or while rendering (the render needs the frame now)."""
    return bpy.app.background or _rendering


def live_sprites(scene):
    """The scene's sprites in Live mode. One whose settings cannot be read is left out, its status
    saying why (the panel shows it too): it must not stop the others' preview."""
    found = []
    for obj in sprites.sprites_in(scene):
        try:
            if sprites.settings_of(obj).mode == "LIVE":
                found.append(obj)
        except UserError as error:
            _status[obj.name] = f"error: {error}"
    return found


def update_scene(scene):
    """Show the current pose of every live sprite of a scene (the frame-change handler's body)."""
    if _suspended:
        return
    for obj in live_sprites(scene):
        try:
            if not _rendering:  # (a render reads the materials; no data is changed under it)
                sprites.own_material(obj)  # a copied sprite showed its original's image
            update_sprite(obj)
        except Exception as error:  # noqa: BLE001 - a handler must not break playback or a render
            _status[obj.name] = f"error: {error}"
            print(f"THA Studio: {obj.name}: {error}")


def update_sprite(obj, in_line_now=None):
    """Show the sprite's current pose: at once if its picture is known, else pose it (in line, or
    through the worker thread in an interactive Blender, which also loads the weights the first
    time, so the interface never waits for them). Returns True if the plane changed."""
    posing_in_line = in_line() if in_line_now is None else in_line_now
    pose = sprites.sprite_pose(obj)
    source = _known_source(obj)
    if source is None and not posing_in_line:
        settings, picture = sprites.settings_of(obj), sprites.picture_of(obj)
        worker.request(obj.name, lambda: _load_source(obj.name, settings, picture), pose)
        _status[obj.name] = "loading the THA weights…"
        return False
    source = source or source_for(obj)
    key = source.key(pose)
    if _shown.get(obj.name) == key:
        return False
    rgba = source.remembered(key)
    if rgba is None:
        rgba = _from_bake_cache(obj, key)
        if rgba is not None:
            source.remember(key, rgba)
    if rgba is None:
        if not posing_in_line:
            worker.request(obj.name, source, pose)
            _status[obj.name] = "computing the frame…"
            return False
        started = time.perf_counter()
        key, rgba = source.pose_rgba(pose)
        _status[obj.name] = f"posed in {time.perf_counter() - started:.2f} s on {source.device}"
    _show(obj, key, rgba)
    return True


def _show(obj, key, rgba):
    image = sprites.live_image(obj)
    sprites.show_rgba(image, rgba)
    node = sprites.frame_node(obj)
    if node.image is not image:  # a copied sprite's own material still showed its original's image
        node.image = image
    _shown[obj.name] = key


def apply_finished():
    """Put the worker's finished pictures on their planes (main thread; the timer calls this).
    Returns how many planes changed."""
    changed = 0
    for name, key, rgba, seconds, device in worker.take_finished():
        obj = bpy.data.objects.get(name)
        if obj is None or not sprites.is_sprite(obj):
            continue
        _show(obj, key, rgba)
        _status[name] = f"posed in {seconds:.2f} s on {device}"
        changed += 1
    if changed:
        for window in getattr(bpy.context.window_manager, "windows", ()):
            for area in window.screen.areas:
                area.tag_redraw()
    return changed


class PoseWorker:
    """One background thread that poses the newest request of each sprite (a request's source may
    be a function that makes it: the first pose of a sprite loads its weights here)."""

    def __init__(self):
        self._lock = threading.Condition()
        self._requests = {}  # sprite name -> (source, pose); a newer request replaces an older one
        self._finished = []
        self._thread = None
        self._busy = False  # a pose is being computed

    def request(self, name, source, pose):
        with self._lock:
            self._requests[name] = (source, pose)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="THA Studio poser", daemon=True)
                self._thread.start()
            self._lock.notify()

    def pending(self):
        with self._lock:
            return len(self._requests)

    def take_finished(self):
        with self._lock:
            finished, self._finished = self._finished, []
            return finished

    def clear(self):
        with self._lock:
            self._requests.clear()
            self._finished.clear()

    def wait_idle(self, timeout=60.0):
        """Block until every request is done (tests; headless scripts)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._requests and not self._busy:
                    return True
            time.sleep(0.01)
        return False

    def _run(self):
        # While the thread lives (until 30 s without a request) the poser reuses its freed
        # memory (neural/backends.py) while a slider is dragged or the timeline scrubbed.
        release_memory = hold_freed_memory()
        while True:
            with self._lock:
                while not self._requests:
                    if not self._lock.wait(timeout=30.0):
                        self._thread = None
                        release_memory()
                        return
                name = next(iter(self._requests))
                source, pose = self._requests.pop(name)
                self._busy = True
            try:
                if callable(source):
                    source = source()
                started = time.perf_counter()
                key, rgba = source.pose_rgba(pose)
                result = (name, key, rgba, time.perf_counter() - started, source.device)
            except Exception as error:  # noqa: BLE001 - reported in the panel, the thread goes on
                _status[name] = f"error: {error}"
                result = None
            with self._lock:
                if result is not None:
                    self._finished.append(result)
                self._busy = False


worker = PoseWorker()
