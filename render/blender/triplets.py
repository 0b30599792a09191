"""Render THA training triplets of an imported model (imports bpy): rest, expression, expression + rotation.

The THA1 write-up §5.3: an orthographic camera puts the annotated head top and bottom on the
head box's rows (`render.dataset.framing`); a directional light along the view axis plus ambient
light; three images per example: the rest pose (once per model), the expression only, and the
expression with the head (and THA3's body and breathing) moved. Images are RGBA PNGs with
straight alpha, RGB zero where alpha is zero, written atomically.

Engines: Workbench "studio" (shaded, fast), Workbench "flat" (texture colours unlit), Cycles
(the sun and ambient light of §5.3) and "toon", MikuMikuDance's own look (render.blender.toon:
toon ramps, sphere maps, ambient, outlines) as emission in Cycles.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import bpy

from . import scene as scenes
from . import toon
from ..dataset.settings import ENGINES, RenderSettings  # noqa: F401 (re-exported)
from ...atomic_files import temp_path_for, write_bytes_atomic
from ..dataset.framing import frame_head
from ..formats.png import encode_png, read_targa, zero_transparent_rgb
from .posing import ModelPoser, head_extent
from ..dataset.sampling import expression_part

SUN_STRENGTH = 1.6  # W/m², along the view axis (Gene_light: bright, no clipped hair)
AMBIENT_STRENGTH = 0.45  # world colour strength: the ambient term


def head_framing(imported, annotation, schema):
    """The orthographic framing of this model's annotated head for the schema's head box."""
    head = head_extent(imported, annotation)
    return frame_head(
        head.top,
        head.bottom,
        schema.head_box,
        schema.image_size,
        center_x=head.center_x,
        front_y=head.front_z,  # MMD z becomes Blender y
    )


def setup_scene(framing, settings, scene=None):
    """Engine, transparent film, the camera of `framing`, and lights; returns the camera."""
    scene = scene or bpy.context.scene
    engine = "CYCLES" if settings.engine in ("cycles", "toon") else "WORKBENCH"
    scenes.setup_render(scene, engine=engine, resolution=(framing.image_size, framing.image_size),
                        transparent=True, samples=settings.samples, color_type="TEXTURE")
    if settings.engine == "toon":
        toon.setup_toon_render(scene, settings.samples)
    if engine == "WORKBENCH":
        scene.display.render_aa = settings.antialias
    if settings.engine == "flat":
        scene.display.shading.light = "FLAT"
    _quiet_metadata(scene)
    camera_data = bpy.data.cameras.new("THA camera")
    camera_data.type = "ORTHO"
    camera_data.sensor_fit = "AUTO"
    camera_data.ortho_scale = framing.ortho_scale
    camera_data.clip_start = framing.clip_start
    camera_data.clip_end = framing.clip_end
    camera = bpy.data.objects.new("THA camera", camera_data)
    camera.location = framing.location
    camera.rotation_euler = (math.pi / 2, 0.0, 0.0)  # looks along +Y at the model's face, Z up
    scene.collection.objects.link(camera)
    scene.camera = camera
    if settings.engine == "cycles":
        scenes.add_sun(direction=(0.0, 1.0, 0.0), strength=SUN_STRENGTH, scene=scene, name="THA light")
        scenes.set_world_color((1.0, 1.0, 1.0), AMBIENT_STRENGTH, scene=scene)
    return camera


def _quiet_metadata(scene):
    """No render time, date or file name in the PNG, so the same render gives the same bytes."""
    render = scene.render
    for name in dir(render):
        if name.startswith("use_stamp") and isinstance(getattr(render, name), bool):
            setattr(render, name, False)


def render_rgba_png(path, scene=None, temp_tag=None):
    """Render the scene to a THA-ready PNG at `path` (atomically); returns the PNG's bytes.

    Blender writes an uncompressed Targa beside the target under a temporary name; its pixels
    get RGB zeroed where alpha is zero and are encoded as PNG (render.formats.png). This replaces
    scene.render_to_png for dataset images, whose PNG keeps colour under transparent pixels.
    """
    scene = scene or bpy.context.scene
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = temp_tag if temp_tag is not None else str(os.getpid())
    raw = temp_path_for(path, f"{tag}-tga")
    settings = scene.render.image_settings
    previous = (scene.render.filepath, settings.file_format, scene.render.use_file_extension)
    try:
        scene.render.filepath = str(raw)
        settings.file_format = "TARGA_RAW"
        settings.color_mode = "RGBA"
        scene.render.use_file_extension = False
        bpy.ops.render.render(write_still=True, scene=scene.name)
        data = encode_png(zero_transparent_rgb(read_targa(raw)))
    finally:
        scene.render.filepath, settings.file_format, scene.render.use_file_extension = previous
        raw.unlink(missing_ok=True)
    write_bytes_atomic(path, data, tag)
    return data


class TripletRenderer:
    """Renders one imported, annotated model's rest image and its examples' image pairs.

    `temp_tag` names this process's temporary files (see atomic_files), so a resumed shard
    can clear its own leftovers without touching another shard's.
    """

    def __init__(self, imported, annotation, schema, settings=None, scene=None, temp_tag=None):
        self.scene = scene or bpy.context.scene
        self.schema = schema
        self.settings = settings or RenderSettings()
        self.temp_tag = temp_tag
        self.poser = ModelPoser(imported, annotation, schema)
        self.framing = head_framing(imported, annotation, schema)
        self.camera = setup_scene(self.framing, self.settings, self.scene)
        if self.settings.engine == "toon":  # outlines a fixed number of pixels wide at this framing
            toon.apply_toon_style(imported, self.framing.units_per_pixel, self.camera)

    def render(self, pose, path):
        """Pose the model and render it to `path`; returns the PNG bytes written."""
        self.poser.apply(pose)
        return render_rgba_png(path, self.scene, self.temp_tag)

    def render_rest(self, path):
        """The network's input picture: the schema's rest pose (THA1: eyes and mouth open; others neutral)."""
        return self.render(self.schema.rest_pose(), path)

    def render_example(self, pose, expression_path, posed_path):
        """The expression-only image, then the fully posed one; returns both PNGs' bytes."""
        expression = self.render(expression_part(self.schema, pose), expression_path)
        posed = self.render(pose, posed_path)
        return expression, posed
