"""Recordings only FFmpeg reads, decoded by Blender's `aud` into the WAV the analysers read."""

import bpy  # noqa: F401 (Blender's `aud` comes with it)
import aud
import numpy as np
import pytest
import soundfile

from shared_assets import shared_path

RECORDING = ("assets", "lipsync", "audio", "s1_plosives.wav")


@pytest.fixture
def audio(ext_module):
    return ext_module("animation.blender.audio")


def encoded(source, target, container, codec, channels=aud.CHANNELS_STEREO):
    aud.Sound(str(source)).write(str(target), 48000, channels, aud.FORMAT_S16, container, codec, 160000)
    return target


def test_a_stereo_recording_keeps_its_channels_at_its_own_rate_for_the_analyser_to_mix(audio, tmp_path):
    from tha_studio.lipsync import analyser

    speech, rate = soundfile.read(shared_path(*RECORDING), dtype="float32")
    for name, channels, mixed in (("stereo", [speech, 0.5 * speech], 0.75 * speech),
                                  ("inverted", [speech, -speech], speech)):  # its mix would be silence
        source = tmp_path / f"{name}.mka"
        aud.Sound(str(_wav(tmp_path / f"{name}.wav", np.stack(channels, axis=1), rate))).write(
            str(source), rate, aud.CHANNELS_STEREO, aud.FORMAT_FLOAT32, aud.CONTAINER_MATROSKA, aud.CODEC_FLAC, 0)
        copy = audio.decode_to_wav(source, tmp_path / f"{name}_copy.wav")
        info = soundfile.info(copy)
        assert (info.samplerate, info.channels, info.subtype, info.frames) == (rate, 2, "FLOAT", len(speech))
        np.testing.assert_allclose(soundfile.read(copy, dtype="float32")[0], np.stack(channels, axis=1), atol=1e-4)
        read = analyser.read_audio(copy)[0]  # the analyser mixes, or reads the louder channel alone
        np.testing.assert_allclose(read, analyser.resample(mixed, rate, analyser.SAMPLE_RATE), atol=1e-4)


def _wav(path, samples, rate):
    soundfile.write(path, samples, rate, subtype="FLOAT")
    return path


@pytest.mark.parametrize("name, container, codec", [
    ("memo.aac", aud.CONTAINER_AAC, aud.CODEC_AAC),
    ("line.mka", aud.CONTAINER_MATROSKA, aud.CODEC_VORBIS),
    ("line.ac3", aud.CONTAINER_AC3, aud.CODEC_AC3),
])
def test_lossy_recordings_decode_to_the_same_sound(audio, tmp_path, name, container, codec):
    speech, rate = soundfile.read(shared_path(*RECORDING), dtype="float32")
    source = encoded(shared_path(*RECORDING), tmp_path / name, container, codec)
    with audio.DecodedRecording(source) as decoded:
        samples, decoded_rate = soundfile.read(decoded.path, dtype="float32")
        samples = samples.mean(axis=1)  # (the copy keeps the encoder's two channels)
        assert decoded.path.parent.name.startswith("tha_studio_audio_")
    assert not decoded.path.parent.exists()
    assert decoded_rate == 48000 and len(samples) == pytest.approx(len(speech) * 3, abs=0.05 * 48000)
    # The same speech (the encoder's delay aside): its loudness envelope follows the original's.
    def envelope(x, frame):
        return np.sqrt(np.mean(x[: len(x) // frame * frame].reshape(-1, frame) ** 2, axis=1))
    original, copy = envelope(speech, 160), envelope(samples, 480)
    count = min(len(original), len(copy))
    best = max(np.corrcoef(original[: count - 10], copy[lag : count - 10 + lag])[0, 1] for lag in range(10))
    assert best > 0.95


def test_what_ffmpeg_cannot_read_is_named(audio, tmp_path):
    junk = tmp_path / "memo.m4a"
    junk.write_bytes(b"\0\0\0\x18ftypM4A " + bytes(range(256)) * 8)
    with pytest.raises(audio.AudioError, match=r"memo\.m4a\. Blender's FFmpeg cannot read it as audio"):
        audio.decode_to_wav(junk, tmp_path / "copy.wav")
    with pytest.raises(audio.AudioError, match=r"gone\.m4a\. No such file"):
        audio.decode_to_wav(tmp_path / "gone.m4a", tmp_path / "copy.wav")
    assert not (tmp_path / "copy.wav").exists()
