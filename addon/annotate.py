"""The annotation panel (3D Viewport > Sidebar > THA Studio): head band handles and morph roles.

Start on an imported MMD model: its sidecar opens (or the automatic annotation is made), two
empties mark the head top and bottom (drag them up or down). Pick a role, cycle through its
candidate morphs (each previewed on the model), confirm the right one, and save: the sidecar
beside the model gets the person's choices. Each operator calls one function of
render.annotation_session and reports its outcome.
"""

import bpy

from ..pose.schema import get_schema
from ..render.blender import annotation_session as session
from ..render.dataset.annotation import morph_roles_for_schema
from .reporting import reports_errors


def _role_items():
    roles = sorted(set(morph_roles_for_schema(get_schema("tha3")).values()))
    first = ["eye_wink_left", "eye_wink_right", "mouth_aaa"]  # THA1's three, on top
    ordered = first + [r for r in roles if r not in first]
    return [(role, role.replace("_", " "), f"the morph that plays {role}") for role in ordered]


ROLE_ITEMS = _role_items()


class AnnotationOperator:
    @classmethod
    def poll(cls, context):
        return session.model_root(context.object) is not None

    def run(self, context, action):
        root = session.model_root(context.object)
        try:
            return action(root, context.scene)
        except (session.SessionError, ValueError, OSError) as error:
            self.report({"ERROR"}, str(error))
            return None


class THA_OT_annotation_start(AnnotationOperator, bpy.types.Operator):
    """Open this model's annotation (or make it automatically) and place the head band handles"""

    bl_idname = "tha_studio.annotation_start"
    bl_label = "Start Annotating"
    bl_options = {"REGISTER", "UNDO"}

    @reports_errors
    def execute(self, context):
        annotation = self.run(context, lambda root, scene: session.start(root))
        if annotation is None:
            return {"CANCELLED"}
        context.scene.tha_annotation_candidate = 0
        reasons = annotation.review.get("reasons") or []
        self.report({"WARNING"} if reasons else {"INFO"},
                    "; ".join(reasons) if reasons else f"{len(annotation.morph_roles)} morph roles found")
        return {"FINISHED"}


class THA_OT_annotation_cycle(AnnotationOperator, bpy.types.Operator):
    """Preview the next (or previous) candidate morph for the chosen role"""

    bl_idname = "tha_studio.annotation_cycle"
    bl_label = "Cycle Candidate"
    bl_options = {"REGISTER", "UNDO"}

    step: bpy.props.IntProperty(default=1, description="+1 next candidate, -1 previous")

    @reports_errors
    def execute(self, context):
        def cycle(root, scene):
            count = len(session.candidates(root, scene.tha_annotation_role))
            scene.tha_annotation_candidate = (scene.tha_annotation_candidate + self.step) % count
            return session.preview(root, scene.tha_annotation_role, scene.tha_annotation_candidate)

        shown = self.run(context, cycle)
        if shown is None:
            return {"CANCELLED"}
        name, side, confidence = shown
        self.report({"INFO"}, f"{name}{f' ({side} half)' if side else ''}: confidence {confidence:.2f}")
        return {"FINISHED"}


class THA_OT_annotation_confirm(AnnotationOperator, bpy.types.Operator):
    """Use the previewed candidate for the chosen role"""

    bl_idname = "tha_studio.annotation_confirm"
    bl_label = "Confirm Candidate"
    bl_options = {"REGISTER", "UNDO"}

    @reports_errors
    def execute(self, context):
        chosen = self.run(context, lambda root, scene: session.confirm(root, scene.tha_annotation_role,
                                                                       scene.tha_annotation_candidate))
        if chosen is None:
            return {"CANCELLED"}
        self.report({"INFO"}, f"{context.scene.tha_annotation_role} = {chosen[0]}")
        return {"FINISHED"}


class THA_OT_annotation_save(AnnotationOperator, bpy.types.Operator):
    """Read the head handles back and write the annotation beside the model"""

    bl_idname = "tha_studio.annotation_save"
    bl_label = "Save Annotation"
    bl_options = {"REGISTER"}

    @reports_errors
    def execute(self, context):
        path = self.run(context, lambda root, scene: session.save(root))
        if path is None:
            return {"CANCELLED"}
        self.report({"INFO"}, f"saved {path}")
        return {"FINISHED"}


class THA_PT_annotation(bpy.types.Panel):
    bl_label = "Dataset Annotation"
    bl_idname = "THA_PT_annotation"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "THA Studio"

    def draw(self, context):
        layout = self.layout
        root = session.model_root(context.object)
        if root is None:
            layout.label(text="Select an imported MMD model")
            return
        if session.ANNOTATION_PROPERTY not in root:
            layout.operator(THA_OT_annotation_start.bl_idname, icon="PLAY")
            return
        annotation = session.load(root)
        scene = context.scene
        box = layout.box()
        box.label(text=f"Head {annotation.head_bottom:.2f} .. {annotation.head_top:.2f} ({annotation.head.get('source')})")
        box.label(text="Drag the 'THA head top/bottom' empties up or down")
        layout.prop(scene, "tha_annotation_role", text="Role")
        entry = annotation.morph_roles.get(scene.tha_annotation_role, {})
        chosen = ", ".join(f"{n}{f' ({s})' if s else ''}" for n, _, s in annotation.morphs_for(scene.tha_annotation_role))
        layout.label(text=f"Now: {chosen or 'none'} ({entry.get('source', '-')}, {entry.get('confidence', 0):.2f})")
        row = layout.row(align=True)
        row.operator(THA_OT_annotation_cycle.bl_idname, text="", icon="TRIA_LEFT").step = -1
        row.label(text=f"candidate {scene.tha_annotation_candidate + 1}")
        row.operator(THA_OT_annotation_cycle.bl_idname, text="", icon="TRIA_RIGHT").step = 1
        layout.operator(THA_OT_annotation_confirm.bl_idname, icon="CHECKMARK")
        if annotation.review.get("flagged"):
            layout.label(text="Flagged: " + "; ".join(annotation.review.get("reasons", [])), icon="ERROR")
        layout.operator(THA_OT_annotation_save.bl_idname, icon="FILE_TICK")
        layout.operator(THA_OT_annotation_start.bl_idname, text="Reload", icon="FILE_REFRESH")


CLASSES = (THA_OT_annotation_start, THA_OT_annotation_cycle, THA_OT_annotation_confirm, THA_OT_annotation_save,
           THA_PT_annotation)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.tha_annotation_role = bpy.props.EnumProperty(name="Role", items=ROLE_ITEMS,
                                                                 description="the pose parameter whose morph to choose")
    bpy.types.Scene.tha_annotation_candidate = bpy.props.IntProperty(name="Candidate", min=0, default=0)


def unregister():
    del bpy.types.Scene.tha_annotation_candidate
    del bpy.types.Scene.tha_annotation_role
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
