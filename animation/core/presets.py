"""Expression presets: named poses of the eyebrows, eyes and mouth, built in or the user's own.

A preset is {parameter: value} for the schema it was made on. Applying it sets every
expression parameter (the eyebrow, eye and mouth groups and the iris size morphs): the ones it
names to its values, the rest to 0, so "happy" after "angry" leaves no angry brows behind. A
user's pose may also name other parameters (a head tilt); those are set too. A preset applies to
any schema that has all of its parameters (THA2, THA3 and THA4 share the first 42), and is
checked against that schema when applied.

Built-in presets exist per family: the THA2 one (also THA3/THA4) and THA1's own (eyes and mouth
only). User presets travel as JSON (`presets_to_json`, `presets_from_json`), which the Blender
side keeps in the .blend so every sprite of that file can use them.
"""

import json
import math
from dataclasses import dataclass

from ...errors import UserError
from ... import json_text
from ...pose.schema import get_schema

EXPRESSION_GROUPS = ("eyebrow", "eye", "mouth")
FORMAT = "tha_studio.expression_presets"
VERSION = 1


class PresetError(UserError, ValueError):
    """A preset naming an unknown parameter or a value out of range, or a malformed presets file."""


def expression_parameters(schema, groups=EXPRESSION_GROUPS):
    """The parameters a preset sets: the eyebrow, eye and mouth groups (or those of `groups`) and,
    with the eyes, the iris size morphs (expression, unlike the iris rotation, which is gaze)."""
    groups = tuple(groups)
    for group in groups:
        if group not in EXPRESSION_GROUPS:
            raise PresetError(f"{group!r} is not an expression group; they are {', '.join(EXPRESSION_GROUPS)}")
    names = set()
    for group in groups:
        names.update(schema.group_names(group))
    if "eye" in groups:
        names.update(n for n in schema.group_names("iris") if n.startswith("iris_small"))
    return tuple(n for n in schema.names if n in names)


@dataclass(frozen=True)
class Preset:
    """A named pose: {parameter: value} on the schema `schema_name`."""

    name: str
    schema_name: str
    values: dict

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise PresetError(f"a preset needs a name, got {self.name!r}")
        try:
            schema = get_schema(self.schema_name)
        except KeyError as error:
            raise PresetError(f"preset {self.name!r}: {error.args[0]}") from None
        if not isinstance(self.values, dict):
            raise PresetError(f"preset {self.name!r}: values must be {{parameter: value}}, got {self.values!r}")
        object.__setattr__(self, "schema_name", schema.name)
        object.__setattr__(self, "values", _checked_values(self.name, schema, self.values))

    def values_for(self, schema, groups=EXPRESSION_GROUPS):
        """{parameter: value} to set on a sprite of `schema`: every expression parameter of
        `groups` (0 where the preset names none) and the preset's other parameters.

        `groups` narrows what is set (("eyebrow", "eye") keeps a lip-synced mouth)."""
        lacking = [name for name in self.values if name not in schema.names]
        if lacking:
            raise PresetError(f"preset {self.name!r} (made on {self.schema_name}) sets {', '.join(lacking)}, "
                              f"which the {schema.name} pose does not have")
        expression = expression_parameters(schema, groups)
        every_expression = set(expression_parameters(schema))
        result = {name: self.values.get(name, 0.0) for name in expression}
        result.update({name: value for name, value in self.values.items() if name not in every_expression})
        return result

    def to_dict(self):
        return {"name": self.name, "schema": self.schema_name, "values": dict(self.values)}


def _checked_values(preset_name, schema, values):
    checked = {}
    for name, value in values.items():
        try:
            parameter = schema.parameter(name)
        except KeyError as error:
            raise PresetError(f"preset {preset_name!r}: {error.args[0]}") from None
        if (not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value)
                or not parameter.minimum <= value <= parameter.maximum):
            raise PresetError(f"preset {preset_name!r}: {name}={value!r} is outside "
                              f"[{parameter.minimum:g}, {parameter.maximum:g}]")
        checked[name] = float(value)
    return checked


def _both(name, value):
    return {f"{name}_left": value, f"{name}_right": value}


# Built-in expressions for THA2/THA3/THA4, from the parameters' meanings (tha.md §6, after the MMD
# morphs they were trained on). Morphs that move the same feature stay at a sum of at most 1.
THA2_PRESETS = {
    "neutral": {},
    "happy": {**_both("eyebrow_happy", 0.8), **_both("eye_happy_wink", 0.5),
              **_both("mouth_raised_corner", 0.9), "mouth_aaa": 0.3},
    "joyful": {**_both("eyebrow_happy", 1.0), **_both("eye_happy_wink", 1.0),
               **_both("mouth_raised_corner", 1.0), "mouth_aaa": 0.7},
    "sad": {**_both("eyebrow_troubled", 0.9), **_both("eye_relaxed", 0.3),
            **_both("mouth_lowered_corner", 0.8)},
    "angry": {**_both("eyebrow_angry", 1.0), **_both("eye_raised_lower_eyelid", 0.4),
              **_both("mouth_lowered_corner", 0.6), "mouth_delta": 0.2},
    "surprised": {**_both("eyebrow_raised", 1.0), **_both("eye_surprised", 1.0),
                  **_both("iris_small", 0.5), "mouth_ooo": 0.6},
    "relaxed": {**_both("eyebrow_happy", 0.3), **_both("eye_relaxed", 0.7),
                **_both("mouth_raised_corner", 0.4)},
    "troubled": {**_both("eyebrow_troubled", 1.0), **_both("eye_unimpressed", 0.2),
                 **_both("mouth_lowered_corner", 0.4), "mouth_delta": 0.3},
    "serious": {**_both("eyebrow_serious", 1.0), **_both("eye_raised_lower_eyelid", 0.3)},
    "smug": {**_both("eyebrow_serious", 0.4), **_both("eye_unimpressed", 0.6), "mouth_smirk": 1.0},
    "sleepy": {**_both("eyebrow_lowered", 0.5), **_both("eye_wink", 0.6), "mouth_aaa": 0.1},
    "wink": {**_both("eyebrow_happy", 0.5), "eye_wink_left": 1.0, **_both("mouth_raised_corner", 0.8)},
}

# THA1 moves only the eyes and the mouth opening.
THA1_PRESETS = {
    "neutral": {},
    "happy": {"mouth": 0.4},
    "surprised": {"mouth": 0.8},
    "relaxed": {"left_eye": 0.35, "right_eye": 0.35},
    "sleepy": {"left_eye": 0.65, "right_eye": 0.65},
    "wink": {"left_eye": 1.0, "mouth": 0.2},
}

# Which built-in table each schema uses.
FAMILIES = {"tha1": THA1_PRESETS, "tha2": THA2_PRESETS, "tha3": THA2_PRESETS, "tha4": THA2_PRESETS}


def builtin_presets(schema):
    """{name: Preset} built in for this schema, each checked against it."""
    try:
        table = FAMILIES[schema.name]
    except KeyError:
        raise PresetError(f"no built-in presets for the {schema.name} pose; "
                          f"they exist for {', '.join(FAMILIES)}") from None
    return {name: Preset(name, schema.name, values) for name, values in table.items()}


def presets_to_json(presets):
    """The user's presets (an iterable of Preset) as JSON text, names in the given order."""
    presets = list(presets)
    _check_unique(presets, "<presets>")
    data = {"format": FORMAT, "version": VERSION, "presets": [p.to_dict() for p in presets]}
    return json.dumps(data, indent=2) + "\n"


def presets_from_json(text, source="<presets>"):
    """The presets in JSON text written by `presets_to_json` (`source` names it in errors)."""
    try:
        data = json_text.loads(text)
    except json.JSONDecodeError as error:
        raise PresetError(f"{source}, line {error.lineno}, column {error.colno}: not valid JSON: {error.msg}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PresetError(f"{source}: not a THA Studio presets file (expected \"format\": \"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise PresetError(f"{source}: presets version {data.get('version')!r} is not one this version reads ({VERSION})")
    entries = data.get("presets")
    if not isinstance(entries, list):
        raise PresetError(f"{source}: \"presets\" must be a list")
    presets = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or set(entry) != {"name", "schema", "values"}:
            raise PresetError(f"{source}: preset {number} must have exactly \"name\", \"schema\" and \"values\", "
                              f"got {sorted(entry) if isinstance(entry, dict) else entry!r}")
        try:
            presets.append(Preset(entry["name"], entry["schema"], entry["values"]))
        except PresetError as error:
            raise PresetError(f"{source}: preset {number}: {error}") from None
    _check_unique(presets, source)
    return presets


def _check_unique(presets, source):
    seen = set()
    for preset in presets:
        key = (preset.name, preset.schema_name)
        if key in seen:
            raise PresetError(f"{source}: two presets called {preset.name!r} for {preset.schema_name}")
        seen.add(key)
