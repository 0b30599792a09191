"""Kept analyses: a recording is analysed once for the lines cut from it, in a session and, kept
beside a saved .blend, in the next."""

import json
import os
import shutil
import time

import pytest

from tha_studio.lipsync.analyses import UNUSED_DAYS, AnalysisMemo, KeptAnalysis, analyser_identity, kept_path
from tha_studio.lipsync.cues import Cue, CueTrack


def test_an_analysis_is_kept_by_the_recordings_bytes_and_the_analysers_settings(tmp_path):
    take = tmp_path / "take.wav"
    take.write_bytes(b"RIFF one take")
    memo = AnalysisMemo()
    key = memo.key(take, "built-in", "auto", None)
    memo.put(key, "the take's cues")
    # Written out again (a packed sound unpacked for another line) or copied: the same bytes.
    shutil.copy(take, tmp_path / "copy.wav")
    assert memo.get(memo.key(tmp_path / "copy.wav", "built-in", "auto", None)) == "the take's cues"
    # Another analyser, recognizer or dialog text, or the take recorded again: analysed anew.
    for other in (("/usr/bin/rhubarb", "auto", None), ("built-in", "phonetic", None), ("built-in", "auto", "Hi.")):
        assert memo.get(memo.key(take, *other)) is None
    take.write_bytes(b"RIFF another take")
    assert memo.get(memo.key(take, "built-in", "auto", None)) is None


def test_the_memo_keeps_the_last_analyses_used():
    memo = AnalysisMemo(size=2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # (now the last used)
    memo.put("c", 3)
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (1, None, 3)
    memo.clear()
    assert memo.get("a") is None


# --- kept on disk (beside a saved .blend): the next session or command-line run reuses them


def take_analysis():
    cues = (Cue(0.0, 0.12, "X"), Cue(0.12, 0.31, "B"), Cue(0.31, 1 / 3, "D"))
    track = CueTrack(cues, 0.5, "take.wav", "X", "analyser")
    return KeptAnalysis(track, ("zyzzyva",), ("the recording was cut short at 0.50 s",))


def test_an_analysis_kept_in_a_folder_is_reused_by_the_next_session(tmp_path):
    take = tmp_path / "take.wav"
    take.write_bytes(b"RIFF one take")
    folder = tmp_path / "tha_cache" / "lipsync-analyses"
    key = AnalysisMemo.key(take, "built-in 1", "phonetic", "Hi there.")
    AnalysisMemo().put(key, take_analysis(), folder)
    [kept] = folder.iterdir()
    later = AnalysisMemo()  # (a new Blender session, or the next sprite-lipsync run)
    assert later.get(key) is None  # not without its folder
    reused = later.get(key, folder)
    assert reused == take_analysis() and reused.track.cues[2].end == 1 / 3  # (times kept to the last bit)
    assert later.get(key) == take_analysis()  # and now in memory
    # Another analyser version, recognizer or dialog text: analysed anew.
    for other in ((key[0], "built-in 2", *key[2:]), (*key[:2], "words", key[3]), (*key[:3], "Hi.")):
        assert AnalysisMemo().get(other, folder) is None
    take.write_bytes(b"RIFF the take recorded again")
    assert AnalysisMemo().get(AnalysisMemo.key(take, *key[1:]), folder) is None


@pytest.mark.parametrize("damage", [
    b"", b'{"format": "tha_studio lip-sync analysis 1", "key": [', b"\xff\xfe\x00binary", b"[" * 100_000,
    "another format", "another key", "a cue that is no cue", "cues out of order", "a shape that is no shape",
    "a duration of true", "notes not text",
])
def test_a_damaged_kept_analysis_is_analysed_anew_and_written_over(tmp_path, damage):
    take = tmp_path / "take.wav"
    take.write_bytes(b"RIFF one take")
    key = AnalysisMemo.key(take, "built-in 1", "phonetic", None)
    AnalysisMemo().put(key, take_analysis(), tmp_path)
    path = kept_path(tmp_path, key)
    if isinstance(damage, bytes):
        path.write_bytes(damage)
    else:
        record = json.loads(path.read_text(encoding="utf-8"))
        change = {"another format": ("format", "tha_studio lip-sync analysis 0"),
                  "another key": ("key", [key[0], "built-in 0", "phonetic", None]),
                  "a cue that is no cue": ("cues", [[0.0, "soon", "X"]]),
                  "cues out of order": ("cues", [[0.5, 0.6, "X"], [0.0, 0.2, "B"]]),
                  "a shape that is no shape": ("cues", [[0.0, 0.1, "Q"]]),
                  "a duration of true": ("duration", True),
                  "notes not text": ("notes", [{"cut": 0.5}])}[damage]
        record[change[0]] = change[1]
        path.write_text(json.dumps(record), encoding="utf-8")
    assert AnalysisMemo().get(key, tmp_path) is None
    AnalysisMemo().put(key, take_analysis(), tmp_path)
    assert AnalysisMemo().get(key, tmp_path) == take_analysis()


def test_a_folder_that_cannot_be_written_keeps_the_analysis_in_memory(tmp_path):
    take = tmp_path / "take.wav"
    take.write_bytes(b"RIFF one take")
    blocked = tmp_path / "tha_cache"
    blocked.write_text("a file where the folder would go")
    key = AnalysisMemo.key(take, "built-in 1", "phonetic", None)
    memo = AnalysisMemo()
    memo.put(key, take_analysis(), blocked / "lipsync-analyses")
    assert memo.get(key) == take_analysis() and blocked.read_text() == "a file where the folder would go"


def test_the_analysers_identity_changes_with_rhubarbs_executable(tmp_path):
    rhubarb = tmp_path / "rhubarb"
    rhubarb.write_bytes(b"Rhubarb 1.13")
    built_in, first = analyser_identity(), analyser_identity(rhubarb)
    rhubarb.write_bytes(b"Rhubarb 1.14")  # (upgraded in place)
    assert len({built_in, first, analyser_identity(rhubarb)}) == 3



def test_writing_an_analysis_removes_those_no_lookup_can_reach_and_those_long_unused(tmp_path):
    take = tmp_path / "take.wav"
    take.write_bytes(b"RIFF one take")
    folder = tmp_path / "lipsync-analyses"
    older = AnalysisMemo.key(take, "0123456789abcdef", "phonetic", None)  # (the analyser before an update)
    AnalysisMemo().put(older, take_analysis(), folder)
    legacy = folder / ("7" * 64 + ".json")  # (named before the analyser's version led the name)
    legacy.write_text("{}", encoding="utf-8")
    others = [folder / "notes.txt", folder / ("fedcba9876543210-" + "0" * 64 + ".json.123.tmp"), folder / "sub.json"]
    others[0].write_text("the animator's own file")
    others[1].write_text("another process's analysis being written")
    others[2].mkdir()
    # The analyser updated: its first analysis written removes the older version's and the legacy one.
    used, unused, current = (AnalysisMemo.key(take, "fedcba9876543210 Rhubarb 42", "auto", text)
                             for text in ("Hi.", "Hello.", None))
    AnalysisMemo().put(used, take_analysis(), folder)
    assert sorted(folder.iterdir()) == sorted([kept_path(folder, used), *others])
    assert AnalysisMemo().get(older, folder) is None
    # Months later: what was read since stays, what was not goes when the next analysis is written.
    AnalysisMemo().put(unused, take_analysis(), folder)
    months_ago = time.time() - (UNUSED_DAYS + 1) * 86400
    for key in (used, unused):
        os.utime(kept_path(folder, key), (months_ago, months_ago))
    assert AnalysisMemo().get(used, folder) == take_analysis()  # (read: used again)
    AnalysisMemo().put(current, take_analysis(), folder)
    assert sorted(folder.iterdir()) == sorted([kept_path(folder, used), kept_path(folder, current), *others])
    assert AnalysisMemo().get(current, folder) == take_analysis() and AnalysisMemo().get(unused, folder) is None
