"""Add-on preferences and the user data folder (never the extension's own folder)."""

import os
import tempfile

import bpy

from .. import __package__ as base_package


def user_data_dir(*parts, create=True):
    """A folder for THA Studio's own files (weights, caches) under Blender's user extension path.

    Blender may install the extension in a read-only place and wipes its folder on upgrade,
    so nothing is written there. When the package was imported as a plain module (not as an
    extension), `extension_path_user` refuses; fall back to a per-user folder.
    """
    sub = os.path.join(*parts) if parts else ""
    try:
        path = bpy.utils.extension_path_user(base_package, path=sub, create=create)
    except ValueError:
        path = os.path.join(tempfile.gettempdir(), "tha_studio_user", sub)
        if create:
            os.makedirs(path, exist_ok=True)
    return path


class THAStudioPreferences(bpy.types.AddonPreferences):
    bl_idname = base_package

    weights_dir: bpy.props.StringProperty(
        name="Weights folder",
        description="Folder with THA weights (official .pt files or THA Studio safetensors). "
        "Empty: the weights folder in THA Studio's user data",
        subtype="DIR_PATH",
        default="",
    )
    device: bpy.props.EnumProperty(
        name="Device",
        items=(
            ("AUTO", "Automatic", "CUDA, then Apple MPS, then the CPU"),
            ("cpu", "CPU", ""),
            ("cuda", "CUDA", ""),
            ("mps", "Apple MPS", ""),
        ),
        default="AUTO",
    )
    rhubarb_path: bpy.props.StringProperty(
        name="Rhubarb executable",
        description="Path to Rhubarb Lip Sync; empty: look on PATH, else use the built-in analyser",
        subtype="FILE_PATH",
        default="",
    )

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "weights_dir")
        layout.label(text=f"Default: {user_data_dir('weights', create=False)}")
        layout.prop(self, "device")
        layout.prop(self, "rhubarb_path")
        layout.label(text="THA weights are CC BY 4.0 (Pramook Khungurn); THA4 weights CC BY-NC 4.0.")


def preferences(context=None):
    context = context or bpy.context
    return context.preferences.addons[base_package].preferences


def register():
    bpy.utils.register_class(THAStudioPreferences)


def unregister():
    bpy.utils.unregister_class(THAStudioPreferences)
