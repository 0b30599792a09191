"""The built-in analyser on real recordings, against Rhubarb's own output; bad audio; the job."""

import threading
import time

import numpy as np
import pytest
import soundfile

from tha_studio.lipsync import analyser, formats
from tha_studio.errors import UserError
from tha_studio.jobs import JobCancelled
from tha_studio.lipsync.analyser import Analysis, AudioError
from tha_studio.lipsync.cues import agreement


def lipsync(shared, *parts):
    return shared.joinpath("assets", "lipsync", *parts)


@pytest.fixture(scope="module")
def phonetic():
    return analyser.make_recognizer("phonetic")


@pytest.fixture(scope="module")
def words():
    return analyser.make_recognizer("words")


def test_phonetic_analysis_agrees_with_rhubarbs_phonetic_recognizer(shared, phonetic):
    for name in ("en_male_watchingtv.ogg", "s3_pauses.wav"):
        result = Analysis(lipsync(shared, "audio", name), recognizer_object=phonetic).run()
        reference = formats.read_cues(lipsync(shared, "rhubarb", name, "phonetic_json.json"))
        same, same_group = agreement(result.track, reference)
        assert same_group >= 0.7, (name, same, same_group)
        assert result.track.duration == pytest.approx(reference.duration, abs=0.011)


def test_a_quiet_take_lip_syncs_as_the_loud_one(shared, phonetic, tmp_path):
    # The same recording 45 dB quieter (a phone held at arm's length): the level is set before the
    # VAD and the recognizer hear it, so the cues are the loud take's. (Before, the 16-bit take
    # matched Rhubarb's shape groups in 51% of frames: the VAD missed much of the speech.)
    name = "en_male_watchingtv.ogg"
    loud, rate = soundfile.read(lipsync(shared, "audio", name), dtype="float32")
    quiet = 10 ** (-45 / 20) * loud
    soundfile.write(tmp_path / "quiet_float.wav", quiet, rate, subtype="FLOAT")
    soundfile.write(tmp_path / "quiet_16bit.wav", quiet, rate, subtype="PCM_16")  # as a quiet take arrives
    soundfile.write(tmp_path / "loud_float.wav", loud, rate, subtype="FLOAT")

    def cues(path):
        return [(c.start, c.end, c.shape) for c in Analysis(path, recognizer_object=phonetic).run().track]

    assert cues(tmp_path / "quiet_float.wav") == cues(tmp_path / "loud_float.wav")
    reference = formats.read_cues(lipsync(shared, "rhubarb", name, "phonetic_json.json"))
    track = Analysis(tmp_path / "quiet_16bit.wav", recognizer_object=phonetic).run().track
    assert agreement(track, reference)[1] >= 0.7
    assert analyser.to_level(np.zeros(1600, np.float32)).max() == 0.0  # digital silence stays silent


def test_word_analysis_agrees_with_rhubarbs_default_recognizer(shared, words):
    path = lipsync(shared, "audio", "en_male_watchingtv.ogg")
    result = Analysis(path, recognizer_object=words).run()
    reference = formats.read_cues(lipsync(shared, "rhubarb", path.name, "ps_threads1_json.json"))
    same, same_group = agreement(result.track, reference)
    assert same_group >= 0.7, (same, same_group)
    assert {"W", "AA", "CH", "T", "IY", "V", "M"} <= {p for _, _, p in result.phones}  # "watching TV at home"


def test_dialog_text_guides_word_recognition(shared):
    path = lipsync(shared, "audio", "s1_plosives.wav")
    dialog = lipsync(shared, "audio", "s1_plosives.dialog.txt").read_text()
    job = Analysis(path, "auto", dialog)
    result = job.run()
    assert job.recognizer_name == "words"
    reference = formats.read_cues(lipsync(shared, "rhubarb", path.name, "ps_dialog_json.json"))
    assert agreement(result.track, reference)[1] >= 0.6
    # "Peter Piper picked a peck of pickled peppers": the lips close for every P.
    assert result.track.shapes_used.count("A") == 1 and sum(c.shape == "A" for c in result.track) >= 8


def test_the_dialog_language_model_is_pocketsphinxs_own_counted_without_its_quadratic_reader(shared, tmp_path):
    # ArpaBoLM's corpus reader runs a backtracking regular expression over each line: a whole
    # script given as the dialog (58,000 words, one line) took three minutes before any audio.
    from pocketsphinx.lm import ArpaBoLM

    dialog = lipsync(shared, "audio", "s1_plosives.dialog.txt").read_text()
    words = analyser.tokenize_dialog(dialog * 40)
    theirs = ArpaBoLM(text=" ".join(words), add_start=True)
    theirs.compute()
    theirs.write_file(str(tmp_path / "theirs.arpa"))
    analyser.dialog_language_model(words).write_file(str(tmp_path / "ours.arpa"))
    assert (tmp_path / "ours.arpa").read_text() == (tmp_path / "theirs.arpa").read_text()
    script = analyser.dialog_language_model(words * 200)  # 128,000 words: a moment, not minutes
    assert script.grams_1["peter"] == 40 * 200


def test_dialog_text_the_dictionary_knows_no_word_of_is_left_out_with_a_note(shared):
    # A line in another language (or only names) had stopped the analysis with an error, though
    # the dialog text is only a help; it is left out, and "auto" takes the phonetic recognizer
    # as it does for a line without dialog text.
    path = lipsync(shared, "audio", "s1_plosives.wav")
    expected = {name: Analysis(path, name).run().track.cues for name in ("phonetic", "words")}
    for dialog, shown in (("\u30d4\u30fc\u30bf\u30fc\u30fb\u30d1\u30a4\u30d1\u30fc\u3002", ""),
                          ("Xyzzy plugh qwrtp!", " (xyzzy, plugh, qwrtp)")):
        for asked, ran in (("auto", "phonetic"), ("words", "words")):
            job = Analysis(path, asked, dialog)
            assert job.run().track.cues == expected[ran], (dialog, asked)
            assert job.recognizer_name == ran
            assert job.notes == [f"none of the dialog text's words is in the US English pronunciation dictionary{shown}: "
                                 f"the line was recognized without it, by the {ran} recognizer"]


def test_empty_dialog_text_is_left_out_with_a_note(shared):
    # The wrong file given, or one never saved: the line ran as if no text was given, without a word.
    path = lipsync(shared, "audio", "s1_plosives.wav")
    job = Analysis(path, "auto", " \r\n")
    assert job.run().track.cues == Analysis(path, "phonetic").run().track.cues
    assert job.recognizer_name == "phonetic"
    assert job.notes == ["the dialog text is empty: the line was recognized without it"]


def test_silence_stays_closed(shared, phonetic):
    # s3 has pauses of 800, 1200 and 500 ms: Rhubarb shows X through each, and so must we.
    path = lipsync(shared, "audio", "s3_pauses.wav")
    track = Analysis(path, recognizer_object=phonetic).run().track
    reference = formats.read_cues(lipsync(shared, "rhubarb", path.name, "ps_json.json"))
    long_rests = [c for c in reference if c.shape == "X" and c.duration >= 0.4]
    assert len(long_rests) == 3
    for rest in long_rests:
        inner = track.frame_shapes()[int(rest.start * 100) + 20 : int(rest.end * 100) - 20]
        assert set(inner) == {"X"}, rest


def test_flac_and_stereo_and_any_rate(shared, tmp_path, phonetic):
    samples, rate = soundfile.read(lipsync(shared, "audio", "en_male_electricity.ogg"), dtype="float32")
    stereo = np.stack([samples, samples * 0.5], axis=1)
    flac = tmp_path / "voice.flac"
    soundfile.write(flac, stereo, rate)
    mono16k, duration = analyser.read_audio(flac)
    assert duration == pytest.approx(len(samples) / rate)
    assert len(mono16k) == round(len(samples) * 16000 / rate)
    track = Analysis(flac, recognizer_object=phonetic).run().track
    assert set(track.shapes_used) - {"X"}  # the mouth moves
    assert track.cues[0].shape == "X" and track.cues[-1].shape == "X"


def test_an_mp3_is_analysed_in_time_with_the_recording_it_was_made_from(shared, tmp_path, phonetic):
    # MP3 encoders pad the start; a decoder that kept the padding would put every cue late.
    original = lipsync(shared, "audio", "en_male_electricity.ogg")
    samples, rate = soundfile.read(original, dtype="float32")
    mp3 = tmp_path / "voice.mp3"
    soundfile.write(mp3, samples, rate)
    _, duration = analyser.read_audio(mp3)
    assert duration == pytest.approx(len(samples) / rate, abs=0.03)
    from_mp3 = Analysis(mp3, recognizer_object=phonetic).run().track
    from_ogg = Analysis(original, recognizer_object=phonetic).run().track
    assert set(from_mp3.shapes_used) - {"X"}  # the mouth moves
    first_open = [next(c.start for c in track if c.shape != "X") for track in (from_mp3, from_ogg)]
    assert first_open[0] == pytest.approx(first_open[1], abs=0.03)
    assert from_mp3.duration == pytest.approx(from_ogg.duration, abs=0.03)


def test_resampling_keeps_a_tone():
    rate = 44100
    tone = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    resampled = analyser.resample(tone, rate, 16000)
    expected = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)
    assert np.abs(resampled[100:-100] - expected[100:-100]).max() < 0.01


def test_bad_audio_gets_clear_messages(shared, tmp_path):
    bad = lipsync(shared, "bad_inputs")
    cases = {
        tmp_path / "missing.wav": "Could not open sound file .*missing.wav. No such file.",
        bad / "empty.wav": "Could not open sound file .*empty.wav. The file is empty",
        bad / "text_renamed.wav": "Could not open sound file .*text_renamed.wav. It is not readable WAVE audio",
        tmp_path / "voice.amr": "Unsupported file extension '.amr'. Supported extensions are '.wav', '.ogg', '.oga', "
                                "'.opus', '.flac', '.mp3', '.aif', '.aiff', '.aifc', '.caf', '.w64', '.au'.",
        tmp_path / "voice.mp3": "Could not open sound file .*voice.mp3. It is not readable MP3 audio",
        tmp_path / "text.mp3": r"text.mp3. It is not readable MP3 audio \(no audio frames could be decoded from it\)",
    }
    (tmp_path / "text.mp3").write_text("hello")
    (tmp_path / "voice.amr").write_bytes(b"#!AMR\n" + bytes(64))
    (tmp_path / "voice.mp3").write_bytes(b"ID3" + bytes(64))
    for path, message in cases.items():
        with pytest.raises(AudioError, match=message):
            analyser.analyse(path)
    silent = tmp_path / "zero_frames.wav"
    soundfile.write(silent, np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="holds no audio frames"):
        analyser.read_audio(silent)


def test_silence_gives_one_closed_cue_and_says_no_speech_was_found(tmp_path, phonetic):
    path = tmp_path / "quiet.wav"
    soundfile.write(path, np.zeros(16000, dtype=np.float32), 16000)
    analysis = Analysis(path, recognizer_object=phonetic)
    track = analysis.run().track
    assert [(c.start, c.end, c.shape) for c in track] == [(0.0, 1.0, "X")]
    # (A video's silent track, a muted microphone: a closed mouth that says why.)
    assert analysis.notes == ["no speech was found in its 1.00 s (it is digital silence): the mouth stays closed"]


def test_speech_gives_no_such_note(shared, phonetic):
    analysis = Analysis(lipsync(shared, "audio", "s3_pauses.wav"), recognizer_object=phonetic)
    analysis.run()
    assert analysis.notes == []


def test_dialog_text_is_read_as_utf8_and_other_files_are_named(tmp_path):
    bom = tmp_path / "notepad.txt"
    bom.write_bytes("\ufeffHello, caf\u00e9!\r\n".encode("utf-8"))
    assert analyser.read_dialog(bom) == "Hello, caf\u00e9!\r\n"
    for encoding in ("utf-16-le", "utf-16-be"):  # Windows Notepad's "Unicode", with its byte-order mark
        bom.write_bytes("\ufeffHello, caf\u00e9!\r\n".encode(encoding))
        assert analyser.read_dialog(bom) == "Hello, caf\u00e9!\r\n"
    latin1 = tmp_path / "old_editor.txt"
    latin1.write_bytes("caf\xe9".encode("latin-1"))
    binary = tmp_path / "take.txt"
    binary.write_bytes(b"RIFF\0\0\0\0WAVEfmt ")
    cases = {
        latin1: r"old_editor.txt: the dialog text is not UTF-8 \(byte 0xe9 at position 3\); save it as UTF-8 text",
        binary: r"take.txt: is not a text file",
        tmp_path / "missing.txt": r"missing.txt: no such dialog text file",
        tmp_path: r"is a folder, not a dialog text file",
    }
    for path, message in cases.items():
        with pytest.raises(UserError, match=message):
            analyser.read_dialog(path)


@pytest.mark.parametrize("frames", [1, 2, 100])
def test_a_recording_of_a_few_samples_keeps_the_mouth_closed(tmp_path, phonetic, frames):
    # One sample at 44.1 kHz is no sample at the analyser's 16 kHz: that was a numpy traceback.
    path = tmp_path / "click.wav"
    soundfile.write(path, np.full(frames, 0.5, dtype=np.float32), 44100)
    result = Analysis(path, recognizer_object=phonetic).run()
    assert result.utterances == []
    assert {c.shape for c in result.track} <= {"X"}


def test_the_job_steps_reports_progress_and_cancels(shared, phonetic):
    path = lipsync(shared, "audio", "s3_pauses.wav")
    job = Analysis(path, recognizer_object=phonetic)
    progress = []
    while not job.done:
        progress.append(job.step().fraction)
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) >= 4
    assert len(job.result.utterances) >= 4  # split at the pauses
    cancelled = Analysis(path, recognizer_object=phonetic)
    cancelled.step()
    cancelled.cancel()
    with pytest.raises(JobCancelled, match="s3_pauses.wav: cancelled"):
        cancelled.step()
    assert not cancelled.done


def test_bad_audio_is_a_user_error():
    # The one base the command line and the operators report without a traceback.
    assert issubclass(AudioError, UserError) and issubclass(JobCancelled, UserError)


def test_a_recording_gives_the_same_cues_whatever_was_analysed_before(shared, words):
    # pocketsphinx's own dither draws from one generator for the whole process, so the cues of a
    # recording used to depend on what had been decoded before it; our dither is seeded per utterance.
    path = lipsync(shared, "audio", "s1_plosives.wav")
    first = Analysis(path, recognizer_object=words).run()
    Analysis(lipsync(shared, "audio", "en_male_electricity.ogg"), recognizer_object=words).run()
    again = Analysis(path, recognizer_object=words).run()
    assert again.phones == first.phones
    assert list(again.track) == list(first.track)


# --------------------------------------------------------------------------------------------
# long recordings


def joined_recording(shared, seconds, path):
    """The shared recordings one after another (half a second apart), over and over, cut to
    `seconds`: a long recording of real speech, written to `path` (16 kHz wav)."""
    audio = lipsync(shared, "audio")
    parts = [analyser.read_audio(p)[0] for p in sorted(audio.iterdir()) if p.suffix in analyser.AUDIO_EXTENSIONS]
    gap = np.zeros(analyser.SAMPLE_RATE // 2, dtype=np.float32)
    pieces, total = [], 0
    while total < seconds * analyser.SAMPLE_RATE:
        for part in parts:
            pieces += [part, gap]
            total += len(part) + len(gap)
    soundfile.write(path, np.concatenate(pieces)[: seconds * analyser.SAMPLE_RATE], analyser.SAMPLE_RATE)
    return path


@pytest.fixture(scope="module")
def six_minutes(shared, tmp_path_factory):
    return joined_recording(shared, 360, tmp_path_factory.mktemp("long") / "six_minutes.wav")


@pytest.mark.slow
def test_a_six_minute_recording_is_analysed_in_short_steps(six_minutes, words):
    # A 356 s chapter used to sit at 95% for hours: the static-segment fix re-animated the whole
    # file for every combination of the whole file's changeable vowels.
    job = Analysis(six_minutes, recognizer_object=words)
    job.start()
    final_steps = []
    while not job.done:
        started = time.perf_counter()
        progress = job.step()
        if progress.fraction >= 0.95:
            final_steps.append((time.perf_counter() - started, progress.message))
    track = job.result.track
    assert track.duration == pytest.approx(360, abs=0.011)
    assert len(job.result.utterances) > 100 and len(track.cues) > 1000
    assert track.cues[-1].end == pytest.approx(360, abs=0.011)
    assert len(final_steps) >= 5 and max(seconds for seconds, _ in final_steps) < 1.0, final_steps
    assert sum(seconds for seconds, _ in final_steps) < 3.0, final_steps


@pytest.mark.slow
def test_a_six_minute_analysis_cancels_within_a_second_at_95_percent(six_minutes, phonetic):
    # The job runs in its own thread (as a worker would run it); at 95% it waits until the
    # cancel has been asked for, then must stop within a second.
    job = Analysis(six_minutes, recognizer_object=phonetic)
    at_95, cancel_asked, outcome = threading.Event(), threading.Event(), {}

    def on_progress(progress):
        if progress.fraction >= 0.95 and not at_95.is_set():
            at_95.set()
            cancel_asked.wait(10)

    def work():
        try:
            job.run(on_progress)
        except JobCancelled as error:
            outcome["cancelled"] = (time.perf_counter(), str(error))

    worker = threading.Thread(target=work)
    worker.start()
    assert at_95.wait(300), "the analysis never reached 95%"
    asked = time.perf_counter()
    job.cancel()
    cancel_asked.set()
    worker.join(5)
    assert not worker.is_alive() and not job.done
    stopped, message = outcome["cancelled"]
    assert stopped - asked < 1.0 and "six_minutes.wav: cancelled" in message


def test_long_utterances_are_split_at_their_quietest_moment(shared):
    # One utterance is one step of the job: speech with no pause would make a step too long to
    # cancel within a second. Here the limit is lowered to 3 s to split real speech.
    samples, _ = analyser.read_audio(lipsync(shared, "audio", "shorted-threelittlekittens_01_rountreesmith.ogg"))
    pcm = analyser.to_pcm16(samples - samples.mean())
    utterances = analyser.voice_activity(pcm)
    split = analyser.split_long_utterances(pcm, utterances, max_cs=300)
    assert len(split) > len(utterances) and all(e - s <= 300 for s, e in split)
    assert split[0][0] == utterances[0][0] and split[-1][1] == utterances[-1][1]
    assert sum(e - s for s, e in split) == sum(e - s for s, e in utterances)  # nothing lost or doubled
    assert all(a[1] <= b[0] for a, b in zip(split, split[1:]))
    energy = (pcm[: len(pcm) // 160 * 160].astype(np.float64).reshape(-1, 160) ** 2).sum(axis=1)
    cuts = [b[0] for a, b in zip(split, split[1:]) if a[1] == b[0]]
    assert cuts and all(energy[cut] <= np.median(energy[utterances[0][0] : utterances[-1][1]]) for cut in cuts)
    assert analyser.split_long_utterances(pcm, utterances) == utterances  # 6.7 s at most: none split
