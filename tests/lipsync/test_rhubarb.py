"""The Rhubarb job: command line, machine-readable progress, failures in Rhubarb's words, cancel.

Rhubarb itself is not installed here, so these tests run a stand-in executable that replays what
the real Rhubarb 1.14 printed and wrote for the same inputs (../shared/assets/lipsync: its JSON
output and its recorded --machineReadable failure lines).
"""

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

import tha_studio
from recordings import cut_copy, flac_without_length, unsized_wav
from tha_studio.lipsync import formats
from tha_studio.errors import UserError
from tha_studio.jobs import JobCancelled
from tha_studio.lipsync.rhubarb import (RhubarbError, RhubarbJob, can_read, convert_to_wav, find_rhubarb,
                                        rhubarb_arguments)

STAND_IN = r'''#!{python}
import json, os, shutil, sys, time
args = sys.argv[1:]
with open(os.environ["RHUBARB_STAND_IN_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
audio = args[-1]
with open(os.environ["RHUBARB_STAND_IN_LOG"] + ".pid", "w") as pid:
    pid.write(str(os.getpid()))
output = args[args.index("-o") + 1]
def say(event):
    sys.stderr.write(json.dumps(event).replace('", "', '", "') + "\n"); sys.stderr.flush()
say({{"type": "start", "file": audio, "log": {{"level": "Info", "message": "Application startup. Input file: " + audio + "."}}}})
recorded = os.path.join({shared!r}, "assets", "lipsync", "rhubarb", os.path.basename(audio), "ps_json.json")
if not os.path.exists(audio):
    reason = "Error processing file " + audio + ".\nCould not open sound file " + audio + ".\n"
    say({{"type": "failure", "reason": reason, "log": {{"level": "Fatal", "message": "Application terminating with error: " + reason}}}})
    sys.exit(1)
for percent in (6, 40, 68, 100):
    time.sleep(float(os.environ.get("RHUBARB_STAND_IN_DELAY", "0.02")))
    say({{"type": "progress", "value": percent / 100, "log": {{"level": "Trace", "message": "Progress: %d%%" % percent}}}})
shutil.copyfile(recorded, output)
say({{"type": "success", "log": {{"level": "Info", "message": "Application terminating normally."}}}})
'''


@pytest.fixture
def stand_in(shared, tmp_path, monkeypatch):
    path = tmp_path / "bin" / "rhubarb"
    path.parent.mkdir()
    path.write_text(STAND_IN.format(python=sys.executable, shared=str(shared)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("RHUBARB_STAND_IN_LOG", str(log))
    monkeypatch.setenv("PATH", f"{path.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return path, log


def test_finds_rhubarb_on_path_or_where_given(stand_in, tmp_path):
    path, _ = stand_in
    assert find_rhubarb() == path
    assert find_rhubarb(path.parent) == path
    with pytest.raises(RhubarbError, match="no runnable Rhubarb"):
        find_rhubarb(tmp_path / "nowhere")


def test_rhubarb_given_by_a_relative_path_runs(shared, stand_in, monkeypatch):
    """`--rhubarb ./rhubarb` (or a folder next to the user) ended in "could not start Rhubarb
    Lip Sync: No such file or directory": the name Path normalises to was looked up on PATH."""
    path, log = stand_in
    monkeypatch.chdir(path.parent)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_rhubarb("./rhubarb") == path and find_rhubarb(".") == path
    audio = shared / "assets" / "lipsync" / "audio" / "s3_pauses.wav"
    assert len(RhubarbJob(audio, executable="./rhubarb").run()) > 0
    assert len(RhubarbJob(audio, executable=find_rhubarb("rhubarb")).run()) > 0


def test_command_line():
    arguments = rhubarb_arguments("rhubarb", "voice.wav", "out.json", "phonetic", "dialog.txt", "", 2)
    assert arguments == ["rhubarb", "--machineReadable", "-f", "json", "-o", "out.json", "-r", "phonetic",
                         "--extendedShapes", "", "-d", "dialog.txt", "--threads", "2", "voice.wav"]
    with pytest.raises(ValueError, match="'Z' is not a mouth shape"):
        rhubarb_arguments("rhubarb", "voice.wav", "out.json", extended_shapes="GZ")


def test_a_run_reports_progress_and_gives_rhubarbs_cues(shared, stand_in):
    _, log = stand_in
    audio = shared / "assets" / "lipsync" / "audio" / "en_male_watchingtv.ogg"
    job = RhubarbJob(audio, dialog="I was watching TV at home", recognizer="words").start()
    seen = []
    while not job.done:
        seen.append(job.step().fraction)
    assert seen[-1] == 1.0 and any(0 < p < 1 for p in seen)
    expected = formats.read_cues(shared / "assets" / "lipsync" / "rhubarb" / audio.name / "ps_json.json")
    assert [(c.start, c.end, c.shape) for c in job.result] == [(c.start, c.end, c.shape) for c in expected]
    call = json.loads(log.read_text().splitlines()[-1])
    assert call[:4] == ["--machineReadable", "-f", "json", "-o"] and call[-1] == str(audio)
    assert "-d" in call and "pocketSphinx" in call
    assert "Application terminating normally." in job.log


def test_failures_are_reported_with_rhubarbs_own_message(stand_in, tmp_path):
    job = RhubarbJob(tmp_path / "missing_file.wav").start()
    with pytest.raises(RhubarbError) as caught:
        job.run()
    message = str(caught.value)
    assert "Rhubarb Lip Sync failed on" in message
    assert f"Could not open sound file {tmp_path / 'missing_file.wav'}." in message


def test_cancel_stops_the_run(shared, stand_in, monkeypatch):
    monkeypatch.setenv("RHUBARB_STAND_IN_DELAY", "5")
    job = RhubarbJob(shared / "assets" / "lipsync" / "audio" / "s2_rounded.wav").start()
    job.step()
    assert not job.done
    process = job.process
    started = time.monotonic()
    job.cancel()
    assert time.monotonic() - started < 4
    assert process.poll() is not None  # the process is gone, not left running
    with pytest.raises(JobCancelled, match="s2_rounded.wav: cancelled"):
        job.step()


def test_missing_rhubarb_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RhubarbError, match="not installed"):
        RhubarbJob(tmp_path / "voice.wav")


@pytest.mark.parametrize("suffix", [".flac", ".mp3"])
def test_flac_and_mp3_go_to_rhubarb_as_a_temporary_wav(shared, stand_in, tmp_path, suffix):
    # Rhubarb 1.14 opens only .wav and .ogg: the job hands it a WAV copy and names the original.
    _, log = stand_in
    samples, rate = soundfile.read(shared / "assets" / "lipsync" / "audio" / "s1_plosives.wav")
    flac = tmp_path / f"s1_plosives{suffix}"
    soundfile.write(flac, samples, rate)
    assert not can_read(flac) and can_read("a.WAV") and can_read("b.ogg")
    job = RhubarbJob(flac)
    track = job.run()
    given = Path(json.loads(log.read_text().splitlines()[-1])[-1])
    assert given.name == "s1_plosives.wav" and given.parent.name.startswith("tha_studio_rhubarb_")
    assert not given.parent.exists()  # removed with the job's folder
    expected = formats.read_cues(shared / "assets" / "lipsync" / "rhubarb" / "s1_plosives.wav" / "ps_json.json")
    assert track.cues == expected.cues and track.sound_file == str(flac)


@pytest.mark.parametrize("format, subtype, endian, rhubarb_reads", [
    ("WAV", "PCM_16", "FILE", True), ("WAV", "PCM_U8", "FILE", True), ("WAV", "PCM_24", "FILE", True),
    ("WAV", "PCM_32", "FILE", True), ("WAV", "FLOAT", "FILE", True), ("WAV", "DOUBLE", "FILE", True),
    ("WAVEX", "PCM_16", "FILE", True), ("WAVEX", "FLOAT", "FILE", True),
    # Compressed codecs of voice recorders and telephony, which Rhubarb refuses as unsupported
    # ("Only uncompressed codecs ... are supported"), and the containers its reader does not know.
    ("WAV", "ULAW", "FILE", False), ("WAV", "ALAW", "FILE", False), ("WAV", "IMA_ADPCM", "FILE", False),
    ("WAV", "MS_ADPCM", "FILE", False), ("WAV", "GSM610", "FILE", False), ("WAVEX", "ULAW", "FILE", False),
    ("WAV", "PCM_16", "BIG", False), ("RF64", "PCM_16", "FILE", False),
])
def test_a_wav_rhubarb_cannot_read_goes_to_it_as_a_16_bit_copy(shared, stand_in, tmp_path, format, subtype, endian,
                                                                 rhubarb_reads):
    _, log = stand_in
    samples, rate = soundfile.read(shared / "assets" / "lipsync" / "audio" / "s1_plosives.wav")
    rate_written = 8000 if subtype == "GSM610" else rate  # (GSM 6.10 is 8 kHz mono)
    if rate_written != rate:
        samples = samples[:: rate // rate_written] if rate % rate_written == 0 else samples
    wav = tmp_path / "s1_plosives.wav"
    soundfile.write(wav, samples, rate_written, subtype=subtype, format=format, endian=endian)
    assert can_read(wav) is rhubarb_reads
    job = RhubarbJob(wav)
    track = job.run()
    given = Path(json.loads(log.read_text().splitlines()[-1])[-1])
    if rhubarb_reads:
        assert given == wav
    else:
        assert given.name == "s1_plosives.wav" and given.parent.name.startswith("tha_studio_rhubarb_")
        assert track.sound_file == str(wav)  # the cues name the user's recording, not the copy
    assert len(track.cues) > 3


def test_an_ogg_opus_voice_note_goes_to_rhubarb_as_a_wav_copy(shared, stand_in, tmp_path):
    # Messaging apps save voice notes as .ogg holding Opus, which Rhubarb's Ogg reader (Vorbis only)
    # cannot decode.
    _, log = stand_in
    samples, rate = soundfile.read(shared / "assets" / "lipsync" / "audio" / "s1_plosives.wav")
    vorbis, note = tmp_path / "vorbis.ogg", tmp_path / "s1_plosives.ogg"
    soundfile.write(vorbis, samples, rate, subtype="VORBIS", format="OGG")
    soundfile.write(note, samples, 48000, subtype="OPUS", format="OGG")
    assert can_read(vorbis) and can_read(shared / "assets" / "lipsync" / "audio" / "en_male_watchingtv.ogg")
    assert not can_read(note)
    track = RhubarbJob(note).run()
    given = Path(json.loads(log.read_text().splitlines()[-1])[-1])
    assert given.name == "s1_plosives.wav" and given.parent.name.startswith("tha_studio_rhubarb_")
    assert track.sound_file == str(note) and len(track.cues) > 3


def test_a_wav_cut_short_goes_to_rhubarb_as_a_copy_of_what_is_there_and_is_said(shared, stand_in, tmp_path):
    # Rhubarb reads a WAV as far as its header says; a copy cut at half gets it a WAV of the half
    # there, and the job says the recording was cut short, as the built-in analyser does.
    _, log = stand_in
    samples, rate = soundfile.read(shared / "assets" / "lipsync" / "audio" / "s1_plosives.wav", dtype="int16")
    whole = tmp_path / "whole" / "s1_plosives.wav"
    whole.parent.mkdir()
    soundfile.write(whole, samples, rate, subtype="PCM_16")
    data = whole.read_bytes()
    cut = cut_copy(whole, tmp_path / "s1_plosives.wav")
    assert can_read(whole) and not can_read(cut)
    job = RhubarbJob(cut)
    job.run()
    given = Path(json.loads(log.read_text().splitlines()[-1])[-1])
    assert given.name == cut.name and given.parent.name.startswith("tha_studio_rhubarb_")
    [note] = job.notes
    kept = (len(data) // 2 - (len(data) - 2 * len(samples))) // 2
    assert f"the recording ends at {kept / rate:.2f} s, though its header gives {len(samples) / rate:.2f} s" in note
    assert RhubarbJob(whole).run() and log.read_text().splitlines()[-1].endswith(f'"{whole}"]')


def test_a_wav_whose_header_left_its_size_at_0_goes_to_rhubarb_as_a_whole_copy(shared, stand_in, tmp_path):
    # Rhubarb would read no audio from it (its header says none); players play all of it.
    _, log = stand_in
    original = shared / "assets" / "lipsync" / "audio" / "s1_plosives.wav"
    samples, rate = soundfile.read(original, dtype="int16")
    unsized = unsized_wav(original, tmp_path / "s1_plosives.wav")
    assert can_read(original) and not can_read(unsized)
    job = RhubarbJob(unsized)
    track = job.run()
    given = Path(json.loads(log.read_text().splitlines()[-1])[-1])
    assert given.name == unsized.name and given.parent.name.startswith("tha_studio_rhubarb_")
    assert job.notes == [f"its header gives the audio's size as 0 (a recording that was not closed properly?); "
                         f"it is read to the end of the file, {len(samples) / rate:.2f} s"]
    assert track.cues == formats.read_cues(shared / "assets" / "lipsync" / "rhubarb" / "s1_plosives.wav" / "ps_json.json").cues
    wav, notes = convert_to_wav(unsized, tmp_path / "copy.wav")
    assert notes == job.notes
    np.testing.assert_array_equal(soundfile.read(wav, dtype="int16")[0], samples)


def test_an_ogg_cut_short_is_converted_for_rhubarb_and_said(shared, tmp_path):
    whole = shared / "assets" / "lipsync" / "audio" / "en_male_watchingtv.ogg"
    cut = cut_copy(whole, tmp_path / "cut.ogg")
    assert can_read(whole) and not can_read(cut)
    wav, [note] = convert_to_wav(cut, tmp_path / "cut.wav")
    seconds = soundfile.info(wav).duration
    assert 0.3 < seconds / soundfile.info(whole).duration < 0.7
    assert note.startswith(f"the recording stops at {seconds:.2f} s without the end mark of its Ogg stream")


def test_a_flac_of_unknown_length_converts_whole_and_a_damaged_one_up_to_the_damage(shared, tmp_path):
    samples, rate = soundfile.read(shared / "assets" / "lipsync" / "audio" / "s3_pauses.wav", dtype="float32")
    flac = tmp_path / "line.flac"
    soundfile.write(flac, samples, rate)
    stream = flac_without_length(flac, tmp_path / "stream.flac")
    wav, notes = convert_to_wav(stream, tmp_path / "stream.wav")
    assert notes == [] and abs(soundfile.info(wav).frames - len(samples)) <= 1
    cut = cut_copy(flac, tmp_path / "cut.flac")
    wav, [note] = convert_to_wav(cut, tmp_path / "cut.wav")
    seconds = soundfile.info(wav).frames / rate
    assert 0.4 < seconds / (len(samples) / rate) < 0.6
    assert f"cannot be decoded past {seconds:.2f} s of {len(samples) / rate:.2f} s" in note


def test_a_caf_or_aiff_cut_short_is_converted_for_rhubarb_as_far_as_it_goes_and_said(shared, tmp_path):
    samples, rate = soundfile.read(shared / "assets" / "lipsync" / "audio" / "s3_pauses.wav", dtype="float32")
    for name in ("line.caf", "line.aiff"):
        soundfile.write(tmp_path / name, samples, rate, subtype="PCM_16")
        cut = cut_copy(tmp_path / name, tmp_path / ("cut_" + name))
        assert not can_read(cut)  # (Rhubarb reads .wav and .ogg)
        wav, [note] = convert_to_wav(cut, tmp_path / "cut.wav")
        seconds = soundfile.info(wav).frames / rate
        assert 0.45 < seconds / (len(samples) / rate) < 0.5
        assert note.startswith(f"the recording ends at {seconds:.2f} s, though its header gives "
                               f"{len(samples) / rate:.2f} s: the file was cut short"), name
    # An ALAC one as far as its last whole packet (its packet table rewritten for libsndfile).
    soundfile.write(tmp_path / "alac.caf", samples, rate, subtype="ALAC_16")
    cut = cut_copy(tmp_path / "alac.caf", tmp_path / "cut_alac.caf", 0.3)
    wav, [note] = convert_to_wav(cut, tmp_path / "alac.wav")
    seconds = soundfile.info(wav).frames / rate
    assert 0 < seconds < len(samples) / rate and seconds * rate % 4096 == 0
    assert note.startswith(f"the recording ends at {seconds:.2f} s, though its header gives "
                           f"{len(samples) / rate:.2f} s: the file was cut short")


def test_unreadable_flac_is_named(stand_in, tmp_path):
    flac = tmp_path / "noise.flac"
    flac.write_bytes(b"fLaC" + bytes(100))
    with pytest.raises(UserError, match=f"Could not open sound file {flac}. It is not readable audio"):
        RhubarbJob(flac).run()
    assert not list(tmp_path.glob("tha_studio_rhubarb_*"))


def test_sigterm_stops_rhubarb_and_removes_its_folder(shared, stand_in, tmp_path):
    path, log = stand_in
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    environment = dict(os.environ, TMPDIR=str(temporary), RHUBARB_STAND_IN_DELAY="30")
    cli = Path(tha_studio.__file__).parent / "cli.py"
    audio = shared / "assets" / "lipsync" / "audio" / "s2_rounded.wav"
    process = subprocess.Popen(
        [sys.executable, str(cli), "lipsync", str(audio), "--engine", "rhubarb", "--rhubarb", str(path)],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    pid_file = Path(str(log) + ".pid")
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid_file.exists() and list(temporary.glob("tha_studio_rhubarb_*"))
    rhubarb_pid = int(pid_file.read_text())
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=20)
    assert process.returncode == 130 and "Traceback" not in err
    assert err.splitlines()[-1] == "tha_studio lipsync: interrupted"
    assert not list(temporary.glob("tha_studio_rhubarb_*"))
    with pytest.raises(ProcessLookupError):  # Rhubarb is gone (reaped by the command)
        os.kill(rhubarb_pid, 0)


ODD_RHUBARB = r'''#!{python}
import sys
args = sys.argv[1:]
output = args[args.index("-o") + 1]
# Events shaped otherwise than Rhubarb 1.14's (another build, a wrapper script) and one nested
# past Python's recursion limit: none may stop the run.
sys.stderr.write('{{"type": "progress", "log": "a string, not an object", "value": "half"}}\n')
sys.stderr.write('{{"type": "progress", "log": {{"message": 5}}}}\n')
sys.stderr.write("[" * 100000 + "]" * 100000 + "\n")
with open(output, "w") as cues:
    cues.write({cues!r})
'''


@pytest.mark.parametrize("cues, problem", [
    ('{"mouthCues": [{"start": 0, "end": 0.5, "value": "B"}, {"start": 0.5, "end": 0.8, "value": "X"}]}', None),
    ('{"mouthCues": [{"start": 0, "end": 1e308, "value": "A"}]}',
     'wrote cues for {audio} that cannot be read: line 1: "end" must be at most 43200 seconds'),
])
def test_a_rhubarb_with_other_events_or_bad_cues_is_read_or_named_not_a_traceback(shared, tmp_path, cues, problem):
    executable = tmp_path / "odd_rhubarb"
    executable.write_text(ODD_RHUBARB.format(python=sys.executable, cues=cues))
    executable.chmod(executable.stat().st_mode | stat.S_IXUSR)
    audio = shared / "assets/lipsync/audio/s2_rounded.wav"
    job = RhubarbJob(audio, executable=executable).start()
    if problem is None:
        track = job.run()
        assert [(cue.start, cue.end, cue.shape) for cue in track] == [(0.0, 0.5, "B"), (0.5, 0.8, "X")]
        return
    with pytest.raises(RhubarbError) as caught:  # named after Rhubarb and the recording, not our temporary file
        job.run()
    assert f"Rhubarb Lip Sync ({executable}) " + problem.format(audio=audio) in str(caught.value)
