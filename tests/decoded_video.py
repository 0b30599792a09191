"""Frames of a rendered video, decoded by Blender's own FFmpeg (a movie strip rendered)."""

import bpy
import numpy as np
from PIL import Image

from tha_studio.pose.colour_space import linear_to_srgb


def decoded_frames(video, frames, fps, size):
    """{frame: (size, size, 3) uint8} of the video's frames (numbered from 1), in a new empty
    scene of the current Blender session."""
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = fps
    scene.render.resolution_x = scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Standard"
    editor = scene.sequence_editor_create()
    (editor.strips if hasattr(editor, "strips") else editor.sequences).new_movie("video", str(video), 1, 1)  # (sequences before 4.4)
    settings = scene.render.image_settings
    settings.file_format, settings.color_mode = "PNG", "RGB"
    decoded = {}
    for frame in frames:
        scene.frame_set(frame)
        scene.render.filepath = str(video.parent / f"decoded_{frame}.png")
        bpy.ops.render.render(write_still=True)
        with Image.open(scene.render.filepath) as image:
            decoded[frame] = np.asarray(image.convert("RGB"))
    return decoded


def over_grey(rgba):
    """A straight-alpha RGBA uint8 picture laid over the world's default grey (0.5, display-encoded),
    as float 0-255 RGB: what a video frame of it shows."""
    grey = float(linear_to_srgb(0.5))
    rgba = np.asarray(rgba) / 255.0
    alpha = rgba[..., 3:]
    return (rgba[..., :3] * alpha + grey * (1 - alpha)) * 255
