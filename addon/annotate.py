"""The annotation panel (3D Viewport > Sidebar > THA Studio): head band handles and morph roles.

Start on an imported MMD model or avatar, or on a rigged character of an opened .blend (a
dataset's .blend model): its sidecar opens (or the automatic annotation is made), two empties
mark the head top and bottom (drag them up or down). Pick a role, cycle through its
candidate morphs (each previewed on the model), confirm the right one, and save: the sidecar
beside the model gets the person's choices. Each operator calls one function of
render.blender.annotation_session and reports its outcome.

The panel's state lives in a PropertyGroup on the model's root object (`Object.tha_annotation`):
the role being chosen, the previewed candidate, and the lines the panel shows. Those lines are
made where the annotation or the role changes (the operators, the role's update), so drawing
reads properties and never parses the annotation's JSON. Undo restores both together.
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


def show(root, annotation=None):
    """Make the panel's lines for the model's annotation (read from the model if not given)."""
    annotation = annotation if annotation is not None else session.load(root)
    state = root.tha_annotation
    state.head_text = f"Head {annotation.head_bottom:.2f} .. {annotation.head_top:.2f} ({annotation.head.get('source')})"
    entry = annotation.morph_roles.get(state.role, {})
    chosen = ", ".join(f"{n}{f' ({s})' if s else ''}" for n, _, s in annotation.morphs_for(state.role))
    state.role_text = f"Now: {chosen or 'none'} ({entry.get('source', '-')}, {entry.get('confidence', 0):.2f})"
    reasons = annotation.review.get("reasons", [])
    state.flag_text = "Flagged: " + "; ".join(reasons) if annotation.review.get("flagged") else ""


def _role_changed(state, context):
    root = state.id_data
    state.candidate = 0
    if session.ANNOTATION_PROPERTY in root:
        show(root)


class THA_PG_annotation(bpy.types.PropertyGroup):
    role: bpy.props.EnumProperty(name="Role", items=ROLE_ITEMS, update=_role_changed,
                                 description="the pose parameter whose morph to choose")
    candidate: bpy.props.IntProperty(name="Candidate", min=0, default=0,
                                     description="which of the role's candidate morphs is previewed")
    head_text: bpy.props.StringProperty()
    role_text: bpy.props.StringProperty()
    flag_text: bpy.props.StringProperty()


class AnnotationOperator:
    needs_annotation = True  # all but Start work on a model whose annotation is open

    @classmethod
    def poll(cls, context):
        root = session.model_root(context.object)
        if root is None:
            cls.poll_message_set("Select a model imported by THA Studio (File > Import > MMD model), or a rigged "
                                 "character")
            return False
        if cls.needs_annotation and session.ANNOTATION_PROPERTY not in root:
            cls.poll_message_set("Start annotating this model first")
            return False
        return True


class THA_OT_annotation_start(AnnotationOperator, bpy.types.Operator):
    """Open this model's annotation (or make it automatically) and place the head band handles"""

    bl_idname = "tha_studio.annotation_start"
    bl_label = "Start Annotating"
    bl_options = {"REGISTER", "UNDO"}
    needs_annotation = False

    @reports_errors
    def execute(self, context):
        root = session.model_root(context.object)
        annotation = session.start(root)
        root.tha_annotation.candidate = 0
        show(root, annotation)
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
        root = session.model_root(context.object)
        state = root.tha_annotation
        count = len(session.candidates(root, state.role))
        state.candidate = (state.candidate + self.step) % count
        name, side, confidence = session.preview(root, state.role, state.candidate)
        self.report({"INFO"}, f"{name}{f' ({side} half)' if side else ''}: confidence {confidence:.2f}")
        return {"FINISHED"}


class THA_OT_annotation_confirm(AnnotationOperator, bpy.types.Operator):
    """Use the previewed candidate for the chosen role"""

    bl_idname = "tha_studio.annotation_confirm"
    bl_label = "Confirm Candidate"
    bl_options = {"REGISTER", "UNDO"}

    @reports_errors
    def execute(self, context):
        root = session.model_root(context.object)
        state = root.tha_annotation
        name, _ = session.confirm(root, state.role, state.candidate)
        show(root)
        self.report({"INFO"}, f"{state.role} = {name}")
        return {"FINISHED"}


class THA_OT_annotation_save(AnnotationOperator, bpy.types.Operator):
    """Read the head handles back and write the annotation beside the model"""

    bl_idname = "tha_studio.annotation_save"
    bl_label = "Save Annotation"
    bl_options = {"REGISTER"}

    @reports_errors
    def execute(self, context):
        root = session.model_root(context.object)
        path = session.save(root)
        show(root)
        self.report({"INFO"}, f"saved {path}")
        return {"FINISHED"}


class THA_OT_annotation_show(AnnotationOperator, bpy.types.Operator):
    """Show the annotation this model holds (one opened before the panel kept its lines)"""

    bl_idname = "tha_studio.annotation_show"
    bl_label = "Show Annotation"
    bl_options = {"REGISTER", "UNDO"}

    @reports_errors
    def execute(self, context):
        show(session.model_root(context.object))
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
            layout.label(text="Select an imported model or a rigged character")
            return
        if session.ANNOTATION_PROPERTY not in root:
            layout.operator(THA_OT_annotation_start.bl_idname, icon="PLAY")
            return
        state = root.tha_annotation
        if not state.head_text:
            layout.operator(THA_OT_annotation_show.bl_idname, icon="HIDE_OFF")
            return
        box = layout.box()
        box.label(text=state.head_text)
        box.label(text="Drag the 'THA head top/bottom' empties up or down")
        layout.prop(state, "role", text="Role")
        layout.label(text=state.role_text)
        row = layout.row(align=True)
        row.operator(THA_OT_annotation_cycle.bl_idname, text="", icon="TRIA_LEFT").step = -1
        row.label(text=f"candidate {state.candidate + 1}")
        row.operator(THA_OT_annotation_cycle.bl_idname, text="", icon="TRIA_RIGHT").step = 1
        layout.operator(THA_OT_annotation_confirm.bl_idname, icon="CHECKMARK")
        if state.flag_text:
            layout.label(text=state.flag_text, icon="ERROR")
        layout.operator(THA_OT_annotation_save.bl_idname, icon="FILE_TICK")
        layout.operator(THA_OT_annotation_start.bl_idname, text="Reload", icon="FILE_REFRESH")


CLASSES = (THA_PG_annotation, THA_OT_annotation_start, THA_OT_annotation_cycle, THA_OT_annotation_confirm,
           THA_OT_annotation_save, THA_OT_annotation_show, THA_PT_annotation)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Object.tha_annotation = bpy.props.PointerProperty(type=THA_PG_annotation)


def unregister():
    del bpy.types.Object.tha_annotation
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
