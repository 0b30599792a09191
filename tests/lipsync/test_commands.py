"""The `lipsync` subcommand, run as a user would through the command line's main()."""

import json
import os

import pytest
import soundfile

from recordings import cut_copy, unsized_wav
from tha_studio.commands import main
from tha_studio.lipsync import formats


def rhubarb_file(shared, recording, name):
    return shared / "assets" / "lipsync" / "rhubarb" / recording / name


def test_help_lists_the_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["lipsync", "--help"])
    text = capsys.readouterr().out
    assert "values-csv" in text and "--dialog" in text and "--dat-preston-blair" in text


def test_cue_file_converted_like_rhubarb_would_write_it(shared, tmp_path):
    source = rhubarb_file(shared, "s2_rounded.wav", "ps_json.json")
    for name, extra in (("ps_tsv.tsv", []), ("ps_xml.xml", []), ("ps_dat30.dat", ["--dat-frame-rate", "30"]),
                        ("ps_dat24_prestonblair.dat", ["--dat-preston-blair"])):
        target = tmp_path / name
        assert main(["lipsync", "-q", str(source), "-o", str(target)] + extra) == 0
        assert target.read_bytes() == rhubarb_file(shared, "s2_rounded.wav", name).read_bytes()


def test_values_per_frame_as_csv_and_json(shared, tmp_path, capsys):
    source = rhubarb_file(shared, "en_male_electricity.ogg", "ps_tsv.tsv")
    target = tmp_path / "mouth.csv"
    assert main(["lipsync", "-q", str(source), "-o", str(target), "--fps", "30", "--style", "linear"]) == 0
    lines = target.read_text().splitlines()
    assert lines[0] == "frame,mouth_aaa,mouth_iii,mouth_uuu,mouth_eee,mouth_ooo"
    assert len(lines) - 1 == 33  # 1.06 s at 30 fps, frames 1..33
    assert main(["lipsync", "-q", str(source), "--format", "values-json", "--schema", "tha1"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["parameters"] == ["mouth"] and document["frame_rate"] == 24
    assert len(document["frames"]) == len(document["values"]) == 27
    assert max(v[0] for v in document["values"]) > 0.3


def test_audio_in_cues_out_with_the_builtin_analyser(shared, tmp_path):
    audio = shared / "assets" / "lipsync" / "audio" / "en_male_electricity.ogg"
    target = tmp_path / "cues.json"
    assert main(["lipsync", "-q", "--engine", "builtin", str(audio), "-o", str(target)]) == 0
    track = formats.read_cues(target)
    assert track.duration == pytest.approx(1.06) and track.sound_file == str(audio.resolve())
    assert track.cues[0].shape == "X" and len(track) >= 3


def test_a_voice_memo_is_decoded_by_blenders_ffmpeg_and_named_in_the_cues(shared, tmp_path, capsys):
    import bpy  # noqa: F401 (Blender's `aud` comes with it)
    import aud

    recording = shared / "assets" / "lipsync" / "audio" / "en_male_electricity.ogg"
    memo = tmp_path / "memo.aac"  # a phone's voice memo is AAC (in an .m4a)
    aud.Sound(str(recording)).write(str(memo), 44100, aud.CHANNELS_MONO, aud.FORMAT_S16, aud.CONTAINER_AAC,
                                    aud.CODEC_AAC, 96000)
    target = tmp_path / "cues.json"
    assert main(["lipsync", "--engine", "builtin", str(memo), "-o", str(target)]) == 0
    assert "memo.aac: analysed by the built-in analyser, from a WAV copy (Blender's FFmpeg decoded it)" in capsys.readouterr().err
    track = formats.read_cues(target)
    assert track.sound_file == str(memo.resolve()) and track.duration == pytest.approx(1.06, abs=0.06)
    assert track.cues[0].shape == "X" and len(track) >= 3


def test_errors_are_one_line_and_name_the_file(shared, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "mouthCues": [\n    { "start": 0.0, "end": 0.1, "value": "Q" }\n  ]\n}\n')
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"D": {"head_x": 1}}')
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    cases = [
        (["lipsync", str(bad)], f"{bad}, line 3: 'Q' is not a mouth shape"),
        (["lipsync", str(shared / "assets" / "lipsync" / "bad_inputs" / "empty.wav"), "--engine", "builtin"],
         "The file is empty"),
        (["lipsync", str(tmp_path / "nothing.xyz")], "no such file"),
        (["lipsync", str(tmp_path / "nothing.m4a")], "nothing.m4a. No such file."),
        (["lipsync", str(tmp_path / "nothing.mp3")], "nothing.mp3. No such file."),
        (["lipsync", str(rhubarb_file(shared, "s2_rounded.wav", "ps_tsv.tsv")), "-o", str(tmp_path / "x.png")],
         "cannot tell the output format"),
        (["lipsync", str(rhubarb_file(shared, "s2_rounded.wav", "ps_tsv.tsv")), "-f", "dat", "--dat-frame-rate", "12"],
         "Frame rate must be between 24 and 100 fps"),
        (["lipsync", str(rhubarb_file(shared, "s2_rounded.wav", "ps_tsv.tsv")), "-f", "values-csv", "--mapping", str(mapping)],
         "'head_x' is not a tha3 mouth parameter"),
        (["lipsync", "-q", str(tmp_path / "v.wav"), "--engine", "rhubarb", "--rhubarb", str(tmp_path)],
         "no runnable Rhubarb Lip Sync executable"),
        # (a named pipe was opened, and the command waited for a writer for ever)
        (["lipsync", str(rhubarb_file(shared, "s2_rounded.wav", "ps_tsv.tsv")), "-f", "values-csv", "--mapping",
          str(pipe)], f"{pipe}: cannot read the mouth mapping: is a named pipe, not a regular file"),
    ]
    for argv, message in cases:
        assert main(argv) == 1, argv
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("tha_studio lipsync: error: ") and message in error, (argv, error)
    assert not (tmp_path / "x.png").exists()


def test_bad_value_options_are_named_before_the_recording_is_analysed(shared, tmp_path, capsys, monkeypatch):
    # The analysis of a long line takes a while: a mistyped --fps or mapping must not wait for it.
    monkeypatch.setenv("PATH", str(tmp_path))  # no Rhubarb: the built-in analyser, which shows a bar
    recording = shared / "assets" / "lipsync" / "audio" / "s1_plosives.wav"
    mapping = tmp_path / "mapping.json"
    mapping.write_text('{"A": {"mouth_aaa": 2}}')
    for options, message in [(["--fps", "0"], "frame rate must be a positive number"),
                             (["--blend", "-1"], "blend time must be seconds from 0 to 10"),
                             # (a traceback; per-frame values for a billion frames a second)
                             (["--start-frame", "nan"], "start frame must be a frame number from -1,048,574"),
                             (["--fps", "1e9"], "frames per second up to 32767"),
                             (["--mapping", str(mapping)], "A sets mouth_aaa=2, outside [0.0, 1.0]")]:
        assert main(["lipsync", str(recording), "-f", "values-csv", *options]) == 1
        err = capsys.readouterr().err
        assert "lip sync:" not in err and "analysed by" not in err, err
        assert err.strip().splitlines()[-1].startswith("tha_studio lipsync: error: ") and message in err


def test_an_output_folder_that_cannot_be_made_is_named_before_the_recording_is_analysed(shared, tmp_path, capsys,
                                                                                       monkeypatch):
    # It was said only after the analysis (a while, for a long line): "[Errno 17] File exists".
    monkeypatch.setenv("PATH", str(tmp_path))  # no Rhubarb: the built-in analyser, which shows a bar
    recording = shared / "assets" / "lipsync" / "audio" / "s1_plosives.wav"
    (tmp_path / "taken").write_text("a file where the folder would be")
    target = tmp_path / "taken" / "cues" / "line.tsv"
    assert main(["lipsync", str(recording), "-o", str(target)]) == 1
    err = capsys.readouterr().err
    assert "lip sync:" not in err and "analysed by" not in err, err
    assert err.strip().splitlines()[-1] == (f"tha_studio lipsync: error: -o {target}: the folder {target.parent} "
                                            f"cannot be made ({tmp_path / 'taken'} is a file)")
    target = tmp_path / "new" / "cues" / "line.tsv"  # a folder that can be made is
    assert main(["lipsync", "-q", str(recording), "-o", str(target)]) == 0 and target.is_file()


def test_the_engine_is_named_and_a_logs_progress_is_a_line_where_it_starts_and_ends(shared, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Rhubarb: auto means the built-in analyser
    audio = shared / "assets" / "lipsync" / "audio" / "en_male_electricity.ogg"
    samples, rate = soundfile.read(audio)
    flac = tmp_path / "electricity.flac"
    soundfile.write(flac, samples, rate)
    assert main(["lipsync", str(flac), "-o", str(tmp_path / "cues.tsv")]) == 0
    err = capsys.readouterr().err
    lines = err.split("\n")
    assert lines[0] == "electricity.flac: analysed by the built-in analyser"
    # Off a terminal (a log): the bar as a line of its own where it starts and ends, no "\r"
    # redraws (the analysis takes seconds; a line at most every 30 s between).
    assert [line.split("|")[0] for line in lines[1:3]] == ["lip sync:   0%", "lip sync: 100%"]
    assert "\r" not in err
    assert lines[3].endswith("-> " + str(tmp_path / "cues.tsv")) and "" not in lines[:-1]


def test_a_recording_cut_short_is_lip_synced_as_far_as_it_goes_with_a_warning_even_when_quiet(
        shared, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Rhubarb: the built-in analyser
    samples, rate = soundfile.read(shared / "assets" / "lipsync" / "audio" / "s3_pauses.wav")
    whole = tmp_path / "line.flac"
    soundfile.write(whole, samples, rate)
    cut = cut_copy(whole, tmp_path / "cut.flac")
    target = tmp_path / "cues.tsv"
    assert main(["lipsync", "-q", str(cut), "-o", str(target)]) == 0
    [warning] = capsys.readouterr().err.splitlines()
    assert warning.startswith("warning: cut.flac: the audio cannot be decoded past ")
    assert f" of {len(samples) / rate:.2f} s (flac decoder lost sync)" in warning
    assert 0.4 < formats.read_cues(target).duration / (len(samples) / rate) < 0.6


def test_a_wav_whose_header_left_its_size_at_0_is_lip_synced_whole_with_a_warning(shared, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no Rhubarb: the built-in analyser
    original = shared / "assets" / "lipsync" / "audio" / "s4_bilabials.wav"
    unsized = unsized_wav(original, tmp_path / "unsized.wav")
    cues = {}
    for path in (original, unsized):
        cues[path] = tmp_path / f"{path.stem}.tsv"
        assert main(["lipsync", "-q", "--recognizer", "phonetic", str(path), "-o", str(cues[path])]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"warning: unsized.wav: its header gives the audio's size as 0 (a recording that was not closed properly?); "
        f"it is read to the end of the file, {soundfile.info(original).duration:.2f} s"]
    assert formats.read_cues(cues[unsized]).cues == formats.read_cues(cues[original]).cues


def test_an_error_after_the_progress_bar_starts_its_own_line(shared, capsys):
    bad = shared / "assets" / "lipsync" / "bad_inputs" / "text_renamed.wav"
    assert main(["lipsync", str(bad), "--engine", "builtin"]) == 1
    lines = capsys.readouterr().err.split("\n")
    assert lines[-2].startswith("tha_studio lipsync: error: Could not open sound file") and lines[-1] == ""
    assert "" not in lines[:-1]  # no empty line before it
    assert lines[-3].startswith("lip sync:") and "\r" not in lines[-3]


def test_values_past_blenders_last_frame_are_refused(shared, tmp_path, capsys):
    cues = shared / "assets" / "lipsync" / "rhubarb" / "en_male_electricity.ogg" / "ps_tsv.tsv"  # to 1.06 s
    out = tmp_path / "values.csv"
    assert main(["lipsync", str(cues), "-f", "values-csv", "--start-frame", "1048560", "-o", str(out)]) == 1
    assert "runs to frame 1,048,586, past Blender's last frame" in capsys.readouterr().err and not out.exists()
    assert main(["lipsync", str(cues), "-f", "values-csv", "--start-frame", "1048548", "-o", str(out)]) == 0
    assert out.read_text().splitlines()[-1].split(",")[0] == "1048574"


def test_a_cue_file_past_the_limit_is_refused_before_any_output(tmp_path, capsys):
    # 17 bytes that once meant 24 million rows of per-frame values.
    huge = tmp_path / "huge.tsv"
    huge.write_text("0.00\tX\n1e6\tX\n")
    assert main(["lipsync", str(huge), "-o", str(tmp_path / "mouth.csv")]) == 1
    error = capsys.readouterr().err.strip()
    assert error == f"tha_studio lipsync: error: {huge}, line 2: time must be at most 43200 seconds (12 hours), got 1e6"
    assert not (tmp_path / "mouth.csv").exists()
