"""Lip sync and life between words in the interface: a sub-panel of the sprite panel with the
lines on the sprite, the mouth mapping editor, the generators, expression presets and face
capture, and their operators.

Each operator checks its input, calls one function of animation/blender/timeline.py or
expressions.py, and reports. Lip sync is a long job (Rhubarb or the built-in analyser) on the one
job-operator base: progress in the status bar, Esc cancels.
"""

from pathlib import Path

import bpy
from bpy_extras.io_utils import ImportHelper

from ..animation.blender import expressions, timeline
from ..animation.blender import sprite as sprites
from ..errors import UserError
from ..lipsync.analyser import read_dialog
from ..lipsync.audio_formats import file_glob as audio_file_glob
from ..lipsync.curves import MAX_FRAME, MIN_FRAME, STYLES, CurveSettings
from ..lipsync.cues import SHAPE_DESCRIPTIONS, SHAPES
from ..pose.schema import get_schema
from .job_operator import JobOperator
from .preferences import preferences
from .reporting import reports_errors
from .sprite import active_sprite, readable, sprite_poll

GENERATOR_ITEMS = (
    ("blinks", "Blinks", "Natural blinks, keeping off winks already keyed"),
    ("sway", "Idle sway", "The head and neck drifting slowly"),
    ("breathing", "Breathing", "THA3's breathing parameter rising and falling"),
    ("gaze", "Eye movement", "The irises resting on points and jumping between them"),
)
STYLE_ITEMS = tuple((style.upper(), style.capitalize(), {
    "linear": "Straight moves between mouth shapes",
    "eased": "Moves that start and end gently",
    "stepped": "Each shape at once (2D-style mouths)",
}[style]) for style in STYLES)


RECOGNIZER_ITEMS = (
    ("AUTO", "Automatic", "Words when there is dialog text, else phonetic (the built-in analyser; Rhubarb: words)"),
    ("WORDS", "Words", "English word recognition, then the words' sounds (Rhubarb's default)"),
    ("PHONETIC", "Phonetic", "Sounds without words: any language, and voices the word recognizer misses"),
)


# --- lip sync ------------------------------------------------------------------------------------


class LineOptions:
    """How a line is analysed and keyed: the options Lip Sync Line and From Strips share."""

    recognizer: bpy.props.EnumProperty(name="Recognizer", items=RECOGNIZER_ITEMS, default="AUTO")
    style: bpy.props.EnumProperty(name="Moves", items=STYLE_ITEMS, default="EASED")
    blend: bpy.props.FloatProperty(name="Blend time", default=0.06, min=0.0, max=1.0, unit="TIME_ABSOLUTE",
                                   description="Seconds a move between two shapes takes")
    extend_scene: bpy.props.BoolProperty(
        name="Extend the scene", default=True,
        description="Move the scene's end when a line runs past it (else the line is refused)")

    def line_options(self, context):
        """The LipSyncJob keywords these options (and the preferences' Rhubarb) give."""
        rhubarb = preferences(context).rhubarb_path
        return dict(rhubarb=bpy.path.abspath(rhubarb) if rhubarb else None,
                    curve_settings=CurveSettings(style=self.style.lower(), blend=self.blend),
                    recognizer=self.recognizer.lower(), extend_scene=self.extend_scene)


class THA_OT_lip_sync(LineOptions, JobOperator, ImportHelper, bpy.types.Operator):
    """Lip sync a line of dialogue onto the sprite: audio (analysed by Rhubarb Lip Sync when found, else
    by the built-in analyser) or a Rhubarb cue file, as an NLA strip with its sound in the sequencer"""

    bl_idname = "tha_studio.lip_sync"
    bl_label = "Lip Sync Line"
    bl_options = {"REGISTER", "UNDO"}

    filter_glob: bpy.props.StringProperty(default=audio_file_glob() + ";*.tsv;*.txt;*.json;*.xml;*.dat",
                                          options={"HIDDEN"})
    dialog_path: bpy.props.StringProperty(
        name="Dialog text", subtype="FILE_PATH", default="",
        description="The line's words as a text file: guides the recognition of audio (optional)")
    audio_path: bpy.props.StringProperty(
        name="Audio for a cue file", subtype="FILE_PATH", default="",
        description="The recording a cue file was made from, placed as its sound strip "
                    "(empty: the one the cue file names, when it exists)")
    line_name: bpy.props.StringProperty(name="Line name", default="",
                                        description="The strip's name (empty: the file's name)")
    use_current_frame: bpy.props.BoolProperty(name="Start at the current frame", default=True)
    start_frame: bpy.props.IntProperty(name="Start frame", default=1, min=MIN_FRAME, max=MAX_FRAME)

    last = None  # the operator started last: tests step it by hand (the bpy module never calls modal)

    poll = classmethod(sprite_poll)

    def make_job(self, context):
        type(self).last = self
        obj = active_sprite(context)
        dialog = None
        if self.dialog_path:
            dialog = read_dialog(Path(bpy.path.abspath(self.dialog_path)))
        return timeline.LipSyncJob(
            context.scene, obj, bpy.path.abspath(self.filepath), dialog=dialog,
            start_frame=context.scene.frame_current if self.use_current_frame else self.start_frame,
            name=self.line_name.strip() or None, audio=bpy.path.abspath(self.audio_path) if self.audio_path else None,
            **self.line_options(context))

    def finished(self, context, result):
        self.report({"INFO"}, result.message)
        for warning in result.placed.warnings:
            self.report({"WARNING"}, warning)
        if result.unknown_words:
            self.report({"WARNING"}, f"words the analyser did not know: {', '.join(result.unknown_words[:8])}")


class THA_OT_lip_sync_strips(LineOptions, JobOperator, bpy.types.Operator):
    """Lip sync the sound strips selected in the Sequencer onto the sprite: each becomes a line where
    it plays, the strip itself its sound (the mouth stays closed where a strip is trimmed)"""

    bl_idname = "tha_studio.lip_sync_strips"
    bl_label = "Lip Sync Sound Strips"
    bl_options = {"REGISTER", "UNDO"}

    last = None  # the operator started last: tests step it by hand (the bpy module never calls modal)

    @classmethod
    def poll(cls, context):
        if not sprite_poll(cls, context):
            return False
        if not timeline.selected_sound_strips(context.scene):
            cls.poll_message_set("Select the dialogue's sound strips in the Sequencer")
            return False
        return True

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    def make_job(self, context):
        type(self).last = self
        scene = context.scene
        return timeline.LipSyncStripsJob(scene, active_sprite(context), timeline.selected_sound_strips(scene),
                                         **self.line_options(context))

    def finished(self, context, results):
        for result in results:
            self.report({"INFO"}, result.message)
            for warning in result.placed.warnings:
                self.report({"WARNING"}, warning)
            if result.unknown_words:
                self.report({"WARNING"}, f"{result.placed.name}: words the analyser did not know: "
                                         f"{', '.join(result.unknown_words[:8])}")


class THA_OT_remove_line(bpy.types.Operator):
    """Remove a line of dialogue from the sprite: its strip, its keys and the sound strip it added (a strip
    it was made from stays)"""

    bl_idname = "tha_studio.remove_line"
    bl_label = "Remove Line"
    bl_options = {"REGISTER", "UNDO"}

    line_name: bpy.props.StringProperty(name="Line")
    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        if not timeline.remove_line(context.scene, active_sprite(context), self.line_name):
            self.report({"ERROR"}, f"no line called {self.line_name!r} on this sprite")
            return {"CANCELLED"}
        return {"FINISHED"}


def _shape_items(self, context):
    return [(shape, shape, SHAPE_DESCRIPTIONS[shape]) for shape in SHAPES]


class THA_OT_mouth_mapping_preset(bpy.types.Operator):
    """Set the sprite's mouth mapping (mouth shape -> THA mouth sliders) to a preset"""

    bl_idname = "tha_studio.mouth_mapping_preset"
    bl_label = "Mouth Mapping Preset"
    bl_options = {"REGISTER", "UNDO"}

    preset: bpy.props.EnumProperty(name="Preset", items=timeline.MAPPING_PRESETS)
    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        obj = active_sprite(context)
        timeline.store_mouth_mapping(obj, timeline.mapping_preset(self.preset, sprites.settings_of(obj).schema))
        return {"FINISHED"}


# The mapping editor: one slider per mouth parameter for the shape chosen, read from and written
# to the sprite's mapping (an ID property JSON) through get/set, so the .blend holds the only copy.
MOUTH_PARAMETERS = tuple(dict.fromkeys(get_schema("tha1").group_names("mouth") + get_schema("tha3").group_names("mouth")))


def _mapping_getter(parameter):
    def get(self):
        obj = active_sprite(bpy.context)
        if obj is None:
            return 0.0
        try:
            return timeline.mouth_mapping(obj).values[self.shape].get(parameter, 0.0)
        except UserError:
            return 0.0

    return get


def _mapping_setter(parameter):
    def set_(self, value):
        obj = active_sprite(bpy.context)
        if obj is None:
            return
        try:
            timeline.set_mapping_value(obj, self.shape, parameter, round(value, 4))
        except UserError as error:
            print(f"THA Studio: {obj.name}: {error}")  # a property setter cannot report; the panel shows it

    return set_


class THA_PG_mouth_mapping_editor(bpy.types.PropertyGroup):
    shape: bpy.props.EnumProperty(name="Shape", items=[(s, s, SHAPE_DESCRIPTIONS[s]) for s in SHAPES])
    __annotations__.update({
        parameter: bpy.props.FloatProperty(name=readable(parameter), min=0.0, max=1.0, get=_mapping_getter(parameter),
                                           set=_mapping_setter(parameter))
        for parameter in MOUTH_PARAMETERS
    })


# --- generators ----------------------------------------------------------------------------------


class THA_OT_generate(bpy.types.Operator):
    """Key natural motion on the sprite as an NLA strip of its own (a re-run with the same seed gives the
    same keys and replaces the strip)"""

    bl_idname = "tha_studio.generate"
    bl_label = "Generate Motion"
    bl_options = {"REGISTER", "UNDO"}

    generator: bpy.props.EnumProperty(name="Motion", items=GENERATOR_ITEMS)
    seed: bpy.props.IntProperty(name="Seed", default=0, min=0)
    rate: bpy.props.FloatProperty(name="Rate", default=1.0, min=0.05, max=10.0,
                                  description="How often or fast (2: twice as often)")
    amplitude: bpy.props.FloatProperty(name="Amplitude", default=1.0, min=0.0, max=10.0,
                                       description="How much (blinks: how far the eyes close, at most 1)")
    use_scene_range: bpy.props.BoolProperty(name="Scene range", default=True)
    frame_start: bpy.props.IntProperty(name="Start", default=1, min=MIN_FRAME, max=MAX_FRAME)
    frame_end: bpy.props.IntProperty(name="End", default=250, min=MIN_FRAME, max=MAX_FRAME)

    poll = classmethod(sprite_poll)

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    @reports_errors
    def execute(self, context):
        scene, obj = context.scene, active_sprite(context)
        start, end = (scene.frame_start, scene.frame_end) if self.use_scene_range else (self.frame_start, self.frame_end)
        settings = {"seed": self.seed, "rate": self.rate, "amplitude": self.amplitude}
        strip = timeline.place_generator(scene, obj, self.generator, settings, start, end)
        keys = sum(len(fcurve.keyframe_points) for fcurve in timeline.fcurves_of(strip.action))
        self.report({"INFO"}, f"{strip.name}: {keys} keys, frames {start}-{end}, seed {self.seed}")
        return {"FINISHED"}


class THA_OT_remove_generated(bpy.types.Operator):
    """Remove a generator's strip from the sprite"""

    bl_idname = "tha_studio.remove_generated"
    bl_label = "Remove Generated Motion"
    bl_options = {"REGISTER", "UNDO"}

    generator: bpy.props.EnumProperty(name="Motion", items=GENERATOR_ITEMS)
    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        if not timeline.remove_generator(active_sprite(context), self.generator):
            self.report({"ERROR"}, f"no {self.generator} strip on this sprite")
            return {"CANCELLED"}
        return {"FINISHED"}


# --- expression presets --------------------------------------------------------------------------


class THA_OT_apply_expression(bpy.types.Operator):
    """Set the sprite's expression from a preset; with Key, key it at the current frame (in the sprite's
    expressions strip, so blinks and lines still play over it)"""

    bl_idname = "tha_studio.apply_expression"
    bl_label = "Apply Expression"
    bl_options = {"REGISTER", "UNDO"}

    preset: bpy.props.StringProperty(name="Preset")
    key: bpy.props.BoolProperty(name="Key", default=False)
    keep_mouth: bpy.props.BoolProperty(name="Keep the mouth", default=False,
                                       description="Set the eyebrows and eyes only (a lip-synced mouth stays)")
    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        groups = ("eyebrow", "eye") if self.keep_mouth else expressions.EXPRESSION_GROUPS
        obj = active_sprite(context)
        values = expressions.apply_preset(obj, self.preset, context.scene.frame_current if self.key else None, groups)
        if not self.key:
            animated = timeline.animated_parameters(obj) & set(values)
            if animated:
                self.report({"WARNING"}, f"{len(animated)} of these sliders are animated ({', '.join(sorted(animated)[:3])}"
                                         f"{', ...' if len(animated) > 3 else ''}): the next frame change sets them "
                                         f"back; key the expression to keep it")
        return {"FINISHED"}


class THA_OT_save_expression(bpy.types.Operator):
    """Save the sprite's current expression as a preset of this .blend (every sprite can use it)"""

    bl_idname = "tha_studio.save_expression"
    bl_label = "Save Expression"
    bl_options = {"REGISTER", "UNDO"}

    preset: bpy.props.StringProperty(name="Name", default="My expression")
    poll = classmethod(sprite_poll)

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self)

    @reports_errors
    def execute(self, context):
        preset = expressions.save_user_preset(self.preset, active_sprite(context))
        self.report({"INFO"}, f"Saved expression {preset.name!r} ({len(preset.values)} sliders) in this .blend")
        return {"FINISHED"}


class THA_OT_delete_expression(bpy.types.Operator):
    """Delete one of this .blend's own expression presets"""

    bl_idname = "tha_studio.delete_expression"
    bl_label = "Delete Expression"
    bl_options = {"REGISTER", "UNDO"}

    preset: bpy.props.StringProperty(name="Preset")
    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        schema = sprites.settings_of(active_sprite(context)).schema
        if not expressions.delete_user_preset(self.preset, schema):
            self.report({"ERROR"}, f"no preset of this .blend called {self.preset!r}")
            return {"CANCELLED"}
        return {"FINISHED"}


# --- face capture --------------------------------------------------------------------------------


class _TakeStart:
    """Where an imported take (a face capture, a motion) starts: the current frame, or one given."""

    use_current_frame: bpy.props.BoolProperty(name="Start at the current frame", default=True)
    start_frame: bpy.props.IntProperty(name="Start frame", default=1, min=MIN_FRAME, max=MAX_FRAME)

    def take_start(self, scene):
        return scene.frame_current if self.use_current_frame else self.start_frame


class THA_OT_import_face_capture(_TakeStart, ImportHelper, bpy.types.Operator):
    """Import a recorded face (Live Link Face CSV of ARKit blendshapes) as keys on the sprite's sliders,
    through the sprite's ARKit mapping, as an NLA strip named after the file"""

    bl_idname = "tha_studio.import_face_capture"
    bl_label = "Import Face Capture"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".csv"
    filter_glob: bpy.props.StringProperty(default="*.csv", options={"HIDDEN"})
    capture_fps: bpy.props.FloatProperty(name="Capture rate", default=60.0, min=1.0, max=240.0,
                                         description="Frames per second the take was recorded at (Live Link Face: 60)")

    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        scene = context.scene
        strip = expressions.import_face_capture(scene, active_sprite(context), bpy.path.abspath(self.filepath),
                                                start_frame=self.take_start(scene), capture_fps=self.capture_fps)
        self.report({"INFO"}, f"Face capture {strip.name!r}: frames {int(strip.frame_start)}-{int(strip.frame_end)}")
        return {"FINISHED"}


class THA_OT_import_mmd_motion(_TakeStart, ImportHelper, bpy.types.Operator):
    """Import an MMD motion (.vmd): its mouth, eye and eyebrow morphs and its neck, head and upper-body
    turns as keys on the sprite's sliders, as an NLA strip named after the file"""

    bl_idname = "tha_studio.import_mmd_motion"
    bl_label = "Import MMD Motion"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".vmd"
    filter_glob: bpy.props.StringProperty(default="*.vmd", options={"HIDDEN"})

    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        scene = context.scene
        strip, read = expressions.import_mmd_motion(scene, active_sprite(context), bpy.path.abspath(self.filepath),
                                                    start_frame=self.take_start(scene))
        self.report({"INFO"}, f"Motion {strip.name!r}: frames {int(strip.frame_start)}-{int(strip.frame_end)}")
        if read.morphs_unknown:
            self.report({"WARNING"}, f"Morphs a talking head has no slider for, left out: "
                                     f"{', '.join(read.morphs_unknown[:12])}")
        return {"FINISHED"}


class THA_OT_edit_arkit_mapping(bpy.types.Operator):
    """Put the sprite's ARKit -> THA mapping in a text to edit in the Text Editor; Use Edited Mapping
    takes it back"""

    bl_idname = "tha_studio.edit_arkit_mapping"
    bl_label = "Edit ARKit Mapping"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        text = expressions.edit_arkit_mapping(active_sprite(context))
        for area in context.screen.areas if context.screen else ():
            if area.type == "TEXT_EDITOR":
                area.spaces.active.text = text
                break
        self.report({"INFO"}, f"The mapping is in the text {text.name!r}: edit it, then Use Edited Mapping")
        return {"FINISHED"}


class THA_OT_use_arkit_mapping(bpy.types.Operator):
    """Use the mapping edited in the sprite's ARKit mapping text for the next face-capture imports"""

    bl_idname = "tha_studio.use_arkit_mapping"
    bl_label = "Use Edited Mapping"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        mapping = expressions.use_edited_arkit_mapping(active_sprite(context))
        self.report({"INFO"}, f"ARKit mapping: {len(mapping.parameters)} sliders from {len(mapping.channels)} channels")
        return {"FINISHED"}


# --- the panel -----------------------------------------------------------------------------------


class THA_PT_talking_head_timeline(bpy.types.Panel):
    bl_label = "Lip Sync and Life"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "THA"
    bl_parent_id = "THA_PT_talking_head"

    @classmethod
    def poll(cls, context):
        return active_sprite(context) is not None

    def draw(self, context):
        layout = self.layout
        obj = active_sprite(context)
        try:
            schema = get_schema(sprites.settings_of(obj).schema)
            lines = timeline.timeline_strips(obj, "line")
        except UserError as error:
            layout.label(text=str(error), icon="ERROR")
            return
        try:
            mapping, mapping_error = timeline.mouth_mapping(obj), None
        except UserError as error:  # (shown in its box, whose presets set it again)
            mapping, mapping_error = None, error
        box = layout.box()
        row = box.row(align=True)
        row.operator(THA_OT_lip_sync.bl_idname, icon="SPEAKER")
        row.operator(THA_OT_lip_sync_strips.bl_idname, text="From Strips", icon="SEQUENCE")
        for track, strip, record in lines:
            row = box.row(align=True)
            row.label(text=f"{record['name']}  ({int(strip.frame_start)}-{int(strip.frame_end)})", icon="NLA")
            row.operator(THA_OT_remove_line.bl_idname, text="", icon="X").line_name = record["name"]
            for note in (timeline.waiting_note(record), timeline.retiming_note(record)):
                if note:
                    box.label(text=note, icon="ERROR")

        box = layout.box()
        box.label(text="Mouth mapping", icon="MOD_SHRINKWRAP")
        row = box.row(align=True)
        for identifier, label, _ in timeline.MAPPING_PRESETS:
            row.operator(THA_OT_mouth_mapping_preset.bl_idname, text=label).preset = identifier
        if mapping_error is not None:
            box.label(text=str(mapping_error), icon="ERROR")
        editor = context.window_manager.tha_mouth_mapping_editor
        box.row().prop(editor, "shape", expand=True)
        box.label(text=SHAPE_DESCRIPTIONS[editor.shape])
        column = box.column(align=True)
        for parameter in schema.group_names("mouth"):
            column.prop(editor, parameter, slider=True)
        if mapping is not None:
            used = ", ".join(f"{shape}: {' '.join(f'{k[6:]}={v:g}' for k, v in values.items()) or 'closed'}"
                             for shape, values in mapping.values.items())
            box.label(text=used[:120])

        box = layout.box()
        box.label(text="Life between words", icon="FORCE_TURBULENCE")
        placed = {record.get("generator"): strip for _, strip, record in timeline.timeline_strips(obj, "generator")}
        for identifier, label, _ in GENERATOR_ITEMS:
            row = box.row(align=True)
            row.operator(THA_OT_generate.bl_idname, text=label,
                         icon="CHECKMARK" if identifier in placed else "ADD").generator = identifier
            if identifier in placed:
                row.operator(THA_OT_remove_generated.bl_idname, text="", icon="X").generator = identifier

        box = layout.box()
        box.label(text="Expressions", icon="USER")
        try:
            presets = expressions.presets_for(obj)
            own = {p.name for p in expressions.user_presets()}
        except UserError as error:
            box.label(text=str(error), icon="ERROR")
            presets, own = {}, set()
        grid = box.grid_flow(columns=2, align=True)
        for name in presets:
            row = grid.row(align=True)
            row.operator(THA_OT_apply_expression.bl_idname, text=name.capitalize()).preset = name
            keyed = row.operator(THA_OT_apply_expression.bl_idname, text="", icon="KEY_HLT")
            keyed.preset, keyed.key = name, True
            if name in own:
                row.operator(THA_OT_delete_expression.bl_idname, text="", icon="X").preset = name
        box.operator(THA_OT_save_expression.bl_idname, icon="ADD")

        box = layout.box()
        box.label(text="Face capture", icon="OUTLINER_OB_CAMERA")
        box.operator(THA_OT_import_face_capture.bl_idname, icon="IMPORT")
        box.operator(THA_OT_import_mmd_motion.bl_idname, icon="IMPORT")
        row = box.row(align=True)
        row.operator(THA_OT_edit_arkit_mapping.bl_idname, icon="TEXT")
        row.operator(THA_OT_use_arkit_mapping.bl_idname, icon="CHECKMARK")


CLASSES = (
    THA_OT_lip_sync, THA_OT_lip_sync_strips, THA_OT_remove_line, THA_OT_mouth_mapping_preset, THA_PG_mouth_mapping_editor,
    THA_OT_generate, THA_OT_remove_generated, THA_OT_apply_expression, THA_OT_save_expression,
    THA_OT_delete_expression, THA_OT_import_face_capture, THA_OT_import_mmd_motion, THA_OT_edit_arkit_mapping,
    THA_OT_use_arkit_mapping,
    THA_PT_talking_head_timeline,
)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.WindowManager.tha_mouth_mapping_editor = bpy.props.PointerProperty(type=THA_PG_mouth_mapping_editor)


def unregister():
    del bpy.types.WindowManager.tha_mouth_mapping_editor
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
