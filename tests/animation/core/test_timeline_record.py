"""The timeline's records read back: a field of the wrong kind counts as absent, never as an error."""

import pytest

from tha_studio.animation.core.timeline_record import readable_record, trim_of
from tha_studio.lipsync.curves import MouthMapping

TRIM = {"kind": "line", "name": "tv", "sound": "tv take 3", "adopted": True, "heard": [12, 80], "seconds": 1.25,
        "playback": [1.25, 4.0], "unfollowed": [0.8, 0.0],
        "retiming": {"fps": 24.0, "keys": [0.0, 29.0, 53.0, 96.0], "span": [29.0, 69.0],
                     "segment": [29.0, 53.0, 29.0, 69.0], "past": 54.0},
        "cues": [[0.0, 0.5, "X"], [0.5, 0.7, "B"], [0.7, 1.0, "E"]], "duration": 1.2, "closed": "X",
        "keys": {"fps": 24.0, "start": 20, "style": "eased", "blend": 0.06,
                 "mapping": MouthMapping.default("tha3").values}}


def test_a_record_as_the_timeline_writes_it_reads_back_whole():
    assert readable_record(TRIM) == TRIM
    assert readable_record({"kind": "generator", "generator": "blink", "settings": {"rate": 3}, "future": [1]}) == {
        "kind": "generator", "generator": "blink", "settings": {"rate": 3}, "future": [1]}  # a newer field kept


@pytest.mark.parametrize("value", [[1, 2], "line", 3, None, {}, {"kind": 5, "name": "tv"}])
def test_no_object_or_no_kind_is_nobodys_record(value):
    assert readable_record(value) == {}


@pytest.mark.parametrize("field, value", [
    ("name", 3), ("sound", ["tv take 3"]), ("sound", {"name": "x"}), ("adopted", "yes"), ("adopted", 1),
    ("fps", "24"), ("fps", float("nan")), ("fps", True), ("frame", "1"), ("sound_frame", [1]),
    ("heard", [12]), ("heard", "12-80"), ("heard", [12, "80"]), ("cues", {"0": 1}), ("duration", "1.2"),
    ("closed", 0), ("keys", [24, 20]), ("settings", "rate=3"), ("seconds", "1.25"), ("seconds", None),
    ("playback", [1.25]), ("playback", 1.25), ("playback", [1.25, None]), ("unfollowed", [True, 0.0]),
    ("unfollowed", []), ("retiming", [24.0]), ("retiming", {"fps": 24.0, "keys": [0.0], "span": [0.0]}),
    ("retiming", {"keys": [], "span": [0.0, 40.0]}), ("retiming", {"fps": 24.0, "keys": ["0"], "span": [0.0, 40.0]}),
    ("retiming", {"fps": 24.0, "keys": [], "span": [0.0, 40.0], "segment": [0.0, 40.0, 0.0]}),
    ("retiming", {"fps": 24.0, "keys": [], "span": [0.0, 40.0], "unknown": [3, "1.0"]}),
    ("retiming", {"fps": 24.0, "keys": [], "span": [0.0, 40.0], "past": None}),
])
def test_a_field_of_the_wrong_kind_reads_as_absent(field, value):
    record = readable_record({**TRIM, "settings": {}, field: value})
    assert field not in record
    assert record["kind"] == "line"


def test_the_trim_record_of_an_adopted_line_reads_as_what_keys_it():
    whole, settings, mapping = trim_of(readable_record(TRIM))
    assert [(cue.start, cue.end, cue.shape) for cue in whole.cues] == [
        (0.0, 0.5, "X"), (0.5, 0.7, "B"), (0.7, 1.0, "E")]
    assert (whole.duration, whole.closed_shape) == (1.2, "X")
    assert (settings.style, settings.blend, settings.frame_rate, settings.start_frame) == ("eased", 0.06, 24.0, 20.0)
    assert mapping == TRIM["keys"]["mapping"]


@pytest.mark.parametrize("change", [
    {"cues": None}, {"keys": None}, {"cues": [[0.0, 0.5]]}, {"cues": [[0.0, 0.5, "Q"]]}, {"cues": [[0.5, 0.0, "A"]]},
    {"cues": [[0.0, 0.5, "A"], [0.2, 0.7, "B"]]}, {"cues": [["0", 0.5, "A"]]}, {"cues": [[0.0, 0.5, ["A"]]]},
    {"cues": [7]}, {"duration": -1.0}, {"closed": "Q"},
    {"keys": {**TRIM["keys"], "fps": 0}}, {"keys": {**TRIM["keys"], "fps": "24"}},
    {"keys": {**TRIM["keys"], "start": None}},
    {"keys": {**TRIM["keys"], "style": "bouncy"}}, {"keys": {**TRIM["keys"], "style": {"a": 1}}},
    {"keys": {**TRIM["keys"], "blend": 99}}, {"keys": {**TRIM["keys"], "mapping": "default"}},
    {"keys": {key: value for key, value in TRIM["keys"].items() if key != "style"}},
])
def test_a_trim_record_that_does_not_read_is_none(change):
    record = {**TRIM}
    for field, value in change.items():
        if value is None:
            del record[field]
        else:
            record[field] = value
    assert trim_of(readable_record(record)) is None


def test_a_line_older_than_trims_being_followed_has_none():
    assert trim_of(readable_record({"kind": "line", "name": "tv", "sound": "Anna: tv"})) is None
