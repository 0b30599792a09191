"""Which recordings THA Studio reads, by file extension (pure: no numpy, so `--help` stays instant).

libsndfile (the `soundfile` package) decodes the first set wherever THA Studio runs. The second
set (the MPEG-4 audio a phone's voice memo or a video editor writes, Matroska, WebM, WMA, AC-3)
only FFmpeg decodes; Blender carries FFmpeg in its `aud` module, so these are read where Blender
runs (the add-on, and the commands that start it), copied to a temporary WAV first
(animation/blender/audio.py).
"""

from pathlib import Path

SOUNDFILE_EXTENSIONS = (".wav", ".ogg", ".oga", ".opus", ".flac", ".mp3", ".aif", ".aiff")
BLENDER_EXTENSIONS = (".m4a", ".aac", ".mp4", ".mov", ".mkv", ".mka", ".webm", ".wma", ".ac3")
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS + BLENDER_EXTENSIONS


def decoded_by_blender(path):
    """Whether only Blender's FFmpeg reads this recording (by its extension)."""
    return Path(path).suffix.lower() in BLENDER_EXTENSIONS


def file_glob():
    """The extensions as a Blender file browser filter ("*.wav;*.ogg;...")."""
    return ";".join(f"*{extension}" for extension in AUDIO_EXTENSIONS)
