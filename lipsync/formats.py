"""Rhubarb Lip Sync's cue files: TSV, JSON, XML and DAT (Moho switch), read and written.

The writers reproduce Rhubarb 1.14's exporters byte for byte (shared/reference/rhubarb.md §1.3):
times as seconds with two decimals, TSV's final line at the end of the recording, JSON's and
XML's layout and escaping, DAT's 1-based frames with repeated frames dropped. The readers are
tolerant where other tools differ from Rhubarb (numbers written as strings in JSON, other
indentation, spaces for tabs, CRLF line ends, Preston Blair names in DAT) and strict about
everything else: a malformed file raises CueFileError naming the file and the line.
"""

import bisect
import json
import json.scanner
import math
import re
import xml.sax
import xml.sax.handler
from pathlib import Path

import defusedxml
import defusedxml.sax

from ..atomic_files import write_text_atomic
from ..input_files import decode_text, not_a_file
from ..errors import UserError
from ..json_text import too_deep
from .cues import MAX_SECONDS, Cue, CueError, CueTrack, check_frame_rate, check_shape

FORMATS = ("tsv", "json", "xml", "dat")
EXTENSIONS = {".tsv": "tsv", ".txt": "tsv", ".json": "json", ".xml": "xml", ".dat": "dat"}

DAT_HEADER = "MohoSwitch1"
DAT_DEFAULT_FRAME_RATE = 24.0
# Rhubarb refuses DAT frame rates outside this range ("Frame rate must be between 24 and 100 fps.").
DAT_FRAME_RATES = (24.0, 100.0)
PRESTON_BLAIR_NAMES = {
    "A": "MBP", "B": "etc", "C": "E", "D": "AI", "E": "O", "F": "U", "G": "FV", "H": "L", "X": "rest",
}
# Read, never written: Papagayo's Preston Blair set (the other common source of Moho switch files)
# has WQ, the lips rounded as for "w" and "oo", which is Rhubarb's F.
PAPAGAYO_ONLY_NAMES = {"WQ": "F"}
SHAPE_OF_PRESTON_BLAIR = {name.lower(): shape for shape, name in PRESTON_BLAIR_NAMES.items()}
SHAPE_OF_PRESTON_BLAIR.update({name.lower(): shape for name, shape in PAPAGAYO_ONLY_NAMES.items()})
# Names that exist only in the Preston Blair set: their presence tells which naming a file uses.
_ONLY_PRESTON_BLAIR = {"mbp", "etc", "ai", "o", "u", "fv", "l", "rest", "wq"}


class CueFileError(UserError, ValueError):
    """A cue file that cannot be read: names the file, the line where known, and the problem."""

    def __init__(self, source, problem, line=None):
        self.source = str(source)
        self.line = line
        self.problem = problem
        where = f"{self.source}, line {line}" if line else self.source
        super().__init__(f"{where}: {problem}")


# --------------------------------------------------------------------------------------------
# numbers and times


def format_seconds(seconds):
    """Rhubarb's formatDuration: seconds with exactly two decimals."""
    return f"{seconds:.2f}"


# A decimal number as Rhubarb and other tools write it: ASCII digits only (float() also takes
# "nan", "1_000" and other scripts' digits, which no cue file means).
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def _parse_seconds(value, what, source, line):
    """A time in seconds from a number or a numeric string (the NG add-on writes "0.10"),
    refused unless it is from 0 to MAX_SECONDS."""
    shown = value
    if isinstance(value, str):
        shown = value.strip()
        if not _NUMBER.fullmatch(shown):
            raise CueFileError(source, f"{what} must be a number of seconds, got {_clip(value)!r}", line)
        value = float(shown)  # a float has no digit limit: a huge number becomes inf, refused below
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CueFileError(source, f"{what} must be a number of seconds, got {_json_kind(value)}", line)
    if value < 0:
        raise CueFileError(source, f"{what} must not be negative, got {_clip(str(shown))}", line)
    if not value <= MAX_SECONDS:  # also NaN
        raise CueFileError(
            source, f"{what} must be at most {MAX_SECONDS:g} seconds ({MAX_SECONDS / 3600:g} hours), got {_clip(str(shown))}", line
        )
    return float(value)


def _clip(text, limit=40):
    """A piece of a file short enough for a message."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse_shape(value, source, line):
    if not isinstance(value, str):
        raise CueFileError(source, f"a mouth shape is a letter, got {_json_kind(value)}", line)
    try:
        return check_shape(_clip(value))
    except CueError as error:
        raise CueFileError(source, str(error), line) from None


def _track(cues, source, line_of_cue, **fields):
    """A CueTrack from (start, end, shape) triples, naming the line of the first bad one."""
    built = []
    for index, (start, end, shape) in enumerate(cues):
        line = line_of_cue[index]
        if end < start:
            raise CueFileError(source, f"cue ends at {end:.2f} s, before it starts ({start:.2f} s)", line)
        if built and start < built[-1].end - 1e-9:
            raise CueFileError(
                source, f"cue starts at {start:.2f} s, before the previous cue ends ({built[-1].end:.2f} s)", line
            )
        built.append(Cue(start, end, shape))
    return CueTrack(tuple(built), source=str(source), **fields)


def _rhubarb_cues(track):
    """The cues as Rhubarb's exporters see them: gaps closed, and one zero-length closed-mouth
    cue when there is nothing else (dummyShapeIfEmpty). Equal neighbours stay apart: Rhubarb's
    own tracks have none, and a DAT file's can be meant (a dropped cue between them)."""
    cues = track.contiguous().cues
    if not cues:
        cues = (Cue(0.0, 0.0, track.closing_shape()),)
    return cues


def _recording_end(track):
    return max(track.duration, track.end)


# --------------------------------------------------------------------------------------------
# TSV: "<start>\t<shape>" per cue, then "<end of recording>\t<closed mouth>"


def read_tsv(text, source="<tsv>"):
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2:
            raise CueFileError(source, f"expected '<seconds> <shape>', got {_clip(line.strip())!r}", number)
        time = _parse_seconds(fields[0], "time", source, number)
        if rows and time < rows[-1][0]:
            raise CueFileError(source, f"time {fields[0]} is earlier than the line before ({rows[-1][0]:.2f})", number)
        rows.append((time, _parse_shape(fields[1], source, number), number))
    if not rows:
        raise CueFileError(source, "no cues: a TSV cue file has one '<seconds> <shape>' line per cue", 1)
    # The last line marks the end of the recording and the closed-mouth shape, not a cue.
    cues = [(start, end, shape) for (start, shape, _), (end, _, _) in zip(rows, rows[1:])]
    end, closed, _ = rows[-1]
    return _track(cues, source, [row[2] for row in rows], duration=end, closed_shape=closed)


def write_tsv(track):
    # Unlike JSON and XML, Rhubarb's TSV has no dummy cue for an empty track: just the final line.
    lines = [f"{format_seconds(cue.start)}\t{cue.shape}\n" for cue in track.contiguous().cues]
    lines.append(f"{format_seconds(_recording_end(track))}\t{track.closing_shape()}\n")
    return "".join(lines)


# --------------------------------------------------------------------------------------------
# JSON: {"metadata": {"soundFile", "duration"}, "mouthCues": [{"start", "end", "value"}, ...]}


class _LocatedDict(dict):
    """A JSON object that remembers the offset of its opening brace (for line numbers)."""

    offset = 0


class _LocatingDecoder(json.JSONDecoder):
    """The stdlib decoder with objects tagged by position, so errors can name a cue's line."""

    def __init__(self):
        # Integers as floats: int() refuses past 4300 digits, and seconds are floats anyway.
        super().__init__(parse_int=float)
        parse_object = self.parse_object

        def parse_located_object(s_and_end, *args):
            value, end = parse_object(s_and_end, *args)
            located = _LocatedDict(value)
            located.offset = s_and_end[1] - 1
            return located, end

        self.parse_object = parse_located_object
        self.scan_once = json.scanner.py_make_scanner(self)


def _json_kind(value):
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "an object"
    return _clip(json.dumps(value))


def read_json(text, source="<json>"):
    try:
        document = _LocatingDecoder().decode(text)
    except json.JSONDecodeError as error:
        raise CueFileError(source, f"not valid JSON: {error.msg} (column {error.colno})", error.lineno) from None
    except RecursionError:
        offset = too_deep(text)
        raise CueFileError(source, "JSON nested too deeply (a cue file has three levels)", text.count("\n", 0, offset) + 1) from None

    # Where each line starts, once: counting newlines from the top for every cue was quadratic.
    line_starts = [0] + [match.end() for match in re.finditer("\n", text)]

    def line_of(value):
        return bisect.bisect_right(line_starts, getattr(value, "offset", 0))

    if not isinstance(document, dict):
        raise CueFileError(source, "expected a JSON object with \"mouthCues\"", 1)
    metadata = document.get("metadata", {})
    if not isinstance(metadata, dict):
        raise CueFileError(source, "\"metadata\" must be an object", line_of(document))
    sound_file = metadata.get("soundFile", "")
    if not isinstance(sound_file, str):
        raise CueFileError(source, "\"soundFile\" must be a string", line_of(metadata))
    duration = metadata.get("duration")
    if duration is not None:
        duration = _parse_seconds(duration, "\"duration\"", source, line_of(metadata))
    if "mouthCues" not in document:
        raise CueFileError(source, "no \"mouthCues\" list", line_of(document))
    entries = document["mouthCues"]
    if not isinstance(entries, list):
        raise CueFileError(source, "\"mouthCues\" must be a list", line_of(document))
    cues, lines = [], []
    for entry in entries:
        if not isinstance(entry, dict):
            raise CueFileError(source, f"each mouth cue must be an object, got {_json_kind(entry)}", line_of(document))
        line = line_of(entry)
        for key in ("start", "end", "value"):
            if key not in entry:
                raise CueFileError(source, f"mouth cue has no \"{key}\"", line)
        start = _parse_seconds(entry["start"], "\"start\"", source, line)
        end = _parse_seconds(entry["end"], "\"end\"", source, line)
        cues.append((start, end, _parse_shape(entry["value"], source, line)))
        lines.append(line)
    return _track(cues, source, lines, duration=duration, sound_file=sound_file)


def write_json(track):
    lines = [
        "{\n",
        '  "metadata": {\n',
        f'    "soundFile": {json.dumps(track.sound_file, ensure_ascii=True)},\n',
        f'    "duration": {format_seconds(_recording_end(track))}\n',
        "  },\n",
        '  "mouthCues": [\n',
    ]
    cues = _rhubarb_cues(track)
    for index, cue in enumerate(cues):
        comma = "," if index < len(cues) - 1 else ""
        lines.append(
            f'    {{ "start": {format_seconds(cue.start)}, "end": {format_seconds(cue.end)}, "value": "{cue.shape}" }}{comma}\n'
        )
    lines += ["  ]\n", "}\n"]
    return "".join(lines)


# --------------------------------------------------------------------------------------------
# XML: <rhubarbResult><metadata/><mouthCues><mouthCue start end>SHAPE</mouthCue>...


class _XmlElement:
    def __init__(self, name, attributes, line):
        self.name = name
        self.attributes = attributes
        self.line = line
        self.children = []
        self.pieces = []  # text comes in many pieces (one per character reference): joined once

    @property
    def text(self):
        return "".join(self.pieces)

    def child(self, name):
        return next((c for c in self.children if c.name == name), None)


class _XmlTree(xml.sax.handler.ContentHandler):
    """Elements with their line numbers (ElementTree forgets them)."""

    def __init__(self):
        super().__init__()
        self.stack = [_XmlElement("#document", {}, 1)]

    def line(self):
        return self._locator.getLineNumber() if self._locator else None

    def startElement(self, name, attributes):
        element = _XmlElement(name, dict(attributes.items()), self.line())
        self.stack[-1].children.append(element)
        self.stack.append(element)

    def endElement(self, name):
        self.stack.pop()

    def characters(self, data):
        self.stack[-1].pieces.append(data)


def _parse_xml(text, source):
    """The document's elements, parsed by defusedxml's expat reader: it refuses entity
    declarations and external references (a cue file needs neither, and nested entities
    expand a kilobyte into gigabytes)."""
    tree = _XmlTree()
    try:
        defusedxml.sax.parseString(text.encode("utf-8") if isinstance(text, str) else text, tree)
    except xml.sax.SAXParseException as error:
        problem = error.getMessage()
        raise CueFileError(
            source, f"not valid XML: {problem} (column {error.getColumnNumber() + 1})", error.getLineNumber()
        ) from None
    except defusedxml.EntitiesForbidden as error:
        raise CueFileError(source, f"entity declarations are not allowed in a cue file (<!ENTITY {_clipped(error.name)}>)",
                           tree.line()) from None
    except defusedxml.ExternalReferenceForbidden as error:
        raise CueFileError(source, f"external references are not allowed in a cue file ({_clipped(error.sysid)})",
                           tree.line()) from None
    except (LookupError, ValueError) as error:  # an XML declaration naming an unknown encoding
        raise CueFileError(source, f"not valid XML: {_clipped(str(error))}", 1) from None
    return tree.stack[0]


def _clipped(text, limit=100):
    """A name quoted from the file, shortened: a declaration may name a 5,000-character encoding."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit - 30]}...{text[-20:]} ({len(text):,} characters)"


def read_xml(text, source="<xml>"):
    document = _parse_xml(text, source)
    root = document.child("rhubarbResult")
    if root is None:
        first = document.children[0] if document.children else None
        raise CueFileError(
            source, f"expected a <rhubarbResult> element, found <{first.name}>" if first else "empty XML", first.line if first else 1
        )
    sound_file, duration = "", None
    metadata = root.child("metadata")
    if metadata is not None:
        element = metadata.child("soundFile")
        sound_file = element.text if element is not None else ""
        element = metadata.child("duration")
        if element is not None:
            duration = _parse_seconds(element.text, "<duration>", source, element.line)
    container = root.child("mouthCues")
    if container is None:
        raise CueFileError(source, "no <mouthCues> element", root.line)
    cues, lines = [], []
    for element in container.children:
        if element.name != "mouthCue":
            raise CueFileError(source, f"unexpected <{element.name}> in <mouthCues>", element.line)
        for key in ("start", "end"):
            if key not in element.attributes:
                raise CueFileError(source, f"<mouthCue> has no '{key}' attribute", element.line)
        start = _parse_seconds(element.attributes["start"], "start", source, element.line)
        end = _parse_seconds(element.attributes["end"], "end", source, element.line)
        cues.append((start, end, _parse_shape(element.text.strip(), source, element.line)))
        lines.append(element.line)
    return _track(cues, source, lines, duration=duration, sound_file=sound_file)


def _xml_text(text):
    """Escaped as Boost's property_tree write_xml does (it also escapes quotes in text)."""
    if text and not text.strip(" "):
        return "&#32;" + " " * (len(text) - 1)
    replacements = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}
    return "".join(replacements.get(char, char) for char in text)


def write_xml(track):
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>\n',
        "<rhubarbResult>\n",
        "  <metadata>\n",
        f"    <soundFile>{_xml_text(track.sound_file)}</soundFile>\n",
        f"    <duration>{format_seconds(_recording_end(track))}</duration>\n",
        "  </metadata>\n",
        "  <mouthCues>\n",
    ]
    for cue in _rhubarb_cues(track):
        lines.append(
            f'    <mouthCue start="{format_seconds(cue.start)}" end="{format_seconds(cue.end)}">{cue.shape}</mouthCue>\n'
        )
    lines += ["  </mouthCues>\n", "</rhubarbResult>\n"]
    return "".join(lines)


# --------------------------------------------------------------------------------------------
# DAT (Moho switch data): "MohoSwitch1", then "<frame> <shape>" with 1-based frames


def dat_frame(seconds, frame_rate):
    """Rhubarb's DAT frame number of a time: 1 + int(frame rate x seconds), in doubles."""
    return 1 + int(frame_rate * seconds)


def _frame_start(frame, frame_rate):
    """The earliest time that lands on `frame`, nudged so that dat_frame gives the frame back."""
    seconds = (frame - 1) / frame_rate
    while dat_frame(seconds, frame_rate) < frame:
        seconds = math.nextafter(seconds, math.inf)
    return seconds


def check_dat_frame_rate(frame_rate):
    frame_rate = check_frame_rate(frame_rate)
    low, high = DAT_FRAME_RATES
    if not low <= frame_rate <= high:
        raise CueError(f"Frame rate must be between {low:g} and {high:g} fps, got {frame_rate:g}.")
    return frame_rate


def read_dat(text, source="<dat>", frame_rate=DAT_DEFAULT_FRAME_RATE, preston_blair=None):
    """A DAT file's cues. `preston_blair`: True/False for the naming, None to tell from the names."""
    frame_rate = check_frame_rate(frame_rate)
    lines = text.splitlines()
    if not lines or lines[0].strip() != DAT_HEADER:
        found = repr(lines[0].strip()[:40]) if lines else "an empty file"
        raise CueFileError(source, f"expected the header {DAT_HEADER!r}, found {found}", 1)
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split()
        # ASCII digits only: str.isdigit() takes "²", which int() refuses.
        digits = fields[0].lstrip("0") if len(fields) == 2 and re.fullmatch("[0-9]+", fields[0]) else ""
        if not digits:
            raise CueFileError(source, f"expected '<frame number from 1> <shape>', got {_clip(line.strip())!r}", number)
        frame = int(digits) if len(digits) <= 20 else math.inf  # no int() of thousands of digits
        if (frame - 1) / frame_rate > MAX_SECONDS:
            raise CueFileError(
                source, f"frame {_clip(fields[0])} is past {MAX_SECONDS / 3600:g} hours at {frame_rate:g} fps", number
            )
        if rows and frame <= rows[-1][0]:
            raise CueFileError(source, f"frame {frame} does not come after frame {rows[-1][0]}", number)
        rows.append((frame, fields[1], number))
    if not rows:
        raise CueFileError(source, "no cues after the header", 1)
    if preston_blair is None:
        preston_blair = any(name.lower() in _ONLY_PRESTON_BLAIR for _, name, _ in rows)

    def shape_of(name, number):
        if preston_blair:
            if name.lower() not in SHAPE_OF_PRESTON_BLAIR:
                names = ", ".join([*PRESTON_BLAIR_NAMES.values(), *PAPAGAYO_ONLY_NAMES])
                raise CueFileError(source, f"{_clip(name)!r} is not a Preston Blair mouth name; names are {names}", number)
            return SHAPE_OF_PRESTON_BLAIR[name.lower()]
        return _parse_shape(name, source, number)

    shapes = [shape_of(name, number) for _, name, number in rows]
    times = [_frame_start(frame, frame_rate) for frame, _, _ in rows]
    cues = [(start, end, shape) for start, end, shape in zip(times, times[1:], shapes)]
    return _track(cues, source, [row[2] for row in rows], duration=times[-1], closed_shape=shapes[-1])


def write_dat(track, frame_rate=DAT_DEFAULT_FRAME_RATE, preston_blair=False):
    frame_rate = check_dat_frame_rate(frame_rate)

    def name(shape):
        return PRESTON_BLAIR_NAMES[shape] if preston_blair else shape

    lines = [f"{DAT_HEADER}\n"]
    last_frame = 0
    for cue in track.contiguous().cues:
        frame = dat_frame(cue.start, frame_rate)
        if frame == last_frame:  # a cue shorter than a frame: the earlier one stays
            continue
        lines.append(f"{frame} {name(cue.shape)}\n")
        last_frame = frame
    end_frame = dat_frame(_recording_end(track), frame_rate)
    if end_frame == last_frame:
        end_frame += 1
    lines.append(f"{end_frame} {name(track.closing_shape())}\n")
    return "".join(lines)


# --------------------------------------------------------------------------------------------
# files


def format_of_path(path, text=None):
    """The format a file is in: from its extension, else from its first characters."""
    suffix = Path(path).suffix.lower()
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    if text is not None:
        start = text.lstrip()
        if start.startswith("{"):
            return "json"
        if start.startswith("<"):
            return "xml"
        if start.startswith(DAT_HEADER):
            return "dat"
        return "tsv"
    raise CueFileError(path, f"cannot tell the cue format from the extension {suffix!r}; formats are {', '.join(FORMATS)}")


def parse_cues(text, format, source="<cues>", frame_rate=DAT_DEFAULT_FRAME_RATE, preston_blair=None):
    if format == "tsv":
        return read_tsv(text, source)
    if format == "json":
        return read_json(text, source)
    if format == "xml":
        return read_xml(text, source)
    if format == "dat":
        return read_dat(text, source, frame_rate, preston_blair)
    raise CueFileError(source, f"unknown cue format {format!r}; formats are {', '.join(FORMATS)}")


def format_cues(track, format, frame_rate=DAT_DEFAULT_FRAME_RATE, preston_blair=False):
    if format == "tsv":
        return write_tsv(track)
    if format == "json":
        return write_json(track)
    if format == "xml":
        return write_xml(track)
    if format == "dat":
        return write_dat(track, frame_rate, preston_blair)
    raise CueError(f"unknown cue format {format!r}; formats are {', '.join(FORMATS)}")


def read_cues(path, format=None, frame_rate=DAT_DEFAULT_FRAME_RATE, preston_blair=None):
    """A cue file's track. The format comes from the extension (or the content) unless given."""
    path = Path(path)
    if kind := not_a_file(path):
        raise CueFileError(path, f"is {kind}, not a cue file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CueFileError(path, "no such file") from None
    except IsADirectoryError:
        raise CueFileError(path, "is a folder, not a cue file") from None
    except OSError as error:
        raise CueFileError(path, f"cannot be read: {error.strerror}") from None
    try:
        text = decode_text(data)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise CueFileError(path, f"not UTF-8 text (byte {error.start})", line) from None
    return parse_cues(text, format or format_of_path(path, text), str(path), frame_rate, preston_blair)


def save_cues(track, path, format=None, frame_rate=DAT_DEFAULT_FRAME_RATE, preston_blair=False):
    """Write a track to a file (atomically); the format comes from the extension unless given."""
    format = format or format_of_path(path)
    write_text_atomic(path, format_cues(track, format, frame_rate, preston_blair))
    return Path(path)


__all__ = [
    "CueFileError", "FORMATS", "PRESTON_BLAIR_NAMES", "format_cues", "parse_cues",
    "read_cues", "save_cues", "read_tsv", "write_tsv", "read_json", "write_json", "read_xml", "write_xml",
    "read_dat", "write_dat", "dat_frame", "format_seconds",
]
