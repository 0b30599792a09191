"""Which recordings THA Studio reads, by file extension (pure: no numpy, so `--help` stays instant).

libsndfile (the `soundfile` package) decodes the first set wherever THA Studio runs. The second
set (the MPEG-4 audio a phone's voice memo or a video editor writes, Matroska, WebM, WMA, AC-3)
only FFmpeg decodes; Blender carries FFmpeg in its `aud` module, so these are read where Blender
runs (the add-on, and the commands that start it), copied to a temporary WAV first
(animation/blender/audio.py).
"""

import os
import struct
from pathlib import Path
from typing import NamedTuple, Optional

SOUNDFILE_EXTENSIONS = (".wav", ".ogg", ".oga", ".opus", ".flac", ".mp3", ".aif", ".aiff")
BLENDER_EXTENSIONS = (".m4a", ".aac", ".mp4", ".mov", ".mkv", ".mka", ".webm", ".wma", ".ac3")
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS + BLENDER_EXTENSIONS


def decoded_by_blender(path):
    """Whether only Blender's FFmpeg reads this recording (by its extension)."""
    return Path(path).suffix.lower() in BLENDER_EXTENSIONS


def file_glob():
    """The extensions as a Blender file browser filter ("*.wav;*.ogg;...")."""
    return ";".join(f"*{extension}" for extension in AUDIO_EXTENSIONS)


# WAV data sizes that say "not known": 0 or 0xFFFFFFFF (a recorder stopped before it went back to
# write the size, FFmpeg writing to a pipe), or SoX's 0x7FFFF000 and the like for a stream. Sizes
# from 2 GiB up are taken as such too: then a file's length is whatever it holds.
_UNKNOWN_DATA_SIZE_FROM = 0x7FFFF000


class WavData(NamedTuple):
    """Where a WAV's audio lies, as its header tells."""

    frame_bytes: Optional[int]  # the block align; None where no fmt chunk comes before the data
    size: Optional[int]  # the data chunk's size (RF64: its 64-bit size)
    size_at: int  # the file offset of the data chunk's 32-bit size field
    start: int  # the file offset of the audio


def wav_data(path):
    """The WavData of a RIFF, RIFX or RF64 WAV, or None (not one, or no data chunk found)."""
    try:
        with open(path, "rb") as file:
            head = file.read(12)
            if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64"):
                return None
            order = ">" if head[:4] == b"RIFX" else "<"
            frame_bytes, long_size = None, None
            for _ in range(256):  # the chunks before the data: fmt, fact, LIST, bext, JUNK, ...
                chunk = file.read(8)
                if len(chunk) < 8:
                    return None
                name, size = chunk[:4], struct.unpack(order + "I", chunk[4:])[0]
                skip = size + (size & 1)  # chunks are padded to an even size
                if name in (b"fmt ", b"ds64"):
                    body = file.read(min(size, 16))
                    skip -= len(body)
                    if name == b"fmt " and len(body) >= 14:
                        frame_bytes = struct.unpack(order + "H", body[12:14])[0]  # the block align
                    elif name == b"ds64" and len(body) >= 16:
                        long_size = struct.unpack("<Q", body[8:16])[0]  # RF64: the data size, 64-bit
                elif name == b"data":
                    if head[:4] == b"RF64" and size == 0xFFFFFFFF:
                        size = long_size
                    return WavData(frame_bytes or None, size, file.tell() - 4, file.tell())
                file.seek(skip, 1)
    except (OSError, struct.error):
        return None
    return None


def wav_header_frames(path):
    """The frame count a WAV's header gives (its data chunk's size over the frame size), or None:
    not a RIFF, RIFX or RF64 WAV, a size left unknown, or a header that does not say.

    libsndfile reads the frames a WAV holds and reports their count, however many its header
    promised; a file cut short (an interrupted copy or recording) is told from a whole one by
    comparing the two. (The standard library's `wave` reads PCM headers only, not float ones.)"""
    data = wav_data(path)
    if data is None or not data.frame_bytes or data.size is None or data.size == 0 or data.size >= _UNKNOWN_DATA_SIZE_FROM:
        return None
    return data.size // data.frame_bytes


def unsized_wav_data(path):
    """The WavData of a WAV whose data chunk's size was left at 0 though audio follows it (a
    recorder stopped before it went back to write the size), else None. libsndfile reads no frames
    of such a file; players, Blender's FFmpeg among them, play it to its end."""
    data = wav_data(path)
    if data is None or data.size != 0 or not data.frame_bytes:
        return None
    try:
        return data if os.path.getsize(path) - data.start >= data.frame_bytes else None
    except OSError:
        return None


OGG_EXTENSIONS = (".ogg", ".oga", ".opus")
_OGG_LONGEST_PAGE = 27 + 255 + 255 * 255  # its header, a full segment table, 255 full segments


def ogg_stream_ended(path):
    """Whether an Ogg file ends with a whole page that marks the end of its stream (the header's
    end-of-stream flag), as an encoder that finished writes it; False for a file cut short (its
    last page broken off, or whole but without the mark), None where it cannot be read.

    An Ogg header gives no length to compare with, and libsndfile reads a cut file as far as it
    goes without a word; the missing end mark is what tells it."""
    try:
        with open(path, "rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(size - 2 * _OGG_LONGEST_PAGE, 0))
            tail = file.read()
    except OSError:
        return None
    # The last page is the one that ends exactly at the end of the file ("OggS" may also occur in
    # the audio data, so each capture pattern from the end back is tried).
    start = tail.rfind(b"OggS")
    while start >= 0:
        if start + 27 <= len(tail) and tail[start + 4] == 0:  # stream structure version 0
            segments = tail[start + 26]
            table = tail[start + 27 : start + 27 + segments]
            if len(table) == segments and start + 27 + segments + sum(table) == len(tail):
                return bool(tail[start + 5] & 0x04)
        start = tail.rfind(b"OggS", 0, start)
    return False


def mp3_length_tagged(path):
    """Whether an MP3's first frame carries a Xing or Info tag that counts its frames (LAME and
    most encoders write one), from which libsndfile gives the recording's exact length; without
    one the length is an estimate from the bit rate, which a cut file shortens alike."""
    try:
        with open(path, "rb") as file:
            head = file.read(10)
            start = 0
            if head[:3] == b"ID3" and len(head) == 10:  # an ID3v2 tag first: its size, 7 bits a byte
                start = 10 + sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:10]))
                start += 10 if head[5] & 0x10 else 0  # (a footer)
            file.seek(start)
            data = file.read(4096)
    except OSError:
        return False
    for sync in range(len(data) - 4):  # (some writers pad before the first frame)
        if data[sync] == 0xFF and data[sync + 1] & 0xE0 == 0xE0:
            break
    else:
        return False
    mpeg1, mono = (data[sync + 1] >> 3) & 0x03 == 3, (data[sync + 3] >> 6) == 3
    at = sync + 4 + ((17 if mono else 32) if mpeg1 else (9 if mono else 17))  # past the side information
    if data[at : at + 4] not in (b"Xing", b"Info") or len(data) < at + 8:
        return False
    return bool(struct.unpack(">I", data[at + 4 : at + 8])[0] & 0x01)  # the frame count is there
