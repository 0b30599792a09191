"""The record the timeline keeps on each action it makes, read back.

The record is JSON in an ID property of the action: what the strip is (kind), a line's name and
sound strip, the frames the line and its sound were last on, and for a line made from an
animator's sound strip what keys it again when that strip is trimmed. A .blend keeps these for as
long as it lives, and a script, another version or a damaged file can leave a field holding a
value of the wrong kind. Read back here, such a field counts as absent: a damaged line then costs
only what that field held (its sound no longer followed, a trim no longer keyed again) and never
stops the panel or the handler that walk every line on every update.
"""

from ...json_text import is_number
from ...lipsync.cues import CueTrack, cues_from_rows
from ...lipsync.curves import CurveSettings


def _text(value):
    return isinstance(value, str)


def _flag(value):
    return isinstance(value, bool)


def _object(value):
    return isinstance(value, dict)


def _list(value):
    return isinstance(value, list)


def _numbers(value, count=None):
    return isinstance(value, list) and (count is None or len(value) == count) and all(map(is_number, value))


def _two_numbers(value):
    return _numbers(value, 2)


def _retiming(value):
    """What a line saw of its sound strip's retiming (timeline.seen_retiming): the keys and the
    frames played from the strip's start; the segment it saw retimed, the frame that segment
    ends at where the strip plays past it, the playback where it is known, or the segments and
    mean speed where it is not."""
    optional = {"segment": lambda held: _numbers(held, 4), "past": is_number, "playback": _two_numbers,
                "unknown": _two_numbers}
    return (isinstance(value, dict) and is_number(value.get("fps")) and _numbers(value.get("keys"))
            and _two_numbers(value.get("span"))
            and all(check(value[name]) for name, check in optional.items() if name in value))


def _number_or_none(value):
    return value is None or is_number(value)


def _text_or_none(value):
    return value is None or _text(value)


# Each field the timeline writes, and what a readable value of it is. Fields not named here (a
# newer version's) are kept as they are.
FIELDS = {
    "kind": _text, "name": _text, "source": _text, "generator": _text, "settings": _object,
    "fps": is_number,  # the scene's frame rate the strip was timed at
    "sound": _text, "frame": is_number, "sound_frame": is_number,  # a line's sound strip, and where both were last
    "adopted": _flag, "heard": _two_numbers, "cues": _list, "duration": _number_or_none,
    "closed": _text_or_none, "keys": _object,  # an adopted line's trims (trim_of)
    "seconds": is_number, "playback": _two_numbers,  # the recording's length; its sound's speed, frames ahead
    "unfollowed": _two_numbers,  # the playback a line's own sound waits to be followed at
    "retiming": _retiming,  # what a line saw of its sound strip's retiming
}


def readable_record(value):
    """The record's fields that read, as a dict; {} for a value that is no record (no object, or
    no kind): the strip is then nobody's that the timeline knows."""
    if not isinstance(value, dict):
        return {}
    record = {field: held for field, held in value.items() if field not in FIELDS or FIELDS[field](held)}
    return record if "kind" in record else {}


def trim_of(record):
    """(the whole CueTrack, CurveSettings, mouth mapping values) that an adopted line is keyed
    again from when its sound strip is trimmed anew; None where the record holds none that reads
    (a line older than trims being followed, or a damaged one)."""
    keys = record.get("keys")
    if not isinstance(keys, dict):
        return None
    if not (is_number(keys.get("fps")) and is_number(keys.get("start")) and _object(keys.get("mapping"))):
        return None
    try:
        whole = CueTrack(cues_from_rows(record.get("cues")), record.get("duration"), closed_shape=record.get("closed"))
        settings = CurveSettings(style=keys.get("style"), blend=keys.get("blend"), frame_rate=keys["fps"],
                                 start_frame=float(keys["start"]))
    except ValueError:  # (CueError is one): a cue, shape, style or blend out of its range
        return None
    return whole, settings, keys["mapping"]
