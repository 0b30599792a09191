"""Idle-motion generators: same seed same keys, timings within their settings, blinks clear of
winks, and each generator keys its own parameters only, for every schema that has them."""

import dataclasses
import math

import numpy as np
import pytest

from tha_studio.animation.core.generators import (
    GENERATORS, BlinkSettings, BreathingSettings, GazeSettings, GeneratorError, SwaySettings, blinks, breathing,
    busy_intervals, gaze, keyed_parameters, sway)
from tha_studio.animation.core.keys import evaluate_keys, flat_bezier_keys
from tha_studio.pose.schema import SCHEMAS, PoseParameter, PoseSchema, get_schema

THA3 = get_schema("tha3")
MINUTES = 24 * 60 * 10  # ten minutes at 24 fps: long enough for a few hundred blinks


def as_tuples(track):
    return {name: [dataclasses.astuple(key) for key in keys] for name, keys in track.items()}


def generated(name, schema, seed, **range_):
    settings_class, generator, _ = GENERATORS[name]
    return generator(schema, settings_class(seed=seed), **range_)


@pytest.mark.parametrize("name", list(GENERATORS))
def test_the_same_seed_gives_the_same_keys_and_another_seed_others(name):
    frames = dict(frame_start=1, frame_end=24 * 60, fps=24)
    first = as_tuples(generated(name, THA3, 7, **frames))
    again = as_tuples(generated(name, THA3, 7, **frames))
    other = as_tuples(generated(name, THA3, 8, **frames))
    assert first == again
    assert first != other


def blink_events(keys):
    """[(start, close frames, closed frames, open frames)] read back from blink keys."""
    events = []
    index = 0
    while index + 1 < len(keys):
        if keys[index].value == 0 and keys[index + 1].value > 0:
            start = keys[index].frame
            shut_from = keys[index + 1].frame
            shut_until = shut_from
            index += 1
            while keys[index + 1].value > 0:
                index += 1
                shut_until = keys[index].frame
            end = keys[index + 1].frame
            events.append((start, shut_from - start, shut_until - shut_from, end - shut_until))
        index += 1
    return events


@pytest.mark.parametrize("fps, rate", [(24, 1.0), (30, 2.0), (60, 0.7)])
def test_blink_intervals_and_durations_stay_within_their_settings(fps, rate):
    settings = BlinkSettings(seed=3, rate=rate, amplitude=0.9, interval=(2.5, 5.0), close_duration=0.1,
                             closed_duration=0.05, open_duration=0.2, double_probability=0.3, double_gap=0.12)
    frame_end = 1 + 600 * fps
    track = blinks(THA3, settings, frame_start=1, frame_end=frame_end, fps=fps)
    keys = track["eye_wink_left"]
    assert as_tuples({"x": track["eye_wink_right"]}) == as_tuples({"x": keys})  # both eyes together
    events = blink_events(keys)
    half_frame = 0.5
    for start, close, closed, opening in events:
        assert close == pytest.approx(settings.close_duration * fps, abs=half_frame) and close >= 1
        assert closed == pytest.approx(settings.closed_duration * fps, abs=half_frame)
        assert opening == pytest.approx(settings.open_duration * fps, abs=half_frame) and opening >= 1
        assert start == int(start)  # whole frames: a render at the scene rate sees each blink shut
    assert {k.value for k in keys} == {0.0, settings.amplitude}
    assert events[0][0] >= 1 and keys[-1].frame == frame_end and keys[-1].value == 0

    # A double blink: the second starts `double_gap` after the first ends; otherwise the gap
    # between starts is an interval.
    single = events[0][1] + events[0][2] + events[0][3]
    gap = round(settings.double_gap * fps)
    starts, doubles = [events[0][0]], 0
    for previous, event in zip(events, events[1:]):
        if event[0] - (previous[0] + single) == gap:
            doubles += 1
        else:
            starts.append(event[0])
    intervals = np.diff(starts) / fps * rate
    assert intervals.min() >= settings.interval[0] - half_frame / fps * rate
    assert intervals.max() <= settings.interval[1] + half_frame / fps * rate
    assert len(starts) > 100
    assert 0.2 < doubles / len(starts) < 0.4  # about double_probability
    # The rate scales how often: the mean interval is the settings' mean over the rate.
    assert intervals.mean() == pytest.approx(sum(settings.interval) / 2, rel=0.1)


def test_blinks_keep_clear_of_winks_already_keyed():
    fps = 24
    rng = np.random.default_rng(0)
    winks = []
    start = 30.0
    while start < MINUTES - 200:  # a wink of 0.5-1.5 s every few seconds
        length = rng.uniform(12, 36)
        winks.append((start, start + length))
        start += length + rng.uniform(60, 300)
    settings = BlinkSettings(seed=11, double_probability=0.3)
    track = blinks(THA3, settings, frame_start=1, frame_end=MINUTES, fps=fps, busy=winks)
    events = blink_events(track["eye_wink_left"])
    assert len(events) > 50
    for start, close, closed, opening in events:
        end = start + close + closed + opening
        for first, last in winks:
            assert end < first or start > last, f"blink {start}-{end} overlaps the wink {first}-{last}"
    busy_frames = np.concatenate([np.arange(math.floor(a), math.ceil(b) + 1) for a, b in winks])
    assert not np.any(evaluate_keys(track["eye_wink_left"], busy_frames))
    # Without the winks the same seed blinks during some of them: the busy list did the work.
    free = blink_events(blinks(THA3, settings, frame_start=1, frame_end=MINUTES, fps=fps)["eye_wink_left"])
    assert any(not (s + c + h + o < a or s > b) for s, c, h, o in free for a, b in winks)


def test_winks_already_keyed_become_the_busy_spans_blinks_avoid():
    left = flat_bezier_keys([(1, 0.0), (40, 0.0), (44, 1.0), (60, 1.0), (66, 0.0), (300, 0.0), (310, 0.8), (320, 0.0)])
    right = flat_bezier_keys([(1, 0.0), (62, 0.0), (70, 0.5), (75, 0.0), (500, 0.0), (505, 0.3)])
    busy = busy_intervals(left, right)
    assert busy == [(40.0, 75.0), (300.0, 320.0), (500.0, math.inf)]
    track = blinks(THA3, BlinkSettings(seed=1, interval=(1.0, 2.0)), 1, 1000, 24, busy=busy)
    for start, close, closed, opening in blink_events(track["eye_wink_left"]):
        assert start + close + closed + opening < 40 or 75 < start < 300 - close - closed - opening or 320 < start < 500
    assert busy_intervals([]) == [] and busy_intervals(flat_bezier_keys([(5, 0.0), (9, 0.0)])) == []


@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
def test_each_generator_keys_only_its_own_parameters(schema_name):
    schema = get_schema(schema_name)
    expected = {
        "blinks": {"left_eye", "right_eye"} if schema_name == "tha1" else {"eye_wink_left", "eye_wink_right"},
        "sway": {"head_x", "head_y", "neck_z"},
        "breathing": {"breathing"},
        "gaze": {"iris_rotation_x", "iris_rotation_y"},
    }
    lacking = {"tha1": {"breathing", "gaze"}, "tha2": {"breathing"}}.get(schema_name, set())
    for name in GENERATORS:
        if name in lacking:
            with pytest.raises(GeneratorError, match=f"the {schema_name} pose has no"):
                generated(name, schema, 1, frame_start=1, frame_end=500, fps=24)
            continue
        track = generated(name, schema, 1, frame_start=1, frame_end=500, fps=24)
        assert set(track) == expected[name]
        assert set(keyed_parameters(name, schema)) == expected[name]
        for parameter, keys in track.items():
            assert keys, parameter
            low, high = schema.parameter(parameter).minimum, schema.parameter(parameter).maximum
            assert all(low <= k.value <= high for k in keys)
            assert all(1 <= k.frame <= 500 for k in keys)
            assert np.all(np.diff([k.frame for k in keys]) > 0)


def test_a_schema_without_eye_parameters_is_refused_by_name():
    mouth_only = PoseSchema("mouth_only", (PoseParameter("mouth", "mouth", 0.0, 1.0),), {}, 256, (64, 192, 64, 192))
    with pytest.raises(GeneratorError, match="mouth_only pose has no eye-closing parameters"):
        blinks(mouth_only, BlinkSettings(), 1, 100, 24)
    with pytest.raises(GeneratorError, match="no parameter 'body_y'"):
        sway(get_schema("tha2"), SwaySettings(motions={"body_y": (8.0, 0.1)}), 1, 100, 24)


def test_sway_is_small_smooth_and_starts_and_ends_at_rest():
    settings = SwaySettings(seed=5, amplitude=1.5, fade=1.0)
    track = sway(THA3, settings, frame_start=1, frame_end=24 * 60, fps=24)
    frames = np.arange(1, 24 * 60 + 1, 0.25)
    for name, (period, size) in settings.motions.items():
        keys = track[name]
        assert all(k.interpolation == "BEZIER" for k in keys)
        assert np.all(np.diff([k.frame for k in keys]) <= settings.key_step)
        values = evaluate_keys(keys, frames)
        assert np.max(np.abs(values)) <= size * settings.amplitude + 1e-6
        assert np.max(np.abs(values)) > 0.3 * size * settings.amplitude  # it does move
        assert keys[0].value == pytest.approx(0, abs=1e-12) and keys[-1].value == pytest.approx(0, abs=1e-12)
        # Slow: the fastest of its sines has a period of a quarter of the base one or more, so
        # no frame-to-frame step exceeds what that sine at full size would make.
        steepest = 2 * np.pi / (period / 4 * 24) * size * settings.amplitude
        assert np.max(np.abs(np.diff(values))) / 0.25 <= steepest


def test_sway_rate_makes_it_faster():
    def crossings(rate):
        keys = sway(THA3, SwaySettings(seed=2, rate=rate), 1, 24 * 120, 24)["head_y"]
        values = evaluate_keys(keys, np.arange(1, 24 * 120))
        return np.count_nonzero(np.diff(np.sign(values)) != 0)

    assert crossings(2.0) > 1.5 * crossings(1.0)


def test_breathing_is_periodic_within_its_variation_and_matches_tha3s_cycle():
    settings = BreathingSettings(seed=4, rate=1.25, amplitude=0.8, period=5.0, variation=0.1)
    fps = 30
    keys = breathing(THA3, settings, frame_start=1, frame_end=fps * 120, fps=fps)["breathing"]
    outs = [k.frame for k in keys if k.value == 0][:-1]  # the last key only holds the rest to the end
    ins = [k for k in keys if k.value > 0]
    assert {k.value for k in ins} == {settings.amplitude}
    lengths = np.diff(outs) / fps * settings.rate
    assert len(lengths) > 20
    assert lengths.min() >= settings.period * (1 - settings.variation) - 1e-9
    assert lengths.max() <= settings.period * (1 + settings.variation) + 1e-9
    # One breath evaluates within 0.01 of THA3's own (1 - cos 2 pi t) / 2 cycle.
    start, end = outs[3], outs[4]
    frames = np.linspace(start, end, 200)
    cycle = settings.amplitude * (1 - np.cos(2 * np.pi * (frames - start) / (end - start))) / 2
    assert np.max(np.abs(evaluate_keys(keys, frames) - cycle)) < 0.01


def test_eye_movement_holds_fixations_within_range_and_returns_ahead():
    settings = GazeSettings(seed=9, rate=1.0, amplitude=0.8, fixation=(0.4, 2.0), range_x=0.2, range_y=0.5,
                            saccade_duration=0.06, centre_probability=0.2)
    fps = 24
    track = gaze(THA3, settings, frame_start=1, frame_end=fps * 300, fps=fps)
    x_keys, y_keys = track["iris_rotation_x"], track["iris_rotation_y"]
    assert [k.frame for k in x_keys] == [k.frame for k in y_keys]
    x, y = np.array([k.value for k in x_keys]), np.array([k.value for k in y_keys])
    inside = (x / (settings.range_x * settings.amplitude)) ** 2 + (y / (settings.range_y * settings.amplitude)) ** 2
    assert np.all(inside <= 1 + 1e-9)
    assert x[0] == y[0] == x[-1] == y[-1] == 0
    frames = np.array([k.frame for k in x_keys])
    saccade = round(settings.saccade_duration * fps)
    # Keys come in (hold ends, saccade lands) pairs after the first: holds are the gaps between them.
    moves = frames[1:-1].reshape(-1, 2) if (len(frames) - 2) % 2 == 0 else frames[1:-2].reshape(-1, 2)
    assert np.all(moves[:, 1] - moves[:, 0] == saccade)
    holds = (moves[1:, 0] - moves[:-1, 1]) / fps
    assert len(holds) > 50
    assert holds.min() >= settings.fixation[0] - 0.5 / fps
    assert holds.max() <= settings.fixation[1] + 0.5 / fps
    assert np.ptp(y) > settings.range_y * settings.amplitude  # it does look around


@pytest.mark.parametrize("make, message", [
    (lambda: BlinkSettings(rate=0), "rate must be a number in \\(0.0, 10.0\\]"),
    (lambda: BlinkSettings(interval=(0.2, 0.3)), "shortest interval"),
    (lambda: BlinkSettings(interval=(5.0, 2.0)), "interval minimum 5.0 is above its maximum 2.0"),
    (lambda: BlinkSettings(seed=-1), "seed must be a whole number"),
    (lambda: BreathingSettings(amplitude=1.5), "amplitude must be a number in \\[0.0, 1.0\\]"),
    (lambda: SwaySettings(motions={"head_x": (0, 0.1)}), "period of head_x"),
    (lambda: SwaySettings(key_step=0), "key_step"),
    (lambda: GazeSettings(fixation=(0.0, 1.0)), "shortest fixation"),
])
def test_settings_out_of_range_are_refused_naming_the_setting(make, message):
    with pytest.raises(GeneratorError, match=message):
        make()


def test_a_frame_range_or_rate_that_cannot_work_is_refused():
    with pytest.raises(GeneratorError, match="frame_end \\(10\\) must be after frame_start \\(10\\)"):
        blinks(THA3, BlinkSettings(), 10, 10, 24)
    with pytest.raises(GeneratorError, match="frame_end 2,147,483,647 is outside Blender's frames"):
        blinks(THA3, BlinkSettings(), 1, 2**31 - 1, 24)  # (years of blinks to key, past the scene's reach)
    with pytest.raises(GeneratorError, match="fps"):
        breathing(THA3, BreathingSettings(), 1, 100, 0)
    with pytest.raises(GeneratorError, match="double blink takes"):
        quick = BlinkSettings(interval=(0.5, 1.0), close_duration=0.01, closed_duration=0.0, open_duration=0.01,
                              double_gap=0.01)
        blinks(THA3, quick, 1, 100, 2)  # at 2 fps each part of a blink takes a whole frame
    with pytest.raises(GeneratorError, match="busy interval"):
        blinks(THA3, BlinkSettings(), 1, 100, 24, busy=[(50, 40)])
    with pytest.raises(GeneratorError, match="unknown generator 'yawn'"):
        keyed_parameters("yawn", THA3)
