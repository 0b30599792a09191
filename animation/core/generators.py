"""Life between words: natural blinks, idle head sway, breathing and eye movement as keyframes.

Each generator takes a pose schema, its settings and a frame range at a frame rate, and returns
{parameter name: [Keyframe]} (animation/core/keys.py) touching only its own parameters, which the
Blender side writes into an action of its own on an NLA strip. Every settings object has

- `seed`: the generator draws from numpy's Generator seeded with it, so the same settings give
  the same keys on every run and machine (numpy keeps its bit generators' streams stable);
- `rate`: how fast (1 = the settings' own timing; 2 = twice as often / twice as fast);
- `amplitude`: how much (1 = the settings' own sizes; blinks: how far the eyes close).

All generated values rest at 0 (eyes open, head straight, breath out, gaze ahead), which is each
parameter's neutral value, so the strips can be blended with ADD over the other animation.
Blink and saccade keys sit on whole frames so a render at the scene rate sees every blink shut;
a duration given in seconds becomes the nearest whole number of frames (at least one).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from ...errors import UserError
from ...lipsync.curves import MAX_FRAME, MIN_FRAME
from .keys import flat_bezier_keys, tangent_bezier_keys

# Which parameters close the eyes: THA2/THA3/THA4 wink morphs, THA1's own eye parameters.
EYE_CLOSERS = (("eye_wink_left", "eye_wink_right"), ("left_eye", "right_eye"))
IRIS_ROTATION = ("iris_rotation_x", "iris_rotation_y")
BREATHING = "breathing"


class GeneratorError(UserError, ValueError):
    """Generator settings out of range, or a pose schema without the generator's parameters."""


def _number(owner, name, value, low, high, low_open=False):
    """A setting as a float within [low, high] ((low, high] where low_open), else GeneratorError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise GeneratorError(f"{owner}: {name} must be a number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


def _range(owner, name, value, low, high):
    """A (minimum, maximum) setting with low <= minimum <= maximum <= high."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise GeneratorError(f"{owner}: {name} must be (minimum, maximum), got {value!r}")
    first = _number(owner, f"{name} minimum", value[0], low, high)
    second = _number(owner, f"{name} maximum", value[1], low, high)
    if first > second:
        raise GeneratorError(f"{owner}: {name} minimum {first} is above its maximum {second}")
    return (first, second)


def _common(settings):
    owner = type(settings).__name__
    if not isinstance(settings.seed, int) or isinstance(settings.seed, bool) or settings.seed < 0:
        raise GeneratorError(f"{owner}: seed must be a whole number from 0, got {settings.seed!r}")
    _number(owner, "rate", settings.rate, 0.0, 10.0, low_open=True)
    _number(owner, "amplitude", settings.amplitude, 0.0, 10.0)
    return owner


@dataclass(frozen=True)
class BlinkSettings:
    """Natural blinks: both eyes close and open together at random intervals.

    `interval` is the range of seconds from one blink's start to the next's (divided by `rate`);
    a double blink is two blinks `double_gap` seconds apart counted as one."""

    seed: int = 0
    rate: float = 1.0
    amplitude: float = 1.0  # how far the eyes close: 1 = shut
    interval: tuple = (2.0, 6.0)
    close_duration: float = 0.08  # open -> shut
    closed_duration: float = 0.04  # held shut
    open_duration: float = 0.16  # shut -> open (slower than closing, as eyelids are)
    double_probability: float = 0.1
    double_gap: float = 0.1  # open between the two blinks of a double
    strip_name = "THA blinks"

    def __post_init__(self):
        owner = _common(self)
        _number(owner, "amplitude", self.amplitude, 0.0, 1.0)
        _range(owner, "interval", self.interval, 0.0, 600.0)
        _number(owner, "close_duration", self.close_duration, 0.0, 2.0, low_open=True)
        _number(owner, "closed_duration", self.closed_duration, 0.0, 2.0)
        _number(owner, "open_duration", self.open_duration, 0.0, 2.0, low_open=True)
        _number(owner, "double_probability", self.double_probability, 0.0, 1.0)
        _number(owner, "double_gap", self.double_gap, 0.0, 2.0, low_open=True)
        longest = 2 * (self.close_duration + self.closed_duration + self.open_duration) + self.double_gap
        if self.interval[0] / self.rate <= longest:
            raise GeneratorError(
                f"{owner}: the shortest interval ({self.interval[0]} s at rate {self.rate}) must be longer "
                f"than a double blink ({longest:.2f} s), or blinks would overlap")


@dataclass(frozen=True)
class SwaySettings:
    """Idle sway: each parameter drifts smoothly around 0, a sum of three slow sines with random
    phases and frequencies (the base one 1/period), `fade` seconds in and out at the ends.

    `motions` is {parameter: (period seconds, amplitude in the parameter's units)}; THA's
    head_x/head_y/neck_z unit is 15 degrees, so the defaults sway by about 1-2 degrees."""

    seed: int = 0
    rate: float = 1.0
    amplitude: float = 1.0
    motions: dict = field(default_factory=lambda: {"head_x": (7.0, 0.06), "head_y": (9.0, 0.1),
                                                   "neck_z": (11.0, 0.06)})
    key_step: int = 4  # frames between keys: the Bezier handles carry the curve between them
    fade: float = 0.5
    strip_name = "THA sway"

    def __post_init__(self):
        owner = _common(self)
        if not isinstance(self.motions, dict) or not self.motions:
            raise GeneratorError(f"{owner}: motions must be {{parameter: (period, amplitude)}}, got {self.motions!r}")
        for name, motion in self.motions.items():
            if not isinstance(motion, (tuple, list)) or len(motion) != 2:
                raise GeneratorError(f"{owner}: motion of {name!r} must be (period seconds, amplitude), got {motion!r}")
            _number(owner, f"period of {name}", motion[0], 0.0, 600.0, low_open=True)
            _number(owner, f"amplitude of {name}", motion[1], 0.0, 2.0)
        if not isinstance(self.key_step, int) or isinstance(self.key_step, bool) or not 1 <= self.key_step <= 100:
            raise GeneratorError(f"{owner}: key_step must be a whole number of frames from 1 to 100, got {self.key_step!r}")
        _number(owner, "fade", self.fade, 0.0, 60.0)


@dataclass(frozen=True)
class BreathingSettings:
    """Breathing: THA3's breathing parameter rises to `amplitude` and falls back once per breath,
    each breath `period` seconds (divided by `rate`) give or take `variation` of it."""

    seed: int = 0
    rate: float = 1.0
    amplitude: float = 1.0  # the breath's peak (the parameter's range is 0..1)
    period: float = 4.0
    variation: float = 0.1
    strip_name = "THA breathing"

    def __post_init__(self):
        owner = _common(self)
        _number(owner, "amplitude", self.amplitude, 0.0, 1.0)
        _number(owner, "period", self.period, 0.0, 600.0, low_open=True)
        _number(owner, "variation", self.variation, 0.0, 0.9)


@dataclass(frozen=True)
class GazeSettings:
    """Eye movement: the irises rest on random fixation points, jumping between them in quick
    saccades. Each fixation lasts `fixation` seconds (a range, divided by `rate`); a point is
    straight ahead with `centre_probability`, else anywhere in the ellipse of half-axes
    `range_x` (iris_rotation_x: up/down) and `range_y` (iris_rotation_y: sideways) times
    `amplitude`. The gaze starts and ends straight ahead."""

    seed: int = 0
    rate: float = 1.0
    amplitude: float = 1.0
    fixation: tuple = (0.5, 2.5)
    range_x: float = 0.3
    range_y: float = 0.5
    saccade_duration: float = 0.05
    centre_probability: float = 0.3
    strip_name = "THA gaze"

    def __post_init__(self):
        owner = _common(self)
        _range(owner, "fixation", self.fixation, 0.0, 600.0)
        _number(owner, "range_x", self.range_x, 0.0, 1.0)
        _number(owner, "range_y", self.range_y, 0.0, 1.0)
        _number(owner, "saccade_duration", self.saccade_duration, 0.0, 2.0, low_open=True)
        _number(owner, "centre_probability", self.centre_probability, 0.0, 1.0)
        if self.fixation[0] <= 0:
            raise GeneratorError(f"{owner}: the shortest fixation must be above 0 seconds, got {self.fixation[0]}")


def _check_frames(frame_start, frame_end, fps):
    for name, value in (("frame_start", frame_start), ("frame_end", frame_end)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise GeneratorError(f"{name} must be a frame number, got {value!r}")
        if not MIN_FRAME <= value <= MAX_FRAME:  # (and keys for years of frames to make)
            raise GeneratorError(f"{name} {value:,} is outside Blender's frames {MIN_FRAME:,} to {MAX_FRAME:,}")
    if frame_end <= frame_start:
        raise GeneratorError(f"frame_end ({frame_end}) must be after frame_start ({frame_start})")
    return _number("scene", "fps", fps, 0.0, 1000.0, low_open=True)


def _frames(seconds, fps):
    """A duration as a whole number of frames, at least one."""
    return max(1, int(round(seconds * fps)))


# --- which parameters each generator keys -------------------------------------------------------

def blink_parameters(schema):
    """The (left, right) parameters that close the eyes in this schema."""
    for pair in EYE_CLOSERS:
        if all(name in schema.names for name in pair):
            return pair
    raise GeneratorError(f"blinks: the {schema.name} pose has no eye-closing parameters "
                         f"({' or '.join('/'.join(pair) for pair in EYE_CLOSERS)})")


def sway_parameters(schema, settings=None):
    settings = settings or SwaySettings()
    missing = [name for name in settings.motions if name not in schema.names]
    if missing:
        raise GeneratorError(f"sway: the {schema.name} pose has no parameter {', '.join(map(repr, missing))}; "
                             f"head parameters are {', '.join(schema.group_names('head'))}")
    return tuple(settings.motions)


def breathing_parameters(schema):
    if BREATHING not in schema.names:
        raise GeneratorError(f"breathing: the {schema.name} pose has no breathing parameter (THA3 and THA4 have one)")
    return (BREATHING,)


def gaze_parameters(schema):
    if not all(name in schema.names for name in IRIS_ROTATION):
        raise GeneratorError(f"eye movement: the {schema.name} pose has no iris rotation parameters "
                             f"({', '.join(IRIS_ROTATION)}; THA2, THA3 and THA4 have them)")
    return IRIS_ROTATION


# --- the generators ------------------------------------------------------------------------------

def blinks(schema, settings=None, frame_start=1, frame_end=250, fps=24.0, busy=()):
    """Blink keys for both eyes between frame_start and frame_end.

    `busy` is a list of (first frame, last frame) where the eyes are already keyed (a wink): no
    blink touches those frames, and the blink clock restarts after each, as if the wink had
    been a blink."""
    settings = settings or BlinkSettings()
    fps = _check_frames(frame_start, frame_end, fps)
    left, right = blink_parameters(schema)
    busy = _check_busy(busy)
    rng = np.random.default_rng(settings.seed)

    close = _frames(settings.close_duration, fps)
    closed = int(round(settings.closed_duration * fps))
    opening = _frames(settings.open_duration, fps)
    gap = _frames(settings.double_gap, fps)
    single = close + closed + opening
    if settings.interval[0] / settings.rate * fps < 2 * single + gap + 1:
        raise GeneratorError(
            f"blinks: at {fps:g} fps a double blink takes {2 * single + gap} frames, as long as the shortest "
            f"interval ({settings.interval[0]} s at rate {settings.rate}); lengthen the interval or shorten the blink")

    def interval():
        return rng.uniform(*settings.interval) / settings.rate * fps

    points = [(frame_start, 0.0)]
    start = int(math.ceil(frame_start + rng.uniform(0.0, settings.interval[1]) / settings.rate * fps))
    while True:
        double = rng.random() < settings.double_probability
        end = start + (2 * single + gap if double else single)
        if end > frame_end:
            break
        blocking = [b for b in busy if start <= b[1] and end >= b[0]]
        if blocking:
            resume = max(b[1] for b in blocking)
            if resume >= frame_end:
                break  # busy to the end (a wink held past the range)
            start = int(math.ceil(resume + interval()))
            continue
        first = start
        for _ in range(2 if double else 1):
            points.append((first, 0.0))
            points.append((first + close, settings.amplitude))
            if closed:
                points.append((first + close + closed, settings.amplitude))
            points.append((first + single, 0.0))
            first += single + gap
        start = int(round(start + interval()))
    points.append((frame_end, 0.0))
    keys = flat_bezier_keys(_unique_frames(points))
    return {left: keys, right: list(keys)}


def _check_busy(busy):
    intervals = []
    for interval in busy or ():
        try:
            first, last = (float(v) for v in interval)
        except (TypeError, ValueError):
            raise GeneratorError(f"blinks: busy intervals are (first frame, last frame), got {interval!r}") from None
        if math.isnan(first) or math.isnan(last) or last < first:
            raise GeneratorError(f"blinks: busy interval {interval!r} ends before it starts")
        intervals.append((first, last))
    return intervals


def busy_intervals(*tracks, rest=0.0):
    """(first frame, last frame) spans where any of the keyed curves (lists of keys with `frame`
    and `value`, such as the eye_wink keys already on a sprite) is away from `rest`: the `busy`
    argument of `blinks`. A curve that starts or ends away from rest holds that value beyond its
    keys, so its span runs to -inf or inf."""
    spans = []
    for keys in tracks:
        keys = sorted(keys, key=lambda k: k.frame)
        if not keys:
            continue
        moving = [abs(k.value - rest) > 1e-6 for k in keys]
        if moving[0]:
            spans.append((-math.inf, keys[0].frame))
        for key, following, moves in zip(keys, keys[1:], zip(moving, moving[1:])):
            if any(moves):
                spans.append((key.frame, following.frame))
        if moving[-1]:
            spans.append((keys[-1].frame, math.inf))
    merged = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _unique_frames(points):
    """Points with a later point at the same frame replacing the earlier (a blink that starts on
    the range's first frame)."""
    kept = []
    for frame, value in points:
        if kept and abs(kept[-1][0] - frame) < 1e-9:
            kept[-1] = (frame, value)
        else:
            kept.append((frame, value))
    return kept


def sway(schema, settings=None, frame_start=1, frame_end=250, fps=24.0):
    """Idle sway keys for each of `settings.motions`' parameters (by default head_x, head_y, neck_z)."""
    settings = settings or SwaySettings()
    fps = _check_frames(frame_start, frame_end, fps)
    names = sway_parameters(schema, settings)
    rng = np.random.default_rng(settings.seed)
    frames = np.arange(frame_start, frame_end, settings.key_step, dtype=np.float64)
    frames = np.append(frames, float(frame_end))
    result = {}
    for name in names:  # draws in the settings' order, so adding a parameter leaves the others alone
        period, size = settings.motions[name]
        curve = _sway_curve(rng, period / settings.rate, size * settings.amplitude, settings.fade,
                            frame_start, frame_end, fps)
        parameter = schema.parameter(name)
        values = np.clip(curve(frames), parameter.minimum, parameter.maximum)
        step = 1e-3  # frames: the slope of an analytic curve by central difference
        slopes = (curve(frames + step) - curve(frames - step)) / (2 * step)
        result[name] = tangent_bezier_keys(frames, values, slopes)
    return result


# Relative frequencies and weights of the sway's three sines: the base drift and two faster,
# weaker ones whose frequencies are drawn, so the sum never visibly repeats.
_SWAY_HARMONICS = ((1.0, 1.0), ((1.6, 2.4), 0.5), ((2.9, 3.9), 0.25))


def _sway_curve(rng, period, size, fade, frame_start, frame_end, fps):
    frequencies, weights = [], []
    for multiplier, weight in _SWAY_HARMONICS:
        frequencies.append((rng.uniform(*multiplier) if isinstance(multiplier, tuple) else multiplier) / period)
        weights.append(weight)
    phases = rng.uniform(0.0, 2 * np.pi, len(frequencies))
    frequencies, weights = np.array(frequencies), np.array(weights) / sum(weights)
    fade_frames = fade * fps

    def curve(frames):
        seconds = (np.asarray(frames, dtype=np.float64) - frame_start) / fps
        waves = np.sin(2 * np.pi * np.outer(seconds, frequencies) + phases) @ weights
        return size * waves * _envelope(frames, frame_start, frame_end, fade_frames)

    return curve


def _envelope(frames, frame_start, frame_end, fade_frames):
    """1 inside the range, easing from 0 over `fade_frames` at both ends (smoothstep)."""
    if fade_frames <= 0:
        return np.ones_like(np.asarray(frames, dtype=np.float64))
    fade_frames = min(fade_frames, (frame_end - frame_start) / 2.0)
    frames = np.asarray(frames, dtype=np.float64)
    u = np.clip(np.minimum(frames - frame_start, frame_end - frames) / fade_frames, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def breathing(schema, settings=None, frame_start=1, frame_end=250, fps=24.0):
    """Breathing keys: out (0) at frame_start, in (`amplitude`) half a breath later, out again at
    its end, and so on while whole breaths fit. Flat handles make each half breath a smoothstep,
    within 0.01 of THA3's own (1 - cos)/2 cycle."""
    settings = settings or BreathingSettings()
    fps = _check_frames(frame_start, frame_end, fps)
    (name,) = breathing_parameters(schema)
    rng = np.random.default_rng(settings.seed)
    points = [(float(frame_start), 0.0)]
    now = float(frame_start)
    while True:
        length = settings.period / settings.rate * fps * (1.0 + settings.variation * rng.uniform(-1.0, 1.0))
        if now + length > frame_end:
            break
        points += [(now + length / 2.0, settings.amplitude), (now + length, 0.0)]
        now += length
    if points[-1][0] < frame_end:
        points.append((float(frame_end), 0.0))
    return {name: flat_bezier_keys(points)}


def gaze(schema, settings=None, frame_start=1, frame_end=250, fps=24.0):
    """Eye movement keys on iris_rotation_x and iris_rotation_y: holds on fixation points and
    quick moves between them, from and back to looking straight ahead."""
    settings = settings or GazeSettings()
    fps = _check_frames(frame_start, frame_end, fps)
    x_name, y_name = gaze_parameters(schema)
    rng = np.random.default_rng(settings.seed)
    saccade = _frames(settings.saccade_duration, fps)
    frame_start, frame_end = int(math.ceil(frame_start)), int(math.floor(frame_end))
    if frame_end <= frame_start:
        raise GeneratorError("eye movement: no whole frames between frame_start and frame_end")
    points = [(frame_start, 0.0, 0.0)]
    now, point = frame_start, (0.0, 0.0)
    while True:
        hold = _frames(rng.uniform(*settings.fixation) / settings.rate, fps)
        target = _fixation_point(rng, settings)
        move = now + hold
        if move + saccade > frame_end - saccade:  # leave room to look back ahead at the end
            break
        points += [(move, *point), (move + saccade, *target)]
        now, point = move + saccade, target
    if point != (0.0, 0.0):
        if points[-1][0] < frame_end - saccade:
            points.append((frame_end - saccade, *point))
        points.append((frame_end, 0.0, 0.0))
    elif points[-1][0] < frame_end:
        points.append((frame_end, 0.0, 0.0))
    return {x_name: flat_bezier_keys([(f, x) for f, x, _ in points]),
            y_name: flat_bezier_keys([(f, y) for f, _, y in points])}


def _fixation_point(rng, settings):
    """Straight ahead, or a point spread evenly over the ellipse of the settings' ranges."""
    ahead = rng.random() < settings.centre_probability
    radius, angle = math.sqrt(rng.random()), rng.uniform(0.0, 2 * np.pi)
    if ahead:
        return (0.0, 0.0)
    scale = settings.amplitude
    x = float(np.clip(radius * math.cos(angle) * settings.range_x * scale, -1.0, 1.0))
    y = float(np.clip(radius * math.sin(angle) * settings.range_y * scale, -1.0, 1.0))
    return (x, y)


# The generators by name, for the Blender side and the UI: (settings class, generator, parameters).
GENERATORS = {
    "blinks": (BlinkSettings, blinks, lambda schema, settings: blink_parameters(schema)),
    "sway": (SwaySettings, sway, sway_parameters),
    "breathing": (BreathingSettings, breathing, lambda schema, settings: breathing_parameters(schema)),
    "gaze": (GazeSettings, gaze, lambda schema, settings: gaze_parameters(schema)),
}


def keyed_parameters(generator, schema, settings=None):
    """The parameters a generator (by name) keys for this schema: what to clear before a re-run."""
    try:
        settings_class, _, parameters = GENERATORS[generator]
    except KeyError:
        raise GeneratorError(f"unknown generator {generator!r}; generators are {', '.join(GENERATORS)}") from None
    return tuple(parameters(schema, settings or settings_class()))
