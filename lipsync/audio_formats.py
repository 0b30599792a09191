"""Which recordings THA Studio reads, by file extension (pure: no numpy, so `--help` stays instant).

libsndfile (the `soundfile` package) decodes the first set wherever THA Studio runs. The second
set (the MPEG-4 audio a phone's voice memo or a video editor writes, Matroska, WebM, WMA, AC-3)
only FFmpeg decodes; Blender carries FFmpeg in its `aud` module, so these are read where Blender
runs (the add-on, and the commands that start it), copied to a temporary WAV first
(animation/blender/audio.py).
"""

import mmap
import os
import struct
from pathlib import Path
from typing import NamedTuple, Optional

# (.caf: Apple's Core Audio Format, what macOS's own tools write; .w64: Sony Wave64, Sound Forge's
# and Audacity's format for takes past 4 GiB; .au: Sun/NeXT audio.)
SOUNDFILE_EXTENSIONS = (
    ".wav", ".ogg", ".oga", ".opus", ".flac", ".mp3", ".aif", ".aiff", ".aifc", ".caf", ".w64", ".au",
)
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


def _chunks(file, name_bytes, size_format, align=2, size_counts_header=False):
    """(name, size) of each chunk of a RIFF-like container from the file's position on (at most
    256: the ones before the audio), the file left at the chunk's body: the caller reads what it
    needs of it, and the walk goes on from the next chunk. `size_format`: the struct format of the
    size field; `align`: the chunks' alignment (WAV and AIFF pad to an even size); Wave64 counts
    the chunk's header in its size."""
    header = name_bytes + struct.calcsize(size_format)
    file_size = os.fstat(file.fileno()).st_size
    for _ in range(256):
        chunk = file.read(header)
        if len(chunk) < header:
            return
        name, size = chunk[:name_bytes], struct.unpack(size_format, chunk[name_bytes:])[0]
        body = file.tell()
        yield name, size
        length = size - header if size_counts_header else size
        following = body + length + (-length) % align
        if length < 0 or following > file_size:
            return  # (nothing of the file follows: a damaged size can pass what a seek can take)
        file.seek(following)


class WavData(NamedTuple):
    """Where a WAV's audio lies, as its header tells."""

    frame_bytes: Optional[int]  # the block align; None where no fmt chunk comes before the data
    size: Optional[int]  # the data chunk's size (RF64: its 64-bit size)
    size_at: int  # the file offset of the data chunk's 32-bit size field
    start: int  # the file offset of the audio
    container: bytes = b"RIFF"  # RIFF, RIFX (big-endian) or RF64
    codec: Optional[int] = None  # the fmt chunk's format tag (an extensible one's sub-format): 1 PCM, 3 float
    bits: Optional[int] = None  # bits per sample


def wav_data(path):
    """The WavData of a RIFF, RIFX or RF64 WAV, or None (not one, or no data chunk found)."""
    try:
        with open(path, "rb") as file:
            head = file.read(12)
            if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64"):
                return None
            order = ">" if head[:4] == b"RIFX" else "<"
            frame_bytes, long_size, codec, bits = None, None, None, None
            for name, size in _chunks(file, 4, order + "I"):  # fmt, fact, LIST, bext, JUNK, ... data
                if name in (b"fmt ", b"ds64"):
                    body = file.read(min(size, 40))
                    if name == b"fmt " and len(body) >= 14:
                        codec = struct.unpack(order + "H", body[:2])[0]
                        frame_bytes = struct.unpack(order + "H", body[12:14])[0]  # the block align
                        bits = struct.unpack(order + "H", body[14:16])[0] if len(body) >= 16 else None
                        if codec == WAVE_FORMAT_EXTENSIBLE:  # the sub-format GUID starts with the format tag
                            codec = struct.unpack(order + "H", body[24:26])[0] if len(body) >= 26 else None
                    elif name == b"ds64" and len(body) >= 16:
                        long_size = struct.unpack("<Q", body[8:16])[0]  # RF64: the data size, 64-bit
                elif name == b"data":
                    if head[:4] == b"RF64" and size == 0xFFFFFFFF:
                        size = long_size
                    return WavData(frame_bytes or None, size, file.tell() - 4, file.tell(), head[:4], codec, bits)
    except (OSError, struct.error):
        return None
    return None


WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT, WAVE_FORMAT_EXTENSIBLE = 1, 3, 0xFFFE


def rhubarb_reads_wav(path):
    """Whether Rhubarb 1.14's own WAV reader takes this WAV: a RIFF (not RIFX or RF64) of PCM (8 to
    32 bits) or IEEE float (32 or 64 bits), plain or extensible. A compressed one (ADPCM, mu-law,
    A-law, GSM: voice recorders and telephony) it refuses as an unsupported codec, so it goes to
    Rhubarb as a 16-bit copy. One whose header cannot be read is left to Rhubarb to name."""
    data = wav_data(path)
    if data is None or data.codec is None:
        return True
    if data.container != b"RIFF":
        return False
    if data.codec == WAVE_FORMAT_PCM:
        return data.bits is not None and 8 <= data.bits <= 32
    if data.codec == WAVE_FORMAT_IEEE_FLOAT:
        return data.bits in (32, 64)
    return False


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


def aiff_header_frames(path):
    """The frame count an AIFF or AIFF-C header gives (its COMM chunk's numSampleFrames), or None.
    libsndfile counts only the frames the file holds, so a cut one is told by this."""
    try:
        with open(path, "rb") as file:
            head = file.read(12)
            if len(head) < 12 or head[:4] != b"FORM" or head[8:12] not in (b"AIFF", b"AIFC"):
                return None
            for name, _ in _chunks(file, 4, ">I"):
                if name == b"COMM":
                    body = file.read(6)
                    return struct.unpack(">I", body[2:6])[0] if len(body) == 6 else None
    except (OSError, struct.error):
        return None
    return None


# Wave64 names its chunks by GUIDs: the chunk's four letters, then these twelve bytes.
_W64_GUID_TAIL = bytes.fromhex("f3acd3118cd100c04f8edb8a")


def w64_header_frames(path):
    """The frame count a Sony Wave64 header gives (its data chunk's size over the frame size), or
    None."""
    try:
        with open(path, "rb") as file:
            head = file.read(40)
            if len(head) < 40 or head[:4] != b"riff" or head[24:28] != b"wave":
                return None
            frame_bytes = None
            for guid, size in _chunks(file, 16, "<Q", align=8, size_counts_header=True):
                if guid[4:] != _W64_GUID_TAIL or size < 24:
                    return None
                if guid[:4] == b"fmt ":
                    body = file.read(14)
                    frame_bytes = struct.unpack("<H", body[12:14])[0] if len(body) == 14 else None
                elif guid[:4] == b"data":
                    return (size - 24) // frame_bytes if frame_bytes else None
    except (OSError, struct.error):
        return None
    return None


# Bytes a sample of each AU encoding takes (µ-law, 8/16/24/32-bit linear, float, double, A-law).
_AU_SAMPLE_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}


def au_header_frames(path):
    """The frame count a Sun/NeXT .au header gives (its data size over the frame size), or None
    (a size left unknown, as a stream writes it, or an encoding of variable size)."""
    try:
        with open(path, "rb") as file:
            head = file.read(24)
    except OSError:
        return None
    if len(head) < 24 or head[:4] not in (b".snd", b"dns."):
        return None
    order = ">" if head[:4] == b".snd" else "<"
    _, size, encoding, _, channels = struct.unpack(order + "5I", head[4:24])
    sample_bytes = _AU_SAMPLE_BYTES.get(encoding)
    if size == 0xFFFFFFFF or not sample_bytes or not channels:
        return None
    return size // (sample_bytes * channels)


class CafData(NamedTuple):
    """Where a Core Audio Format file's audio lies, and how many frames its header promises."""

    frames: Optional[int]  # None where the header leaves it open (a data size of -1)
    bytes_per_packet: int  # 0 for a compressed format (ALAC), whose packets vary in size
    size_at: int  # the file offset of the data chunk's 64-bit size
    start: int  # the file offset of the audio (past the data chunk's edit count)
    size: int  # the audio's size in bytes as the header gives it (-1: to the end of the file)
    frames_per_packet: int = 0
    packet_table: Optional[tuple] = None  # (file offset, size) of the pakt chunk's body, where it comes before the data


def caf_data(path):
    """The CafData of a CAF file, or None (not one, or no data chunk found)."""
    try:
        with open(path, "rb") as file:
            if file.read(8)[:4] != b"caff":
                return None
            bytes_per_packet = frames_per_packet = valid_frames = packet_table = None
            for name, size in _chunks(file, 4, ">q", align=1):
                if name == b"data":
                    start = file.tell() + 4  # (an edit count comes first)
                    audio = size - 4 if size >= 4 else -1
                    if bytes_per_packet and frames_per_packet:
                        frames = audio // bytes_per_packet * frames_per_packet if audio >= 0 else None
                    else:
                        frames = valid_frames
                    return CafData(frames, bytes_per_packet or 0, start - 12, start, audio, frames_per_packet or 0,
                                   packet_table)
                if size < 0:
                    return None
                at = file.tell()
                body = file.read(min(size, 32))
                if name == b"desc" and len(body) >= 32:
                    bytes_per_packet, frames_per_packet = struct.unpack(">II", body[16:24])
                elif name == b"pakt" and len(body) >= 24:
                    valid_frames = struct.unpack(">q", body[8:16])[0]
                    packet_table = (at, size)
    except (OSError, struct.error):
        return None
    return None


def caf_header_frames(path):
    """The frame count a CAF header gives (CafData.frames), or None."""
    data = caf_data(path)
    return data.frames if data is not None else None


def container_header_frames(path):
    """The frame count the header of a WAV, AIFF, Wave64, AU or CAF file gives, by its extension;
    None where the header leaves it open, or for other files (FLAC's and MP3's counts come through
    libsndfile: analyser.header_frames)."""
    reader = _HEADER_FRAMES.get(Path(path).suffix.lower())
    return reader(path) if reader else None


def cut_caf_patch(path):
    """[(offset, bytes), ...] to give libsndfile for a CAF whose data chunk runs past the end of
    the file (an interrupted copy or recording), as if it ended with its last whole frame or
    packet: the chunk's size as what the file holds, and for compressed audio (ALAC) its packet
    table's counts of packets and frames as those held. libsndfile refuses such a file as
    malformed (or, its packet table counting packets that are gone, decodes noise); players,
    Blender's FFmpeg among them, play what there is. None for any other file, and for one whose
    packet table came after the audio (gone with it)."""
    data = caf_data(path)
    if data is None or data.size < 0:
        return None
    try:
        held = os.path.getsize(path) - data.start
    except OSError:
        return None
    if held >= data.size:
        return None
    if data.bytes_per_packet:
        if held < data.bytes_per_packet:
            return None
        return [(data.size_at, struct.pack(">q", held // data.bytes_per_packet * data.bytes_per_packet + 4))]
    return _cut_packet_table_patch(path, data, held)


def _cut_packet_table_patch(path, data, held):
    """cut_caf_patch for compressed audio: the packets wholly held, by the sizes its packet table
    (pakt: counts, then each packet's size as a variable-length number) gives. The table is
    written anew for them: libsndfile counts the sizes it holds, whatever its count says. What
    is left of it becomes a free chunk, or, too short for one, leading zeros of the sizes kept."""
    if data.packet_table is None or not data.frames_per_packet:
        return None
    table_at, table_size = data.packet_table
    with open(path, "rb") as file:
        file.seek(table_at)
        table = file.read(min(table_size, data.start - table_at))
    if len(table) != table_size:
        return None
    packets, _valid, priming, _remainder = struct.unpack(">qqii", table[:24])
    sizes, total, at, size = [], 0, 24, 0
    while len(sizes) < packets and at < len(table):
        size = (size << 7) | (table[at] & 0x7F)
        if not table[at] & 0x80:  # (the number's last byte)
            if total + size > held:
                break
            sizes.append(size)
            total, size = total + size, 0
        at += 1
    frames = len(sizes) * data.frames_per_packet - priming
    if frames <= 0:
        return None
    header = struct.pack(">qqii", len(sizes), frames, priming, 0)
    kept = header + b"".join(_variable_length(size) for size in sizes)
    left = table_size - len(kept)
    if left >= 12:  # (a free chunk's header)
        body = kept + b"free" + struct.pack(">q", left - 12) + bytes(left - 12)
        chunk_size = len(kept)
    elif left <= 4 * len(sizes):
        pads = [left // len(sizes) + (i < left % len(sizes)) for i in range(len(sizes))]
        body = header + b"".join(_variable_length(size, pad) for size, pad in zip(sizes, pads))
        chunk_size = table_size
    else:
        return None
    return [(table_at - 8, struct.pack(">q", chunk_size) + body),
            (data.size_at, struct.pack(">q", total + 4))]


def _variable_length(number, pad=0):
    """A packet table's number: 7 bits a byte, the first byte's the highest, every byte but the
    last with its top bit set; `pad` leading zero bytes."""
    groups = [number & 0x7F]
    number >>= 7
    while number:
        groups.append(0x80 | (number & 0x7F))
        number >>= 7
    return bytes([0x80] * pad + groups[::-1])


def caf_cut_short(path):
    """Whether a CAF file ends before the audio its header describes."""
    data = caf_data(path)
    try:
        return data is not None and data.size >= 0 and os.path.getsize(path) - data.start < data.size
    except OSError:
        return False


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


def ogg_is_vorbis(path):
    """Whether an Ogg file's first stream is Vorbis, the only Ogg codec Rhubarb 1.14 reads (not
    Opus: messaging apps' voice notes, saved as .ogg; FLAC; Speex); None where the first page
    cannot be read (left to the readers to name)."""
    try:
        with open(path, "rb") as file:
            head = file.read(27 + 255 + 7)
    except OSError:
        return None
    if len(head) < 27 or head[:4] != b"OggS":
        return None
    first_packet = head[27 + head[26]:]
    if len(first_packet) < 7:
        return None
    return first_packet[:7] == b"\x01vorbis"


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
            file.seek(id3v2_end(file.read(10)))
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


# MPEG audio Layer III: kbit/s by bit-rate index (MPEG-1; MPEG-2 and 2.5), Hz by version bits
# and sample-rate index.
_MP3_KBPS = {True: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             False: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
_MP3_TRAILERS = (b"TAG", b"APETAGEX", b"LYRICSBEGIN")  # ID3v1, APEv2, Lyrics3 tags after the audio


def mp3_frame_size(header):
    """The length in bytes of the Layer III frame that the 4 bytes `header` begin, or None where
    they are no such header (no sync, a reserved or free bit rate or sample rate)."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0 or (header[1] >> 1) & 0x03 != 1:
        return None
    version, index, rate_index = (header[1] >> 3) & 0x03, header[2] >> 4, (header[2] >> 2) & 0x03
    if version not in _MP3_RATES or not 0 < index < 15 or rate_index == 3:
        return None
    mpeg1 = version == 3
    rate = _MP3_RATES[version][rate_index]
    return (144 if mpeg1 else 72) * _MP3_KBPS[mpeg1][index] * 1000 // rate + ((header[2] >> 1) & 0x01)


def mp3_cut_mid_frame(path):
    """Whether an MP3's last frame is broken off by the end of the file, as a copy or download
    that stopped does (an encoder writes whole frames): True; False where the frames run whole to
    the end of the file or to a tag after them; None where that cannot be told (no frame found,
    something else in between, an unreadable file). An untagged MP3 states no length to compare
    with, so a file cut short otherwise passes for a shorter recording."""
    try:
        with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _mp3_frames_broken_off(data)
    except (OSError, ValueError):  # (ValueError: an empty file, which mmap refuses)
        return None


def id3v2_end(head):
    """Where the audio of an MP3 whose first 10 bytes are `head` begins: past an ID3v2 tag (its
    size, 7 bits a byte, and a footer where flagged), or at 0 without one."""
    if head[:3] != b"ID3" or len(head) < 10:
        return 0
    return 10 + sum((byte & 0x7F) << (7 * (3 - i)) for i, byte in enumerate(head[6:10])) + (10 if head[5] & 0x10 else 0)


def _mp3_frames_broken_off(data):
    at = id3v2_end(data[:10])
    # The first frame: a header whose next frame's header follows where its length says (a sync
    # pattern alone also turns up in padding and tag bytes), within 64 KiB of the tag's end.
    search_end = min(len(data), at + (1 << 16))
    while at < search_end:
        size = mp3_frame_size(data[at : at + 4])
        if size and (at + size >= len(data) or mp3_frame_size(data[at + size : at + size + 4])):
            break
        at += 1
    else:
        return None
    while at < len(data):
        size = mp3_frame_size(data[at : at + 4])
        if size is None:
            if data[at : at + 11].startswith(_MP3_TRAILERS):
                return False
            return True if len(data) - at < 4 and data[at] == 0xFF else None  # (cut inside a header)
        if at + size > len(data):
            return True
        at += size
    return False


_HEADER_FRAMES = {
    ".wav": wav_header_frames, ".aif": aiff_header_frames, ".aiff": aiff_header_frames, ".aifc": aiff_header_frames,
    ".w64": w64_header_frames, ".au": au_header_frames, ".caf": caf_header_frames,
}
