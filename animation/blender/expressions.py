"""Expression presets and face capture on a sprite's timeline (see timeline.py for the strips).

- Presets (animation/core/presets.py): applied, a preset sets the sliders now; keyed, it becomes
  keys at a frame in the sprite's "<sprite> expressions" action, an ADD strip held over all time
  on the "THA expressions" track, so blinks (ADD) still close the eyes over a keyed expression
  and a line's mouth (REPLACE) still speaks. The user's own presets are JSON in a text datablock
  of the .blend (USER_PRESETS_TEXT): every sprite of the file lists them, a user can read and
  edit them in the Text Editor, and appending the text brings them to another file.
- Face capture (animation/core/face_capture.py): a Live Link Face CSV take becomes an action of
  its own on the "THA face capture" track, named after the file; the ARKit -> THA mapping is the
  sprite's own (an ID property JSON, editable as a text datablock) or the default.
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy

from ...errors import UserError
from ...pose.schema import get_schema
from ...render.formats.mmd import vmd
from ..core.face_capture import ArkitMapping, FaceCaptureError, capture_keyframes, read_live_link_csv
from ..core.keys import flat_bezier_keys
from ..core.mmd_motion import MotionError, motion_keyframes
from ..core.presets import (EXPRESSION_GROUPS, Preset, PresetError, builtin_presets, expression_parameters,
                            presets_from_json, presets_to_json)
from . import sprite as sprites
from . import timeline
from .timeline import TimelineError

USER_PRESETS_TEXT = "THA expression presets.json"
ARKIT_MAPPING_PROPERTY = "tha_arkit_mapping"


# --- the user's presets ------------------------------------------------------------------------


def user_presets():
    """The user's presets kept in this .blend ([] when there are none)."""
    text = bpy.data.texts.get(USER_PRESETS_TEXT)
    if text is None or not text.as_string().strip():
        return []
    return presets_from_json(text.as_string(), source=f"the text {USER_PRESETS_TEXT!r}")


def _store_user_presets(presets):
    text = bpy.data.texts.get(USER_PRESETS_TEXT) or bpy.data.texts.new(USER_PRESETS_TEXT)
    text.use_fake_user = True  # kept in the .blend even when no editor shows it
    text.from_string(presets_to_json(presets))
    return text


def save_user_preset(name, obj, groups=EXPRESSION_GROUPS):
    """The sprite's current expression (the sliders of `groups`) saved as a user preset `name`
    (replacing a user preset of that name and schema). Returns the Preset."""
    schema = get_schema(sprites.settings_of(obj).schema)
    keys = sprites.sliders(obj)
    values = {parameter: keys[parameter].value for parameter in expression_parameters(schema, groups)}
    preset = Preset(str(name).strip(), schema.name, {k: v for k, v in values.items() if abs(v) > 1e-6})
    presets = [p for p in user_presets() if (p.name, p.schema_name) != (preset.name, preset.schema_name)]
    _store_user_presets(presets + [preset])
    return preset


def delete_user_preset(name, schema_name):
    presets = user_presets()
    kept = [p for p in presets if (p.name, p.schema_name) != (name, get_schema(schema_name).name)]
    if len(kept) == len(presets):
        return False
    _store_user_presets(kept)
    return True


def presets_for(obj):
    """{name: Preset} a sprite can use: the built-in ones of its schema, then the user's (a user
    preset of a built-in's name replaces it)."""
    schema = get_schema(sprites.settings_of(obj).schema)
    presets = dict(builtin_presets(schema))
    for preset in user_presets():
        if all(name in schema.names for name in preset.values):
            presets[preset.name] = preset
    return presets


# --- applying and keying -----------------------------------------------------------------------


def apply_preset(obj, preset, frame=None, groups=EXPRESSION_GROUPS):
    """Set the sprite's expression sliders of `groups` from a preset (a Preset or a name of
    `presets_for`); with `frame`, key them there in the sprite's expressions strip. Returns the
    {parameter: value} set."""
    if isinstance(preset, str):
        known = presets_for(obj)
        if preset not in known:
            raise PresetError(f"{obj.name}: no expression preset called {preset!r}; presets are {', '.join(known)}")
        preset = known[preset]
    schema = get_schema(sprites.settings_of(obj).schema)
    values = preset.values_for(schema, groups)
    if frame is not None:
        frame = _frame(frame)
        _key_expression(obj, values, frame)
    sprites.set_pose(obj, values)
    return values


def _frame(value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise TimelineError(f"a preset is keyed on a frame number, got {value!r}")
    return float(value)


def expression_strip(obj):
    found = timeline.timeline_strips(obj, "expressions")
    return found[0] if found else None


def _key_expression(obj, values, frame):
    """Keys of `values` at `frame` merged into the expressions action (flat Bezier handles at
    thirds to the neighbours, so every change of expression eases in and out)."""
    key = timeline.pose_key(obj)
    found = expression_strip(obj)
    action = found[1].action if found else None
    keyed = timeline.read_keys(action) if action else {}
    merged = {}
    for parameter, value in values.items():
        points = {round(k.frame, 6): k.value for k in keyed.get(parameter, [])}
        points[round(frame, 6)] = float(value)
        merged[parameter] = flat_bezier_keys(sorted(points.items()))
    if found is not None:
        track, strip, _ = found
        track.strips.remove(strip)  # placed again below over the action's new range
    timeline.ensure_rest(obj, {name: 0.0 for name in values})
    if action is None:
        action = timeline.new_action(f"{obj.name} expressions", merged, {"kind": "expressions"})
    else:
        timeline.write_keys(action, merged)
    every = timeline.read_keys(action)
    first = min(keys[0].frame for keys in every.values())
    strip = timeline.place_strip(key, timeline.EXPRESSION_TRACK, timeline.EXPRESSION_TRACK, action, math.floor(first), "ADD", "HOLD")
    return strip


# --- face capture ------------------------------------------------------------------------------


def arkit_mapping(obj):
    """The sprite's ARKit -> THA mapping: its own (saved in the .blend) or the default of its schema."""
    text = obj.get(ARKIT_MAPPING_PROPERTY)
    schema_name = sprites.settings_of(obj).schema
    if not text:
        return ArkitMapping.default(schema_name)
    if not isinstance(text, str):  # (a script's value, where the mapping's JSON text belongs)
        raise FaceCaptureError(f"{obj.name}'s ARKit mapping holds {timeline.held_kind(text)}, not a mapping's "
                               "text: Edit ARKit Mapping starts again from the default")
    return ArkitMapping.from_json(text, source=f"{obj.name}'s ARKit mapping")


def store_arkit_mapping(obj, mapping):
    schema = get_schema(sprites.settings_of(obj).schema)
    if get_schema(mapping.schema_name).name != schema.name:
        mapping = ArkitMapping(schema.name, mapping.rules)  # checked against the sprite's own sliders
    obj[ARKIT_MAPPING_PROPERTY] = mapping.to_json()
    return mapping


def arkit_mapping_text_name(obj):
    return f"{obj.name} ARKit mapping.json"


def edit_arkit_mapping(obj):
    """A text datablock holding the sprite's ARKit mapping, to edit in the Text Editor."""
    name = arkit_mapping_text_name(obj)
    try:
        content = arkit_mapping(obj).to_json()
    except UserError:
        # A stored mapping that does not read is opened as it is, to mend (else it could be
        # neither used nor edited), or the default where it is no text at all.
        stored = obj.get(ARKIT_MAPPING_PROPERTY)
        default = ArkitMapping.default(sprites.settings_of(obj).schema)
        content = stored if isinstance(stored, str) else default.to_json()
    text = bpy.data.texts.get(name) or bpy.data.texts.new(name)
    text.from_string(content)
    return text


def use_edited_arkit_mapping(obj):
    """Store the mapping edited in the sprite's mapping text (errors name the text and line)."""
    text = bpy.data.texts.get(arkit_mapping_text_name(obj))
    if text is None:
        raise TimelineError(f"{obj.name}: there is no text {arkit_mapping_text_name(obj)!r} to read a mapping from")
    return store_arkit_mapping(obj, ArkitMapping.from_json(text.as_string(), source=f"the text {text.name!r}"))


def find_capture(obj, name):
    for found in timeline.timeline_strips(obj, "capture"):
        if found[2].get("name") == name:
            return found
    return None


def import_face_capture(scene, obj, csv_path, mapping=None, start_frame=1, capture_fps=60.0, name=None,
                        extend_scene=True):
    """A Live Link Face CSV take as keys on the sprite's sliders, through the ARKit mapping (the
    sprite's own by default), in a strip named after the file on "THA face capture" starting at
    `start_frame`; importing a take of that name again replaces it. Returns the strip."""
    csv_path = Path(csv_path)
    name = name or csv_path.stem
    start_frame = timeline.whole_frame(start_frame, "the take's start frame")
    key = timeline.pose_key(obj)
    mapping = mapping or arkit_mapping(obj)
    capture = read_live_link_csv(csv_path, capture_fps)
    keyframes = capture_keyframes(capture, mapping, timeline.scene_fps(scene), start_frame)
    keyframes = {parameter: keys for parameter, keys in keyframes.items() if keys}
    if not keyframes:
        raise TimelineError(f"{csv_path}: the mapping keys no slider from this take")
    timeline.check_parameters(obj, keyframes, "the ARKit mapping")
    return _place_take(scene, obj, key, name, keyframes, csv_path, "face capture", start_frame, extend_scene)


def _place_take(scene, obj, key, name, keyframes, source, what, start_frame, extend_scene):
    """A recorded take's keys (a face capture's, a motion's) as the strip `name` on "THA face
    capture" from `start_frame`, replacing a take of that name; the scene extended to hold it."""
    last = max(keys[-1].frame for keys in keyframes.values())
    scene_end = timeline.fit_scene(scene, last, extend_scene, f"{what} {name!r}")
    old = find_capture(obj, name)
    if old is not None:
        timeline.remove_strip(old[0], old[1], key.animation_data)
    timeline.ensure_rest(obj, {parameter: 0.0 for parameter in keyframes})
    action = timeline.new_action(f"{obj.name} {what} {name}", keyframes,
                                  {"kind": "capture", "name": name, "source": str(source),
                                   "fps": timeline.scene_fps(scene)})
    strip = timeline.place_strip(key, timeline.CAPTURE_TRACK, name, action, start_frame, "REPLACE", "NOTHING")
    scene[timeline.LINES_FPS_PROPERTY] = timeline.scene_fps(scene)
    if scene_end is not None:
        scene.frame_end = scene_end[1]
    return strip


def import_mmd_motion(scene, obj, vmd_path, start_frame=1, name=None, extend_scene=True):
    """An MMD motion's (.vmd) face morphs and head, neck and upper-body turns as keys on the
    sprite's sliders (animation/core/mmd_motion.py), in a strip named after the file on "THA face
    capture" starting at `start_frame` (the motion's frame 0); importing a motion of that name
    again replaces it. Returns (strip, MotionKeys): what it read, and which morphs it did not."""
    vmd_path = Path(vmd_path)
    name = name or vmd_path.stem
    start_frame = timeline.whole_frame(start_frame, "the motion's start frame")
    key = timeline.pose_key(obj)
    motion = vmd.read(vmd_path)
    read = motion_keyframes(motion, sprites.settings_of(obj).schema, timeline.scene_fps(scene), start_frame,
                            source=str(vmd_path))
    keyframes = {parameter: keys for parameter, keys in read.keyframes.items() if keys}
    if not keyframes:
        unknown = f" (its morphs: {', '.join(read.morphs_unknown[:8])})" if read.morphs_unknown else ""
        raise MotionError(f"{vmd_path}: keys no morph or bone a talking head has: no mouth, eye or eyebrow morph "
                          f"THA Studio knows by name, no neck, head or upper-body turn{unknown}")
    timeline.check_parameters(obj, keyframes, "the motion")
    return _place_take(scene, obj, key, name, keyframes, vmd_path, "motion", start_frame, extend_scene), read
