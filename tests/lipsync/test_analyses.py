"""The session's kept analyses: a recording is analysed once for the lines cut from it."""

import shutil

from tha_studio.lipsync.analyses import AnalysisMemo


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
