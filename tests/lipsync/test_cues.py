"""Cue tracks as a sound strip plays their recording: trimmed (heard_between) and started into it
or slipped (shifted), and retimed (scaled)."""

import json

import pytest

from tha_studio.lipsync.cues import Cue, CueError, CueTrack, cue_rows, cues_from_rows

TRACK = CueTrack((Cue(0.0, 0.5, "X"), Cue(0.5, 1.0, "B"), Cue(1.0, 1.5, "D"), Cue(1.5, 2.0, "X")), 2.5)


def spans(track):
    return [(round(cue.start, 9), round(cue.end, 9), cue.shape) for cue in track]


def test_a_track_heard_between_two_times_closes_the_mouth_outside_them_and_keeps_its_times():
    heard = TRACK.heard_between(0.75, 1.25)
    assert spans(heard) == [(0.0, 0.75, "X"), (0.75, 1.0, "B"), (1.0, 1.25, "D"), (1.25, 2.5, "X")]
    assert heard.duration == 2.5


def test_a_track_shifted_earlier_loses_what_comes_before_its_new_start():
    # A hard split's right part plays the recording from 0.75 s on: that is its time 0.
    shifted = TRACK.shifted(-0.75)
    assert spans(shifted) == [(0.0, 0.25, "B"), (0.25, 0.75, "D"), (0.75, 1.75, "X")]
    assert shifted.duration == 1.75 and shifted.closing_shape() == TRACK.closing_shape()


def test_a_track_shifted_later_starts_with_the_mouth_closed():
    # A negative sound offset: the recording starts a quarter second into the strip.
    shifted = TRACK.shifted(0.25)
    assert spans(shifted) == [(0.0, 0.75, "X"), (0.75, 1.25, "B"), (1.25, 1.75, "D"), (1.75, 2.75, "X")]
    assert TRACK.shifted(0.0) is TRACK


@pytest.mark.parametrize("seconds", [-2.5, -10.0])
def test_a_track_shifted_past_its_end_is_empty(seconds):
    shifted = TRACK.shifted(seconds)
    assert len(shifted) == 0 and shifted.duration == 0.0


def test_a_track_scaled_plays_over_that_many_times_its_seconds():
    # A sound strip retimed to half its speed plays its recording over twice its seconds.
    slower = TRACK.scaled(2.0)
    assert spans(slower) == [(0.0, 1.0, "X"), (1.0, 2.0, "B"), (2.0, 3.0, "D"), (3.0, 5.0, "X")]
    assert slower.duration == TRACK.duration * 2 and slower.closing_shape() == TRACK.closing_shape()
    assert TRACK.scaled(1) is TRACK
    for factor in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(CueError, match="time scale"):
            TRACK.scaled(factor)


def test_cue_rows_read_back_as_the_cues_and_anything_else_is_refused():
    cues = (Cue(0.0, 0.12, "X"), Cue(0.12, 1 / 3, "B"))
    assert cues_from_rows(json.loads(json.dumps(cue_rows(cues)))) == cues
    for rows in ({"0": 1}, [[0.0, 0.1]], [[0.0, "soon", "X"]], [[True, 0.1, "X"]], [[0.0, 0.1, "Q"]], [7]):
        with pytest.raises(CueError):
            cues_from_rows(rows)
