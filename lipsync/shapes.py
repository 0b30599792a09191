"""Phones to mouth shapes: Rhubarb Lip Sync's animation rules (shared/reference/rhubarb.md §1.5).

Time runs in whole centiseconds, as in Rhubarb. A timeline here is a list of (start, end, value)
runs covering [0, length); `set_range` overwrites part of one. The steps follow Rhubarb's order:

    phones -> shape rules -> rough animation (closest shapes, vowels anticipated)
           -> timing (minimum shape and segment durations) -> pauses -> tweens
           -> the target shape set; long static segments broken up around all of it,
              each on its own (its own rules searched, as Rhubarb does), then all re-animated.

Every step is linear in the number of runs (a 10-minute recording's shapes take about a tenth
of a second): timelines are written in one pass (`overlaid`) or at their end
(`set_range_at_end`), never copied whole per change, and parts of them found by bisection.
`animate_step_by_step` runs the steps as a generator, so a job can stop between any two.
"""

from bisect import bisect_right
from dataclasses import dataclass
from itertools import combinations
from math import comb

from .cues import SHAPES, Cue, CueTrack, basic_shape, closed_shape_of

VOWELS = frozenset("AO AA IY UW EH IH UH AH Schwa AE EY AY OW AW OY ER".split())
CONSONANTS = frozenset("P B T D K G CH JH F V TH DH S Z SH ZH HH M N NG L R Y W".split())
NON_SPEECH = frozenset(("Breath", "Cough", "Smack", "Noise"))
PHONES = VOWELS | CONSONANTS | NON_SPEECH

ANY = frozenset(SHAPES)
ANY_OPEN = frozenset("BCDEFGH")

# How a shape relaxes when nothing drives it (A..X -> A,B,B,C,C,B,X,B,X).
RELAXED = dict(zip(SHAPES, "ABBCCBXBX"))
# For each shape, all shapes ordered by the effort of moving there from it.
EFFORT_ORDER = {
    "A": "AXGBCHEDF", "B": "BGAXCHEDF", "C": "CHBGDAXEF", "D": "DCHBGAXEF", "E": "ECHBGAXDF",
    "F": "FBGAXCHED", "G": "GABCHXEDF", "H": "HCBGDAXEF", "X": "XAGBCHEDF",
}
# Tweens between two shapes: (in-between shape, timing). Most work one way: mouths pop open
# without in-betweens and close slowly.
TWEENS = {
    ("D", "A"): ("C", "early"), ("D", "B"): ("C", "centered"), ("D", "G"): ("C", "early"),
    ("D", "X"): ("C", "late"), ("C", "F"): ("E", "centered"), ("F", "C"): ("E", "centered"),
    ("D", "F"): ("E", "centered"), ("H", "F"): ("E", "late"), ("F", "H"): ("E", "early"),
}

MAX_ANTICIPATION_CS = 20
MIN_SHAPE_CS = 7  # shorter shapes flicker
MIN_SEGMENT_CS = 8  # an open or closed stretch shorter than this does not register
MAX_SEGMENT_EXTENSION_CS = 6
SHORT_PAUSE_CS = 12
MEDIUM_PAUSE_CS = 35
TWEEN_CS = (4, 8)
STATIC_SEGMENT_CS = 75
STATIC_SEGMENT_SYLLABLES = 3
MAX_STATIC_FIXES = 3
# Combinations of changes tried per static segment at most: a segment with many changeable vowels
# would otherwise cost thousands of re-animations.
MAX_STATIC_CANDIDATES = 600


@dataclass(frozen=True)
class ShapeRule:
    """Which shapes may show for a stretch of time, and the phone (and its timing) behind it."""

    shapes: frozenset
    phone: str = None
    phone_start: int = 0
    phone_end: int = 0

    @property
    def is_single_vowel(self):
        return self.phone in VOWELS and len(self.shapes) == 1


IDLE_RULE = ShapeRule(frozenset("X"))


# --------------------------------------------------------------------------------------------
# timelines: lists of (start, end, value) runs


def set_range(runs, start, end, value):
    """The runs with [start, end) set to value (clipped to the runs' extent)."""
    if not runs:
        return runs
    start, end = max(start, runs[0][0]), min(end, runs[-1][1])
    if end <= start:
        return runs
    result = []
    for run_start, run_end, run_value in runs:
        if run_end <= start or run_start >= end:
            result.append((run_start, run_end, run_value))
            continue
        if run_start < start:
            result.append((run_start, start, run_value))
        if run_start <= start:
            result.append((start, end, value))
        if run_end > end:
            result.append((end, run_end, run_value))
    return result


def joined(runs):
    """Neighbouring runs of the same value merged."""
    result = []
    for start, end, value in runs:
        if end <= start:
            continue
        if result and result[-1][2] == value and result[-1][1] == start:
            result[-1] = (result[-1][0], end, value)
        else:
            result.append((start, end, value))
    return result


def value_at(runs, time):
    for start, end, value in runs:
        if start <= time < end:
            return value
    return None


def set_range_at_end(runs, start, end, value):
    """`set_range` in place, touching only the runs that end after `start`: writing in time
    order, that is the last few, so a whole timeline is built in linear time."""
    first = len(runs)
    while first > 0 and runs[first - 1][1] > start:
        first -= 1
    runs[first:] = set_range(runs[first:], start, end, value)


def overlaid(runs, patches):
    """The runs with each (start, end, value) patch written over them (clipped to the runs'
    extent), in one pass. The patches must not overlap one another; their order does not matter."""
    if not runs:
        return runs
    low, high = runs[0][0], runs[-1][1]
    patches = sorted((max(s, low), min(e, high), v) for s, e, v in patches if min(e, high) > max(s, low))
    result, index, time = [], 0, low
    for patch_start, patch_end, patch_value in patches:
        if patch_start < time:
            raise ValueError(f"overlapping patches at {patch_start}")
        while index < len(runs) and runs[index][0] < patch_start:
            start, end, value = runs[index]
            if min(end, patch_start) > max(start, time):
                result.append((max(start, time), min(end, patch_start), value))
            if end > patch_start:
                break
            index += 1
        result.append((patch_start, patch_end, patch_value))
        time = patch_end
        while index < len(runs) and runs[index][1] <= time:
            index += 1
    for start, end, value in runs[index:]:
        if end > time:
            result.append((max(start, time), end, value))
    return result


def clip_indexed(runs, starts, start, end):
    """`clip` of contiguous runs whose start times are `starts`: found by bisection, so the cost
    is that of the part clipped, not of the whole timeline."""
    result = []
    index = max(bisect_right(starts, start) - 1, 0)
    while index < len(runs) and runs[index][0] < end:
        run_start, run_end, value = runs[index]
        if run_end > start:
            result.append((max(run_start, start), min(run_end, end), value))
        index += 1
    return result


# --------------------------------------------------------------------------------------------
# phones -> shape rules


def phone_shape_sets(phone, duration, previous_duration):
    """[(relative start, relative end, shapes)] for one phone (Rhubarb's getShapeSets)."""

    def single(shapes):
        return [(0, duration, frozenset(shapes))]

    def diphthong(first, second):
        split = int(duration * 0.6)
        return [(0, split, frozenset(first)), (split, duration, frozenset(second))]

    def plosive(occlusion, release):
        # The lips or tongue close before the burst, for half the previous sound (4-12 cs).
        closing = min(max(previous_duration // 2, 4), 12)
        return [(-closing, 0, frozenset(occlusion)), (0, duration, frozenset(release))]

    simple = {
        "AO": "E", "AA": "D", "IY": "B", "UW": "F", "EH": "C", "IH": "B", "UH": "F", "AE": "C",
        "Schwa": "BC", "CH": "BF", "JH": "BF", "F": "G", "V": "G", "TH": "BF", "DH": "BF", "S": "BF",
        "Z": "BF", "SH": "BF", "ZH": "BF", "HH": SHAPES, "M": "A", "N": "BCFH", "NG": "BCEF",
        "R": "BEF", "Y": "BCF", "W": "F", "Breath": "C", "Cough": "C", "Smack": "C", "Noise": "B",
    }
    if phone in simple:
        return single(simple[phone])
    if phone == "AH":
        return single("C" if duration < 20 else "D")
    if phone == "EY":
        return diphthong("C", "B")
    if phone == "AY":
        return diphthong("C" if duration < 20 else "D", "B")
    if phone == "OW":
        return diphthong("E", "F")
    if phone == "AW":
        return diphthong("C" if duration < 30 else "D", "E")
    if phone == "OY":
        return diphthong("E", "B")
    if phone == "ER":
        return phone_shape_sets("Schwa", duration, previous_duration) if duration < 7 else single("E")
    if phone in ("P", "B"):
        return plosive("A", SHAPES)
    if phone in ("T", "D"):
        return plosive("BF", ANY_OPEN)
    if phone in ("K", "G"):
        return plosive("BCEFH", ANY_OPEN)
    if phone == "L":
        return single("BEFH" if duration < 20 else "H")
    raise ValueError(f"unknown phone {phone!r}")


def shape_rules(phones, length):
    """Rule runs over [0, length) from (start, end, phone) triples in time order."""
    rules = [(0, length, IDLE_RULE)]
    previous_end, previous_duration = 0, 0
    for start, end, phone in phones:
        if start > previous_end:  # the silence before counts as the previous sound
            previous_duration = start - previous_end
        for offset_start, offset_end, shapes in phone_shape_sets(phone, end - start, previous_duration):
            rule = ShapeRule(shapes, phone, start, end)
            set_range_at_end(rules, start + offset_start, start + offset_end, rule)
        previous_end, previous_duration = end, end - start
    return rules


def restrict_rules(rules, shape_set):
    """Rules whose shapes are all in the shape set (others replaced by their basic shapes)."""
    return [
        (s, e, ShapeRule(frozenset(basic_shape(x, shape_set) for x in r.shapes), r.phone, r.phone_start, r.phone_end))
        for s, e, r in rules
    ]


# --------------------------------------------------------------------------------------------
# the animation steps


def closest_shape(reference, shapes):
    return next(shape for shape in EFFORT_ORDER[reference] if shape in shapes)


def animate_rough(rules):
    """A forward pass choosing the shape closest to the previous (relaxed) one; each one-shape
    vowel is spread back over the rules before it, up to 20 cs, while they resemble it."""
    shapes = [None] * len(rules)
    reference = "X"
    last_anticipated_start = -1
    for index, (start, _, rule) in enumerate(rules):
        shape = closest_shape(reference, rule.shapes)
        shapes[index] = shape
        if rule.is_single_vowel:
            reference = shape
            for back in range(index - 1, -1, -1):
                back_start = rules[back][0]
                if back_start == last_anticipated_start or start - back_start > MAX_ANTICIPATION_CS:
                    break
                anticipating = closest_shape(reference, rules[back][2].shapes)
                shapes[back] = anticipating
                if basic_shape(anticipating, "ABCDEF") != basic_shape(shape, "ABCDEF"):
                    break
                reference = anticipating
            last_anticipated_start = start
            reference = shape
        else:
            reference = RELAXED[shape]
    return joined([(s, e, shape) for (s, e, _), shape in zip(rules, shapes)])


def representative_shape(runs):
    """The shape showing longest among runs; D rather than C when D is there (more interesting)."""
    weights = {}
    for start, end, shape in runs:
        weights[shape] = weights.get(shape, 0) + end - start
    best = max(weights, key=lambda shape: (weights[shape], -SHAPES.index(shape)))
    return "D" if best == "C" and weights.get("D") else best


def retime(runs, start, end):
    """The shapes of `runs` fitted into [start, end) with none shorter than the minimum: short
    shapes are merged into their neighbours, the merged stretch showing its representative."""
    pieces = [[s, e, [(s, e, v)]] for s, e, v in runs if e > s]
    if not pieces:
        return [(start, end, "X")]
    while len(pieces) > 1:
        lengths = [p[1] - p[0] for p in pieces]
        shortest = min(range(len(pieces)), key=lambda i: (lengths[i], -i))
        if lengths[shortest] >= MIN_SHAPE_CS:
            break
        # Merge with the shorter neighbour, so as little as possible is lost.
        if shortest == 0:
            other = 1
        elif shortest == len(pieces) - 1:
            other = shortest - 1
        else:
            other = shortest - 1 if lengths[shortest - 1] <= lengths[shortest + 1] else shortest + 1
        first, second = sorted((shortest, other))
        merged = [pieces[first][0], pieces[second][1], pieces[first][2] + pieces[second][2]]
        pieces[first : second + 1] = [merged]
    source_start, source_end = pieces[0][0], pieces[-1][1]
    scale = (end - start) / max(source_end - source_start, 1)
    result, time = [], start
    for index, (s, e, sources) in enumerate(pieces):
        piece_end = end if index == len(pieces) - 1 else start + round((e - source_start) * scale)
        result.append((time, piece_end, representative_shape(sources)))
        time = piece_end
    return joined(result)


def mouth_state(shape):
    return "idle" if shape == "X" else "closed" if shape == "A" else "open"


def optimize_timing(animation):
    """Minimum durations: stretches of open or closed mouth last at least 8 cs (borrowing up to
    6 cs from the idle time before them), and shapes inside them at least 7 cs."""
    segments = joined([(s, e, mouth_state(v)) for s, e, v in animation])
    starts = [s for s, _, _ in animation]
    # Pieces are placed from the end backwards, each before the last: collected, then laid over
    # an idle timeline in one pass (writing each into the whole timeline was quadratic).
    pieces = []
    result_start = animation[-1][1]
    index = len(segments) - 1
    while index >= 0:
        start, end, state = segments[index]
        if state == "idle":
            index -= 1
            continue
        result_start = min(end, result_start)
        if result_start - start >= MIN_SEGMENT_CS:
            pieces += retime(clip_indexed(animation, starts, start, end), start, result_start)
            result_start = start
            index -= 1
            continue
        # Too short: take it with the short non-idle segments before it and widen them together.
        first = index
        while first - 1 >= 0 and segments[first - 1][2] != "idle" and \
                segments[first - 1][1] - segments[first - 1][0] < MIN_SEGMENT_CS:
            first -= 1
        group = segments[first : index + 1]
        desired = MIN_SEGMENT_CS * len(group) - (group[-1][1] - group[0][0])
        available = segments[first - 1][1] - segments[first - 1][0] - 1 if first > 0 else 0
        extension = max(0, min(desired, available, MAX_SEGMENT_EXTENSION_CS))
        target_start = group[0][0] - extension
        for count, (s, e, _) in enumerate(reversed(group)):
            remaining = len(group) - count
            duration = (result_start - target_start) // remaining
            pieces += retime(clip_indexed(animation, starts, s, e), result_start - duration, result_start)
            result_start -= duration
        index = first - 1
    return joined(overlaid([(animation[0][0], animation[-1][1], "X")], pieces))


def clip(runs, start, end):
    return [(max(s, start), min(e, end), v) for s, e, v in runs if e > start and s < end]


def pause_shape(previous, following, duration):
    if duration < SHORT_PAUSE_CS:
        return previous
    if duration <= MEDIUM_PAUSE_CS:
        # A relaxed shape, but not the next one (that would look odd).
        current = previous
        while True:
            relaxed = RELAXED[current]
            if relaxed != following:
                return relaxed
            if relaxed == current:
                break
            current = relaxed
    return "X"


def animate_pauses(animation):
    result = list(animation)
    for index, (previous, pause, following) in enumerate(zip(animation, animation[1:], animation[2:]), 1):
        if pause[2] == "X":
            result[index] = (pause[0], pause[1], pause_shape(previous[2], following[2], pause[1] - pause[0]))
    return joined(result)


def insert_tweens(animation):
    low, high = TWEEN_CS
    # A tween takes at most a third of a shape from either end (or a quarter, centred), so
    # tweens never overlap: all are laid over the animation in one pass.
    tweens = []
    for first, second in zip(animation, animation[1:]):
        tween = TWEENS.get((first[2], second[2]))
        if not tween:
            continue
        shape, timing = tween
        first_duration, second_duration = first[1] - first[0], second[1] - second[0]
        if timing == "early":
            duration = min(first_duration // 3, high)
            start = first[1] - duration
        elif timing == "centered":
            duration = min(first_duration // 4, second_duration // 4, high)
            start = first[1] - duration // 2
        else:
            duration = min(second_duration // 3, high)
            start = second[0]
        if duration >= low:
            tweens.append((start, start + duration, shape))
    return joined(overlaid(animation, tweens))


def to_shape_set(animation, shape_set):
    return joined([(s, e, basic_shape(v, shape_set)) for s, e, v in animation])


def main_step_by_step(rules, shape_set):
    """`main_steps` as a generator yielding after each step; returns the animation."""
    animation = animate_rough(rules)
    yield "rough animation"
    animation = optimize_timing(animation)
    yield "timing"
    animation = animate_pauses(animation)
    animation = insert_tweens(animation)
    yield "pauses and tweens"
    return to_shape_set(animation, shape_set)


def run_to_end(steps):
    """The value a step-by-step generator returns, its steps run without pause."""
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


def main_steps(rules, shape_set):
    return run_to_end(main_step_by_step(rules, shape_set))


# --------------------------------------------------------------------------------------------
# long static segments (a B held over several syllables looks frozen)


def syllables(rules, starts, start, end):
    """Vowels of `rules` (run start times `starts`) whose middle lies in [start, end)."""
    phones = {(r.phone, r.phone_start, r.phone_end) for _, _, r in clip_indexed(rules, starts, start, end)
              if r.phone in VOWELS}
    return sum(1 for _, s, e in phones if start <= (s + e) // 2 < end)


def static_segments(rules, animation):
    starts = [s for s, _, _ in rules]
    return [
        (s, e) for s, e, _ in animation
        if e - s >= STATIC_SEGMENT_CS and syllables(rules, starts, s, e) >= STATIC_SEGMENT_SYLLABLES
    ]


def changed_to_c(rules, indices):
    result = list(rules)
    for index in indices:
        s, e, r = result[index]
        result[index] = (s, e, ShapeRule(frozenset("C"), r.phone, r.phone_start, r.phone_end))
    return result


def static_segment_fix(rules, shape_set):
    """Indices of the one-shape B vowels among `rules` (one static segment's) to show as C: up
    to three, the change animating the segment without a static stretch and with the shortest
    shapes (the least sum of squared durations); none if no change helps."""
    changeable = [i for i, (_, _, r) in enumerate(rules) if r.is_single_vowel and r.shapes == frozenset("B")]

    def score(candidate_rules):
        candidate = main_steps(candidate_rules, shape_set)
        return (len(static_segments(candidate_rules, candidate)) > 0, sum((e - s) ** 2 for s, e, _ in candidate))

    best, best_score = (), score(rules)
    for count in range(1, min(len(changeable), MAX_STATIC_FIXES) + 1):
        if not best_score[0] or comb(len(changeable), count) > MAX_STATIC_CANDIDATES:
            break
        for indices in combinations(range(len(changeable)), count):
            chosen = tuple(changeable[i] for i in indices)
            candidate_score = score(changed_to_c(rules, chosen))
            if candidate_score < best_score:
                best, best_score = chosen, candidate_score
    return best


def animation_steps(rules, shape_set):
    """Animate, in bounded steps: a generator yielding a message after each step (so a job can
    stop between them) and returning the animation. Where a shape stays put over 3+ syllables
    and 0.75 s, each such static segment is fixed on its own, as Rhubarb does: up to three of
    its one-shape B vowels shown as C, searched among that segment's rules only, then the whole
    is animated again with the fixed rules."""
    animation = yield from main_step_by_step(rules, shape_set)
    segments = static_segments(rules, animation)
    if not segments:
        return animation
    fixed = list(rules)
    starts = [s for s, _, _ in rules]
    for number, (segment_start, segment_end) in enumerate(segments, 1):
        first = max(bisect_right(starts, segment_start) - 1, 0)
        local = clip_indexed(rules, starts, segment_start, segment_end)
        fixed = changed_to_c(fixed, [first + index for index in static_segment_fix(local, shape_set)])
        yield f"static segment {number} of {len(segments)}"
    return (yield from main_step_by_step(fixed, shape_set))


def avoid_static_segments(rules, shape_set):
    """The animation of the rules, static segments broken up (`animation_steps` run to the end)."""
    return run_to_end(animation_steps(rules, shape_set))


# --------------------------------------------------------------------------------------------
# the whole thing


def animate(phones, length_cs, shape_set=SHAPES):
    """Mouth-shape runs (start cs, end cs, shape) over [0, length_cs) from timed phones.

    `phones`: (start cs, end cs, phone) in time order, phones as in PHONES (ARPAbet, "Schwa",
    and the non-speech "Breath", "Cough", "Smack", "Noise"); silence where there is none.
    """
    return run_to_end(animate_step_by_step(phones, length_cs, shape_set))


def animate_step_by_step(phones, length_cs, shape_set=SHAPES):
    """`animate` as a generator yielding a message after each bounded step (each linear in the
    number of phones, or one static segment's fix), returning the runs: a job steps it."""
    if length_cs <= 0:
        return []
    phones = sorted((max(0, s), min(e, length_cs), p) for s, e, p in phones if e > s and s < length_cs)
    for _, _, phone in phones:
        if phone not in PHONES:
            raise ValueError(f"unknown phone {phone!r}")
    rules = shape_rules(phones, length_cs)
    rules = restrict_rules(rules, shape_set + ("" if "X" in shape_set else "X"))
    yield "shape rules"
    return (yield from animation_steps(rules, shape_set))


def cue_track(animation, length_cs, shape_set=SHAPES, sound_file="", source="analyser"):
    """A CueTrack from shape runs in centiseconds."""
    cues = tuple(Cue(s / 100, e / 100, v) for s, e, v in animation)
    return CueTrack(cues, length_cs / 100, sound_file, closed_shape_of(shape_set), source)
