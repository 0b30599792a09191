"""Cue track -> THA mouth-parameter curves: keyframes for a Blender action, values per frame.

A mouth mapping says which THA mouth parameters (pose/schema.py's "mouth" group) each mouth shape
A-H and X sets. The curves hold each cue's values around its centre and move between cues in one
of three styles:

- "linear": straight lines through the half-way point between two shapes at the cue boundary
  (the digital-avatars report's keyframe formula, which it found a little mechanical);
- "eased": the same keys with flat Bezier handles at a third of the way to each neighbour, so
  every move starts and ends gently (the curve between two keys is exactly a smoothstep);
- "stepped": each cue's values from its start to its end, switching at once (2D-style mouths).

`blend` is how long a linear or eased move takes, centred on the boundary; a cue shorter than
that is only keyed at its centre. Frames count from `start_frame` at time 0 at `frame_rate`.
Keyframes carry Blender's interpolation names (LINEAR, BEZIER, CONSTANT) and explicit handles,
so an F-curve built from them evaluates like `MouthCurves.values_at`.
"""

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from .. import json_text
from ..pose.schema import get_schema
from .cues import SHAPES, check_frame_rate, check_shape

STYLES = ("linear", "eased", "stepped")
# Blender's frames (MINAFRAME, MAXFRAME): keys outside them are refused or clamped by Blender, so
# no curve is made to reach past them.
MIN_FRAME, MAX_FRAME = -1_048_574, 1_048_574
INTERPOLATION = {"linear": "LINEAR", "eased": "BEZIER", "stepped": "CONSTANT"}

# Default shape -> parameter values for the THA2/THA3/THA4 mouth (tha.md §6), by the shapes'
# descriptions (rhubarb.md §1.4): A closed; B slightly open teeth; C open (EH); D wide (AA);
# E slightly rounded; F puckered; G teeth on lip; H between C and D; X rest.
DEFAULT_THA_MAPPING = {
    "A": {},
    "B": {"mouth_iii": 0.4},
    "C": {"mouth_eee": 0.8},
    "D": {"mouth_aaa": 1.0},
    "E": {"mouth_ooo": 0.8},
    "F": {"mouth_uuu": 1.0},
    "G": {"mouth_iii": 0.15},
    "H": {"mouth_aaa": 0.5},
    "X": {},
}
# THA1 has one mouth parameter: how far the mouth is open.
DEFAULT_THA1_MAPPING = {
    "A": {}, "B": {"mouth": 0.2}, "C": {"mouth": 0.55}, "D": {"mouth": 1.0}, "E": {"mouth": 0.6},
    "F": {"mouth": 0.35}, "G": {"mouth": 0.1}, "H": {"mouth": 0.5}, "X": {},
}


class MappingError(UserError, ValueError):
    """A mouth mapping that names an unknown shape or parameter, or a value out of range."""


@dataclass(frozen=True)
class MouthMapping:
    """Mouth shape -> {THA mouth parameter: value}; parameters not named are 0 for that shape."""

    schema_name: str
    values: dict

    def __post_init__(self):
        schema = get_schema(self.schema_name)
        mouth = set(schema.group_names("mouth"))
        checked = {}
        for shape, settings in self.values.items():
            try:
                shape = check_shape(shape)
            except ValueError as error:
                raise MappingError(f"mouth mapping: {error}") from None
            if not isinstance(settings, dict):
                raise MappingError(f"mouth mapping: shape {shape} needs {{parameter: value}}, got {settings!r}")
            for name, value in settings.items():
                if name not in mouth:
                    raise MappingError(
                        f"mouth mapping: {name!r} is not a {schema.name} mouth parameter; they are {', '.join(sorted(mouth))}"
                    )
                parameter = schema.parameter(name)
                if not isinstance(value, (int, float)) or not parameter.minimum <= value <= parameter.maximum:
                    raise MappingError(
                        f"mouth mapping: {shape} sets {name}={value!r}, outside [{parameter.minimum}, {parameter.maximum}]"
                    )
            checked[shape] = {name: float(value) for name, value in settings.items()}
        missing = [s for s in SHAPES if s not in checked]
        if missing:
            raise MappingError(f"mouth mapping: no entry for shape(s) {', '.join(missing)}")
        object.__setattr__(self, "values", checked)

    @classmethod
    def default(cls, schema_name="tha3"):
        schema = get_schema(schema_name)
        table = DEFAULT_THA1_MAPPING if schema.name == "tha1" else DEFAULT_THA_MAPPING
        return cls(schema.name, {shape: dict(settings) for shape, settings in table.items()})

    @classmethod
    def from_json(cls, text, schema_name="tha3", source="<mapping>"):
        """A mapping from JSON {"A": {"mouth_aaa": 0.0}, ...}; shapes left out keep the default."""
        try:
            data = json_text.loads(text)
        except json.JSONDecodeError as error:
            raise MappingError(f"{source}, line {error.lineno}: not valid JSON: {error.msg}") from None
        if not isinstance(data, dict):
            raise MappingError(f"{source}: expected an object of shapes")
        values = dict(cls.default(schema_name).values)
        try:
            values.update({check_shape(k): v for k, v in data.items()})
            return cls(schema_name, values)
        except ValueError as error:
            raise MappingError(f"{source}: {error}") from None

    def to_json(self):
        return json.dumps(self.values, indent=2, sort_keys=True) + "\n"

    @property
    def parameters(self):
        """The mouth parameters this mapping moves, in the schema's order."""
        used = {name for settings in self.values.values() for name in settings}
        return tuple(name for name in get_schema(self.schema_name).names if name in used)

    def vector(self, shape):
        """The values of `parameters` for a shape."""
        settings = self.values[shape]
        return np.array([settings.get(name, 0.0) for name in self.parameters], dtype=np.float64)


@dataclass(frozen=True)
class CurveSettings:
    style: str = "eased"
    blend: float = 0.06  # seconds a linear or eased move takes, across the cue boundary
    frame_rate: float = 24.0
    start_frame: float = 1.0

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"unknown transition style {self.style!r}; styles are {', '.join(STYLES)}")
        if not isinstance(self.blend, (int, float)) or not 0 <= self.blend < 10:
            raise ValueError(f"blend time must be seconds from 0 to 10, got {self.blend!r}")
        check_frame_rate(self.frame_rate)
        if not isinstance(self.start_frame, (int, float)) or not MIN_FRAME <= self.start_frame <= MAX_FRAME:
            raise ValueError(f"start frame must be a frame number from {MIN_FRAME:,} to {MAX_FRAME:,}, "
                             f"got {self.start_frame!r}")


@dataclass(frozen=True)
class Keyframe:
    """One key: frame, value, Blender interpolation to the next key, and Bezier handles
    ((frame, value) each side; for BEZIER keys they are flat, a third of the way to the neighbours)."""

    frame: float
    value: float
    interpolation: str
    handle_left: tuple = None
    handle_right: tuple = None


@dataclass
class MouthCurves:
    """Keyframes per THA mouth parameter, and what is needed to evaluate them."""

    schema_name: str
    parameters: tuple
    keyframes: dict
    settings: CurveSettings
    first_frame: float
    last_frame: float
    rest: dict = field(default_factory=dict)

    def values_at(self, frame):
        """{parameter: value} at a (fractional) frame, as Blender's F-curves give it."""
        return {name: evaluate(self.keyframes[name], frame) for name in self.parameters}

    def per_frame(self):
        """(frames, values): every whole frame from the first to the last, and a
        (frames, parameters) array of values in `parameters` order."""
        frames = np.arange(int(np.floor(self.first_frame)), int(np.ceil(self.last_frame)) + 1)
        values = np.array([[evaluate(self.keyframes[name], f) for name in self.parameters] for f in frames])
        return frames, values.reshape(len(frames), len(self.parameters))

    def pose_vectors(self):
        """(frames, full pose vectors of the schema), zero outside the mouth: for the poser."""
        schema = get_schema(self.schema_name)
        frames, values = self.per_frame()
        poses = np.zeros((len(frames), schema.size), dtype=np.float32)
        for column, name in enumerate(self.parameters):
            poses[:, schema.index(name)] = values[:, column]
        return frames, poses


def evaluate(keys, frame):
    """A keyed curve's value at a frame (constant before the first key and after the last)."""
    if not keys:
        return 0.0
    if frame <= keys[0].frame:
        return keys[0].value
    if frame >= keys[-1].frame:
        return keys[-1].value
    low, high = 0, len(keys) - 1
    while high - low > 1:  # the last key at or before the frame
        middle = (low + high) // 2
        if keys[middle].frame <= frame:
            low = middle
        else:
            high = middle
    key, following = keys[low], keys[low + 1]
    if key.interpolation == "CONSTANT":
        return key.value
    u = (frame - key.frame) / (following.frame - key.frame)
    if key.interpolation == "BEZIER":
        u = u * u * (3.0 - 2.0 * u)  # flat handles at thirds: Blender's cubic is a smoothstep
    return key.value + (following.value - key.value) * u


def _pose_points(track, mapping, settings):
    """(time, shape) points the curves pass through, in order."""
    cues = track.contiguous().cues
    half = settings.blend / 2.0
    points = []
    if settings.style == "stepped":
        for cue in cues:
            points.append((cue.start, cue.shape))
        if cues:
            points.append((cues[-1].end, track.closing_shape()))
        return points
    for cue in cues:
        hold = min(half, cue.duration / 2.0)
        start, end = cue.start + hold, cue.end - hold
        if cue is cues[0]:
            start = cue.start  # nothing before the first cue to move from
        if cue is cues[-1]:
            end = cue.end
        points.append((start, cue.shape))
        if end > start:
            points.append((end, cue.shape))
    return points


def mouth_curves(track, settings=None, mapping=None):
    """The THA mouth curves of a cue track."""
    settings = settings or CurveSettings()
    mapping = mapping or MouthMapping.default()
    if settings.blend == 0 and settings.style != "stepped":
        # A move that takes no time is a step (two keys cannot share a frame).
        settings = CurveSettings("stepped", 0.0, settings.frame_rate, settings.start_frame)
    points = _pose_points(track, mapping, settings)
    interpolation = INTERPOLATION[settings.style]

    def frame_of(seconds):
        return settings.start_frame + seconds * settings.frame_rate

    keyframes = {}
    for column, name in enumerate(mapping.parameters):
        raw = [(frame_of(t), float(mapping.vector(shape)[column])) for t, shape in points]
        keyframes[name] = _keys(_without_redundant(raw), interpolation)
    first = frame_of(0.0)
    last = frame_of(max(track.duration, track.end))
    rest = {name: float(v) for name, v in zip(mapping.parameters, mapping.vector(track.closing_shape()))}
    return MouthCurves(mapping.schema_name, mapping.parameters, keyframes, settings, first, last, rest)


def _without_redundant(points):
    """Points with the middles of constant runs and zero-length steps' duplicates dropped."""
    kept = []
    for index, (frame, value) in enumerate(points):
        if kept and abs(frame - kept[-1][0]) < 1e-9:
            kept[-1] = (frame, value)  # a later point at the same frame wins (a cue's start)
            continue
        if len(kept) >= 2 and kept[-1][1] == value and kept[-2][1] == value:
            kept[-1] = (frame, value)
            continue
        kept.append((frame, value))
    return kept


def _keys(points, interpolation):
    keys = []
    for index, (frame, value) in enumerate(points):
        left = right = None
        if interpolation == "BEZIER":
            previous = points[index - 1][0] if index else frame - 1.0
            following = points[index + 1][0] if index + 1 < len(points) else frame + 1.0
            left = (frame - (frame - previous) / 3.0, value)
            right = (frame + (following - frame) / 3.0, value)
        keys.append(Keyframe(frame, value, interpolation, left, right))
    return keys
