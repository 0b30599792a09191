"""The cue track: which mouth shape shows when, as Rhubarb Lip Sync describes it.

A cue track is a sorted list of cues (start seconds, end seconds, shape), where a shape is one of
Rhubarb's mouth shapes A-H and X (shared/reference/rhubarb.md §1.4). Cues do not overlap; a gap
between cues means the mouth is closed. The track also keeps what Rhubarb's files carry besides
the cues (the sound file, the recording's length, the closed-mouth shape of its final line) so a
file read and written again comes out the same.
"""

import math
from dataclasses import dataclass

from ..errors import UserError
from ..json_text import is_number

# Rhubarb's mouth shapes: A-F the basic (Hanna-Barbera) set, G, H and X the extended ones.
BASIC_SHAPES = "ABCDEF"
EXTENDED_SHAPES = "GHX"
SHAPES = BASIC_SHAPES + EXTENDED_SHAPES

SHAPE_DESCRIPTIONS = {
    "A": "closed mouth, slight pressure (P, B, M)",
    "B": "slightly open, clenched teeth (most consonants, EE)",
    "C": "open (EH, AE)",
    "D": "wide open (AA)",
    "E": "slightly rounded (AO, ER)",
    "F": "puckered (UW, OW, W)",
    "G": "upper teeth on lower lip (F, V)",
    "H": "tongue raised (long L)",
    "X": "idle, relaxed closed lips",
}

# What Rhubarb shows in place of an extended shape the user did not enable (animationRules.cpp).
BASIC_SUBSTITUTE = {"G": "A", "H": "C", "X": "A"}

# Shape groups for comparing tracks: which shapes look alike.
SHAPE_GROUPS = {
    "closed": "AX",
    "narrow": "BCG",
    "open": "DH",
    "round": "EF",
}
GROUP_OF_SHAPE = {shape: group for group, shapes in SHAPE_GROUPS.items() for shape in shapes}

CENTISECOND = 0.01
# The longest recording a track may describe. Far past any line of dialogue, yet small enough
# that per-frame output and frame arithmetic stay bounded (a cue file claiming 1e12 s would
# otherwise make millions of frames, or overflow int()).
MAX_SECONDS = 12 * 3600.0
MAX_FRAME_RATE = 32767.0  # Blender's highest scene frame rate: frames faster than any scene plays


class CueError(UserError, ValueError):
    """A cue or cue track that breaks the model's rules."""


def check_shape(shape):
    """The shape as an upper-case letter A-H or X (Rhubarb parses shapes case-insensitively)."""
    if not isinstance(shape, str) or shape.upper() not in SHAPES or len(shape) != 1:
        raise CueError(f"{shape!r} is not a mouth shape; shapes are {', '.join(SHAPES)}")
    return shape.upper()


def parse_shape_set(text):
    """The shapes that `--extendedShapes TEXT` enables, with the basic ones: "GHX" -> "ABCDEFGHX"."""
    extended = []
    for char in text:
        shape = check_shape(char)
        if shape in BASIC_SHAPES:
            raise CueError(f"{char!r} is a basic shape; extended shapes are {', '.join(EXTENDED_SHAPES)}")
        if shape not in extended:
            extended.append(shape)
    return BASIC_SHAPES + "".join(s for s in EXTENDED_SHAPES if s in extended)


def closed_shape_of(shape_set):
    """The closed-mouth shape of a shape set: X when enabled, else A (Rhubarb's rule)."""
    return "X" if "X" in shape_set else "A"


def basic_shape(shape, shape_set=SHAPES):
    """The shape as shown when only `shape_set` is enabled."""
    return shape if shape in shape_set else BASIC_SUBSTITUTE[shape]


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    shape: str

    def __post_init__(self):
        object.__setattr__(self, "shape", check_shape(self.shape))
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= MAX_SECONDS:
                raise CueError(f"cue {name} must be a number of seconds from 0 to {MAX_SECONDS:g}, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.end < self.start:
            raise CueError(f"cue ends ({self.end:.3f} s) before it starts ({self.start:.3f} s)")

    @property
    def duration(self):
        return self.end - self.start

    @property
    def centre(self):
        return 0.5 * (self.start + self.end)


@dataclass(frozen=True)
class CueTrack:
    """Cues in time order, with what the file they came from said about the recording.

    `duration` is the recording's length (the end of the last cue when unknown); `sound_file` the
    recording's path as the file wrote it; `closed_shape` the closed-mouth shape the file used
    (X, or A when only basic shapes were enabled), None when the file did not say; `source`
    names where the cues came from (a path, "analyser", ...).
    """

    cues: tuple
    duration: float = None
    sound_file: str = ""
    closed_shape: str = None
    source: str = ""

    def __post_init__(self):
        cues = tuple(self.cues)
        for index, cue in enumerate(cues):
            if not isinstance(cue, Cue):
                raise CueError(f"cue {index + 1} is a {type(cue).__name__}, not a Cue")
            if index and cue.start < cues[index - 1].end - 1e-9:
                raise CueError(
                    f"cue {index + 1} starts at {cue.start:.3f} s, before cue {index} ends ({cues[index - 1].end:.3f} s)"
                )
        object.__setattr__(self, "cues", cues)
        end = cues[-1].end if cues else 0.0
        duration = end if self.duration is None else self.duration
        if not isinstance(duration, (int, float)) or not 0 <= duration <= MAX_SECONDS:
            raise CueError(f"track duration must be a number of seconds from 0 to {MAX_SECONDS:g}, got {self.duration!r}")
        object.__setattr__(self, "duration", float(duration))
        if self.closed_shape is not None:
            object.__setattr__(self, "closed_shape", check_shape(self.closed_shape))

    def __len__(self):
        return len(self.cues)

    def __iter__(self):
        return iter(self.cues)

    @property
    def end(self):
        """Where the last cue ends (0 for an empty track)."""
        return self.cues[-1].end if self.cues else 0.0

    @property
    def shapes_used(self):
        return "".join(s for s in SHAPES if any(c.shape == s for c in self.cues))

    def closing_shape(self):
        """The closed-mouth shape for the end of the track: the file's own, else X unless the
        track uses only basic shapes (then A, as Rhubarb writes with --extendedShapes "")."""
        if self.closed_shape:
            return self.closed_shape
        used = self.shapes_used
        return "A" if used and all(s in BASIC_SHAPES for s in used) else "X"

    def shape_at(self, seconds):
        """The shape showing at a time (the closing shape in gaps, before and after the cues)."""
        for cue in self.cues:
            if cue.start <= seconds < cue.end:
                return cue.shape
        return self.closing_shape()

    def contiguous(self, join=False):
        """The track with gaps (from time 0 to the duration) filled by the closing shape and zero-length cues
        dropped; with `join`, neighbours of the same shape merged too (as Rhubarb's timelines are)."""
        closed = self.closing_shape()
        merged = []

        def add(start, end, shape):
            if end <= start:
                return
            if join and merged and merged[-1].shape == shape and abs(merged[-1].end - start) < 1e-9:
                merged[-1] = Cue(merged[-1].start, end, shape)
            else:
                merged.append(Cue(start, end, shape))

        time = 0.0
        for cue in self.cues:
            add(time, cue.start, closed)
            add(cue.start, cue.end, cue.shape)
            time = max(time, cue.end)
        add(time, self.duration, closed)
        return CueTrack(tuple(merged), self.duration, self.sound_file, self.closed_shape, self.source)

    def heard_between(self, start, end):
        """The track with the mouth closed (the closing shape) outside [start, end) seconds: what
        a sound strip trimmed to that part of the recording lets be heard. Times stay the
        recording's."""
        closed = self.closing_shape()
        cues = []
        for cue in self.contiguous().cues:
            for piece_start, piece_end, shape in ((cue.start, min(cue.end, start), closed),
                                                  (max(cue.start, start), min(cue.end, end), cue.shape),
                                                  (max(cue.start, end), cue.end, closed)):
                if piece_end > piece_start:
                    cues.append(Cue(piece_start, piece_end, shape))
        return CueTrack(tuple(cues), self.duration, self.sound_file, self.closed_shape, self.source).joined()

    def shifted(self, seconds):
        """The track `seconds` later (earlier where negative), what would come before 0 cut off:
        its recording heard from a point into it (a sound strip split or slipped in Blender)."""
        if not seconds:
            return self
        cues = tuple(Cue(max(cue.start + seconds, 0.0), cue.end + seconds, cue.shape)
                     for cue in self.cues if cue.end + seconds > 0)
        duration = max(self.duration + seconds, 0.0)
        return CueTrack(cues, duration, self.sound_file, self.closing_shape(), self.source).joined()

    def scaled(self, factor):
        """The track played over `factor` times its seconds (a sound strip retimed to 1/factor
        of its speed in Blender)."""
        if factor == 1:
            return self
        if not (math.isfinite(factor) and factor > 0):
            raise CueError(f"a cue track's time scale must be a positive number, got {factor!r}")
        cues = tuple(Cue(cue.start * factor, cue.end * factor, cue.shape) for cue in self.cues)
        return CueTrack(cues, self.duration * factor, self.sound_file, self.closing_shape(), self.source).joined()

    def joined(self):
        """contiguous(join=True): no gaps, no zero-length cues, no equal neighbours."""
        return self.contiguous(join=True)

    def with_shape_set(self, shape_set):
        """The track as shown with only `shape_set` enabled (G->A, H->C, X->A when missing)."""
        cues = tuple(Cue(c.start, c.end, basic_shape(c.shape, shape_set)) for c in self.cues)
        closed = closed_shape_of(shape_set)
        return CueTrack(cues, self.duration, self.sound_file, closed, self.source).joined()

    def frame_shapes(self, step=CENTISECOND, until=None):
        """The shape at the middle of each `step`-long frame from 0 to `until` (default: the
        duration), as a string: the form used to compare two tracks frame by frame."""
        until = self.duration if until is None else until
        count = int(round(until / step))
        shapes = []
        cues = self.cues
        index = 0
        closed = self.closing_shape()
        for frame in range(count):
            time = (frame + 0.5) * step
            while index < len(cues) and cues[index].end <= time:
                index += 1
            if index < len(cues) and cues[index].start <= time:
                shapes.append(cues[index].shape)
            else:
                shapes.append(closed)
        return "".join(shapes)


def cue_rows(cues):
    """Cues as JSON rows [start, end, shape]: how a line's record and a kept analysis store them."""
    return [[cue.start, cue.end, cue.shape] for cue in cues]


def cues_from_rows(rows):
    """The cues of such rows, read back; CueError for anything that is no list of them (a true or
    false is no time, though Python takes it for 1 or 0)."""
    if not isinstance(rows, list):
        raise CueError("cues must be a list of [start, end, shape] rows")
    for row in rows:
        if not (isinstance(row, list) and len(row) == 3 and is_number(row[0]) and is_number(row[1])):
            raise CueError(f"{row!r:.60} is no [start, end, shape] row of a cue")
    return tuple(Cue(*row) for row in rows)


def seconds_to_frame(seconds, frame_rate, start_frame=0):
    """The (fractional) frame at a time, frame `start_frame` being time 0."""
    check_frame_rate(frame_rate)
    return start_frame + seconds * frame_rate


def frame_to_seconds(frame, frame_rate, start_frame=0):
    """The time of a frame, frame `start_frame` being time 0."""
    check_frame_rate(frame_rate)
    return (frame - start_frame) / frame_rate


def check_frame_rate(frame_rate):
    if not isinstance(frame_rate, (int, float)) or not 0 < frame_rate <= MAX_FRAME_RATE:  # (NaN fails too)
        raise CueError(f"frame rate must be a positive number of frames per second up to {MAX_FRAME_RATE:g}, "
                       f"got {frame_rate!r}")
    return float(frame_rate)


def agreement(track, reference, step=CENTISECOND):
    """(same shape, same shape group) shares of `step`-long frames, over the reference's length."""
    ours = track.frame_shapes(step, until=reference.duration)
    theirs = reference.frame_shapes(step, until=reference.duration)
    if not theirs:
        return 1.0, 1.0
    same = sum(a == b for a, b in zip(ours, theirs))
    same_group = sum(GROUP_OF_SHAPE[a] == GROUP_OF_SHAPE[b] for a, b in zip(ours, theirs))
    return same / len(theirs), same_group / len(theirs)
