"""File > Import > MMD model (.pmx/.pmd) and VRM/glb avatar: the operator calls
`render.blender.model_import.import_model` and reports (a bad file is one line, no traceback)."""

import bpy
from bpy_extras.io_utils import ImportHelper

from ..render.blender import model_import
from ..render.formats.mmd.import_plan import MAX_SCALE
from .reporting import reports_errors


class THA_OT_import_model(bpy.types.Operator, ImportHelper):
    """Import an MMD model (.pmx, .pmd) or a VRM/glb avatar with its morphs for THA Studio"""

    bl_idname = "tha_studio.import_model"
    bl_label = "Import Model (THA Studio)"
    bl_options = {"REGISTER", "UNDO", "PRESET"}

    filename_ext = ".pmx"
    filter_glob: bpy.props.StringProperty(default="*.pmx;*.pmd;*.vrm;*.glb;*.gltf", options={"HIDDEN"})
    scale: bpy.props.FloatProperty(
        name="Scale",
        description="Blender units per MMD unit (0.08 makes a typical character about 1.6 m tall); "
        "VRM/glb avatars keep their own size",
        default=model_import.DEFAULT_SCALE,
        min=1e-4,
        max=MAX_SCALE,
        soft_max=1.0,
    )

    @reports_errors
    def execute(self, context):
        if context.object is not None and context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        # A bad file raises a UserError naming it and the problem, which reports_errors reports;
        # the importer has already removed any partial data.
        imported = model_import.import_model(self.filepath, scale=self.scale)
        for warning in imported.warnings:
            self.report({"WARNING"}, warning)
        for obj in context.view_layer.objects:
            obj.select_set(False)
        for obj in imported.objects:
            obj.select_set(True)
        context.view_layer.objects.active = imported.root
        self.report({"INFO"}, model_import.summary(imported).splitlines()[0])
        return {"FINISHED"}


def menu_import(self, context):
    self.layout.operator(THA_OT_import_model.bl_idname, text="MMD model (.pmx/.pmd) or VRM/glb (THA Studio)")


def register():
    bpy.utils.register_class(THA_OT_import_model)
    bpy.types.TOPBAR_MT_file_import.append(menu_import)


def unregister():
    bpy.types.TOPBAR_MT_file_import.remove(menu_import)
    bpy.utils.unregister_class(THA_OT_import_model)
