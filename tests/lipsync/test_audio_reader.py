"""The audio reader on hostile recordings made from real ones: every failure an AudioError that
names the file, none a traceback or a hang, and headers checked before anything is decoded."""

import struct
import time

import numpy as np
import soundfile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recordings import cut_copy, flac_without_length, unsized_wav
from shared_assets import SHARED
from tha_studio.lipsync import analyser
from tha_studio.lipsync.analyser import AudioError
from tha_studio.lipsync.audio_formats import (
    container_header_frames, mp3_cut_mid_frame, mp3_length_tagged, ogg_stream_ended, unsized_wav_data,
    wav_header_frames,
)

AUDIO = SHARED / "assets" / "lipsync" / "audio"


def _wav(rate=None, channels=None, size=32 * 1024, byte_rate=None):
    """The first `size` bytes of a real 16 kHz mono WAV, its sizes fixed and its fmt fields
    (rate, channels, byte rate) replaced as given: what a damaged or lying header looks like."""
    path = AUDIO / "s1_plosives.wav"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    data = bytearray(path.read_bytes()[:size])
    assert data[:4] == b"RIFF" and data[12:16] == b"fmt " and data[36:40] == b"data"
    struct.pack_into("<I", data, 4, len(data) - 8)
    struct.pack_into("<I", data, 40, len(data) - 44)
    if channels is not None:
        struct.pack_into("<H", data, 22, channels)
        struct.pack_into("<H", data, 32, 2 * channels)  # block align
    if rate is not None:
        struct.pack_into("<I", data, 24, rate)
    if byte_rate is not None or rate is not None:
        value = byte_rate if byte_rate is not None else rate * 2 * (channels or 1)
        struct.pack_into("<I", data, 28, value & 0xFFFFFFFF)
    return bytes(data)


def _read(tmp_path, data, name="bad.wav", within=5.0):
    """read_audio of `data` written to a file: (result, None) or (None, AudioError), in bounded time."""
    path = tmp_path / name
    path.write_bytes(data)
    started = time.perf_counter()
    try:
        return analyser.read_audio(path), None
    except AudioError as error:
        assert f"Could not open sound file {path}." in str(error)
        return None, error
    finally:
        assert time.perf_counter() - started < within


def test_an_intact_32_kb_wav_reads(tmp_path):
    (samples, seconds), error = _read(tmp_path, _wav())
    assert error is None and seconds == pytest.approx((32 * 1024 - 44) / 2 / 16000)
    assert len(samples) == round(seconds * 16000) and np.isfinite(samples).all()


@pytest.mark.parametrize("rate", [1, 100, 3999, 768001, 2_100_000_000])
def test_a_header_claiming_an_absurd_rate_is_refused_before_decoding(tmp_path, rate):
    # 1 Hz: 16,000 frames would be 4.4 hours (gigabytes at 16 kHz); 2.1 GHz: nothing left at 16 kHz.
    _, error = _read(tmp_path, _wav(rate=rate))
    assert error is not None
    assert f"sample rate is {rate} Hz; supported rates are 4000 to 768000 Hz" in str(error)


@pytest.mark.parametrize("rate", [4000, 8000, 44100, 96000, 768000])
def test_real_rates_read(tmp_path, rate):
    (samples, seconds), error = _read(tmp_path, _wav(rate=rate))
    assert error is None and seconds == pytest.approx(16362 / rate)


def test_too_many_channels_are_refused(tmp_path):
    _, error = _read(tmp_path, _wav(channels=64))
    assert error is not None and "64 channels; at most 16" in str(error)


def test_too_long_is_refused(tmp_path):
    # A 13-hour recording described by its header; the check uses the header's length.
    with pytest.raises(AudioError, match=r"It is 13.0 hours long; at most 12 hours"):
        analyser.check_audio_header(4000, 1, 13 * 3600 * 4000, "Could not open sound file x.wav.")


def test_nan_samples_become_silence(tmp_path):
    import soundfile

    samples = np.zeros(8000, dtype=np.float32)
    samples[100:200] = np.nan
    samples[300] = np.inf
    path = tmp_path / "nan.wav"
    soundfile.write(path, samples, 8000, subtype="FLOAT")
    resampled, seconds = analyser.read_audio(path)
    assert seconds == 1.0 and np.isfinite(resampled).all()


@pytest.mark.filterwarnings("error")
def test_a_damaged_float_wav_lip_syncs_as_it_plays(tmp_path, shared):
    """400 bytes of garbage in the middle of a float WAV (100 samples: some past 1e30, a
    signalling NaN among them) set the level of the whole take, which came out as one closed
    mouth, and overflowed into infinities with numpy's warnings. Heard as a player plays it
    (clipped to full scale), the take gives the clean take's cues."""
    voice, rate = soundfile.read(shared / "assets" / "lipsync" / "audio" / "en_male_electricity.ogg", dtype="float32")
    clean = tmp_path / "clean.wav"
    soundfile.write(clean, voice, rate, subtype="FLOAT")
    raw = bytearray(clean.read_bytes())
    middle = len(raw) // 2 // 4 * 4
    garbage = np.random.default_rng(1).integers(0, 256, 400, dtype=np.uint8).tobytes()
    raw[middle : middle + 400] = garbage[:4] + bytes.fromhex("0100807f") + garbage[8:]
    assert np.nanmax(np.abs(np.frombuffer(garbage, np.float32))) > 1e30
    damaged = tmp_path / "damaged.wav"
    damaged.write_bytes(bytes(raw))
    samples, _ = analyser.read_audio(damaged)
    assert np.isfinite(samples).all()
    cues = [[(c.start, c.end, c.shape) for c in analyser.analyse(path)] for path in (clean, damaged)]
    assert cues[0] == cues[1] and len(cues[0]) > 3


def test_a_stereo_take_whose_channels_cancel_reads_its_louder_channel(tmp_path, shared):
    # A mis-wired microphone records one channel as the other's inverse: their mix is silence,
    # which gave a closed mouth throughout. Speech in one channel, or in both, mixes as before.
    voice, rate = soundfile.read(shared / "assets" / "lipsync" / "audio" / "s3_pauses.wav", dtype="float32")
    takes = {"inverted": [voice, -voice], "one side": [voice, np.zeros_like(voice)], "both": [voice, 0.5 * voice]}
    read = {}
    for name, channels in takes.items():
        path = tmp_path / f"{name}.wav"
        soundfile.write(path, np.stack(channels, axis=1), rate, subtype="FLOAT")
        read[name] = analyser.read_audio(path)[0]
    mono = analyser.resample(voice, rate, analyser.SAMPLE_RATE)
    np.testing.assert_allclose(read["inverted"], mono, atol=1e-6)
    np.testing.assert_allclose(read["one side"], mono / 2, atol=1e-6)
    np.testing.assert_allclose(read["both"], mono * 0.75, atol=1e-6)
    cues = [[(c.start, c.end, c.shape) for c in analyser.analyse(tmp_path / f"{name}.wav")] for name in takes]
    assert cues[0] == cues[1] == cues[2] and any(shape != "X" for _, _, shape in cues[0])


def _real_files():
    names = ["s1_plosives.wav", "en_male_electricity.ogg"]
    return [(name, (AUDIO / name).read_bytes()[:24 * 1024]) for name in names if (AUDIO / name).is_file()]


REAL = _real_files() or [("empty.wav", b"RIFF")]


@st.composite
def mutated_audio(draw):
    name, data = draw(st.sampled_from(REAL))
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        # Mostly the header, where one byte changes what the whole file means.
        if not data:
            break
        position = draw(st.integers(0, min(63, len(data) - 1)) | st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "insert", "delete", "truncate", "field"]))
        if action == "set":
            data[position] = draw(st.integers(0, 255))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif action == "truncate":
            del data[position:]
        elif position + 4 <= len(data):
            value = draw(st.sampled_from([0, 1, 2, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2_100_000_000]))
            struct.pack_into("<I", data, position, value)
    # A .flac name too: libsndfile reads by content, the reader checks by name.
    suffix = draw(st.sampled_from([name[name.rindex("."):], ".flac"]))
    return "fuzz" + suffix, bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(mutated_audio())
def test_fuzzed_audio_gives_samples_or_an_audio_error_naming_the_file(tmp_path, case):
    name, data = case
    result, error = _read(tmp_path, data, name, within=5.0)
    if result is not None:
        samples, seconds = result
        assert 0 < seconds <= 12 * 3600 and np.isfinite(samples).all()
    else:
        assert "\n" not in str(error) and len(str(error)) < 400


def test_a_long_recording_is_read_in_blocks_a_job_can_stop_between(tmp_path, shared):
    """Three minutes at 44.1 kHz (the shared recordings repeated): read a block per step, the
    samples on the same 16 kHz grid as one transform of the whole file, and a cancel between blocks."""
    import soundfile

    from tha_studio.jobs import JobCancelled

    parts = []
    for name in ("en_male_watchingtv.ogg", "en_male_electricity.ogg"):
        data, rate = soundfile.read(str(shared / "assets" / "lipsync" / "audio" / name), dtype="float32")
        assert rate == 44100
        parts.append(data if data.ndim == 1 else data.mean(axis=1))
    one_round = np.concatenate(parts + [np.zeros(22050, np.float32)])
    samples = np.tile(one_round, int(np.ceil(180 * 44100 / len(one_round))))[: 180 * 44100]
    path = tmp_path / "long.wav"
    soundfile.write(str(path), samples, 44100, subtype="PCM_16")

    reader = analyser.AudioReader(path)
    steps = sum(1 for _ in reader.steps())
    assert steps >= 2 * 180 / analyser.AudioReader.BLOCK_SECONDS  # decoding and resampling, block by block
    assert len(reader.samples) == 180 * 16000 and reader.duration == pytest.approx(180.0)
    decoded, _ = soundfile.read(str(path), dtype="float32")
    whole = analyser.resample(decoded, 44100, 16000)
    middle = slice(16000, len(whole) - 16000)  # the whole-file transform wraps its two ends together
    assert np.abs(reader.samples[middle] - whole[middle]).max() < 3e-4

    job = analyser.Analysis(path, recognizer="phonetic")
    job.start()
    job.step()
    job.step()
    assert job.progress.fraction < 0.02 and job.progress.message == "reading the audio"
    job.cancel()
    with pytest.raises(JobCancelled):
        job.step()


# The containers libsndfile reads beside WAV: Apple's (AIFF, AIFF-C, CAF: what macOS's tools
# write; ALAC is Apple's lossless codec), Sony's Wave64 (Sound Forge's and Audacity's takes past
# 4 GiB), Sun's AU; with the codecs they are met with.
CONTAINERS = [
    ("line.aiff", {}), ("line.aifc", {"format": "AIFF", "subtype": "ULAW"}),
    ("line.caf", {"subtype": "PCM_16"}), ("float.caf", {"format": "CAF", "subtype": "FLOAT"}),
    ("alac.caf", {"format": "CAF", "subtype": "ALAC_16"}), ("line.w64", {"subtype": "PCM_24"}),
    ("line.au", {"subtype": "PCM_16"}), ("ulaw.au", {"format": "AU", "subtype": "ULAW"}),
]


@pytest.mark.parametrize("name, options", CONTAINERS + [("line.opus", {"format": "OGG", "subtype": "OPUS"})])
def test_other_containers_and_opus_read_as_the_wav_does(tmp_path, name, options):
    path = AUDIO / "s1_plosives.wav"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    speech, rate = soundfile.read(path, dtype="float32")
    soundfile.write(tmp_path / name, speech, rate, **options)
    samples, duration = analyser.read_audio(tmp_path / name)
    assert duration == pytest.approx(len(speech) / rate, abs=0.01)
    expected, _ = analyser.read_audio(path)
    count = min(len(samples), len(expected))
    assert np.corrcoef(samples[:count], expected[:count])[0, 1] > 0.9


def test_a_recording_only_ffmpeg_reads_points_to_blender(tmp_path):
    memo = tmp_path / "memo.m4a"
    memo.write_bytes(b"\0\0\0\x18ftypM4A " + bytes(64))
    with pytest.raises(AudioError, match=r"memo\.m4a\. A '\.m4a' recording is read through Blender's FFmpeg"):
        analyser.read_audio(memo)


# --- recordings cut short, damaged part way, or of a length their header leaves out -------------


def _speech_file(tmp_path, name, **options):
    """Real speech (s3_pauses.wav) written as `name` with soundfile's options: (path, samples, rate)."""
    path = AUDIO / "s3_pauses.wav"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    speech, rate = soundfile.read(path, dtype="float32")
    written = tmp_path / name
    soundfile.write(written, speech, rate, **options)
    return written, speech, rate


def _read_all(path):
    reader = analyser.AudioReader(path)
    for _ in reader.steps():
        pass
    return reader


def test_the_frame_count_a_wav_header_promises(tmp_path):
    path, speech, rate = _speech_file(tmp_path, "line.wav", subtype="PCM_16")
    assert wav_header_frames(path) == len(speech) == soundfile.info(path).frames
    for name, options in (("float.wav", {"subtype": "FLOAT"}), ("rf64.wav", {"format": "RF64"}),
                          ("extensible.wav", {"format": "WAVEX", "subtype": "PCM_24"})):
        assert wav_header_frames(_speech_file(tmp_path, name, **options)[0]) == len(speech), name
    data = bytearray(path.read_bytes())
    size_at = data.index(b"data") + 4
    for unknown in (0, 0xFFFFFFFF, 0x7FFFF000):  # a size never written, FFmpeg's to a pipe, SoX's
        struct.pack_into("<I", data, size_at, unknown)
        (tmp_path / "open.wav").write_bytes(data)
        assert wav_header_frames(tmp_path / "open.wav") is None
    flac = _speech_file(tmp_path, "line.flac")[0]
    assert wav_header_frames(flac) is None and wav_header_frames(tmp_path / "absent.wav") is None


@pytest.mark.parametrize("name, options, size_at, size_format", [
    ("line.w64", {"subtype": "PCM_24"}, 40 + 16, "<Q"),  # the fmt chunk's size, after the riff header
    ("line.caf", {"subtype": "PCM_16"}, 8 + 4, ">q"),  # the desc chunk's size, after the file header
])
def test_a_chunk_size_past_any_file_is_damage_not_a_crash(tmp_path, name, options, size_at, size_format):
    """A damaged size (found by flipping bytes) made the walk over the chunks seek past what a
    seek can take, and the reading stopped on a ValueError."""
    path, speech, rate = _speech_file(tmp_path, name, **options)
    data = bytearray(path.read_bytes())
    struct.pack_into(size_format, data, size_at, 2**63 - 1)
    path.write_bytes(data)
    assert container_header_frames(path) is None
    try:  # libsndfile reads past some such sizes, and refuses others
        samples, duration = analyser.read_audio(path)
    except AudioError as error:
        assert f"Could not open sound file {path}. It is not readable" in str(error)
    else:
        assert duration == pytest.approx(len(speech) / rate, abs=0.01) and np.isfinite(samples).all()


@pytest.mark.parametrize("name, options", CONTAINERS)
def test_the_frame_count_each_container_header_promises(tmp_path, name, options):
    path, speech, rate = _speech_file(tmp_path, name, **options)
    assert container_header_frames(path) == soundfile.info(path).frames
    # (libsndfile's AIFF-C writer counts the pad byte after an odd number of µ-law bytes as a frame.)
    assert container_header_frames(path) - len(speech) in ((0, 1) if name == "line.aifc" else (0,))
    assert container_header_frames(tmp_path / ("absent" + path.suffix)) is None
    (tmp_path / ("text" + path.suffix)).write_text("not audio")
    assert container_header_frames(tmp_path / ("text" + path.suffix)) is None


def test_a_header_that_leaves_the_length_open_promises_none(tmp_path):
    au = bytearray(_speech_file(tmp_path, "line.au", subtype="PCM_16")[0].read_bytes())
    au[8:12] = b"\xff" * 4  # the data size of an AU written to a stream
    (tmp_path / "stream.au").write_bytes(au)
    caf = bytearray(_speech_file(tmp_path, "line.caf", subtype="PCM_16")[0].read_bytes())
    at = caf.index(b"data") + 4
    caf[at : at + 8] = b"\xff" * 8  # -1: the audio runs to the end of the file
    (tmp_path / "open.caf").write_bytes(caf)
    assert container_header_frames(tmp_path / "stream.au") is None
    assert container_header_frames(tmp_path / "open.caf") is None
    assert container_header_frames(_speech_file(tmp_path, "line.flac")[0]) is None  # (libsndfile's count)


@pytest.mark.parametrize("name, options", CONTAINERS)
def test_other_containers_cut_short_are_read_as_far_as_they_go_and_say_so(tmp_path, name, options):
    # libsndfile counts the frames an AIFF, Wave64 or AU holds, as a WAV's, and refuses a cut CAF
    # as malformed (open_sound hands it the size of what is there, and of an ALAC one the packets
    # held: its packet table counted the packets that are gone); players play what there is.
    path, speech, rate = _speech_file(tmp_path, name, **options)
    reader, whole = _read_all(cut_copy(path, tmp_path / ("cut" + path.suffix))), _read_all(path)
    if name.startswith("alac"):  # (compressed: half its bytes hold more of its time, in packets of 4096 frames)
        assert 0.45 < reader.duration / whole.duration < 0.7 and reader.duration * rate % 4096 == 0
    else:
        assert 0.45 < reader.duration / whole.duration < 0.5
    [note] = reader.notes
    assert (f"the recording ends at {reader.duration:.2f} s, though its header gives {len(speech) / rate:.2f} s: "
            f"the file was cut short") in note
    assert whole.notes == []
    middle = slice(1600, len(reader.samples) - 1600)  # (the resampling differs at the ends)
    np.testing.assert_allclose(reader.samples[middle], whole.samples[middle], atol=1e-6)


@pytest.mark.parametrize("fraction", [0.3, 0.95])
def test_a_cut_alac_caf_is_read_to_its_last_whole_packet(tmp_path, fraction):
    # Its packet table (before the audio, as libsndfile and converters write it) counts packets
    # that are gone, and libsndfile decoded noise for them; it is handed a table of the packets
    # held. Cut near its end, the few sizes dropped leave too little room for a free chunk.
    path, speech, rate = _speech_file(tmp_path, "alac.caf", format="CAF", subtype="ALAC_16")
    reader, whole = _read_all(cut_copy(path, tmp_path / "cut.caf", fraction)), _read_all(path)
    assert 0 < reader.duration < whole.duration and reader.duration * rate % 4096 == 0
    assert "the file was cut short" in reader.notes[0]
    middle = slice(1600, len(reader.samples) - 1600)
    np.testing.assert_allclose(reader.samples[middle], whole.samples[middle], atol=1e-6)


def test_a_cut_alac_caf_whose_packet_table_came_after_the_audio_is_refused_as_cut(tmp_path):
    # A recorder writes the packet table last, after the audio: cut short, the table is gone too,
    # and there is no telling where its packets begin.
    path = _speech_file(tmp_path, "alac.caf", format="CAF", subtype="ALAC_16")[0]
    data = path.read_bytes()
    chunks, at = {}, 8
    while at < len(data):
        size = struct.unpack(">q", data[at + 4:at + 12])[0]
        chunks[data[at:at + 4]] = data[at:at + 12 + size]
        at += 12 + size
    last = tmp_path / "table last.caf"
    last.write_bytes(data[:8] + b"".join(chunks[name] for name in (b"desc", b"kuki", b"data", b"pakt")))
    assert _read_all(last).duration == pytest.approx(_read_all(path).duration)
    cut = cut_copy(last, tmp_path / "cut.caf", 0.3)
    with pytest.raises(AudioError, match=r"cut\.caf\. It is not readable Core Audio audio \(.*the file was cut short, "
                                         r"before the end of the audio its header describes, and with it the table "
                                         r"of its compressed audio's packets"):
        _read_all(cut)


def test_a_wav_cut_short_is_read_as_far_as_it_goes_and_says_so(tmp_path):
    path, speech, rate = _speech_file(tmp_path, "line.wav", subtype="PCM_16")
    cut = cut_copy(path, tmp_path / "cut.wav")
    kept = (cut.stat().st_size - (path.stat().st_size - 2 * len(speech))) // 2
    reader = _read_all(cut)
    assert reader.duration == pytest.approx(kept / rate, abs=1e-6)
    [note] = reader.notes
    assert (f"the recording ends at {kept / rate:.2f} s, though its header gives {len(speech) / rate:.2f} s: "
            f"the file was cut short") in note
    whole = _read_all(path)
    assert whole.notes == []
    middle = slice(1600, len(reader.samples) - 1600)  # (the resampling differs at the ends)
    assert np.corrcoef(reader.samples[middle], whole.samples[middle])[0, 1] > 0.999
    # A header left open (a recording never finalised) reads whole, and says nothing.
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, data.index(b"data") + 4, 0xFFFFFFFF)
    (tmp_path / "open.wav").write_bytes(data)
    unfinished = _read_all(tmp_path / "open.wav")
    assert unfinished.notes == [] and unfinished.duration == pytest.approx(len(speech) / rate)


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT", "IMA_ADPCM", "ULAW"])
def test_a_wav_whose_header_left_its_size_at_0_is_read_to_its_end_and_says_so(tmp_path, subtype):
    # libsndfile reads no frames of such a file; Blender's FFmpeg plays all of it.
    path, speech, rate = _speech_file(tmp_path, "line.wav", subtype=subtype)
    unsized = unsized_wav(path, tmp_path / "unsized.wav")
    assert soundfile.info(unsized).frames == 0 and unsized_wav_data(path) is None
    assert unsized_wav_data(unsized).start == path.read_bytes().index(b"data") + 8
    reader, whole = _read_all(unsized), _read_all(path)
    np.testing.assert_array_equal(reader.samples[: len(whole.samples)], whole.samples)
    assert abs(reader.duration - whole.duration) <= 1 / rate  # (a pad byte after odd-sized audio)
    assert reader.notes == [f"its header gives the audio's size as 0 (a recording that was not closed properly?); "
                            f"it is read to the end of the file, {whole.duration:.2f} s"]
    assert unsized.read_bytes()[4:8] == bytes(4)  # read as it is, not repaired in place


def test_a_wav_header_with_size_0_and_nothing_after_it_holds_no_audio(tmp_path):
    path, speech, rate = _speech_file(tmp_path, "line.wav", subtype="PCM_16")
    data = path.read_bytes()
    empty = tmp_path / "empty.wav"
    empty.write_bytes(data[: data.index(b"data") + 8])
    unsized_wav(empty, empty)
    assert unsized_wav_data(empty) is None
    with pytest.raises(AudioError, match=r"empty.wav\. It holds no audio frames"):
        _read_all(empty)


def test_an_ogg_stream_ends_with_its_end_mark_and_a_cut_one_does_not(tmp_path):
    recordings = sorted(AUDIO.glob("*.ogg"))
    if not recordings:
        pytest.skip(f"no Ogg recordings in {AUDIO}")
    recordings.append(_speech_file(tmp_path, "line.opus", format="OGG", subtype="OPUS")[0])
    for path in recordings:
        assert ogg_stream_ended(path) is True, path.name
        data = path.read_bytes()
        pages = [at for at in range(len(data)) if data.startswith(b"OggS", at)]
        # Cut anywhere, and cut exactly where a page begins (every page there is whole).
        for end in (len(data) // 3, len(data) // 2, len(data) - 1, pages[-1]):
            (tmp_path / "cut.ogg").write_bytes(data[:end])
            assert ogg_stream_ended(tmp_path / "cut.ogg") is False, (path.name, end)
    assert ogg_stream_ended(tmp_path / "absent.ogg") is None


def test_an_mp3_length_tag_is_found_past_an_id3_tag_and_missed_where_there_is_none(tmp_path):
    path = _speech_file(tmp_path, "line.mp3", format="MP3")[0]
    data = path.read_bytes()
    assert mp3_length_tagged(path)
    tag = b"ID3\x04\x00\x00" + bytes([0, 0, 1, 0]) + bytes(128)  # an ID3v2.4 tag of 128 bytes
    (tmp_path / "id3.mp3").write_bytes(tag + data)
    assert mp3_length_tagged(tmp_path / "id3.mp3")
    (tmp_path / "untagged.mp3").write_bytes(data.replace(b"Xing", b"\0\0\0\0", 1).replace(b"Info", b"\0\0\0\0", 1))
    assert not mp3_length_tagged(tmp_path / "untagged.mp3")
    assert not mp3_length_tagged(AUDIO / "s1_plosives.wav")


def _untagged_mp3(path, target):
    """A copy of an MP3 without the Xing/Info tag that counts its frames (as some encoders and
    stream captures write them): the tag's frame, its marker blanked, plays as silence."""
    data = path.read_bytes()
    target.write_bytes(data.replace(b"Xing", bytes(4), 1).replace(b"Info", bytes(4), 1))
    assert not mp3_length_tagged(target)
    return target


def test_an_mp3_whose_last_frame_is_broken_off_was_cut(tmp_path):
    path = _speech_file(tmp_path, "line.mp3", format="MP3")[0]
    untagged = _untagged_mp3(path, tmp_path / "untagged.mp3")
    data = untagged.read_bytes()
    assert mp3_cut_mid_frame(path) is False and mp3_cut_mid_frame(untagged) is False
    for end in (100, len(data) // 3, len(data) // 2, len(data) - 1, len(data) - 3):
        (tmp_path / "cut.mp3").write_bytes(data[:end])
        assert mp3_cut_mid_frame(tmp_path / "cut.mp3") is True, end
    # Tags before and after the audio are not taken for frames, a large one (cover art) included.
    cover = b"ID3\x04\x00\x00" + bytes([0, 0x08, 0, 0]) + bytes(0x08 << 14)  # 128 KiB of tag
    (tmp_path / "cover.mp3").write_bytes(cover + data[: len(data) // 2])
    assert mp3_cut_mid_frame(tmp_path / "cover.mp3") is True
    id3v2 = b"ID3\x04\x00\x00" + bytes([0, 0, 1, 0]) + bytes(128)
    (tmp_path / "tags.mp3").write_bytes(id3v2 + data + b"TAG" + bytes(125))
    assert mp3_cut_mid_frame(tmp_path / "tags.mp3") is False
    (tmp_path / "tags.mp3").write_bytes(id3v2 + data[: len(data) // 2])
    assert mp3_cut_mid_frame(tmp_path / "tags.mp3") is True
    # What holds no MP3 frames cannot tell.
    (tmp_path / "empty.mp3").write_bytes(b"")
    for other in (AUDIO / "s1_plosives.wav", tmp_path / "empty.mp3", tmp_path / "absent.mp3"):
        assert mp3_cut_mid_frame(other) is None


def test_an_untagged_mp3_cut_short_is_read_as_far_as_it_goes_and_says_so(tmp_path):
    path = _untagged_mp3(_speech_file(tmp_path, "line.mp3", format="MP3")[0], tmp_path / "untagged.mp3")
    whole = _read_all(path)
    assert whole.notes == []
    reader = _read_all(cut_copy(path, tmp_path / "cut.mp3"))
    assert 0.3 < reader.duration / whole.duration < 0.7
    assert reader.notes == [f"the recording stops at {reader.duration:.2f} s in the middle of an MP3 frame: the file "
                            f"was cut short (an interrupted copy or download?); the lip sync covers the "
                            f"{reader.duration:.2f} s there"]


@pytest.mark.parametrize("name, options", [("line.mp3", {"format": "MP3"}), ("line.opus", {"format": "OGG", "subtype": "OPUS"}),
                                           ("line.ogg", {"format": "OGG", "subtype": "VORBIS"})])
def test_an_mp3_or_ogg_cut_short_is_read_as_far_as_it_goes_and_says_so(tmp_path, name, options):
    # libsndfile reads either as far as it goes without a word; an MP3's Xing tag gives its whole
    # length, an Ogg stream's missing end mark tells that it was cut.
    path, speech, rate = _speech_file(tmp_path, name, **options)
    whole = _read_all(path)
    assert whole.notes == [] and abs(whole.duration - len(speech) / rate) < 0.01
    reader = _read_all(cut_copy(path, tmp_path / f"cut{path.suffix}"))
    assert 0.3 < reader.duration / whole.duration < 0.7
    [note] = reader.notes
    if path.suffix == ".mp3":
        assert note.startswith(f"the recording ends at {reader.duration:.2f} s, though its header gives {whole.duration:.2f} s")
    else:
        assert note.startswith(f"the recording stops at {reader.duration:.2f} s without the end mark of its Ogg stream")
    middle = slice(1600, len(reader.samples) - 1600)
    assert np.corrcoef(reader.samples[middle], whole.samples[middle])[0, 1] > 0.999


def test_a_flac_cut_short_is_read_up_to_the_damage_and_says_so(tmp_path):
    path, speech, rate = _speech_file(tmp_path, "line.flac")
    cut = cut_copy(path, tmp_path / "cut.flac")
    with pytest.raises(soundfile.LibsndfileError):  # libsndfile alone gives up on the whole read
        soundfile.read(cut)
    reader = _read_all(cut)
    assert 0.4 < reader.duration / (len(speech) / rate) < 0.6
    [note] = reader.notes
    assert (f"the audio cannot be decoded past {reader.duration:.2f} s of {len(speech) / rate:.2f} s "
            f"(flac decoder lost sync): the file is damaged or cut short") in note
    whole = _read_all(path)
    middle = slice(1600, len(reader.samples) - 1600)
    assert np.corrcoef(reader.samples[middle], whole.samples[middle])[0, 1] > 0.999
    job = analyser.Analysis(cut, recognizer="phonetic")
    track = job.run().track
    assert job.notes == [note] and track.duration == pytest.approx(reader.duration, abs=0.01)
    assert any(cue.shape != "X" for cue in track.cues)


def test_a_flac_that_leaves_its_length_out_is_read_whole(tmp_path):
    # libsndfile gives such a stream 2**63 - 1 frames (once refused as 160 billion hours long) and
    # fails reading past its end.
    path, speech, rate = _speech_file(tmp_path, "line.flac")
    stream = flac_without_length(path, tmp_path / "stream.flac")
    assert soundfile.info(stream).frames == analyser.UNKNOWN_FRAMES
    reader = _read_all(stream)
    assert reader.notes == [] and abs(reader.duration - len(speech) / rate) <= 2 / rate
    whole = _read_all(path)
    count = min(len(reader.samples), len(whole.samples)) - 1600
    np.testing.assert_allclose(reader.samples[:count], whole.samples[:count], atol=1e-4)
