"""Face capture: a Live Link Face CSV written here from known curves comes back as those curves on
the mapped THA sliders; bad files are refused naming the line and column."""

import json
import math
import re

import numpy as np
import pytest

from tha_studio.animation.core.face_capture import (
    ARKIT_BLENDSHAPES, LIVE_LINK_COLUMNS, ROTATIONS, ArkitMapping, FaceCaptureError, capture_keyframes,
    parse_live_link_csv, parse_timecode, read_live_link_csv)
from tha_studio.animation.core.keys import evaluate_keys
from tha_studio.pose.schema import get_schema

CAPTURE_FPS = 60
# The take starts near the end of a minute, a quarter frame into frame 55, as a real take does.
TAKE_START = 14 * 3600 + 3 * 60 + 59 + 55.25 / CAPTURE_FPS

# Known THA curves over seconds from the take's first row, and the ARKit values that the default
# mapping turns into them (its weights are the official THA3 converter's ramps).
CURVES = {
    "mouth_aaa": lambda t: 0.5 - 0.5 * np.cos(2 * np.pi * 0.4 * t),
    "eye_wink_left": lambda t: np.sin(np.pi * 0.5 * t) ** 2,
    "head_y": lambda t: 0.6 * np.sin(2 * np.pi * 0.2 * t),
    "head_x": lambda t: 0.4 * np.sin(2 * np.pi * 0.3 * t + 1.0),
    "neck_z": lambda t: 0.3 * np.cos(2 * np.pi * 0.15 * t),
    "mouth_raised_corner_left": lambda t: 0.5 + 0.4 * np.sin(2 * np.pi * 0.35 * t),
}


def arkit_columns(t, degrees=False):
    """{column: values} of a take whose default-mapped THA curves are CURVES."""
    angle = (lambda d: d) if degrees else np.radians
    rng = np.random.default_rng(0)
    columns = {name: np.zeros_like(t) for name in ARKIT_BLENDSHAPES + ROTATIONS}
    columns["JawOpen"] = 0.1 + 0.3 * CURVES["mouth_aaa"](t)
    columns["EyeBlinkLeft"] = 0.8 * CURVES["eye_wink_left"](t)
    columns["HeadYaw"] = angle(-15.0 * CURVES["head_y"](t))
    columns["HeadPitch"] = angle(-15.0 * CURVES["head_x"](t))
    columns["HeadRoll"] = angle(15.0 * CURVES["neck_z"](t))
    columns["MouthSmileLeft"] = CURVES["mouth_raised_corner_left"](t)
    # Channels the default mapping does not read move too: none of it may reach a slider.
    for name in ("TongueOut", "CheekPuff", "JawForward", "MouthRollLower", "LeftEyeYaw", "RightEyePitch"):
        columns[name] = rng.uniform(0.0, 1.0, len(t))
    return columns


def timecode(seconds, fps=CAPTURE_FPS):
    whole = math.floor(seconds + 1e-9)
    frames = (seconds - whole) * fps
    frame = math.floor(frames + 1e-6)
    return (f"{whole // 3600 % 24:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}:{frame:02d}."
            f"{round((frames - frame) * 1000):03d}")


def live_link_csv(seconds=6.0, degrees=False, header=LIVE_LINK_COLUMNS, start=TAKE_START):
    t = np.arange(round(seconds * CAPTURE_FPS) + 1) / CAPTURE_FPS
    columns = arkit_columns(t, degrees)
    lines = [",".join(header)]
    for row, time in enumerate(t):
        cells = [timecode(start + time), "61"] + [f"{columns[name][row]:.6f}" for name in LIVE_LINK_COLUMNS[2:]]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def test_live_link_columns_are_the_apps():
    assert len(ARKIT_BLENDSHAPES) == 52 and len(set(ARKIT_BLENDSHAPES)) == 52
    assert LIVE_LINK_COLUMNS[:3] == ("Timecode", "BlendShapeCount", "EyeBlinkLeft")
    assert LIVE_LINK_COLUMNS[-10:] == ("TongueOut",) + ROTATIONS
    assert len(LIVE_LINK_COLUMNS) == 63


def test_timecodes_count_frames_at_the_capture_rate():
    assert parse_timecode("00:00:01:30.500", 60) == pytest.approx(1 + 30.5 / 60)
    assert parse_timecode("14:03:52:28.207", 60) == pytest.approx(14 * 3600 + 3 * 60 + 52 + 28.207 / 60)
    assert parse_timecode("00:00:00:15", 30) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="frame 45, but the capture rate is 30 fps"):
        parse_timecode("00:00:00:45", 30)


@pytest.mark.parametrize("scene_fps, frame_start", [(24, 1), (30, 101), (25, 0)])
def test_a_take_written_from_known_curves_comes_back_on_the_mapped_sliders(tmp_path, scene_fps, frame_start):
    path = tmp_path / "MySlate_7_iPhone.csv"
    path.write_text(live_link_csv())
    capture = read_live_link_csv(path, capture_fps=CAPTURE_FPS)
    assert capture.duration == pytest.approx(6.0)
    keys = capture_keyframes(capture, ArkitMapping.default("tha3"), fps=scene_fps, frame_start=frame_start)

    frames = frame_start + np.arange(6 * scene_fps + 1)
    seconds = (frames - frame_start) / scene_fps
    for name, curve in CURVES.items():
        assert keys[name][0].frame == frame_start and keys[name][-1].frame == frames[-1]
        np.testing.assert_allclose(evaluate_keys(keys[name], frames), curve(seconds), atol=1e-3, err_msg=name)
    # Every other mapped slider reads channels that stayed at rest: it stays at 0, keyed only at the ends.
    for name, slider_keys in keys.items():
        if name not in CURVES:
            assert [k.value for k in slider_keys] == [0.0, 0.0], name
    assert set(keys) == set(ArkitMapping.default("tha3").parameters)
    assert all(k.interpolation == "LINEAR" for track in keys.values() for k in track)


def test_angles_in_degrees_and_camel_case_names_read_the_same():
    header = ("Timecode", "BlendShapeCount") + tuple(n[0].lower() + n[1:] for n in LIVE_LINK_COLUMNS[2:])
    capture = parse_live_link_csv(live_link_csv(2.0, degrees=True, header=header), CAPTURE_FPS, "degrees")
    keys = capture_keyframes(capture, fps=24, frame_start=1)
    seconds = np.arange(49) / 24
    for name in ("head_x", "head_y", "neck_z", "mouth_aaa"):
        np.testing.assert_allclose(evaluate_keys(keys[name], 1 + np.arange(49)), CURVES[name](seconds), atol=1e-3)


def test_values_past_a_sliders_range_are_clamped():
    text = live_link_csv(1.0)
    rows = text.splitlines()
    jaw = LIVE_LINK_COLUMNS.index("JawOpen")
    for index in range(1, len(rows)):
        cells = rows[index].split(",")
        cells[jaw] = "0.95"  # beyond the default ramp's 0.4
        rows[index] = ",".join(cells)
    keys = capture_keyframes(parse_live_link_csv("\n".join(rows)), fps=24)
    assert {k.value for k in keys["mouth_aaa"]} == {1.0}


def test_an_edited_mapping_drives_other_sliders_and_survives_json():
    mapping = ArkitMapping("tha3", {
        "eye_relaxed_left": {"weights": {"eyeBlinkLeft": 1.25}},  # channel names in any case
        "mouth_ooo": {"offset": 0.0, "weights": {"JawOpen": 1.0, "MouthFunnel": 0.5}},
        "body_y": {"weights": {"HeadYaw": -1 / 15}},
    })
    assert mapping.channels == ("EyeBlinkLeft", "JawOpen", "MouthFunnel", "HeadYaw")
    assert ArkitMapping.from_json(mapping.to_json()) == mapping
    keys = capture_keyframes(parse_live_link_csv(live_link_csv(2.0)), mapping, fps=24, frame_start=1)
    assert set(keys) == {"eye_relaxed_left", "mouth_ooo", "body_y"}
    seconds = np.arange(49) / 24
    np.testing.assert_allclose(evaluate_keys(keys["eye_relaxed_left"], 1 + np.arange(49)),
                               CURVES["eye_wink_left"](seconds), atol=1e-3)
    np.testing.assert_allclose(evaluate_keys(keys["body_y"], 1 + np.arange(49)), CURVES["head_y"](seconds), atol=1e-3)

    default = ArkitMapping.default("tha3")
    assert ArkitMapping.from_json(default.to_json()) == default
    assert json.loads(default.to_json())["parameters"]["eye_wink_left"] == {"offset": 0.0,
                                                                             "weights": {"EyeBlinkLeft": 1.25}}


def test_tha1_has_a_default_mapping_of_its_own():
    capture = parse_live_link_csv(live_link_csv(2.0))
    keys = capture_keyframes(capture, ArkitMapping.default("tha1"), fps=24)
    assert set(keys) == set(get_schema("tha1").names)
    np.testing.assert_allclose(evaluate_keys(keys["mouth"], 1 + np.arange(49)),
                               CURVES["mouth_aaa"](np.arange(49) / 24), atol=1e-3)


@pytest.mark.parametrize("rules, message", [
    ({"eye_wink_lef": {"weights": {"EyeBlinkLeft": 1}}}, "did you mean eye_wink_left"),
    ({"eye_wink_left": {"weights": {"EyeBlinkLeftt": 1}}}, "reads 'EyeBlinkLeftt', which is not an ARKit"),
    ({"eye_wink_left": {"weights": {"EyeBlinkLeft": "1"}}}, "weight of EyeBlinkLeft '1' is not a number"),
    ({"eye_wink_left": {"scale": 2}}, "eye_wink_left needs"),
    ({"eye_wink_left": {"offset": None}}, "offset None is not a number"),
])
def test_a_bad_mapping_is_refused_naming_the_problem(rules, message):
    with pytest.raises(FaceCaptureError, match=message):
        ArkitMapping("tha3", rules)


def test_a_bad_mapping_file_names_the_line():
    with pytest.raises(FaceCaptureError, match="mapping.json, line 2, column 1: not valid JSON"):
        ArkitMapping.from_json('{"format": "tha_studio.arkit_mapping",\n}', source="mapping.json")
    with pytest.raises(FaceCaptureError, match="mapping.json: not an ARKit mapping"):
        ArkitMapping.from_json('{"parameters": {}}', source="mapping.json")


def with_row(text, row, column, value):
    """The CSV with one cell changed: `row` counts data rows from 0, `column` is a column name."""
    lines = text.splitlines()
    cells = lines[row + 1].split(",")
    cells[LIVE_LINK_COLUMNS.index(column)] = value
    lines[row + 1] = ",".join(cells)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("change, message", [
    (lambda t: with_row(t, 3, "JawOpen", "abc"), re.escape("take.csv, line 5, column 20 (JawOpen): 'abc' is not a number")),
    (lambda t: with_row(t, 0, "MouthSmileLeft", "nan"), re.escape("line 2, column 26 (MouthSmileLeft): 'nan' is not a number")),
    (lambda t: with_row(t, 7, "Timecode", "14:04:00:07"[:8]), "line 9, column 1 \\(Timecode\\): '14:04:00' is not a timecode"),
    (lambda t: with_row(t, 2, "Timecode", "14:03:59:80.000"), "line 4, column 1 \\(Timecode\\): .*frame 80, but the capture rate is 60"),
    (lambda t: with_row(t, 5, "Timecode", "14:03:59:00.000"), "line 7, column 1 \\(Timecode\\): 14:03:59:00.000 is earlier"),
    (lambda t: t.replace(t.splitlines()[4], t.splitlines()[4].rsplit(",", 1)[0]), "line 5: 62 fields, but the header has 63"),
    (lambda t: "", "the file is empty"),
    (lambda t: t.splitlines()[0] + "\n", "no capture rows after the header \\(line 1\\)"),
    (lambda t: "Time," + t.split(",", 1)[1], "line 1, column 1: expected the Timecode column, got 'Time'"),
    (lambda t: t.replace("HeadRoll", "EyeBlinkLeft", 1), "line 1: column 57 repeats EyeBlinkLeft \\(first in column 3\\)"),

    # (The csv module's own error, a traceback before.)
    (lambda t: with_row(t, 2, "JawOpen", '"' + "9" * 200_000 + '"'), "line 4: field larger than field limit"),
])
def test_a_bad_csv_is_refused_naming_line_and_column(change, message):
    with pytest.raises(FaceCaptureError, match=message):
        parse_live_link_csv(change(live_link_csv(0.5)), CAPTURE_FPS, source="take.csv")


def test_a_take_without_a_column_the_mapping_reads_is_refused_by_name():
    text = live_link_csv(0.5)
    header = LIVE_LINK_COLUMNS.index("HeadRoll")
    stripped = "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != header)
                         for line in text.splitlines())
    capture = parse_live_link_csv(stripped, source="take.csv")
    with pytest.raises(FaceCaptureError, match="take.csv, line 1: no column for HeadRoll, which the mapping reads"):
        capture_keyframes(capture)


def test_unreadable_files_and_settings_are_refused(tmp_path):
    with pytest.raises(FaceCaptureError, match="missing.csv: cannot read the capture"):
        read_live_link_csv(tmp_path / "missing.csv")
    with pytest.raises(FaceCaptureError, match="capture rate must be a positive number"):
        parse_live_link_csv(live_link_csv(0.5), capture_fps=0)
    with pytest.raises(FaceCaptureError, match="angle units must be one of radians, degrees"):
        parse_live_link_csv(live_link_csv(0.5), angle_units="turns")


def test_windows_line_ends_a_bom_and_a_repeated_instant_read_as_expected(tmp_path):
    text = live_link_csv(0.5)
    plain = parse_live_link_csv(text)
    windows = parse_live_link_csv("\ufeff" + text.replace("\n", "\r\n"))
    np.testing.assert_array_equal(windows.times, plain.times)
    np.testing.assert_array_equal(windows.channels["JawOpen"], plain.channels["JawOpen"])
    unicode_text = tmp_path / "take.csv"  # (saved again by a Windows editor as "Unicode": UTF-16)
    unicode_text.write_bytes(text.replace("\n", "\r\n").encode("utf-16"))
    np.testing.assert_array_equal(read_live_link_csv(unicode_text).channels["JawOpen"], plain.channels["JawOpen"])
    # The app repeats a row's timecode now and then: the later row wins.
    lines = text.splitlines()
    repeated = with_row("\n".join(lines[:4] + [lines[3]] + lines[4:]), 3, "JawOpen", "0.25")
    capture = parse_live_link_csv(repeated)
    np.testing.assert_array_equal(capture.times, plain.times)
    assert capture.channels["JawOpen"][2] == 0.25
    assert capture.channels["JawOpen"][3] == plain.channels["JawOpen"][3]


def test_a_take_across_midnight_reads_on_where_its_timecode_starts_again():
    # The timecode is the time of day: 23:59:58:00 is followed, two seconds on, by 00:00:00:00.
    # Such a take was refused as rows out of time order.
    plain = parse_live_link_csv(live_link_csv(4.0))
    text = live_link_csv(4.0, start=24 * 3600.0 - 2.0)
    assert "\n23:59:59:59.000," in text and "\n00:00:00:00.000," in text
    across = parse_live_link_csv(text)
    np.testing.assert_allclose(across.times, plain.times, atol=1e-6)
    np.testing.assert_array_equal(across.channels["JawOpen"], plain.channels["JawOpen"])
    # Going back within the day is still out of order.
    lines = text.splitlines()
    with pytest.raises(FaceCaptureError, match="is earlier than the row before"):
        parse_live_link_csv("\n".join(lines[:200] + [lines[30]] + lines[200:]) + "\n")
