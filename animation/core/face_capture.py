"""Face capture: a recorded ARKit blendshape track (Live Link Face CSV) -> THA pose keyframes.

Live Link Face (Epic's iPhone face-capture app, and the tools that copy its format) writes one
CSV per take: a header row, then one row per captured frame:

    Timecode,BlendShapeCount,EyeBlinkLeft,...,TongueOut,HeadYaw,HeadPitch,HeadRoll,
    LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll

- Timecode `hh:mm:ss:ff.fff`: frame `ff` at the capture rate (60 by default, 30 or other in the
  app's settings) with the part after the dot a fraction of a frame. Times count from the first row;
  the timecode is the time of day, so a take across midnight goes on from 00:00:00:00.
- BlendShapeCount: 61 (the 52 ARKit blendshapes and 9 rotations); read and ignored.
- The 52 ARKit blendshapes in 0..1, named as ARKit's (camelCase there, PascalCase here; names
  match case-insensitively).
- Head and eye rotations: angles, in radians from the app (`angle_units` says otherwise).

An `ArkitMapping` turns the channels into THA parameters: each parameter is an offset plus a
weighted sum of channels (rotations in degrees), clamped to the parameter's range. The mapping is
plain data, saved and edited as JSON. The default follows the linear parts of the official
THA3 demo's iFacialMocap converter (tha3/mocap/ifacialmocap_poser_converter_25.py; tha.md §6
quotes its head formulas): e.g. eye_wink = EyeBlink / 0.8, mouth_aaa = (JawOpen - 0.1) / 0.3,
ARKit's Left to THA's left as there. Its smile gating and mouth-shape fitting are not linear and
are left out. Head pitch/yaw/roll go to head_x/head_y/neck_z at 15 degrees a unit, THA's range
for all three (that converter gives head_y 10 degrees; edit the weight for that). Mapped values are resampled to the scene rate and keyed
on every frame where they change (LINEAR).
"""

import csv
import io
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import UserError
from ... import json_text
from ...input_files import not_a_file, read_text
from ...pose.schema import get_schema
from .keys import linear_keys

# The 52 ARKit blendshapes in Live Link Face's column order.
ARKIT_BLENDSHAPES = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft", "EyeSquintLeft",
    "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight", "EyeLookOutRight", "EyeLookUpRight",
    "EyeSquintRight", "EyeWideRight", "JawForward", "JawRight", "JawLeft", "JawOpen", "MouthClose", "MouthFunnel",
    "MouthPucker", "MouthRight", "MouthLeft", "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft",
    "MouthFrownRight", "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper", "MouthPressLeft", "MouthPressRight",
    "MouthLowerDownLeft", "MouthLowerDownRight", "MouthUpperUpLeft", "MouthUpperUpRight", "BrowDownLeft",
    "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight", "CheekPuff", "CheekSquintLeft",
    "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight", "TongueOut",
)
ROTATIONS = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
             "RightEyeYaw", "RightEyePitch", "RightEyeRoll")
CHANNELS = ARKIT_BLENDSHAPES + ROTATIONS
LIVE_LINK_COLUMNS = ("Timecode", "BlendShapeCount") + CHANNELS
ANGLE_UNITS = {"radians": 180.0 / math.pi, "degrees": 1.0}  # factor to degrees

_CANONICAL = {name.lower(): name for name in CHANNELS}
_TIMECODE = re.compile(r"^\s*(\d+):(\d{1,2}):(\d{1,2})[:;](\d+)(\.\d+)?\s*$")
MAPPING_FORMAT = "tha_studio.arkit_mapping"


class FaceCaptureError(UserError, ValueError):
    """A capture file that cannot be read, or a mapping that names unknown channels or parameters."""


def channel_name(name):
    """The Live Link Face spelling of an ARKit channel (any case), or None for an unknown name."""
    return _CANONICAL.get(str(name).strip().lower())


DAY = 24 * 3600.0
MIDNIGHT_GAP = 60.0  # at most this long between the last row before midnight and the first after


def parse_timecode(text, capture_fps):
    """Seconds of a `hh:mm:ss:ff[.fff]` timecode at `capture_fps` (ValueError saying why not)."""
    match = _TIMECODE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a timecode hh:mm:ss:ff.fff")
    hours, minutes, seconds, frame = (int(g) for g in match.groups()[:4])
    fraction = float(match.group(5)) if match.group(5) else 0.0
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"timecode {text!r} has minutes or seconds beyond 59")
    if frame >= math.ceil(capture_fps):
        raise ValueError(f"timecode {text!r} has frame {frame}, but the capture rate is {capture_fps:g} fps "
                         f"(frames 0-{math.ceil(capture_fps) - 1}); is the capture rate right?")
    return hours * 3600.0 + minutes * 60.0 + seconds + (frame + fraction) / capture_fps


@dataclass
class FaceCapture:
    """A read capture: times in seconds from its first row and each channel's values per row
    (blendshapes 0..1, rotations in degrees)."""

    source: str
    capture_fps: float
    times: np.ndarray
    channels: dict

    @property
    def duration(self):
        return float(self.times[-1]) if len(self.times) else 0.0


def read_live_link_csv(path, capture_fps=60.0, angle_units="radians"):
    """A Live Link Face CSV file as a FaceCapture."""
    path = Path(path)
    if kind := not_a_file(path):
        raise FaceCaptureError(f"{path}: is {kind}, not a capture file")
    try:
        text = read_text(path)
    except OSError as error:
        raise FaceCaptureError(f"{path}: cannot read the capture: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise FaceCaptureError(f"{path}: not a text (CSV) file") from None
    return parse_live_link_csv(text, capture_fps, angle_units, source=str(path))


def parse_live_link_csv(text, capture_fps=60.0, angle_units="radians", source="<capture>"):
    """Live Link Face CSV text as a FaceCapture; errors name `source`, the line and the column."""
    if not isinstance(capture_fps, (int, float)) or not math.isfinite(capture_fps) or capture_fps <= 0:
        raise FaceCaptureError(f"{source}: capture rate must be a positive number of frames per second, "
                               f"got {capture_fps!r}")
    if angle_units not in ANGLE_UNITS:
        raise FaceCaptureError(f"{source}: angle units must be one of {', '.join(ANGLE_UNITS)}, got {angle_units!r}")
    rows = csv.reader(io.StringIO(text))
    records = _records(rows, source)
    header = next(records, None)
    while header is not None and not any(cell.strip() for cell in header):
        header = next(records, None)
    if header is None:
        raise FaceCaptureError(f"{source}: the file is empty; a Live Link Face CSV starts with a header row")
    header_line = rows.line_num
    columns = _read_header(header, source, header_line)
    to_degrees = ANGLE_UNITS[angle_units]
    times, values = [], {name: [] for name in columns.values()}
    days = 0.0  # a capture running past midnight: its timecode starts again at 00:00:00:00
    for row in records:
        line = rows.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) == len(header) + 1 and not row[-1].strip():
            row = row[:-1]  # a trailing comma
        if len(row) != len(header):
            raise FaceCaptureError(f"{source}, line {line}: {len(row)} fields, but the header has {len(header)}")
        try:
            seconds = parse_timecode(row[0], capture_fps) + days
        except ValueError as error:
            raise FaceCaptureError(f"{source}, line {line}, column 1 (Timecode): {error}") from None
        step = seconds - times[-1] if times else 0.0
        if step < 0 and 0 < step + DAY <= MIDNIGHT_GAP:  # just past midnight
            days += DAY
            seconds += DAY
        elif step > DAY - MIDNIGHT_GAP:  # a row of the day before, after midnight: earlier
            seconds -= DAY
        if times and seconds < times[-1] - 1e-9:
            raise FaceCaptureError(f"{source}, line {line}, column 1 (Timecode): {row[0].strip()} is earlier "
                                   f"than the row before; rows must be in time order")
        for index, name in columns.items():
            cell = row[index].strip()
            try:
                value = float(cell)
            except ValueError:
                value = math.nan
            if not math.isfinite(value):
                raise FaceCaptureError(f"{source}, line {line}, column {index + 1} ({header[index].strip()}): "
                                       f"{cell!r} is not a number")
            values[name].append(value * to_degrees if name in ROTATIONS else value)
        if times and seconds <= times[-1] + 1e-9:  # the same instant twice: the later row wins
            times.pop()
            for name in values:
                values[name].pop(-2)
        times.append(seconds)
    if not times:
        raise FaceCaptureError(f"{source}: no capture rows after the header (line {header_line})")
    times = np.array(times) - times[0]
    return FaceCapture(source, float(capture_fps), times, {name: np.array(v) for name, v in values.items()})


def _records(reader, source):
    """The csv reader's rows; its own error (a cell over the csv module's 128 KiB, say) as a
    FaceCaptureError naming the line."""
    try:
        yield from reader
    except csv.Error as error:
        raise FaceCaptureError(f"{source}, line {reader.line_num}: {error}") from None


def _read_header(header, source, line):
    """{column index: channel} of a header row; the first column must be the timecode."""
    if header[0].lstrip("\ufeff").strip().lower() != "timecode":  # a BOM from a Windows editor
        raise FaceCaptureError(f"{source}, line {line}, column 1: expected the Timecode column, got "
                               f"{header[0].strip()!r}; is this a Live Link Face CSV?")
    columns, seen = {}, {}
    for index, cell in enumerate(header[1:], 1):
        name = channel_name(cell)
        if name is None:
            continue  # BlendShapeCount, and any column a later app version adds
        if name in seen:
            raise FaceCaptureError(f"{source}, line {line}: column {index + 1} repeats {name} "
                                   f"(first in column {seen[name] + 1})")
        seen[name] = index
        columns[index] = name
    if not columns:
        raise FaceCaptureError(f"{source}, line {line}: no ARKit blendshape columns (EyeBlinkLeft, ..., TongueOut)")
    return columns


def _rule(offset=0.0, **weights):
    return {"offset": offset, "weights": weights}


def _pair(parameter, rule_of_side):
    return {f"{parameter}_{side.lower()}": rule_of_side(side) for side in ("Left", "Right")}


# Default for THA2/THA3/THA4: the official THA3 converter's linear ramps (see the module text).
_JAW = 1.0 / 0.3
_IRIS = 0.5 / 0.75
DEFAULT_THA_RULES = {
    **_pair("eyebrow_raised", lambda s: _rule(BrowInnerUp=1.0, **{f"BrowOuterUp{s}": 1.0})),
    **_pair("eyebrow_angry", lambda s: _rule(**{f"BrowDown{s}": 1.0 / 0.4})),
    **_pair("eye_surprised", lambda s: _rule(**{f"EyeWide{s}": 1.0 / 0.5})),
    **_pair("eye_wink", lambda s: _rule(**{f"EyeBlink{s}": 1.0 / 0.8})),
    **_pair("eye_raised_lower_eyelid", lambda s: _rule(-0.1 / 0.6, **{f"CheekSquint{s}": 1.0 / 0.6})),
    "iris_rotation_x": _rule(EyeLookUpLeft=_IRIS, EyeLookUpRight=_IRIS, EyeLookDownLeft=-_IRIS,
                             EyeLookDownRight=-_IRIS),
    "iris_rotation_y": _rule(EyeLookInLeft=_IRIS, EyeLookOutLeft=-_IRIS, EyeLookInRight=-_IRIS,
                             EyeLookOutRight=_IRIS),
    "mouth_aaa": _rule(-0.1 * _JAW, JawOpen=_JAW),
    "mouth_iii": _rule(MouthStretchLeft=0.5, MouthStretchRight=0.5),
    "mouth_uuu": _rule(MouthPucker=1.0),
    "mouth_ooo": _rule(MouthFunnel=1.0),
    **_pair("mouth_raised_corner", lambda s: _rule(**{f"MouthSmile{s}": 1.0})),
    **_pair("mouth_lowered_corner", lambda s: _rule(**{f"MouthFrown{s}": 1.0 / 0.3})),
    "head_x": _rule(HeadPitch=-1.0 / 15.0),
    "head_y": _rule(HeadYaw=-1.0 / 15.0),
    "neck_z": _rule(HeadRoll=1.0 / 15.0),
}
DEFAULT_THA1_RULES = {
    "left_eye": _rule(EyeBlinkLeft=1.0 / 0.8),
    "right_eye": _rule(EyeBlinkRight=1.0 / 0.8),
    "mouth": _rule(-0.1 * _JAW, JawOpen=_JAW),
    "head_x": _rule(HeadPitch=-1.0 / 15.0),
    "head_y": _rule(HeadYaw=-1.0 / 15.0),
    "neck_z": _rule(HeadRoll=1.0 / 15.0),
}


@dataclass(frozen=True)
class ArkitMapping:
    """ARKit channels -> THA parameters: {parameter: {"offset": b, "weights": {channel: w}}},
    value = clamp(b + sum of w * channel) to the parameter's range; rotations in degrees."""

    schema_name: str
    rules: dict

    def __post_init__(self):
        try:
            schema = get_schema(self.schema_name)
        except KeyError as error:
            raise FaceCaptureError(f"ARKit mapping: {error.args[0]}") from None
        if not isinstance(self.rules, dict):
            raise FaceCaptureError(f"ARKit mapping: rules must be {{parameter: {{offset, weights}}}}, got {self.rules!r}")
        checked = {}
        for parameter, rule in self.rules.items():
            try:
                schema.index(parameter)
            except KeyError as error:
                raise FaceCaptureError(f"ARKit mapping: {error.args[0]}") from None
            if not isinstance(rule, dict) or not set(rule) <= {"offset", "weights"}:
                raise FaceCaptureError(f"ARKit mapping: {parameter} needs {{\"offset\": number, \"weights\": "
                                       f"{{channel: number}}}}, got {rule!r}")
            offset = rule.get("offset", 0.0)
            weights = rule.get("weights", {})
            if not json_text.is_number(offset):
                raise FaceCaptureError(f"ARKit mapping: {parameter} offset {offset!r} is not a number")
            if not isinstance(weights, dict):
                raise FaceCaptureError(f"ARKit mapping: {parameter} weights must be {{channel: number}}, got {weights!r}")
            named = {}
            for channel, weight in weights.items():
                canonical = channel_name(channel)
                if canonical is None:
                    raise FaceCaptureError(f"ARKit mapping: {parameter} reads {channel!r}, which is not an ARKit "
                                           f"blendshape or a Live Link Face rotation")
                if not json_text.is_number(weight):
                    raise FaceCaptureError(f"ARKit mapping: {parameter} weight of {canonical} {weight!r} is not a number")
                named[canonical] = named.get(canonical, 0.0) + float(weight)
            checked[parameter] = {"offset": float(offset), "weights": named}
        object.__setattr__(self, "schema_name", schema.name)
        object.__setattr__(self, "rules", {name: checked[name] for name in schema.names if name in checked})

    @classmethod
    def default(cls, schema_name="tha3"):
        schema = get_schema(schema_name)
        rules = DEFAULT_THA1_RULES if schema.name == "tha1" else DEFAULT_THA_RULES
        return cls(schema.name, json.loads(json.dumps(rules)))

    @property
    def parameters(self):
        """The parameters this mapping keys, in the schema's order."""
        return tuple(self.rules)

    @property
    def channels(self):
        """The channels this mapping reads, in Live Link Face's order."""
        used = {channel for rule in self.rules.values() for channel in rule["weights"]}
        return tuple(name for name in CHANNELS if name in used)

    def apply(self, capture):
        """{parameter: values per capture row}, clamped to each parameter's range."""
        missing = [name for name in self.channels if name not in capture.channels]
        if missing:
            raise FaceCaptureError(f"{capture.source}, line 1: no column for {', '.join(missing)}, which the "
                                   f"mapping reads; remove {'them' if len(missing) > 1 else 'it'} from the mapping "
                                   f"or export the take with {'them' if len(missing) > 1 else 'it'}")
        schema = get_schema(self.schema_name)
        result = {}
        for name, rule in self.rules.items():
            values = np.full(len(capture.times), rule["offset"])
            for channel, weight in rule["weights"].items():
                values = values + weight * capture.channels[channel]
            parameter = schema.parameter(name)
            result[name] = np.clip(values, parameter.minimum, parameter.maximum)
        return result

    def to_json(self):
        data = {"format": MAPPING_FORMAT, "schema": self.schema_name, "parameters": self.rules}
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text, source="<mapping>"):
        try:
            data = json_text.loads(text)
        except json.JSONDecodeError as error:
            raise FaceCaptureError(f"{source}, line {error.lineno}, column {error.colno}: not valid JSON: "
                                   f"{error.msg}") from None
        if not isinstance(data, dict) or data.get("format") != MAPPING_FORMAT:
            raise FaceCaptureError(f"{source}: not an ARKit mapping (expected \"format\": \"{MAPPING_FORMAT}\")")
        if not isinstance(data.get("parameters"), dict):
            raise FaceCaptureError(f"{source}: \"parameters\" must be {{parameter: {{offset, weights}}}}")
        try:
            return cls(data.get("schema", "tha3"), data["parameters"])
        except FaceCaptureError as error:
            raise FaceCaptureError(f"{source}: {error}") from None


def capture_keyframes(capture, mapping=None, fps=24.0, frame_start=1):
    """{parameter: [Keyframe]}: the mapped capture resampled to the scene's frames (linear
    between capture rows), its first row on `frame_start`, keyed LINEAR where values change."""
    mapping = mapping or ArkitMapping.default()
    if not json_text.is_number(fps) or fps <= 0:
        raise FaceCaptureError(f"scene rate must be a positive number of frames per second, got {fps!r}")
    mapped = mapping.apply(capture)
    count = int(math.floor(capture.duration * fps + 1e-9)) + 1
    seconds = np.arange(count) / fps
    frames = frame_start + np.arange(count)
    return {name: linear_keys(frames, np.interp(seconds, capture.times, values)) for name, values in mapped.items()}
