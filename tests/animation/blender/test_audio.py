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


def test_a_stereo_recording_becomes_the_mean_of_its_channels_at_its_own_rate(audio, tmp_path):
    speech, rate = soundfile.read(shared_path(*RECORDING), dtype="float32")
    stereo = tmp_path / "stereo.wav"
    soundfile.write(stereo, np.stack([speech, 0.5 * speech], axis=1), rate, subtype="FLOAT")
    copy = audio.decode_to_wav(stereo, tmp_path / "copy.wav")
    info = soundfile.info(copy)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (rate, 1, "FLOAT", len(speech))
    assert np.abs(soundfile.read(copy, dtype="float32")[0] - 0.75 * speech).max() < 1e-6


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
