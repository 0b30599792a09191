"""Rhubarb's phone -> shape rules and timing steps (rhubarb.md §1.5), step by step."""

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tha_studio.lipsync import shapes
from tha_studio.lipsync.shapes import animate


def shape_at(runs, time):
    return shapes.value_at(runs, time)


def test_plosive_closes_the_lips_before_the_burst():
    # "a pa": AA, then P (its occlusion A before it), then AA.
    runs = animate([(20, 50, "AA"), (50, 58, "P"), (58, 90, "AA")], 120)
    closed = [r for r in runs if r[2] == "A"]
    assert len(closed) == 1
    start, end, _ = closed[0]
    assert 36 <= start <= 42 and end >= 50  # half the previous 30 cs, clamped to 12 cs, before P
    assert shape_at(runs, 30) == "D" and shape_at(runs, 75) == "D"


def test_vowels_are_anticipated_and_silence_is_x():
    runs = animate([(50, 58, "S"), (58, 90, "UW")], 200)
    # S may be B or F; before UW (F) the mouth already rounds.
    assert shape_at(runs, 52) == "F"
    assert shape_at(runs, 10) == "X" and shape_at(runs, 150) == "X"


def test_diphthong_timing_and_long_ah():
    runs = animate([(20, 70, "AY")], 120)  # 50 cs: D for 60%, then B
    assert shape_at(runs, 30) == "D" and shape_at(runs, 65) == "B"
    assert shape_at(animate([(20, 60, "AH")], 120), 40) == "D"  # long AH opens wide
    assert shape_at(animate([(20, 35, "AH")], 120), 28) in ("C", "D")


def test_no_shape_is_shorter_than_the_minimum_inside_speech():
    phones = [(10, 13, "T"), (13, 16, "IH"), (16, 19, "K"), (19, 40, "AA"), (40, 43, "S"), (43, 70, "EH")]
    runs = animate(phones, 120)
    inner = [r for r in runs[1:-1] if r[2] != "X"]
    assert all(end - start >= 4 for start, end, _ in inner)  # 7 cs shapes, tweens 4-8 cs


def test_pauses_short_held_medium_relaxed_long_closed():
    def between(gap):
        runs = animate([(10, 40, "AA"), (40 + gap, 70 + gap, "AA")], 150 + gap)
        return shape_at(runs, 40 + gap // 2)

    assert between(8) in ("D", "C")  # held (a tween may sit at the edge)
    assert between(25) not in ("D", "X")  # relaxed, and not the next shape
    assert between(60) == "X"


def test_tweens_between_wide_open_and_rounded():
    runs = animate([(10, 60, "AA"), (60, 110, "UW")], 150)
    assert any(r[2] == "E" and 52 <= r[0] <= 62 for r in runs)  # D -> F gets E between


def test_basic_shape_set_replaces_extended_shapes():
    runs = animate([(10, 30, "F"), (30, 80, "L")], 120, shape_set="ABCDEF")
    used = {r[2] for r in runs}
    assert used <= set("ABCDEF") and "X" not in used and "G" not in used and "H" not in used


def test_long_static_b_is_broken_up():
    # Three long IY/IH syllables, all B: a B held 1.5 s over 3 vowels gets some C.
    phones = [(10, 60, "IY"), (60, 65, "N"), (65, 115, "IH"), (115, 120, "N"), (120, 170, "IY")]
    runs = animate(phones, 200)
    assert "C" in {r[2] for r in runs}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 40), st.sampled_from(sorted(shapes.PHONES))), max_size=25))
def test_any_phone_sequence_animates_to_a_contiguous_track(steps):
    time, phones = 0, []
    for gap, length, phone in steps:
        time += gap
        phones.append((time, time + length, phone))
        time += length
    length = time + 30
    runs = animate(phones, length)
    assert runs[0][0] == 0 and runs[-1][1] == length
    assert all(a[1] == b[0] and a[2] != b[2] for a, b in zip(runs, runs[1:]))
    assert all(start < end and shape in "ABCDEFGHX" for start, end, shape in runs)
    assert runs[-1][2] == "X" or not phones
    track = shapes.cue_track(runs, length)
    assert track.duration == length / 100


# The steps write timelines in one pass (`overlaid`) or at their end (`set_range_at_end`) where
# they used `set_range` on the whole timeline per change; these must agree with it.
runs_strategy = st.lists(st.tuples(st.integers(1, 30), st.sampled_from("ABCX")), min_size=1, max_size=30)


def contiguous(lengths_and_values, start=0):
    runs = []
    for length, value in lengths_and_values:
        runs.append((start, start + length, value))
        start += length
    return runs


@settings(max_examples=300, deadline=None)
@given(runs_strategy, st.lists(st.tuples(st.integers(0, 20), st.integers(1, 15), st.sampled_from("DEFZ")), max_size=12))
def test_overlaid_is_set_range_for_each_patch(base, gaps_and_patches):
    runs = contiguous(base, start=5)
    patches, time = [], 0
    for gap, length, value in gaps_and_patches:  # disjoint, some outside the runs
        time += gap
        patches.append((time, time + length, value))
        time += length
    expected = runs
    for patch in reversed(patches):
        expected = shapes.set_range(expected, *patch)
    assert shapes.overlaid(runs, patches) == expected


@settings(max_examples=300, deadline=None)
@given(runs_strategy, st.integers(-10, 400), st.integers(1, 40), st.sampled_from("DEFZ"))
def test_set_range_at_end_is_set_range(base, start, length, value):
    runs = contiguous(base)
    start = min(start, runs[-1][1] - 1)  # as when rules are written: the range starts inside
    expected = shapes.set_range(runs, start, start + length, value)
    shapes.set_range_at_end(runs, start, start + length, value)
    assert runs == expected


def held_vowels(offset):
    """Three long IY/IH syllables, all B (a static segment), from `offset` cs."""
    return [(offset + s, offset + e, p) for s, e, p in
            [(10, 60, "IY"), (60, 65, "N"), (65, 115, "IH"), (115, 120, "N"), (120, 170, "IY")]]


def test_static_segments_are_fixed_each_on_its_own():
    # The fix of one static segment is chosen among its own rules, so it does not depend on
    # another far away (the whole file's rules were combined, and the file re-animated for each).
    alone = animate(held_vowels(0), 200)
    both = animate(held_vowels(0) + held_vowels(1000), 1200)
    assert shapes.clip(both, 0, 200) == alone
    assert [(s - 1000, e - 1000, v) for s, e, v in shapes.clip(both, 1000, 1200)] == alone


def test_ten_minutes_of_static_segments_animate_quickly():
    # 300 static segments over 10 minutes: each fixed locally, every step linear. The old search
    # over combinations of all of them would not have finished.
    phones = [phone for n in range(300) for phone in held_vowels(200 * n)]
    started = time.perf_counter()
    runs = animate(phones, 60000)
    assert time.perf_counter() - started < 10
    assert runs[-1][1] == 60000
    assert all("C" in {v for _, _, v in shapes.clip(runs, 200 * n, 200 * n + 200)} for n in range(300))
