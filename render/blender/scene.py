"""Generic render helpers for headless Blender (imports bpy): engine, film, camera, lights, output.

Shared by the demo, the import tests and the dataset renderer. Nothing here knows about MMD or
THA; each function does one thing to a scene and says in its docstring what it changes.

Headless facts these helpers are built around (reference/blender.md):
- Workbench and Cycles on the CPU render without a GPU; EEVEE compiles shaders for a minute.
- The "Render Result" image has size (0, 0) in the bpy module, so `render_to_png` has Blender
  write the file and moves it into place atomically.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from pathlib import Path

import bpy
import numpy as np
from mathutils import Matrix, Vector

from ...atomic_files import write_atomically
from ...errors import UserError
from ..formats.blend_file import blend_file_problem

# View directions for `aim_orthographic_camera`: where the camera looks (Blender axes). Models
# imported by THA Studio face -Y, so FRONT looks along +Y at their face.
FRONT = (0.0, 1.0, 0.0)
BACK = (0.0, -1.0, 0.0)
LEFT = (1.0, 0.0, 0.0)  # the character's right side, seen from the viewer's left
RIGHT = (-1.0, 0.0, 0.0)
TOP = (0.0, 0.0, -1.0)


# Blender's first render in a process starts its GPU context, trying EGL configurations until one
# fits and printing each refusal to the C-level stderr ("EGL Error (0x3009): EGL_BAD_MATCH ..."),
# three lines on every start of a command, though the one it settles on works. Only those lines
# are dropped; anything else printed meanwhile is passed on.
GPU_START_NOISE = re.compile(rb"^EGL Error \(0x3009\): EGL_BAD_MATCH\b")
_gpu_started = False


@contextlib.contextmanager
def filtered_c_stderr(noise=GPU_START_NOISE):
    """Hold what C code writes to stderr (fd 2) during the block, then pass on the lines that do
    not match `noise`."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as held:
            os.dup2(held.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                held.seek(0)
                for line in held:
                    if not noise.match(line):
                        os.write(2, line)
    finally:
        os.close(saved)


@contextlib.contextmanager
def quiet_output():
    """Send Blender's lines a render (C-level stdout: "Saved: ...", "Fra:12 ...", "Video append
    frame 12") to the null device meanwhile: a dataset's thousands of renders, or a long line's
    video, would bury a command's own report. Errors stay on standard error."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def start_gpu_quietly():
    """Start Blender's GPU context (once a process) with a 4x4 Workbench render of a scene of its
    own, its start-up noise dropped (see GPU_START_NOISE); later renders print none."""
    global _gpu_started
    if _gpu_started:
        return
    _gpu_started = True
    scene = bpy.data.scenes.new("THA Studio GPU start")
    camera_data = bpy.data.cameras.new("THA Studio GPU start")
    camera = bpy.data.objects.new("THA Studio GPU start", camera_data)
    try:
        scene.collection.objects.link(camera)
        scene.camera = camera
        scene.render.engine = "BLENDER_WORKBENCH"
        scene.render.resolution_x = scene.render.resolution_y = 4
        with filtered_c_stderr():
            bpy.ops.render.render(write_still=False, scene=scene.name)
    finally:
        bpy.data.objects.remove(camera)
        bpy.data.cameras.remove(camera_data)
        bpy.data.scenes.remove(scene)


def setup_render(scene=None, engine="WORKBENCH", resolution=(256, 256), transparent=True, samples=16,
                 color_type="TEXTURE", view_transform="Standard"):
    """Set the engine, output size, film and colour management for plain RGBA stills.

    engine: "WORKBENCH" (fast flat/studio shading; `color_type` picks "TEXTURE", "MATERIAL",
    "OBJECT" or "SINGLE") or "CYCLES" (on the CPU, `samples` samples, denoising off so
    results are repeatable). `transparent` gives a transparent background (straight alpha in
    the PNG). The "Standard" view transform keeps sRGB texture colours as they are (AgX, the
    default, would tone-map them). The first call in a process starts the GPU quietly.
    """
    start_gpu_quietly()
    scene = scene or bpy.context.scene
    render = scene.render
    if engine == "WORKBENCH":
        render.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        shading.light = "STUDIO"
        shading.color_type = color_type
        shading.show_backface_culling = False
        scene.display.render_aa = "8"
    elif engine == "CYCLES":
        render.engine = "CYCLES"
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_denoising = False
        scene.cycles.seed = 0
    else:
        raise ValueError(f"engine {engine!r}: expected 'WORKBENCH' or 'CYCLES'")
    render.resolution_x, render.resolution_y = (int(v) for v in resolution)
    render.resolution_percentage = 100
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    render.film_transparent = transparent
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGBA" if transparent else "RGB"
    render.image_settings.color_depth = "8"
    render.use_file_extension = True
    plain_colours(scene, view_transform)
    return scene


def with_nodes(material):
    """`material`, with its shader node tree (Blender 5.0 gives every material one; 4.2 to 4.5 only
    once asked for it with use_nodes)."""
    if material.node_tree is None:
        material.use_nodes = True
    return material


def node_material(name):
    """A new material with its shader node tree."""
    return with_nodes(bpy.data.materials.new(name))


def use_eevee(scene):
    """Render the scene with EEVEE, whose id is BLENDER_EEVEE_NEXT in Blender 4.2 to 4.5."""
    try:
        scene.render.engine = "BLENDER_EEVEE"
    except TypeError:
        scene.render.engine = "BLENDER_EEVEE_NEXT"


def _view_settings(scene):
    """(where, view settings) that colour what the scene shows and renders: the scene's own, and
    the output's where it overrides them (Blender 4.x+: a file's colour management of its own)."""
    found = [("", scene.view_settings)]
    image = scene.render.image_settings
    if getattr(image, "color_management", "FOLLOW_SCENE") == "OVERRIDE":
        found.append(("the output's ", image.view_settings))
    return found


def colour_changes(scene, view_transform="Standard"):
    """What in the scene's colour management changes colours between a texture and the screen or
    the rendered file, in words; empty where they arrive as the texture holds them. A new
    file's view transform is AgX, which tone-maps them (a picture's bright, saturated colours
    come out paler and flatter), as a look, an exposure, a gamma, curves or a white balance
    shift them."""
    changes = []
    for where, view in _view_settings(scene):
        if view.view_transform != view_transform:
            changes.append(f"{where}view transform {view.view_transform}")
        if view.look != "None":
            changes.append(f"{where}look {view.look}")
        if abs(view.exposure) > 1e-6:
            changes.append(f"{where}exposure {view.exposure:+.2f}")
        if abs(view.gamma - 1.0) > 1e-6:
            changes.append(f"{where}gamma {view.gamma:.2f}")
        if view.use_curve_mapping:
            changes.append(f"{where}curves")
        if getattr(view, "use_white_balance", False):
            changes.append(f"{where}white balance")
    return changes


def plain_colours(scene, view_transform="Standard"):
    """Colour management that leaves texture colours as they are ("Standard": an sRGB picture
    shows and renders as drawn); returns what it changed (colour_changes before)."""
    changes = colour_changes(scene, view_transform)
    for _, view in _view_settings(scene):
        view.view_transform = view_transform
        view.look = "None"
        view.exposure = 0.0
        view.gamma = 1.0
        view.use_curve_mapping = False
        if hasattr(view, "use_white_balance"):
            view.use_white_balance = False
    return changes


def evaluated_vertices(obj, depsgraph=None):
    """A mesh object's vertices as rendered (deformed, shape keys applied), (N, 3) in world space."""
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    evaluated = obj.evaluated_get(depsgraph)
    mesh = evaluated.to_mesh()
    try:
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
    finally:
        evaluated.to_mesh_clear()
    matrix = np.array(evaluated.matrix_world)
    return co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]


def world_bounds(objects, depsgraph=None):
    """(min corner, max corner) of the objects' evaluated geometry (deformed, shape keys applied).

    Meshes count by their evaluated vertices, so a posed or morphed model is bounded as it
    renders; other objects count by their bounding boxes. Raises ValueError if none has size.
    """
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    corners = []
    for obj in objects:
        if obj.type == "MESH":
            world = evaluated_vertices(obj, depsgraph)
            if len(world):
                corners.extend([world.min(axis=0), world.max(axis=0)])
        elif obj.type in ("ARMATURE", "CURVE", "SURFACE", "FONT"):
            evaluated = obj.evaluated_get(depsgraph)
            corners.extend(np.array(evaluated.matrix_world @ Vector(c)) for c in evaluated.bound_box)
    if not corners:
        raise ValueError("nothing to bound: the objects have no geometry")
    corners = np.array(corners)
    return corners.min(axis=0), corners.max(axis=0)


def aim_orthographic_camera(box_min, box_max, view=FRONT, up=(0.0, 0.0, 1.0), margin=0.05,
                            scene=None, camera=None, name="Camera"):
    """Point an orthographic camera along `view` so the box fills the frame, centred.

    The box's extent across the view (with `margin` added on each side, as a fraction) fits
    both the width and the height of the output's aspect. Creates the camera (and makes it the
    scene's camera) unless one is given; returns it.
    """
    scene = scene or bpy.context.scene
    if camera is None:
        camera = bpy.data.objects.new(name, bpy.data.cameras.new(name))
        scene.collection.objects.link(camera)
    scene.camera = camera
    box_min, box_max = Vector(box_min), Vector(box_max)
    centre = (box_min + box_max) / 2
    forward = Vector(view).normalized()
    right = forward.cross(Vector(up)).normalized()
    true_up = right.cross(forward)
    # The camera looks down its -Z with +Y up: its columns are right, up, -forward.
    rotation = Matrix((right, true_up, -forward)).transposed()

    corners = [Vector((x, y, z)) for x in (box_min.x, box_max.x) for y in (box_min.y, box_max.y)
               for z in (box_min.z, box_max.z)]
    width = max(abs((c - centre).dot(right)) for c in corners) * 2
    height = max(abs((c - centre).dot(true_up)) for c in corners) * 2
    depth = max(abs((c - centre).dot(forward)) for c in corners) * 2
    render = scene.render
    aspect = render.resolution_x / render.resolution_y
    data = camera.data
    data.type = "ORTHO"
    data.sensor_fit = "AUTO"  # ortho_scale spans the longer side of the frame
    needed_width = max(width, height * aspect) * (1 + 2 * margin)
    data.ortho_scale = needed_width if aspect >= 1 else needed_width / aspect
    distance = depth + 1.0
    data.clip_start = 0.01
    data.clip_end = distance + depth + 1.0
    camera.matrix_world = Matrix.Translation(centre - forward * distance) @ rotation.to_4x4()
    return camera


def add_sun(direction=(0.3, 1.0, -0.6), strength=3.0, scene=None, name="Sun"):
    """A sun light shining along `direction` (Blender axes); returns it. Workbench ignores lights."""
    scene = scene or bpy.context.scene
    light = bpy.data.objects.new(name, bpy.data.lights.new(name, "SUN"))
    light.data.energy = strength
    light.rotation_euler = (-Vector(direction)).to_track_quat("Z", "Y").to_euler()
    scene.collection.objects.link(light)
    return light


def set_world_color(color=(1.0, 1.0, 1.0), strength=1.0, scene=None):
    """A uniform world light (Cycles' ambient); the background stays transparent with the film."""
    scene = scene or bpy.context.scene
    if scene.world is None:
        scene.world = bpy.data.worlds.new("World")
    scene.world.color = color[:3]
    tree = scene.world.node_tree
    background = next((n for n in tree.nodes if n.bl_idname == "ShaderNodeBackground"), None) if tree else None
    if background is not None:
        background.inputs["Color"].default_value = (*color[:3], 1.0)
        background.inputs["Strength"].default_value = strength
    return scene.world


def render_to_png(path, scene=None):
    """Render the scene's camera view to a PNG at `path`, atomically; returns the absolute Path.

    Absolute, because Blender reads relative output paths against the .blend, not the
    working folder."""
    scene = scene or bpy.context.scene
    if scene.camera is None:
        raise ValueError(f"scene {scene.name!r} has no camera to render from")
    render = scene.render
    previous = (render.filepath, render.image_settings.file_format, render.use_file_extension)

    def write(temporary):
        render.filepath = temporary
        render.image_settings.file_format = "PNG"
        render.use_file_extension = False  # the temporary name is not a .png
        bpy.ops.render.render(write_still=True, scene=scene.name)

    try:
        return write_atomically(Path(path).resolve(), write)
    finally:
        render.filepath, render.image_settings.file_format, render.use_file_extension = previous


def save_blend(path):
    """Save the open file as a copy at `path` (the session keeps its own file name), atomically:
    a save Blender could not finish leaves an earlier file at `path` as it was."""
    path = Path(path).resolve()

    def write(temporary):
        _saving(path, lambda: bpy.ops.wm.save_as_mainfile(filepath=temporary, copy=True, compress=True,
                                                           check_existing=False), temporary)

    return write_atomically(path, write)


def save_main_blend(path=None):
    """Save the open file (as `path`, which it then is, where given), checked whole afterwards.
    In place, as Blender saves (its bake folder is relative to it). Blender writes beside the
    file and renames; where it reports success over a file cut short, the file that was there
    before, which Blender has just made its .blend1 backup, is put back (and one that was not
    there is removed), and the error says so."""
    target = Path(bpy.data.filepath) if path is None else Path(path).resolve()
    earlier = _stat_or_none(target)
    if path is None:
        save = bpy.ops.wm.save_mainfile
    else:
        def save():
            bpy.ops.wm.save_as_mainfile(filepath=str(target), check_existing=False)
    try:
        _saving(target, save)
    except UserError as error:
        outcome = _undo_cut_short_save(target, earlier)
        raise UserError(f"{error}{outcome}") from None
    return Path(bpy.data.filepath)


def _stat_or_none(path):
    try:
        return path.stat()
    except OSError:
        return None


def _undo_cut_short_save(path, earlier):
    """After a failed in-place save of `path` (whose stat was `earlier`, None where none was
    there): where Blender renamed a cut-short file over it, put the earlier file back from the
    backup Blender made of it, or remove the cut-short file. Returns words for the error."""
    now = _stat_or_none(path)
    if now is None or (earlier is not None and os.path.samestat(now, earlier)) or not blend_file_problem(path):
        return ""  # Blender refused before renaming: the earlier file, if any, is as it was
    backup = path.with_name(path.name + "1")  # Blender's own backup name (save_version)
    try:
        if earlier is None:
            path.unlink()
            return " It was removed."
        held = _stat_or_none(backup)
        if held is not None and os.path.samestat(held, earlier):
            os.replace(backup, path)
            return " The file there before is kept."
    except OSError:  # (the error about the save is the one to give)
        pass
    return ""


def _saving(path, save, written=None):
    """Run Blender's `save`; UserError naming `path` where it fails or leaves the file it wrote
    (`written`, else `path`) cut short (render/formats/blend_file.py)."""
    try:
        save()
    except RuntimeError as error:  # Blender's own refusal: a folder it cannot write in, say
        message = str(error).strip().removeprefix("Error: ").strip() or "unknown error"
        raise UserError(f"{path}: Blender could not save it ({message})") from None
    problem = blend_file_problem(written or path)
    if problem:
        raise UserError(f"{path}: {problem}")
