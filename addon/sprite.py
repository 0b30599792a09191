"""Talking-head sprites in the interface: Add > THA Talking Head, the sprite panel (pose sliders
grouped as the schema groups them, live/baked status), reset, and the live/baked switch.

Each operator checks its input, calls one function of animation/blender, and reports.
"""

import bpy
from bpy_extras.io_utils import ImportHelper

from ..animation.blender import bake, live
from ..animation.blender import sprite as sprites
from ..animation.core.bake_cache import BakeCache
from ..animation.core.sprite_settings import SpriteSettings
from ..errors import UserError
from ..lipsync.curves import MAX_FRAME, MIN_FRAME
from ..pose.character_image import PICTURE_SUFFIXES
from ..pose.schema import GROUPS, get_schema
from ..render.blender import scene as scenes
from .job_operator import JobOperator
from .preferences import preferences, user_data_dir
from .reporting import reports_errors

SCHEMAS = (
    ("tha3", "THA3 (45 parameters)", "Talking Head Anime 3 (also THA4 students)"),
    ("tha2", "THA2 (42 parameters)", "Talking Head Anime 2"),
    ("tha1", "THA1 (6 parameters)", "Talking Head Anime 1"),
)


def readable(name):
    """'mouth_aaa' -> 'Mouth aaa' (slider labels)."""
    return name.replace("_", " ").capitalize()


def active_sprite(context):
    obj = context.object
    return obj if sprites.is_sprite(obj) else None


def sprite_poll(cls, context):
    """Operators that need a sprite: greyed out, saying why, without one."""
    if active_sprite(context) is None:
        cls.poll_message_set("Select a THA talking-head sprite")
        return False
    return True


def settings_from_preferences(context, schema):
    prefs = preferences(context)
    device = "auto" if prefs.device == "AUTO" else prefs.device
    return SpriteSettings(schema=schema, weights=prefs.weights(), device=device, precision=prefs.precision,
                          backend=prefs.backend)


class PictureOptions(ImportHelper):
    """A character picture picked in the file browser, with how to take it in."""

    filename_ext = ".png"
    filter_glob: bpy.props.StringProperty(default=";".join(f"*{suffix}" for suffix in PICTURE_SUFFIXES),
                                          options={"HIDDEN"})
    pack: bpy.props.BoolProperty(
        name="Pack picture", default=True, description="Keep the picture inside the .blend (else refer to the file)"
    )
    fit: bpy.props.BoolProperty(
        name="Fit head into THA's box", default=False,
        description="Scale and move the picture so the head fills THA's head box (for a picture not made for THA: "
        "a full-body drawing, a head too small or off-centre). The fitted copy is packed")
    head_top: bpy.props.IntProperty(
        name="Head Top", default=-1, min=-1,
        description="Row of the top of the head (hair included) in the picture's pixels, 0 at the top; -1: find it")
    chin: bpy.props.IntProperty(
        name="Chin", default=-1, min=-1, description="Row of the chin in the picture's pixels; -1: find it at the neck")

    OPTIONS = ("pack", "fit")

    def draw(self, context):
        layout = self.layout
        for name in self.OPTIONS:
            layout.prop(self, name)
        column = layout.column(align=True)
        column.active = self.fit
        column.prop(self, "head_top")
        column.prop(self, "chin")

    def fit_request(self):
        """None (the picture as it is) or {top, chin, centre} for sprites' fitting."""
        if not self.fit:
            return None
        return {"top": None if self.head_top < 0 else self.head_top, "chin": None if self.chin < 0 else self.chin,
                "centre": None}


class THA_OT_add_talking_head(bpy.types.Operator, PictureOptions):
    """Add a talking-head sprite: a character picture on a plane, posed by THA with pose sliders"""

    bl_idname = "tha_studio.add_talking_head"
    bl_label = "THA Talking Head"
    bl_options = {"REGISTER", "UNDO"}

    schema: bpy.props.EnumProperty(name="Pose sliders", items=SCHEMAS, default="tha3")
    size: bpy.props.FloatProperty(name="Height", default=sprites.DEFAULT_SIZE, min=0.01, soft_max=10.0,
                                  unit="LENGTH", description="The picture's height (THA's head box is a quarter of it)")

    OPTIONS = ("schema", "pack", "size", "fit")

    @reports_errors
    def execute(self, context):
        settings = settings_from_preferences(context, self.schema)
        live.check_weights(settings)
        obj = sprites.create_sprite(context.scene, self.filepath, settings, size=self.size, pack=self.pack,
                                    location=tuple(context.scene.cursor.location), fit=self.fit_request(),
                                    check_picture=live.picture_check(settings))
        for other in context.view_layer.objects:
            other.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        fitted = sprites.fit_description(obj)
        self.report({"INFO"}, f"Added {obj.name}: {len(get_schema(self.schema).names)} pose sliders"
                    + (f"; fitted {fitted}" if fitted else ""))
        changes = scenes.colour_changes(context.scene)
        if changes:
            self.report({"WARNING"}, f"The scene's {', '.join(changes)} will change the picture's colours; "
                        f"{THA_OT_show_pictures_as_drawn.bl_label} (THA panel) shows them as drawn")
        return {"FINISHED"}


class THA_OT_change_picture(bpy.types.Operator, PictureOptions):
    """Put another character picture on the sprite, keeping its pose sliders, keys, lines and motion"""

    bl_idname = "tha_studio.change_picture"
    bl_label = "Change Picture"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        obj = active_sprite(context)
        sprites.replace_picture(obj, self.filepath, pack=self.pack, fit=self.fit_request(),
                                check_picture=live.picture_check(sprites.settings_of(obj)))
        live.update_sprite(obj)
        fitted = sprites.fit_description(obj)
        self.report({"INFO"}, f"{obj.name} shows {bpy.path.basename(self.filepath)} now"
                    + (f" (fitted {fitted})" if fitted else "") + "; it is live: bake it again for its frames")
        return {"FINISHED"}


class THA_OT_show_pictures_as_drawn(bpy.types.Operator):
    """Set the scene's colour management to Standard (no look, exposure 0, gamma 1, no curves or white balance), so
    the viewport and renders show talking heads in their pictures' colours. The rest of the scene loses its tone
    mapping too (AgX, Filmic)"""

    bl_idname = "tha_studio.show_pictures_as_drawn"
    bl_label = "Show Pictures as Drawn"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context):
        if context.scene is None or not scenes.colour_changes(context.scene):
            cls.poll_message_set("The scene shows pictures as drawn already")
            return False
        return True

    @reports_errors
    def execute(self, context):
        changed = scenes.plain_colours(context.scene)
        self.report({"INFO"}, f"{context.scene.name}: Standard view, no more {', '.join(changed)}")
        return {"FINISHED"}


class THA_OT_reset_pose(bpy.types.Operator):
    """Put every pose slider of the sprite back to the picture as drawn"""

    bl_idname = "tha_studio.reset_pose"
    bl_label = "Reset Pose"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        sprites.reset_pose(active_sprite(context))
        return {"FINISHED"}


class THA_OT_sprite_mode(bpy.types.Operator):
    """Show the live THA preview, or play the baked image sequence"""

    bl_idname = "tha_studio.sprite_mode"
    bl_label = "Sprite Mode"
    bl_options = {"REGISTER", "UNDO"}

    mode: bpy.props.EnumProperty(items=(("LIVE", "Live", "Posed by THA as frames change"),
                                        ("BAKED", "Baked", "Play the baked frames (no torch needed)")))

    poll = classmethod(sprite_poll)

    @reports_errors
    def execute(self, context):
        obj = active_sprite(context)
        if self.mode == "LIVE":
            sprites.use_live(obj)
            live.update_sprite(obj)
            return {"FINISHED"}
        folder = live.cache_folder(obj)
        cache = BakeCache(folder) if folder else None
        if cache is None or not cache.index.frames:
            self.report({"ERROR"}, f"{obj.name} has no baked frames yet: bake it first")
            return {"CANCELLED"}
        first, last = min(cache.index.frames), max(cache.index.frames)
        sprites.use_sequence(obj, cache.frame_path(first), first, last - first + 1)
        return {"FINISHED"}


class THA_OT_bake_talking_head(JobOperator, bpy.types.Operator):
    """Pose every frame of the range into the sprite's cache folder and play them as an image
    sequence (renders, render farms included, then need neither THA Studio nor torch)"""

    bl_idname = "tha_studio.bake_talking_head"
    bl_label = "Bake Talking Head"

    use_scene_range: bpy.props.BoolProperty(name="Scene range", default=True)
    frame_start: bpy.props.IntProperty(name="Start", default=1, min=MIN_FRAME, max=MAX_FRAME)
    frame_end: bpy.props.IntProperty(name="End", default=250, min=MIN_FRAME, max=MAX_FRAME)

    poll = classmethod(sprite_poll)

    def make_job(self, context):
        scene = context.scene
        start, end = (scene.frame_start, scene.frame_end) if self.use_scene_range else (self.frame_start, self.frame_end)
        return bake.BakeJob(scene, active_sprite(context), start, end, fallback_folder=user_data_dir("cache"))

    def finished(self, context, result):
        self.report({"INFO"}, f"Baked {result.frames} frames: {result.computed} poses computed, {result.reused} reused "
                              f"({result.seconds:.0f} s), in {result.folder}")


class THA_OT_clean_bake_cache(bpy.types.Operator):
    """Delete the posed pictures in the sprite's bake folder that no baked frame shows (earlier
takes, another picture's). Undoing an edit then poses those frames again"""

    bl_idname = "tha_studio.clean_bake_cache"
    bl_label = "Clean Bake Folder"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context):
        obj = active_sprite(context)
        if obj is None or live.cache_folder(obj) is None:
            cls.poll_message_set("Select a baked THA talking-head sprite")
            return False
        return True

    @reports_errors
    def execute(self, context):
        obj = active_sprite(context)
        folder = live.cache_folder(obj)
        removed, freed, kept = BakeCache(folder).remove_unused()
        self.report({"INFO"}, f"{obj.name}: removed {removed} file(s), {freed / 2**20:.1f} MiB, that no baked frame "
                    f"shows; kept {kept} posed picture(s) in {folder}")
        return {"FINISHED"}


class THA_PT_talking_head(bpy.types.Panel):
    bl_label = "THA Talking Head"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "THA"

    @classmethod
    def poll(cls, context):
        return active_sprite(context) is not None

    def draw(self, context):
        layout = self.layout
        obj = active_sprite(context)
        try:
            settings = sprites.settings_of(obj)
            keys = sprites.sliders(obj)
        except UserError as error:
            layout.label(text=str(error), icon="ERROR")
            return
        weights = "tha3 package" if settings.weights == "tha3" else settings.weights
        layout.label(text=f"{settings.schema.upper()} · {weights}", icon="IMAGE_DATA")
        changes = scenes.colour_changes(context.scene)
        if changes:
            box = layout.box()
            box.label(text=f"Not as drawn: {', '.join(changes)}", icon="ERROR")
            box.operator(THA_OT_show_pictures_as_drawn.bl_idname, icon="COLOR")
        row = layout.row(align=True)
        row.operator(THA_OT_sprite_mode.bl_idname, text="Live", depress=settings.mode == "LIVE").mode = "LIVE"
        row.operator(THA_OT_sprite_mode.bl_idname, text="Baked", depress=settings.mode == "BAKED").mode = "BAKED"
        if settings.mode == "LIVE":
            layout.label(text=live.status(obj), icon="TIME")
        else:
            problem = live.baked_frame_problem(obj, context.scene)
            if problem:
                layout.label(text=problem, icon="ERROR")
        layout.operator(THA_OT_bake_talking_head.bl_idname, icon="RENDER_ANIMATION")
        if settings.cache_dir:
            row = layout.row(align=True)
            row.label(text=f"Cache: {settings.cache_dir}", icon="FILE_FOLDER")
            row.operator(THA_OT_clean_bake_cache.bl_idname, text="", icon="TRASH")
            if bake.left_in_fallback(settings.cache_dir, user_data_dir("cache", create=False)):
                layout.label(text="Baked before the .blend was saved: bake again to move the frames beside it "
                             "(render farms need them there)", icon="ERROR")
        row = layout.row(align=True)
        row.operator(THA_OT_reset_pose.bl_idname, icon="LOOP_BACK")
        row.operator(THA_OT_change_picture.bl_idname, icon="FILE_IMAGE")
        schema = get_schema(settings.schema)
        for group in GROUPS:
            names = schema.group_names(group)
            if not names:
                continue
            box = layout.box()
            box.label(text=group.capitalize())
            column = box.column(align=True)
            for name in names:
                # The shape key's own property: I over it keys it, right-click adds a driver.
                column.prop(keys[name], "value", text=readable(name), slider=True)


def menu_add(self, context):
    self.layout.operator(THA_OT_add_talking_head.bl_idname, text="THA Talking Head", icon="IMAGE_DATA")


CLASSES = (THA_OT_add_talking_head, THA_OT_change_picture, THA_OT_show_pictures_as_drawn, THA_OT_reset_pose,
           THA_OT_sprite_mode, THA_OT_bake_talking_head, THA_OT_clean_bake_cache, THA_PT_talking_head)


def register():
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.VIEW3D_MT_add.append(menu_add)


def unregister():
    bpy.types.VIEW3D_MT_add.remove(menu_add)
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
