"""Recordings only FFmpeg decodes (.m4a, .aac, .mp4, ...; lipsync/audio_formats.py), read
through Blender's `aud` module and copied to a temporary WAV that the analysers read.

A phone's voice memo is an .m4a and a video editor's export an .mp4: Blender plays both as sound
strips, but libsndfile (the analyser's reader) and Rhubarb Lip Sync read neither. The copy has
the recording's channels, 32-bit float (nothing clips), at its own rate, so the analysis is the
one a WAV of the same sound gets (the analyser mixes the channels itself, and reads the louder
one alone where the mix cancels them).

aud decodes the whole recording at once: its FFmpeg reader seeks AAC only to the nearest packet
(blocks read from a seek were up to 0.47 of full scale off), so reading in pieces would change
the sound. A 10-minute line takes about 2 s.
"""

import dataclasses
import tempfile
from pathlib import Path

import bpy  # noqa: F401 (Blender's `aud` module exists only once bpy is loaded)
import numpy as np

from ...lipsync.analyser import AudioError, check_audio_header

# Above this a WAV's 32-bit sizes overflow: libsndfile then writes RF64, which it reads back.
WAV_LIMIT_BYTES = 4 * 1024**3 - 1024


def decode_to_wav(source, target):
    """`source` decoded by Blender's FFmpeg into `target`, a float WAV of its channels; AudioError
    naming the file where it is not readable audio. Returns the target's Path."""
    import soundfile

    source = Path(source)
    opening = f"Could not open sound file {source}."
    if not source.is_file():
        raise AudioError(f"{opening} No such file.")
    try:
        import aud
    except ImportError:
        raise AudioError(f"{opening} This Blender has no FFmpeg audio (its `aud` module is missing); convert the "
                         f"recording to WAV or FLAC first.") from None
    try:
        sound = aud.Sound(str(source))
        rate, channels = sound.specs
        frames = sound.length
    except aud.error as error:
        raise AudioError(f"{opening} Blender's FFmpeg cannot read it as audio ({str(error).rstrip('.')}).") from None
    rate, channels = int(round(rate)), int(channels)
    # aud tells the length FFmpeg estimates (0 or less: unknown): checked here, and again once decoded.
    check_audio_header(rate, channels, frames if frames > 0 else 1, opening)
    try:
        decoded = sound.data()
    except aud.error as error:
        raise AudioError(f"{opening} Blender's FFmpeg could not decode it ({str(error).rstrip('.')}).") from None
    samples = np.array(decoded, dtype=np.float32, copy=False).reshape(-1, channels)
    samples = np.nan_to_num(samples, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    check_audio_header(rate, channels, len(samples), opening)
    container = "WAV" if samples.nbytes < WAV_LIMIT_BYTES else "RF64"
    soundfile.write(str(target), samples, rate, subtype="FLOAT", format=container)
    return Path(target)


class DecodedRecording:
    """A recording's WAV copy in a temporary folder while an analysis reads it: `path`, then
    `remove()` (also done when the object is collected)."""

    def __init__(self, source):
        self.source = Path(source)
        self._folder = tempfile.TemporaryDirectory(prefix="tha_studio_audio_")
        try:
            self.path = decode_to_wav(self.source, Path(self._folder.name) / f"{self.source.stem}.wav")
        except BaseException:
            self._folder.cleanup()
            raise

    def remove(self):
        self._folder.cleanup()

    def naming_the_recording(self, track):
        """The cue track an analysis of the copy made, naming the recording itself (its
        soundFile), not the temporary WAV."""
        return dataclasses.replace(track, sound_file=str(self.source.resolve()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()
