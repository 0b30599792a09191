"""Every reader of a file a user hands us names a named pipe or a device given as that file: a
pipe blocked its reader until something wrote into it, and /dev/zero never ends (a picture, a
dialog text, a cue file, a keyframe file, a capture, a motion, weights: each waited for ever or
filled memory; a recording read as empty)."""

import os
import threading

import pytest

from tha_studio.errors import UserError
from tha_studio.input_files import decode_text, not_a_file, read_text


def readers():
    """(suffix, read(path), what the error calls the file) of each reader of a user's file."""
    from tha_studio.animation.blender.sprite_scene import read_keyframes
    from tha_studio.animation.core.face_capture import read_live_link_csv
    from tha_studio.lipsync.analyser import read_audio, read_dialog
    from tha_studio.lipsync.formats import read_cues
    from tha_studio.neural.ort.poser import read_pt
    from tha_studio.neural.ort.weight_sources import read_safetensors
    from tha_studio.neural.weights import load_pt
    from tha_studio.pose.character_image import prepare_character_image
    from tha_studio.pose.schema import THA3
    from tha_studio.render.dataset.annotation import load_sidecar
    from tha_studio.render.dataset.plan import read_config_file, read_split_file
    from tha_studio.render.formats.avatar_expressions import read_avatar_bytes
    from tha_studio.render.formats.mmd import read_model, vmd

    return {
        "picture": (".png", lambda path: prepare_character_image(path, THA3), "not a picture"),
        "recording": (".wav", read_audio, "not a recording"),
        "dialog": (".txt", read_dialog, "not a dialog text file"),
        "cues": (".tsv", read_cues, "not a cue file"),
        "keyframes": (".json", read_keyframes, "not a keyframe file"),
        "capture": (".csv", read_live_link_csv, "not a capture file"),
        "model": (".pmx", read_model, "not a model file"),
        "motion": (".vmd", vmd.read, "not a motion file"),
        "avatar": (".vrm", read_avatar_bytes, "not an avatar file"),
        "weights (torch)": (".pt", load_pt, "not a weights file"),
        "weights (without torch)": (".pt", read_pt, "not a weights file"),
        "safetensors": (".safetensors", read_safetensors, "not a weights file"),
        "dataset split file": (".txt", read_split_file, "not a regular file"),
        "dataset description": (".json", read_config_file, "not a regular file"),
        "annotation": (".tha.json", load_sidecar, "not a regular file"),
    }


def raised_in_time(read, path, seconds=20):
    """The error `read(path)` raised, from a thread given `seconds` (it must not block)."""
    outcome = {}

    def run():
        try:
            read(path)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with open(path, "wb"):  # (a writer at last: the blocked reader goes on, and the thread ends)
            pass
        pytest.fail(f"reading {path} did not end")
    return outcome.get("error")


@pytest.mark.parametrize("reader", list(readers()))
@pytest.mark.parametrize("kind", ["a named pipe", "a device"])
def test_a_named_pipe_or_a_device_is_named_not_read(tmp_path, reader, kind):
    suffix, read, called = readers()[reader]
    path = tmp_path / f"given{suffix}"
    if kind == "a named pipe":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")  # (a name with the reader's suffix, as a user might pick)
    error = raised_in_time(read, path)
    assert isinstance(error, UserError), f"{reader}: {error!r}"
    assert str(path) in str(error) and f"is {kind}, {called}" in str(error)


def test_what_is_no_file_is_said(tmp_path):
    (tmp_path / "file").write_bytes(b"")
    os.mkfifo(tmp_path / "pipe")
    assert not_a_file(tmp_path / "file") is None and not_a_file(tmp_path / "absent") is None
    assert (not_a_file(tmp_path), not_a_file(tmp_path / "pipe"), not_a_file("/dev/null")) == \
        ("a folder", "a named pipe", "a device")


def test_text_reads_as_utf_8_with_or_without_a_mark_or_as_utf_16_by_its_mark(tmp_path):
    """What editors on Windows save: UTF-8 with a byte-order mark (Notepad), UTF-16 with one
    (Notepad's and Excel's "Unicode", Windows PowerShell 5's `>`), each with Windows line ends."""
    words = "caf\u00e9 \u30df\u30af\r\nline two\rthree\n"
    for encoded in (words.encode("utf-8"), b"\xef\xbb\xbf" + words.encode("utf-8"), words.encode("utf-16"),
                    b"\xfe\xff" + words.encode("utf-16-be")):
        assert decode_text(encoded) == words
        (tmp_path / "text.txt").write_bytes(encoded)
        assert read_text(tmp_path / "text.txt") == "caf\u00e9 \u30df\u30af\nline two\nthree\n"
    for not_text in ("caf\u00e9".encode("cp1252"), "caf\u00e9".encode("utf-16-le"), b"\xff\xfe\x41"):
        with pytest.raises(UnicodeDecodeError):  # (each reader names its file and says to save as UTF-8)
            decode_text(not_text)
