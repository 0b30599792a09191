"""A talking-head sprite's timeline: lines of dialogue, generated idle motion and captured faces
as NLA strips on the sprite's pose sliders, with each line's audio in the Video Sequencer.

Every source of motion is an action of its own, placed as an NLA strip on the sprite's Key
datablock (the shape keys are the sliders: animation/blender/sprite.py), so it can be moved,
muted, scaled or blended as one piece, and a re-run replaces only its own strip:

- a line of dialogue: its mouth keys (lipsync/curves.py) in "<sprite> line <name>", a strip named
  after the line on a "THA lip sync" track (a "THA lip sync 2" track when lines overlap), REPLACE;
  its audio a sound strip starting on the same frame;
- a generator (blinks, sway, breathing, gaze: animation/core/generators.py): a strip named as its
  settings say ("THA blinks", ...) on a track of that name, ADD (generated values rest at 0);
- a face-capture take: a strip named after the file on "THA face capture", REPLACE;
- keyed expression presets: one ADD strip held over all time on "THA expressions" (expressions.py).

Why a "THA rest" track at the bottom: where no strip covers a frame, Blender's NLA puts an
animated property back to its RNA default, and a shape key's default value is 1 (a mouth wide open
between two lines). The rest strip holds every slider the timeline animates at its rest value
(0: closed, straight, open eyes) over all time, so strips with NOTHING extrapolation fall back to
rest and ADD strips add to rest. Python can only add tracks on top, so tracks found below a new
rest track are copied above it.

Each action records what it is in an ID property (RECORD): kind, line name, the sound strip's
name, a generator's settings. That is how a re-run finds what to replace, and it survives a save.
It is read back through animation/core/timeline_record.py: a field of the wrong kind is absent.

A line longer than the scene (its cues or its audio run past the end frame) moves the scene's end
by default and says so, since cutting a line of dialogue short is never what is wanted; with
`extend_scene=False` it is refused instead. Only the sprite's Key, the sound strips, the scene's
end frame and its sync mode (audio sync, so playback is heard in step) are touched, and only
after everything was checked: bad input leaves the scene as it was.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bpy

from ...atomic_files import portable_name
from ...errors import UserError
from ...jobs import Job, Progress
from ...json_text import is_number
from ...lipsync.analyser import Analysis
from ...lipsync.analyses import AnalysisMemo, KeptAnalysis, analyser_identity
from ...lipsync.audio_formats import AUDIO_EXTENSIONS, decoded_by_blender
from ...lipsync.cues import cue_rows
from ...lipsync.curves import (DEFAULT_THA1_MAPPING, MAX_FRAME, MIN_FRAME, CurveSettings, Keyframe, MappingError,
                               MouthMapping, mouth_curves)
from ...lipsync.formats import EXTENSIONS as CUE_EXTENSIONS
from ...lipsync.formats import read_cues
from ...lipsync.rhubarb import RhubarbJob, find_rhubarb
from ...pose.schema import get_schema
from ..core import generators
from ..core.timeline_record import readable_record, trim_of
from . import sprite as sprites
from .audio import DecodedRecording
from .bake import CACHE_FOLDER

RECORD = "tha_studio_timeline"  # ID property on every action the timeline makes
MAPPING_PROPERTY = "tha_mouth_mapping"  # ID property on the sprite: its mouth mapping as JSON
LINES_FPS_PROPERTY = "tha_lines_fps"  # ID property on the scene: the frame rate its lines are timed at
# Strips whose keys stand for times in seconds (a recording's): rescaled when the frame rate changes.
TIMED_IN_SECONDS = ("line", "capture")
REST_TRACK = "THA rest"
LINE_TRACK = "THA lip sync"
CAPTURE_TRACK = "THA face capture"
EXPRESSION_TRACK = "THA expressions"


class TimelineError(UserError):
    """A line, generator or capture that cannot be placed; nothing in the scene was changed."""


# --- the mouth mapping of a sprite -----------------------------------------------------------

# A fuller use of THA2/THA3's mouth: vowels mixed as the shapes' descriptions suggest (rhubarb.md
# §1.4), each open shape a little open (aaa) besides its own vowel, F/V's teeth a narrow iii.
THA3_FULL_MAPPING = {
    "A": {},
    "B": {"mouth_iii": 0.6, "mouth_aaa": 0.1},
    "C": {"mouth_eee": 0.7, "mouth_aaa": 0.25},
    "D": {"mouth_aaa": 1.0},
    "E": {"mouth_ooo": 0.7, "mouth_aaa": 0.2},
    "F": {"mouth_uuu": 1.0},
    "G": {"mouth_iii": 0.3},
    "H": {"mouth_aaa": 0.45, "mouth_eee": 0.3},
    "X": {},
}
MAPPING_PRESETS = (
    ("DEFAULT", "Default", "One THA mouth parameter per shape (lipsync/curves.py's default)"),
    ("THA3_FULL", "THA3 full", "Vowels mixed per shape, each open shape also opening the jaw a little"),
    ("THA1_SINGLE", "THA1 single mouth", "One opening amount per shape (THA1's mouth; mouth_aaa on THA2/THA3)"),
)


def mapping_preset(preset, schema_name):
    """A named mapping preset (an id of MAPPING_PRESETS) for a schema."""
    schema = get_schema(schema_name)
    if preset == "DEFAULT":
        return MouthMapping.default(schema.name)
    if preset == "THA3_FULL":
        if schema.name == "tha1":
            raise TimelineError("the THA3 full mouth mapping needs THA2/THA3 sliders; THA1 has one mouth parameter")
        return MouthMapping(schema.name, THA3_FULL_MAPPING)
    if preset == "THA1_SINGLE":
        # THA1's one opening amount per shape, on THA1's mouth or on THA2/THA3's aaa.
        opening = "mouth" if schema.name == "tha1" else "mouth_aaa"
        return MouthMapping(schema.name, {shape: {opening: values["mouth"]} if values else {}
                                          for shape, values in DEFAULT_THA1_MAPPING.items()})
    raise TimelineError(f"unknown mouth mapping preset {preset!r}; presets are "
                        f"{', '.join(p[0] for p in MAPPING_PRESETS)}")


def held_kind(value):
    """What an ID property holds, in words (where THA Studio keeps text, and a script left other)."""
    if isinstance(value, (int, float)):
        return "a number"
    return "a group of values" if hasattr(value, "keys") else "a list of values"


def mouth_mapping(obj):
    """The sprite's mouth mapping: its own (saved in the .blend) or the default of its schema."""
    schema_name = sprites.settings_of(obj).schema
    text = obj.get(MAPPING_PROPERTY)
    if not text:
        return MouthMapping.default(schema_name)
    if not isinstance(text, str):  # (a script's value, where the mapping's JSON text belongs)
        raise MappingError(f"{obj.name}'s mouth mapping holds {held_kind(text)}, not a mapping's text: "
                           "choose a mouth mapping preset to set it again")
    return MouthMapping.from_json(text, schema_name, source=f"{obj.name}'s mouth mapping")


def store_mouth_mapping(obj, mapping):
    schema_name = sprites.settings_of(obj).schema
    if get_schema(mapping.schema_name).name != get_schema(schema_name).name:
        mapping = MouthMapping(schema_name, mapping.values)  # checked against the sprite's own sliders
    obj[MAPPING_PROPERTY] = mapping.to_json()
    return mapping


def set_mapping_value(obj, shape, parameter, value):
    """One entry of the sprite's mapping (0 removes it); returns the stored mapping."""
    values = {s: dict(v) for s, v in mouth_mapping(obj).values.items()}
    if value:
        values[shape][parameter] = float(value)
    else:
        values[shape].pop(parameter, None)
    return store_mouth_mapping(obj, MouthMapping(sprites.settings_of(obj).schema, values))


# --- keys in actions ---------------------------------------------------------------------------


def scene_fps(scene):
    return scene.render.fps / scene.render.fps_base


def data_path(parameter):
    return f'key_blocks["{parameter}"].value'


def parameter_of(path):
    """The slider of a data path written by `data_path`, else None."""
    prefix, suffix = 'key_blocks["', '"].value'
    if path.startswith(prefix) and path.endswith(suffix):
        return path[len(prefix):-len(suffix)]
    return None


def fcurves_of(action, create=False, slot=None):
    """The action's F-curves for a Key (Blender 4.4+: the channelbag of `slot`, by default the
    action's first, which is the only one in the timeline's actions; before 4.4: the action's)."""
    if not hasattr(action, "slots"):
        return action.fcurves
    from bpy_extras import anim_utils

    if slot is None:
        slot = action.slots[0] if len(action.slots) else None
    if slot is None:
        if not create:
            return ()
        slot = action.slots.new(id_type="KEY", name="Pose")
    bag = anim_utils.action_get_channelbag_for_slot(action, slot)
    if bag is None:
        if not create:
            return ()
        layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
        strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
        bag = strip.channelbag(slot, ensure=True)
    return bag.fcurves


def write_keys(action, keyframes):
    """Replace the action's curves of these parameters by {parameter: [Keyframe]}: each key's
    interpolation, and BEZIER keys' handles exactly as given (FREE, so Blender keeps them)."""
    curves = fcurves_of(action, create=True)
    for parameter, keys in keyframes.items():
        path = data_path(parameter)
        fcurve = curves.find(path)
        if fcurve is not None:
            curves.remove(fcurve)
        fcurve = curves.new(path)
        fcurve.keyframe_points.add(len(keys))
        for point, key in zip(fcurve.keyframe_points, keys):
            point.co = (key.frame, key.value)
            point.interpolation = key.interpolation
            if key.interpolation == "BEZIER":
                point.handle_left_type = point.handle_right_type = "FREE"
                point.handle_left = key.handle_left or (key.frame - 1.0 / 3.0, key.value)
                point.handle_right = key.handle_right or (key.frame + 1.0 / 3.0, key.value)
        fcurve.update()


def read_keys(action, slot=None):
    """{parameter: [Keyframe]} of an action's slider curves (what `write_keys` wrote); `slot`:
    the one a user's action plays for this Key, when it has several."""
    result = {}
    for fcurve in fcurves_of(action, slot=slot):
        parameter = parameter_of(fcurve.data_path)
        if parameter is None:
            continue
        result[parameter] = [
            Keyframe(point.co[0], point.co[1], point.interpolation,
                     tuple(point.handle_left) if point.interpolation == "BEZIER" else None,
                     tuple(point.handle_right) if point.interpolation == "BEZIER" else None)
            for point in fcurve.keyframe_points
        ]
    return result


def record_of(action):
    """What the timeline recorded on an action ({} for anybody else's, or a record damaged past
    reading: the strip is then no longer THA Studio's)."""
    if action is None or RECORD not in action.keys():
        return {}
    try:
        return readable_record(json.loads(action[RECORD]))
    except (TypeError, ValueError):
        return {}


def new_action(name, keyframes, record):
    action = bpy.data.actions.new(name)
    action[RECORD] = json.dumps(record)
    write_keys(action, keyframes)
    return action


# --- strips on the sprite's Key ----------------------------------------------------------------


def pose_key(obj):
    """The sprite's Key datablock, checked: the sliders exist and its NLA is not in tweak mode
    (strips cannot be added or removed then)."""
    sprites.sliders(obj)
    key = obj.data.shape_keys
    if key.animation_data is not None and key.animation_data.use_tweak_mode:
        raise TimelineError(f"{obj.name}: its pose is in NLA tweak mode; leave tweak mode (Tab in the NLA editor) first")
    return key


def timeline_strips(obj, kind=None):
    """[(track, strip, record)] of the timeline's strips on a sprite, bottom track first."""
    key = obj.data.shape_keys
    if key is None or key.animation_data is None:
        return []
    found = []
    for track in key.animation_data.nla_tracks:
        for strip in track.strips:
            record = record_of(strip.action)
            if record and (kind is None or record.get("kind") == kind):
                if record["kind"] in TIMED_IN_SECONDS:
                    record.setdefault("name", strip.name)  # (each is placed as a strip of its name)
                found.append((track, strip, record))
    return found


def animated_parameters(obj):
    """The sliders that anything on the sprite's Key animates (its active action or any strip)."""
    key = obj.data.shape_keys
    animation = key.animation_data if key else None
    if animation is None:
        return set()
    played = [(animation.action, _slot(animation))]
    played += [(strip.action, _slot(strip)) for track in animation.nla_tracks for strip in track.strips]
    return {name for action, slot in played if action is not None for name in read_keys(action, slot)}


def _slot(user):
    """The action slot an AnimData or NLA strip plays (None before Blender 4.4)."""
    return getattr(user, "action_slot", None)


def remove_strip(track, strip, animation):
    """Remove a strip, its action (when nothing else uses it) and its track if left empty."""
    action = strip.action
    track.strips.remove(strip)
    if action is not None and action.users == 0:
        bpy.data.actions.remove(action)
    if not len(track.strips) and track.name != REST_TRACK:
        animation.nla_tracks.remove(track)


def _tracks_named(animation, base):
    """The tracks called `base`, `base 2`, `base 3`, ... in that order."""
    tracks = {track.name: track for track in animation.nla_tracks}
    found, number = [], 1
    while True:
        name = base if number == 1 else f"{base} {number}"
        if name not in tracks:
            return found
        found.append(tracks[name])
        number += 1


def place_strip(key, base_track, name, action, start_frame, blend_type, extrapolation):
    """A strip of `action` starting at `start_frame` on the first `base_track` track with room for
    it (a new `base_track N` track when all are taken)."""
    animation = key.animation_data or key.animation_data_create()
    tracks = _tracks_named(animation, base_track)
    strip = None
    for track in tracks:
        try:
            strip = track.strips.new(name, int(start_frame), action)
            break
        except RuntimeError:  # no room on this track: lines overlap
            continue
    if strip is None:
        track = animation.nla_tracks.new()
        track.name = base_track if not tracks else f"{base_track} {len(tracks) + 1}"
        strip = track.strips.new(name, int(start_frame), action)
    strip.name = name  # Blender adds .001 only where another strip of this Key has the name
    strip.blend_type = blend_type
    strip.extrapolation = extrapolation
    strip.use_sync_length = False
    return strip


def ensure_rest(obj, values):
    """Hold these sliders at {parameter: value} wherever no other strip covers them (the bottom
    track; see the module's text). Returns the rest strip."""
    key = pose_key(obj)
    for track, strip, record in timeline_strips(obj, "rest"):
        action = strip.action
        known = read_keys(action)
        missing = {name: value for name, value in values.items()
                   if name not in known or abs(known[name][0].value - value) > 1e-9}
        if missing:
            write_keys(action, _rest_keys(missing))
        return strip
    # Made again (deleted by hand): it holds what the strips already there animate, too.
    every = {name: 0.0 for _, strip, _ in timeline_strips(obj) for name in read_keys(strip.action)}
    action = new_action(f"{obj.name} rest", _rest_keys({**every, **values}), {"kind": "rest"})
    animation = key.animation_data or key.animation_data_create()
    track = animation.nla_tracks.new()
    track.name = REST_TRACK
    strip = track.strips.new(REST_TRACK, 0, action)
    strip.name = REST_TRACK  # (Blender before 5.0 names a new strip after its action)
    strip.extrapolation = "HOLD"
    strip.blend_type = "REPLACE"
    _lift_tracks_above(animation, track)
    return strip


# What a copied strip takes from the original (frame_*_raw last: they set the range as it was).
_STRIP_SETTINGS = ("action_frame_start", "action_frame_end", "scale", "repeat", "frame_start_raw", "frame_end_raw",
                   "extrapolation", "blend_type", "blend_in", "blend_out", "use_auto_blend", "influence",
                   "use_animated_influence", "use_animated_time", "use_animated_time_cyclic", "strip_time", "mute",
                   "use_reverse", "use_sync_length")
_TRACK_SETTINGS = ("mute", "lock", "is_solo")


def _lift_tracks_above(animation, bottom):
    """Make `bottom` the lowest track: the Python API adds tracks on top only, so every track
    that was below it is copied above it, in order, and removed (the rest track must be lowest;
    this runs when it is made on a Key that already had tracks, or made again after a delete)."""
    tracks = list(animation.nla_tracks)
    below = tracks[:tracks.index(bottom)]
    if not below:
        return
    previous = tracks[-1]
    for old in below:
        copy = animation.nla_tracks.new(prev=previous)
        copies = [(_copy_strip(copy, strip), strip.name) for strip in old.strips]
        name = old.name
        settings = {attribute: getattr(old, attribute) for attribute in _TRACK_SETTINGS}
        animation.nla_tracks.remove(old)
        copy.name = name
        for strip, strip_name in copies:  # the names are free now (a Key's strip names are unique)
            strip.name = strip_name
        for attribute, value in settings.items():
            setattr(copy, attribute, value)
        previous = copy


def _copy_strip(track, strip):
    copy = track.strips.new(strip.name, int(math.floor(strip.frame_start)), strip.action)
    if hasattr(strip, "action_slot") and strip.action_slot is not None:
        copy.action_slot = strip.action_slot
    for attribute in _STRIP_SETTINGS:
        if hasattr(strip, attribute):
            setattr(copy, attribute, getattr(strip, attribute))
    for fcurve in strip.fcurves:  # animated influence or time
        target = copy.fcurves.find(fcurve.data_path)
        if target is None:
            continue
        target.keyframe_points.clear()
        for point in fcurve.keyframe_points:
            new = target.keyframe_points.insert(point.co[0], point.co[1])
            new.interpolation = point.interpolation
    return copy


def _rest_keys(values):
    return {name: [Keyframe(0.0, float(value), "CONSTANT"), Keyframe(1.0, float(value), "CONSTANT")]
            for name, value in values.items()}


def check_parameters(obj, parameters, what):
    known = sprites.sliders(obj)
    missing = [name for name in parameters if name not in known]
    if missing:
        raise TimelineError(f"{obj.name}: {what} keys {', '.join(missing)}, which its "
                            f"{sprites.settings_of(obj).schema.upper()} sliders do not have")


def _active_overrides(key, parameters):
    """Parameters that the Key's active action also animates (it plays over every strip)."""
    action = key.animation_data.action if key.animation_data else None
    if action is None:
        return []
    return [name for name in read_keys(action, _slot(key.animation_data)) if name in parameters]


def whole_frame(value, what):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or value != int(value):
        raise TimelineError(f"{what} must be a whole frame number, got {value!r}")
    # Outside Blender's frames, keys and strips are refused or clamped: the line would not play there.
    if not MIN_FRAME <= value <= MAX_FRAME:
        raise TimelineError(f"{what} {int(value):,} is outside Blender's frames {MIN_FRAME:,} to {MAX_FRAME:,}")
    return int(value)


def fit_scene(scene, last_frame, extend_scene, what):
    """(old end, new end) when the scene must grow to hold `last_frame`, else None; a
    TimelineError when it must not grow."""
    needed = int(math.ceil(last_frame - 1e-6))
    if needed <= scene.frame_end:
        return None
    if needed > MAX_FRAME:  # Blender would clamp the scene's end there
        raise TimelineError(f"{what} runs to frame {needed:,}, past Blender's last frame ({MAX_FRAME:,}); start it earlier")
    if not extend_scene:
        raise TimelineError(f"{what} runs to frame {needed}, past the scene's end (frame {scene.frame_end}); "
                            f"start it earlier, lengthen the scene, or let it extend the scene")
    return (scene.frame_end, needed)


# --- sound -------------------------------------------------------------------------------------


def audio_seconds(path):
    """The length of an audio file as Blender reads it (TimelineError naming the file when it cannot)."""
    path = Path(path)
    if not path.is_file():
        raise TimelineError(f"{path}: no such audio file")
    if not getattr(bpy.app.build_options, "audaspace", True):
        # (Blender as a Python module, some versions: every sound would look unreadable.)
        raise TimelineError(f"{path}: this Blender was built without audio (Audaspace), so it cannot play the "
                            f"line's sound; lip-sync it in a Blender that plays sound")
    sound = bpy.data.sounds.load(str(path), check_existing=False)
    try:
        rate = sound.samplerate
        frames = _sound_frames(sound)
    finally:
        bpy.data.sounds.remove(sound)
    if not rate or frames is None:
        raise TimelineError(f"{path}: Blender cannot read this file as audio (not wav, ogg, flac or another "
                            f"format it knows, or damaged)")
    return frames / rate if frames else None


def _sound_frames(sound):
    """Sample count of a loaded sound, or 0 where this Blender does not tell (None: unreadable)."""
    if sound.channels == "INVALID":
        return None
    try:
        import aud

        length = aud.Sound(bpy.path.abspath(sound.filepath)).length
        return max(length, 0)  # negative where the file does not say (a FLAC written to a pipe)
    except Exception:  # noqa: BLE001 - aud is missing on some Linux builds; the strip length tells then
        return 0


def sequencer_strips(editor):
    return editor.strips if hasattr(editor, "strips") else editor.sequences  # 'sequences' before 4.4


def free_channel(editor, first_frame, last_frame):
    """The lowest sequencer channel with nothing between these frames."""
    taken = {}
    for strip in sequencer_strips(editor):
        taken.setdefault(strip.channel, []).append((strip.frame_final_start, strip.frame_final_end))
    channel = 1
    while any(start < last_frame and end > first_frame for start, end in taken.get(channel, ())):
        channel += 1
    return channel


def _add_sound(scene, name, audio_path, start_frame, length_frames):
    editor = scene.sequence_editor or scene.sequence_editor_create()
    channel = free_channel(editor, start_frame, start_frame + max(length_frames, 1))
    sound = sequencer_strips(editor).new_sound(name, str(audio_path), channel, int(start_frame))
    if scene.sync_mode != "AUDIO_SYNC":
        scene.sync_mode = "AUDIO_SYNC"  # playback drops frames to stay with the sound: heard in sync
    return sound


def _all_strips(editor):
    """Every strip, those grouped into meta strips too ('sequences_all' before 4.4)."""
    return editor.strips_all if hasattr(editor, "strips_all") else editor.sequences_all


def _holder_of(editor, strip):
    """The strip collection holding a strip: the editor's own, or a meta strip's."""
    for meta in _all_strips(editor):
        if meta.type == "META" and strip.name in sequencer_strips(meta):
            return sequencer_strips(meta)
    return sequencer_strips(editor)


def _remove_sound(scene, name):
    editor = scene.sequence_editor
    if editor is None or not name:
        return
    strip = _all_strips(editor).get(name)
    if strip is not None:
        strips = _holder_of(editor, strip)
        sound = strip.sound
        strips.remove(strip)
        if sound is not None and sound.users == 0:
            bpy.data.sounds.remove(sound)


# --- lines of dialogue -------------------------------------------------------------------------


class PlacedLine(tuple):
    """(NLA strip, sound strip or None), with what was done: `name`, `first_frame`,
    `last_frame`, `track` (the NLA track's name), `replaced` (a line of that name was there),
    `scene_end` ((old, new) when the scene was lengthened, else None), `warnings`, `message`."""

    def __new__(cls, strip, sound, **info):
        placed = super().__new__(cls, (strip, sound))
        placed.__dict__.update(info)
        return placed


def find_line(obj, name):
    """(track, strip, record) of a sprite's line, or None."""
    for found in timeline_strips(obj, "line"):
        if found[2].get("name") == name:
            return found
    return None


def line_names(obj):
    return [record["name"] for _, _, record in timeline_strips(obj, "line")]


def remove_line(scene, obj, name, keep_sound=None):
    """Remove a line's strip, action and sound strip (not a sound strip the animator had placed
    and the line was made from, nor the strip named `keep_sound`); False when there is no such
    line."""
    found = find_line(obj, name)
    if found is None:
        return False
    track, strip, record = found
    if not record.get("adopted") and record.get("sound") != keep_sound:
        _remove_sound(scene, record.get("sound"))
    remove_strip(track, strip, obj.data.shape_keys.animation_data)
    return True


def find_sound_strip(scene, name):
    """The scene's sound strip of that name (in a meta strip too); TimelineError when there is none."""
    editor = scene.sequence_editor
    strip = _all_strips(editor).get(name) if editor is not None else None
    if strip is None or strip.type != "SOUND" or strip.sound is None:
        raise TimelineError(f"{scene.name} has no sound strip called {name!r}")
    return strip


def selected_sound_strips(scene):
    """The names of the scene's selected sound strips (those in meta strips too)."""
    editor = scene.sequence_editor
    return [strip.name for strip in _all_strips(editor) if strip.type == "SOUND" and strip.select] if editor else []


def recording_of_strip(strip):
    """(the file a sound strip plays, a temporary folder to remove after or None): a sound packed
    into the .blend is written to a temporary folder first."""
    sound = strip.sound
    named = Path(sound.filepath).name if sound.filepath else ""
    if sound.packed_file is not None:
        folder = tempfile.TemporaryDirectory(prefix="tha_studio_audio_")
        written = named if Path(named).suffix else f"{bpy.path.clean_name(sound.name)}.wav"
        path = Path(folder.name) / portable_name(written)
        path.write_bytes(sound.packed_file.data)
        return path, folder
    path = Path(bpy.path.abspath(sound.filepath, library=sound.library))
    if not path.is_file():
        raise TimelineError(f"the sound strip {strip.name!r} plays {path}, which is not there")
    return path, None


def _line_of_sound(scene, strip_name):
    """(sprite, line name) of the line whose sound is this strip, or None."""
    for obj in sprites.sprites_in(scene):
        for _track, _strip, record in timeline_strips(obj, "line"):
            if record.get("sound") == strip_name:
                return obj, record.get("name")
    return None


@dataclass(frozen=True)
class Playback:
    """How a sound strip plays its recording, from its `frame_start` on: `speed` frames of it a
    frame, and `ahead` frames of it more than that speed alone reaches (the segments before a
    retimed one, played at their own speed). `known`: False where Blender does not tell add-ons
    (a strip retimed in several segments), `speed` then their mean."""

    speed: float = 1.0
    ahead: float = 0.0
    known: bool = True

    def as_record(self):
        return [self.speed, self.ahead]


def playback_of(sound, seconds, fps):
    """How a sound strip plays its recording (`seconds` long, as many frames as Blender rounds
    that to): as recorded, unless it is retimed (Strip > Retiming > Set Speed). Blender's Python
    tells a retiming key's frame, not its speed; a strip's frames tell it:

    - one segment (two keys): the part of the recording it holds (less what a split left out)
      over the frames that part now takes, the speed Blender's mixdown plays it at;
    - trimmed, then retimed (Blender keys the trim): the segments before the trim keep their
      speed of 1 (Set Speed changes the one it is given), the last one plays the rest;
    - retimed otherwise in several segments: unknown, their mean."""
    keys = _retiming_frames(sound)
    if len(keys) < 2 or not is_number(seconds) or seconds <= 0 or sound.frame_duration <= 0:
        return Playback()
    held = max(1, round(seconds * fps)) - sound.animation_offset_start - sound.animation_offset_end
    if held <= 0:
        return Playback()
    if len(keys) == 2:
        return Playback(held / sound.frame_duration)
    last = keys[-2]  # (the last segment's first key)
    if (not sound.animation_offset_start and last <= sound.frame_final_start + 1e-6
            and keys[-1] > last and held > last - keys[0]):
        speed = (held - (last - keys[0])) / (keys[-1] - last)
        return Playback(speed, (last - keys[0]) * (1.0 - speed))
    return Playback(held / sound.frame_duration, known=False)


def _retiming_frames(sound):
    """The frames of a sound strip's retiming keys. Blender 5.0's `timeline_frame` counts them from
    the Sequencer's first strip (at its rate) wherever there are several, not from their own: a
    line's sound after another strip read as neither trimmed nor at one speed. The first key is
    where the strip's content starts and the last `frame_duration` after, which places the others."""
    frames = [key.timeline_frame for key in sound.retiming_keys]
    if len(frames) < 2 or frames[-1] == frames[0]:
        return frames
    scale = sound.frame_duration / (frames[-1] - frames[0])
    return [sound.frame_start + (frame - frames[0]) * scale for frame in frames]


def _keys_from_start(sound):
    """A sound strip's retiming keys, in frames from its `frame_start` (they move with it)."""
    return [frame - sound.frame_start for frame in _retiming_frames(sound)]


def _span_from_start(sound):
    """The frames a sound strip plays, [first, end) from its `frame_start`."""
    return [sound.frame_final_start - sound.frame_start, sound.frame_final_end - sound.frame_start]


def line_playback(sound, seconds, fps, seen=None):
    """(Playback, segment): how a line's sound strip plays its recording, where `playback_of`
    cannot tell from the strip alone what the line's record saw (`seen`, `seen_retiming`).

    A part cut from a take with K (a soft cut: the rest of the take trimmed off, not cut away),
    then Set Speed: Blender keys both trims, gives the segment between them the speed and leaves
    the keys after it where they were, so the segment after takes up the difference, and its
    Python tells no key's place in the recording. Seen before, the segment's keys held what the
    strip played at its trims (the first key the part's first frame, the moved one the frame at
    its end, or at an earlier key), which the line's record knows: the segment remembered,
    [first key, last key, recording frames at each] (past a hard cut's), gives the speed for as
    long as those keys stay (where the moved key would pass the next one, Blender stops it a frame
    short, and the segment plays at what its keys then give: 0.61 for a 50% asked, as its mixdown
    plays it). The segment is None where neither tells (the playback then unknown)."""
    playback = playback_of(sound, seconds, fps)
    if playback.known or seen is None or seen["fps"] != fps:
        return playback, None
    keys = _keys_from_start(sound)
    segment = _remembered_segment(keys, seen.get("segment")) or _segment_set_since(sound, keys, seen)
    if segment is None:
        return playback, None
    first, last, played_first, played_last = segment
    speed = (played_last - played_first) / (last - first)
    if not speed > 0:
        return playback, None
    return Playback(speed, played_first - first * speed), segment


def _remembered_segment(keys, segment):
    """`segment` where its keys are still two neighbours of `keys`, else None."""
    if segment is None:
        return None
    first, last = segment[:2]
    if any(abs(left - first) < 1e-3 and abs(right - last) < 1e-3 for left, right in zip(keys, keys[1:])):
        return segment
    return None


def _segment_set_since(sound, keys, seen):
    """The segment Set Speed retimed since `seen`, where the strip played at one known speed and
    nothing else changed: the segment from the key at its first frame to the next, which held
    what the strip played there, and at the first of its old keys past that frame or else at its
    end frame (where Blender keyed the trim before moving it). A key still at the end frame with
    others before it was added (Add Retiming Key keys the trims too, and moves none): not a Set
    Speed, and what its keys' segments play is not known."""
    if "playback" not in seen:
        return None  # (not known all over the frames played: nothing to tell the keys' words by)
    (start, end), old_keys = seen["span"], seen["keys"]
    if any(abs(now - then) > 1e-3 for now, then in zip(_span_from_start(sound), seen["span"])):
        return None  # (trimmed or moved as well: not a Set Speed alone)
    for left, right in zip(keys, keys[1:]):
        if abs(left - start) < 1e-3 and right > left:
            if abs(right - end) > 1e-3 and any(abs(key - end) < 1e-3 for key in keys):
                return None  # (keyed at its end and between, not moved: Add Retiming Key, then maybe a drag)
            held_to = min([key for key in old_keys if start + 1e-3 < key < end - 1e-3] + [end])
            speed, ahead = seen["playback"]
            return [left, right, start * speed + ahead, held_to * speed + ahead]
    return None


def _keys_changed(sound, seen):
    """Whether a sound strip's retiming keys moved since `seen` (a record without it: no)."""
    if seen is None:
        return False
    keys, old = _keys_from_start(sound), seen["keys"]
    return len(keys) != len(old) or any(abs(now - then) > 1e-3 for now, then in zip(keys, old))


def seen_retiming(sound, fps, playback, segment=None):
    """What a line's record keeps of its sound strip's retiming for `line_playback` to follow the
    next Set Speed: the keys, the frames played, and the playback where it is known all over them."""
    seen = {"fps": fps, "keys": _keys_from_start(sound), "span": _span_from_start(sound)}
    if segment is not None:
        seen["segment"] = segment
        if (past := played_past_segment(sound, segment)) is not None:
            seen["past"] = past
    elif not playback.known:
        seen["unknown"] = [len(seen["keys"]) - 1, playback.speed]
    if playback.known and "past" not in seen:
        seen["playback"] = playback.as_record()
    return seen


def unknown_speeds(name, segments, mean):
    """Words for a sound strip retimed in `segments` segments whose speeds no one can tell."""
    return (f"the sound strip {name!r} is retimed in {segments} segments, whose speeds Blender does not tell "
            f"add-ons: the line follows their mean speed ({mean:.3g}x), the words off where the speeds differ; "
            f"Strip > Retiming > Reset, then Set Speed, to have them where it plays them (the line follows a "
            f"speed set while it is there)")


def retiming_note(record):
    """What the panel says of a line whose sound strip's speed it cannot follow, or None."""
    seen = record.get("retiming", {})
    if "past" in seen:
        return (f"its sound strip plays on past its retimed part, into the take's next words: trim its end "
                f"to frame {seen['past']:g}")
    if "unknown" in seen:
        segments, mean = seen["unknown"]
        return unknown_speeds(record.get("sound", ""), int(segments), mean)
    return None


def played_past_segment(sound, segment):
    """The frame where a strip's remembered retimed segment ends, where the strip plays on past
    it (sped up, a part cut with K plays on into the take's next words); else None."""
    if segment is None or sound.frame_final_end <= sound.frame_start + segment[1] + 1e-3:
        return None
    return sound.frame_start + segment[1]


def _lead_frames(sound, fps, playback=Playback()):
    """Frames of a sound strip's recording before what it plays at its `frame_start` (where its
    line's keys start): the right part of a hard split (Shift+K) or a hold offset starts into the
    recording (`animation_offset_start`), and a sound offset of s seconds plays it s seconds
    later (as Blender's mixdown of such a strip plays it: s seconds of the timeline, where a
    retimed strip plays `playback.speed` times as many frames of its recording)."""
    return sound.animation_offset_start + playback.ahead - sound.sound_offset * fps * playback.speed


def _heard_frames(sound, fps, playback=Playback()):
    """[first, end) frames of a sound strip's recording that it plays, from the recording's start."""
    lead = _lead_frames(sound, fps, playback)
    return [_frame_number((sound.frame_final_start - sound.frame_start) * playback.speed + lead),
            _frame_number((sound.frame_final_end - sound.frame_start) * playback.speed + lead)]


def _frame_number(frames):
    """A whole number of frames as an int; a fraction (a sound offset's) to a millionth."""
    return int(round(frames)) if abs(frames - round(frames)) < 1e-6 else round(frames, 6)


def _heard_track(whole, sound, fps, playback=Playback()):
    """The line's cues as its sound strip plays its recording: the mouth closed where the strip
    is trimmed, its times from the strip's `frame_start`, at the strip's speed."""
    heard = whole.heard_between(*(frames / fps for frames in _heard_frames(sound, fps, playback)))
    return heard.shifted(-_lead_frames(sound, fps, playback) / fps).scaled(1.0 / playback.speed)


def _recording_seconds(record):
    """The seconds of an adopted line's recording: as the line was placed, or (a line placed
    before they were kept) its cues' length."""
    return record.get("seconds") if is_number(record.get("seconds")) else record.get("duration")


def _adopted_trim(obj, record):
    """(the whole CueTrack, CurveSettings, MouthMapping) that an adopted line is keyed from as its
    sound strip plays it; None where its record holds none that reads (a line older than trims
    being followed, or a damaged one: it then keeps its keys)."""
    trim = trim_of(record)
    if trim is None:
        return None
    whole, settings, mapping_values = trim
    try:
        return whole, settings, MouthMapping(sprites.settings_of(obj).schema, mapping_values)
    except MappingError:
        return None


def _fit_adopted_line(scene, obj, strip, record, sound, trim):
    """Key an adopted line (place_line's `adopt_sound`) for its sound strip as it is now: the
    words where the strip plays them (trimmed, split, slipped or moved since; the mouth closed
    where nothing is heard), at the scene's frame rate, the line's NLA strip on just the frames
    the sound strip plays, so lines cut from one take lie side by side on one sprite (placed
    again where its frames changed). Updates the record."""
    whole, settings, mapping = trim
    fps = scene_fps(scene)
    playback, segment = line_playback(sound, _recording_seconds(record), fps, record.get("retiming"))
    start = float(sound.frame_start)
    settings = dataclasses.replace(settings, frame_rate=fps, start_frame=start)
    action = strip.action
    write_keys(action, mouth_curves(_heard_track(whole, sound, fps, playback), settings, mapping).keyframes)
    first, end = int(sound.frame_final_start), int(sound.frame_final_end)
    _set_frame_range(action, first, end)
    if (strip.frame_start, strip.frame_end, strip.action_frame_start, strip.action_frame_end,
            strip.scale, strip.repeat) != (first, end, first, end, 1.0, 1.0):
        _place_again(obj, strip, first)
    record["keys"].update(fps=fps, start=start)
    record.update(fps=fps, frame=first, sound_frame=int(round(sound.frame_start)),
                  heard=_heard_frames(sound, fps, playback), playback=playback.as_record(),
                  retiming=seen_retiming(sound, fps, playback, segment))


def _set_frame_range(action, first, end):
    """The action's manual frame range: what an NLA strip made of it covers."""
    action.use_frame_range = True
    if first >= action.frame_end:  # (Blender keeps the end after the start)
        action.frame_end = end
        action.frame_start = first
    else:
        action.frame_start = first
        action.frame_end = end


# What an animator may have set on a line's NLA strip, kept when it is placed again.
_STRIP_SETTINGS = ("mute", "influence", "use_animated_influence", "blend_in", "blend_out", "use_auto_blend", "select")


def _place_again(obj, strip, first):
    """The line's NLA strip placed anew from `first` over its action's frame range, on the first
    track of lines with room (a neighbour may now be in the way), as the animator had set it."""
    key = pose_key(obj)
    animation = key.animation_data
    track = next(track for track in animation.nla_tracks if any(other == strip for other in track.strips))
    name, action = strip.name, strip.action
    kept = {setting: getattr(strip, setting) for setting in _STRIP_SETTINGS}
    blend_type, extrapolation = strip.blend_type, strip.extrapolation
    track.strips.remove(strip)  # (its action stays: bpy.data keeps a datablock of no users until saved)
    if not len(track.strips):
        animation.nla_tracks.remove(track)
    strip = place_strip(key, LINE_TRACK, name, action, first, blend_type, extrapolation)
    for setting, value in kept.items():
        setattr(strip, setting, value)
    return strip


def place_line(scene, obj, track, name, start_frame, audio_path=None, curve_settings=None, mapping=None,
               extend_scene=True, adopt_sound=None, recording_seconds=None):
    """Put a line of dialogue (a CueTrack) on a sprite from `start_frame`: its mouth keys at the
    scene's frame rate in an action of its own, as an NLA strip named `name`, and the audio (if
    given) as a sound strip on the same frame. A line of that name already on the sprite is
    replaced (its strip, action and sound), nothing else. When the line (or its audio) runs past
    the scene's end the scene is lengthened (`extend_scene`, said in the result), else
    TimelineError. Returns a PlacedLine: (nla_strip, sound_strip_or_None) with what was done.

    `adopt_sound`: the name of a sound strip already in the Sequencer that the cues were made
    from, to be the line's sound instead of a new one: the line starts where the strip's
    recording starts (`start_frame` is not used), the mouth stays closed where the strip is
    trimmed (now, and when it is trimmed again: keep_sounds_with_lines), the words at the speed a
    retimed strip plays them (`recording_seconds`, the recording's length, tells it; default: the
    cues'), and removing the line leaves the strip."""
    if not isinstance(name, str) or not name.strip():
        raise TimelineError(f"a line needs a name, got {name!r}")
    adopted = None
    if adopt_sound is not None:
        adopted = find_sound_strip(scene, adopt_sound)
        owner = _line_of_sound(scene, adopted.name)
        if owner is not None and (owner[0] != obj or owner[1] != name):
            raise TimelineError(f"the sound strip {adopted.name!r} is the sound of {owner[0].name}'s line "
                                f"{owner[1]!r}: remove that line first")
        start_frame = int(round(adopted.frame_start))
        whole_track = track
        if not is_number(recording_seconds):
            recording_seconds = track.duration
        playback, segment = line_playback(adopted, recording_seconds, scene_fps(scene))
        track = _heard_track(track, adopted, scene_fps(scene), playback)
        audio_path = None
    start_frame = whole_frame(start_frame, "the line's start frame")
    key = pose_key(obj)
    fps = scene_fps(scene)
    settings = dataclasses.replace(curve_settings or CurveSettings(), frame_rate=fps, start_frame=float(start_frame))
    mapping = mapping or mouth_mapping(obj)
    check_parameters(obj, mapping.parameters, "the mouth mapping")
    if not len(track.cues):
        raise TimelineError(f"line {name!r} ({track.source or 'cues'}): no mouth cues to place")
    if not mapping.parameters:
        raise TimelineError(f"{obj.name}: its mouth mapping moves no parameter (every shape is empty)")
    curves = mouth_curves(track, settings, mapping)
    last_frame = curves.last_frame
    seconds = None
    if audio_path is not None:
        seconds = audio_seconds(audio_path)
        if seconds:
            last_frame = max(last_frame, start_frame + seconds * fps)
    if adopted is not None:
        last_frame = max(last_frame, adopted.frame_final_end - 1)
    scene_end = fit_scene(scene, last_frame, extend_scene, f"line {name!r}")

    # Checked: from here on the scene changes.
    replaced = remove_line(scene, obj, name, keep_sound=adopted.name if adopted is not None else None)
    ensure_rest(obj, {name_: value for name_, value in curves.rest.items()})
    # An adopted line covers just the frames its sound strip plays (lines cut from one take lie
    # side by side); its keys are on the scene's frames all the same.
    placed_at = start_frame if adopted is None else int(adopted.frame_final_start)
    action = new_action(f"{obj.name} line {name}", curves.keyframes,
                         {"kind": "line", "name": name, "source": track.source or "", "sound": "",
                          "frame": placed_at, "sound_frame": start_frame, "fps": fps})
    if adopted is not None:
        _set_frame_range(action, placed_at, int(adopted.frame_final_end))
    scene[LINES_FPS_PROPERTY] = fps
    strip = place_strip(key, LINE_TRACK, name, action, placed_at, "REPLACE", "NOTHING")
    sound = adopted
    if adopted is not None:
        record = record_of(action)
        record["sound"], record["adopted"] = adopted.name, True
        # What keep_sounds_with_lines needs to key the line again when the strip is trimmed anew.
        record["heard"], record["playback"] = _heard_frames(adopted, fps, playback), playback.as_record()
        record["cues"] = cue_rows(whole_track.contiguous().cues)
        record["duration"], record["closed"] = whole_track.duration, whole_track.closing_shape()
        record["seconds"] = recording_seconds
        record["retiming"] = seen_retiming(adopted, fps, playback, segment)
        record["keys"] = {"fps": fps, "start": start_frame, "style": settings.style, "blend": settings.blend,
                          "mapping": mapping.values}
        action[RECORD] = json.dumps(record)
    if audio_path is not None:
        sound = _add_sound(scene, f"{obj.name}: {name}", Path(audio_path).resolve(), start_frame,
                           int(math.ceil((seconds or 0.0) * fps)))
        analysed = max(track.duration or 0.0, track.end) * fps
        if not seconds and sound.frame_final_duration + 1 < analysed:
            # Blender cannot tell the length of a stream whose header leaves it out (a FLAC written
            # to a pipe) and makes its strip a frame long; lengthened, the strip plays all of it.
            sound.frame_final_duration = int(math.ceil(analysed))
        record = record_of(action)
        record["sound"] = sound.name
        if seconds:
            record["seconds"] = seconds  # (what a retimed strip's speed is told by)
        record["retiming"] = seen_retiming(sound, fps, Playback())
        action[RECORD] = json.dumps(record)
        last_frame = max(last_frame, sound.frame_final_end - 1)
        if scene_end is None and extend_scene:  # a Blender without `aud` tells the length only now
            scene_end = fit_scene(scene, last_frame, True, f"line {name!r}")
    if scene_end is not None:
        scene.frame_end = scene_end[1]
    warnings = []
    if adopted is not None and not playback.known:
        warnings.append(unknown_speeds(adopted.name, len(adopted.retiming_keys) - 1, playback.speed))
    overridden = _active_overrides(key, mapping.parameters)
    if overridden:
        warnings.append(f"{obj.name}'s own keys on {', '.join(overridden)} play over the line "
                        f"(the active action); push them down to an NLA strip to hear the line move the mouth")
    track_name = _track_of(key, strip)
    message = (f"{'replaced' if replaced else 'placed'} line {name!r} on {obj.name}: frames {placed_at}-"
               f"{int(math.ceil(last_frame))}, {len(track.cues)} cues on the NLA track {track_name!r}"
               + (f", its sound the strip {sound.name!r}" if adopted is not None else
                  f", sound on channel {sound.channel}" if sound else ", no sound"))
    if scene_end is not None:
        message += f"; the scene now ends at frame {scene_end[1]} (was {scene_end[0]}) to hold it"
    return PlacedLine(strip, sound, name=name, first_frame=placed_at, last_frame=last_frame,
                      track=track_name, replaced=replaced, scene_end=scene_end,
                      warnings=warnings, message=message)


def _follow_adopted_sound(scene, obj, strip, record, sound):
    """An adopted line after its sound strip or its own NLA strip changed: the line moved by the
    animator takes its sound along; then, where the sound strip was moved, trimmed, split or
    slipped, or the scene's frame rate changed, the line is keyed again for it. True when
    anything changed, False when nothing did (looked at without reading the line's cues: this
    runs on every update), None where the record holds no trim to key from (a line older than
    trims being followed, or a damaged one), with nothing done. While the sprite's NLA is in
    tweak mode no strip can be placed: the line follows when it is left."""
    if obj.data.shape_keys.animation_data.use_tweak_mode:
        return False
    fps = scene_fps(scene)
    line_start, sound_start = int(round(strip.frame_start)), int(round(sound.frame_start))
    last_line, last_sound = record.get("frame"), record.get("sound_frame")
    moved = line_start != last_line and sound_start == last_sound and last_line is not None
    playback, _ = line_playback(sound, _recording_seconds(record), fps, record.get("retiming"))
    if not (moved or sound_start != last_sound or _heard_frames(sound, fps, playback) != record.get("heard")
            or playback.as_record() != record.get("playback", Playback().as_record())
            or _keys_changed(sound, record.get("retiming"))
            or not is_number(record.get("fps")) or not math.isclose(record["fps"], fps, rel_tol=1e-9)):
        return False
    trim = _adopted_trim(obj, record)
    if trim is None:
        return None
    if moved:  # (G on the line in the NLA editor)
        sound.frame_start = sound.frame_start + line_start - last_line
    _fit_adopted_line(scene, obj, strip, record, sound, trim)
    return True


def _follow_speed(track, strip, record, sound, fps):
    """A line's own sound strip retimed (Set Speed) since the line was keyed: its NLA strip is
    scaled by the change of speed and moved by the change of what plays ahead of it (a strip
    trimmed, then retimed: the part trimmed off keeps speed 1), so its keys stay on the words
    it plays. True where it was. A strip retimed in several segments otherwise is followed where
    the record saw the segment retimed (`line_playback`), else not (the panel says so:
    `retiming_note`).

    Where another strip of its track is in the way, nothing moves: the record keeps the speed the
    keys are for and notes the one it waits for (`unfollowed`, shown on the line in the panel),
    and the line follows on the first update that finds room (or goes back to that speed)."""
    playback, segment = line_playback(sound, record.get("seconds"), fps, record.get("retiming"))
    speed, ahead = record.get("playback", [record.get("speed", 1.0), 0.0])  # ("speed": a line kept so before)
    if "retiming" in record or not playback.known:  # (a line placed before: kept from its first retime on)
        record["retiming"] = seen_retiming(sound, fps, playback, segment)
    if not (playback.known and is_number(speed) and speed > 0):
        return False
    if math.isclose(playback.speed, speed, rel_tol=1e-9) and math.isclose(playback.ahead, ahead, abs_tol=1e-9):
        record.pop("unfollowed", None)
        return False
    # The recording's frame c plays at frame_start + (c - ahead) / speed: c's key goes there.
    start, scale, ratio = strip.frame_start, strip.scale, speed / playback.speed
    wanted = start + ahead / speed - playback.ahead / playback.speed
    end = wanted + (strip.frame_end - start) * ratio
    # (checked first: the NLA refuses a strip onto another, and pushes a later one along as a strip grows)
    if any(other != strip and other.frame_start < end - 1e-3 and other.frame_end > wanted + 1e-3
           for other in track.strips):
        record["unfollowed"] = playback.as_record()
        return False
    # Each step within the strip's span before or after: moved left first, scaled first to the right.
    steps = [("frame_start_ui", wanted), ("scale", scale * ratio)]
    for name, value in steps if wanted < start else reversed(steps):
        setattr(strip, name, value)
    if abs(strip.frame_start - wanted) > 1e-3:  # (refused all the same: put back)
        strip.frame_start_ui, strip.scale = start, scale
        record["unfollowed"] = playback.as_record()
        return False
    record["playback"] = playback.as_record()
    record.pop("speed", None)
    record.pop("unfollowed", None)
    return True


def waiting_note(record):
    """What the panel says of a line whose retimed sound it could not follow (`_follow_speed`), or None."""
    if "unfollowed" not in record:
        return None
    return (f"its sound now plays at {record['unfollowed'][0]:.0%} speed, where another strip of its track is in the way: "
            "the line follows once there is room")


def keep_sounds_with_lines(scene):
    """A line is its NLA strip and its sound strip: when an animator moves one (G in the NLA editor
    or in the Sequencer), move the other by as many frames, so the mouth stays on the words. The
    depsgraph handler's body; the line's record keeps the frames both were last on, to tell which
    one moved (both moved together: nothing to do). A sound moved where its line cannot go (onto
    another strip of the line's track) goes back. A line placed before lines kept their sound is
    followed from its first move, keeping whatever offset the animator gave the two. A line's
    sound strip retimed (Set Speed; trimmed first too) scales the line's strip by as much; a line's
    strip scaled in time keeps its sound's speed.

    When the scene's frame rate changes, Blender keeps every strip's first frame and plays a sound
    over as many frames as its seconds now take, while a line's keys stay on their frames: the
    mouth would run ahead of (or behind) the words. Each line's strip (and each face-capture
    take's, a recording too) is scaled by the ratio of the rates, so its keys keep their times in
    seconds (the NLA moves a later strip of the track along when one grows into it, and that
    line's sound follows it). A line made from a sound strip of the animator's (place_line's
    `adopt_sound`) is keyed again for that strip as it plays whenever it changes (moved,
    trimmed, split, slipped, or the rate changed), the mouth closed where nothing is heard, its
    NLA strip on just the frames the sound strip plays. Returns the names of the lines and
    takes whose other strip was moved, that were rescaled or keyed again."""
    fps = scene_fps(scene)
    lines_fps = scene.get(LINES_FPS_PROPERTY)
    if not is_number(lines_fps) or lines_fps <= 0:
        lines_fps = None  # (a script's value: the lines' rate is not known, as before it was kept)
    rate_changed = lines_fps is not None and not math.isclose(lines_fps, fps, rel_tol=1e-9)
    editor = scene.sequence_editor
    sounds = _all_strips(editor) if editor is not None else {}
    if not len(sounds) and not rate_changed:
        return []  # (it runs on every depsgraph update: no look at the scene's objects then)
    moved, lines = [], 0
    for obj in sprites.sprites_in(scene):
        for track, strip, record in timeline_strips(obj):
            if record.get("kind") not in TIMED_IN_SECONDS:
                continue
            lines += 1
            changed = False  # (reported: a strip moved, rescaled or keyed again)
            before = dict(record)
            sound = sounds.get(record.get("sound") or "") if record.get("kind") == "line" else None
            action = strip.action
            followed = None
            if sound is not None and record.get("adopted"):
                followed = _follow_adopted_sound(scene, obj, strip, record, sound)
            if followed is not None:  # (keyed for its sound strip as it is now; its NLA strip may be placed anew)
                if followed:
                    moved.append(record["name"])
                    action[RECORD] = json.dumps(record)
                continue
            line_fps = record.get("fps")
            if not isinstance(line_fps, (int, float)) or line_fps <= 0:
                # A strip of a .blend made before strips followed the rate: timed at this one, as
                # far as anybody can tell now.
                record["fps"] = fps
            elif not math.isclose(line_fps, fps, rel_tol=1e-9):
                strip.scale = strip.scale * fps / line_fps
                record["fps"] = fps
                changed = True
            if sound is not None:
                line_start, sound_start = int(round(strip.frame_start)), int(round(sound.frame_start))
                last_line, last_sound = record.get("frame"), record.get("sound_frame")
                if last_line is not None and last_sound is not None:
                    if line_start != last_line and sound_start == last_sound:  # the line was moved
                        sound_start = last_sound + line_start - last_line
                        sound.frame_start = sound_start
                        changed = True
                    elif sound_start != last_sound and line_start == last_line:  # the sound was moved
                        # (from where it is: a line following a trimmed, retimed sound starts between frames)
                        was, wanted = strip.frame_start, strip.frame_start + sound_start - last_sound
                        strip.frame_start_ui = wanted
                        if abs(strip.frame_start - wanted) > 1e-3:  # the NLA keeps the strips of a track apart
                            strip.frame_start_ui = was
                            sound.frame_start = sound_start = last_sound
                        line_start = int(round(strip.frame_start))
                        changed = True
                if not record.get("adopted") and _follow_speed(track, strip, record, sound, fps):
                    line_start, changed = int(round(strip.frame_start)), True
                record["frame"], record["sound_frame"] = line_start, sound_start
                if record.get("adopted"):
                    # (no trim to follow: looked at once)
                    record["heard"] = _heard_frames(sound, fps, playback_of(sound, _recording_seconds(record), fps))
            if record != before:
                strip.action[RECORD] = json.dumps(record)
            if changed:
                moved.append(record.get("name", strip.name))
    if lines and (lines_fps is None or rate_changed):
        scene[LINES_FPS_PROPERTY] = fps
    elif not lines and lines_fps is not None:
        del scene[LINES_FPS_PROPERTY]  # (the last line removed: nothing to look at on each update)
    return moved


def _track_of(key, strip):
    for track in key.animation_data.nla_tracks:
        for candidate in track.strips:
            if candidate == strip:
                return track.name
    return ""


# --- the lip-sync job --------------------------------------------------------------------------


# The session's analyses: the lines cut from one take are analysed once (lipsync/analyses.py).
ANALYSES = AnalysisMemo()
# Where a saved .blend's analyses are kept for later sessions, in its tha_cache folder beside the
# sprites' bake folders; none of them is called so (a sprite's folder name has "_" for "-").
ANALYSES_FOLDER = "lipsync-analyses"


def analyses_folder():
    """The folder of the saved .blend's kept analyses, or None for an unsaved one (kept in memory)."""
    return Path(bpy.path.abspath(f"//{CACHE_FOLDER}/{ANALYSES_FOLDER}")) if bpy.data.filepath else None


@dataclass
class LipSyncResult:
    analyser: str  # "rhubarb", "built-in" or "cue file"
    source: str
    cue_track: object
    placed: PlacedLine
    unknown_words: list = dataclasses.field(default_factory=list)
    reused: bool = False  # the analysis of the same recording for an earlier line, reused

    @property
    def message(self):
        by = {"rhubarb": "analysed by Rhubarb Lip Sync", "built-in": "analysed by the built-in analyser",
              "cue file": "read from the cue file"}[self.analyser]
        if self.reused:
            by += " (for an earlier line: the same recording, reused)"
        return f"{Path(self.source).name}: {by}; {self.placed.message}"


def source_kind(path):
    """"audio" or "cues" by the file's extension (TimelineError for anything else)."""
    suffix = Path(path).suffix.lower()
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    if suffix in CUE_EXTENSIONS:
        return "cues"
    raise TimelineError(f"{path}: not dialogue audio ({', '.join(AUDIO_EXTENSIONS)}) or a Rhubarb cue file "
                        f"({', '.join(sorted(CUE_EXTENSIONS))})")


class LipSyncJob(Job):
    """A line of dialogue onto a sprite, as a job (jobs.py): audio is analysed by Rhubarb Lip Sync
    when it is found (`rhubarb`: its path, else the one on PATH; a path given but wrong is an
    error), else by the built-in analyser, one piece a step; a cue file is read. Then `place_line`.
    `result` is a LipSyncResult. Everything that can fail on the input fails before the scene changes.

    `audio`: the sound strip's file for a cue file (default: the recording the file names, when
    it exists). `name`: the line's name (default: the source file's name without extension).
    `sound_strip`: instead of a source, the name of a sound strip in the Sequencer: its recording
    is analysed and the strip becomes the line's sound (place_line's `adopt_sound`); the line is
    named after the strip, or keeps the name of the line the strip is already the sound of."""

    def __init__(self, scene, obj, source=None, dialog=None, start_frame=1, rhubarb=None, name=None, audio=None,
                 curve_settings=None, mapping=None, recognizer="auto", extend_scene=True, sound_strip=None):
        super().__init__()
        self.scene_name = scene.name
        self.object_name = obj.name
        self.sound_strip = sound_strip
        self._unpacked = None  # a temporary folder holding a sound packed into the .blend
        if sound_strip is not None:
            strip = find_sound_strip(scene, sound_strip)
            source, self._unpacked = recording_of_strip(strip)
            owner = _line_of_sound(scene, strip.name)
            name = name or (owner[1] if owner is not None and owner[0] == obj else strip.name)
            start_frame = int(round(strip.frame_start))
            audio = None
        elif source is None:
            raise TimelineError("lip sync: give a recording or cue file, or a sound strip")
        self.source = Path(source)
        self.dialog = dialog
        self.start_frame = start_frame
        self.rhubarb = rhubarb
        self.name = name or self.source.stem
        self.audio = Path(audio) if audio else None
        self.curve_settings = curve_settings
        self.mapping = mapping
        self.recognizer = recognizer
        self.extend_scene = extend_scene
        self.title = f"Lip sync of {self.source.name}"
        self.analyser = None
        self._inner = None
        self._track = None
        self._decoded = None  # the WAV copy of an .m4a, .mp4, ... while it is analysed
        self._analysis_key = None  # what the analysis is kept under in ANALYSES
        self._unknown, self._notes, self._reused = [], [], False
        self._seconds = None  # the recording's length, for the speed of a retimed sound strip

    def _targets(self):
        scene = bpy.data.scenes.get(self.scene_name)
        obj = bpy.data.objects.get(self.object_name)
        if scene is None or obj is None or not sprites.is_sprite(obj):
            raise TimelineError(f"lip sync of {self.source.name}: the sprite {self.object_name!r} or the scene "
                                f"{self.scene_name!r} is gone")
        return scene, obj

    def _start(self):
        scene, obj = self._targets()
        pose_key(obj)
        whole_frame(self.start_frame, "the line's start frame")
        mapping = self.mapping or mouth_mapping(obj)  # a damaged mapping is reported before any work
        check_parameters(obj, mapping.parameters, "the mouth mapping")
        if source_kind(self.source) == "cues":
            self.analyser = "cue file"
            self._track = read_cues(self.source, frame_rate=max(scene_fps(scene), 24.0))
            if self.audio is None:
                self.audio = self._recording_of(self._track)
            seconds = audio_seconds(self.audio) if self.audio is not None else None
            self._check_length(scene, max(seconds or 0.0, self._track.duration, self._track.end))
            return
        if self.sound_strip is None:
            self.audio = self.audio or self.source
        # Unreadable or too long audio is reported before Rhubarb or the analyser starts.
        self._seconds = audio_seconds(self.source)
        self._check_length(scene, self._seconds or 0.0)
        executable = find_rhubarb(self.rhubarb) if self.rhubarb else find_rhubarb()
        self.analyser = "rhubarb" if executable is not None else "built-in"
        self._analysis_key = ANALYSES.key(self.source, analyser_identity(executable), self.recognizer, self.dialog)
        kept = ANALYSES.get(self._analysis_key, analyses_folder())
        if kept is not None:  # (a line cut from the same take: its analysis as this strip hears it)
            self._track, self._unknown = kept.track, list(kept.unknown_words)
            self._notes = [f"{self.source.name}: {note}" for note in kept.notes]
            self._reused = True
            self._remove_copies()
            return
        analysed = self.source
        if decoded_by_blender(self.source):  # the sound strip still plays the recording itself
            self._decoded = DecodedRecording(self.source)
            analysed = self._decoded.path
        try:
            if executable is not None:
                recognizer = "phonetic" if self.recognizer == "phonetic" else "words"
                self._inner = RhubarbJob(analysed, executable, recognizer, self.dialog)
            else:
                self._inner = Analysis(analysed, self.recognizer, self.dialog)
            self._inner.start()
        except BaseException:
            self._remove_copies()
            raise
        self.progress = Progress(0.0, f"{self.analyser} analysis")

    def _remove_copies(self):
        """Remove the temporary copies the analysis read (decoded, unpacked)."""
        if self._decoded is not None:
            self._decoded.remove()
            self._decoded = None
        if self._unpacked is not None:
            self._unpacked.cleanup()
            self._unpacked = None

    def _check_length(self, scene, seconds):
        fit_scene(scene, int(self.start_frame) + seconds * scene_fps(scene), self.extend_scene, f"line {self.name!r}")

    def _recording_of(self, track):
        """The recording a cue file names, where it exists (relative names from the file's folder)."""
        if not track.sound_file:
            return None
        named = Path(track.sound_file)
        for candidate in (named, self.source.parent / named, self.source.parent / named.name):
            if candidate.is_file():
                return candidate
        return None

    def _step(self):
        if self._inner is not None and not self._inner.done:
            try:
                progress = self._inner.step()
            except BaseException:
                self._remove_copies()
                raise
            if not self._inner.done:
                return Progress(0.95 * progress.fraction, progress.message)
        if self._track is None:
            result = self._inner.result
            self._track = getattr(result, "track", result)
            if self._decoded is not None:
                self._track = self._decoded.naming_the_recording(self._track)
            self._remove_copies()
            self._unknown = list(getattr(result, "unknown_words", []))
            self._notes = [f"{self.source.name}: {note}" for note in self._inner.notes]  # cut short, damaged
            ANALYSES.put(self._analysis_key, KeptAnalysis(self._track, tuple(self._unknown), tuple(self._inner.notes)),
                         analyses_folder())
        scene, obj = self._targets()
        placed = place_line(scene, obj, self._track, self.name, self.start_frame, self.audio,
                            self.curve_settings, self.mapping, self.extend_scene, adopt_sound=self.sound_strip,
                            recording_seconds=self._seconds)
        placed.warnings[:0] = self._notes
        return self.finish(LipSyncResult(self.analyser, str(self.source), self._track, placed, self._unknown,
                                         self._reused))

    def _stop(self):
        if self._inner is not None:
            self._inner.cancel()
        self._remove_copies()


class LipSyncStripsJob(Job):
    """Sound strips already in the Sequencer lip-synced onto a sprite, each by a LipSyncJob of its
    own (`sound_strip`), in time order, as one job: the dialogue an animator has laid out and
    trimmed becomes lines where it plays. `result` is the list of LipSyncResults; a failure
    leaves the lines already placed."""

    def __init__(self, scene, obj, strip_names, **options):
        super().__init__()
        if not strip_names:
            raise TimelineError("no sound strips to lip sync: select the dialogue's strips in the Sequencer")
        strips = sorted((find_sound_strip(scene, name) for name in strip_names),
                        key=lambda strip: (strip.frame_final_start, strip.name))
        self.scene_name, self.object_name = scene.name, obj.name
        self.strip_names = [strip.name for strip in strips]
        self.options = options
        self.title = f"Lip sync of {len(strips)} sound strip{'s' if len(strips) > 1 else ''}"
        self.results = []
        self._current = None

    def _start(self):
        self._start_next()

    def _start_next(self):
        scene, obj = bpy.data.scenes.get(self.scene_name), bpy.data.objects.get(self.object_name)
        if scene is None or obj is None:
            raise TimelineError(f"lip sync: the sprite {self.object_name!r} or the scene {self.scene_name!r} is gone")
        self._current = LipSyncJob(scene, obj, sound_strip=self.strip_names[len(self.results)], **self.options)
        self._current.start()

    def _step(self):
        name = self.strip_names[len(self.results)]
        progress = self._current.step()
        fraction = (len(self.results) + progress.fraction) / len(self.strip_names)
        if self._current.done:
            self.results.append(self._current.result)
            self._current = None
            if len(self.results) == len(self.strip_names):
                return self.finish(list(self.results))
            self._start_next()
        return Progress(fraction, f"{name}: {progress.message}")

    def _stop(self):
        if self._current is not None:
            self._current.cancel()


# --- generators --------------------------------------------------------------------------------


def generator_settings(generator_name, settings=None):
    """A generator's settings object from None (its defaults), a dict of fields, or the object."""
    try:
        settings_class = generators.GENERATORS[generator_name][0]
    except KeyError:
        raise TimelineError(f"unknown generator {generator_name!r}; generators are "
                            f"{', '.join(generators.GENERATORS)}") from None
    if settings is None:
        return settings_class()
    if isinstance(settings, settings_class):
        return settings
    if isinstance(settings, dict):
        names = {field.name for field in dataclasses.fields(settings_class)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise TimelineError(f"{generator_name}: no setting called {', '.join(unknown)}; "
                                f"settings are {', '.join(sorted(names))}")
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
        if isinstance(values.get("motions"), dict):
            values["motions"] = {k: tuple(v) for k, v in values["motions"].items()}
        return settings_class(**values)
    raise TimelineError(f"{generator_name}: settings must be {settings_class.__name__} or a dict, got {settings!r}")


def _settings_record(settings):
    return {field.name: getattr(settings, field.name) for field in dataclasses.fields(settings)}


def find_generator(obj, generator_name):
    for found in timeline_strips(obj, "generator"):
        if found[2].get("generator") == generator_name:
            return found
    return None


def strip_keys_on_frames(obj, parameters, skip_action=None):
    """[[keys] per curve] of these sliders in the active action and every strip but `skip_action`,
    each key's frame moved to where its strip plays it: what generators.busy_intervals reads."""
    key = obj.data.shape_keys
    curves = []
    if key is None or key.animation_data is None:
        return curves
    animation = key.animation_data
    sources = [(animation.action, _slot(animation), 0.0, 1.0)] if animation.action else []
    for track in animation.nla_tracks:
        if track.mute:
            continue
        for strip in track.strips:
            if strip.action is None or strip.action == skip_action or strip.mute:
                continue
            if record_of(strip.action).get("kind") == "rest":
                continue
            scale = strip.scale or 1.0
            sources.append((strip.action, _slot(strip), strip.frame_start - strip.action_frame_start * scale, scale))
    for action, slot, offset, scale in sources:
        keyed = read_keys(action, slot)
        for parameter in parameters:
            if parameter in keyed:
                curves.append([dataclasses.replace(k, frame=offset + k.frame * scale) for k in keyed[parameter]])
    return curves


def generate(scene, obj, generator_name, settings=None, frame_start=None, frame_end=None, skip_action=None):
    """{parameter: [Keyframe]} of a generator for a sprite over a frame range (the scene's by
    default); blinks keep off the spans where the eyes are already keyed (a wink)."""
    settings = generator_settings(generator_name, settings)
    schema = get_schema(sprites.settings_of(obj).schema)
    frame_start = scene.frame_start if frame_start is None else frame_start
    frame_end = scene.frame_end if frame_end is None else frame_end
    function = generators.GENERATORS[generator_name][1]
    if generator_name == "blinks":
        parameters = generators.blink_parameters(schema)
        busy = generators.busy_intervals(*strip_keys_on_frames(obj, parameters, skip_action))
        return function(schema, settings, frame_start, frame_end, scene_fps(scene), busy=busy)
    return function(schema, settings, frame_start, frame_end, scene_fps(scene))


def place_generator(scene, obj, generator_name, settings=None, frame_start=None, frame_end=None):
    """A generator's keys as its own NLA strip (ADD over the rest) on a track of its own; a re-run
    replaces that strip and nothing else. Returns the strip."""
    settings = generator_settings(generator_name, settings)
    key = pose_key(obj)
    old = find_generator(obj, generator_name)
    keyframes = generate(scene, obj, generator_name, settings, frame_start, frame_end,
                         skip_action=old[1].action if old else None)
    check_parameters(obj, keyframes, generator_name)
    first = min(keys[0].frame for keys in keyframes.values() if keys)

    if old is not None:
        remove_strip(old[0], old[1], key.animation_data)
    ensure_rest(obj, {name: 0.0 for name in keyframes})
    record = {"kind": "generator", "generator": generator_name, "settings": _settings_record(settings)}
    action = new_action(f"{obj.name} {settings.strip_name}", keyframes, record)
    return place_strip(key, settings.strip_name, settings.strip_name, action, math.floor(first), "ADD", "NOTHING")


def remove_generator(obj, generator_name):
    found = find_generator(obj, generator_name)
    if found is None:
        return False
    remove_strip(found[0], found[1], obj.data.shape_keys.animation_data)
    return True
