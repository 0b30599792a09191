"""THA Studio's own audio analyser: a cue track from a recording, with no external program.

It works as Rhubarb Lip Sync does (shared/reference/rhubarb.md §1.5), on the `pocketsphinx`
package and its bundled US English model:

1. the audio (wav, ogg, opus, flac, mp3 or aiff, read by libsndfile through `soundfile`; the
   formats only FFmpeg reads are first copied to a WAV in Blender, lipsync/audio_formats.py) is mixed to mono
   (or, where the mix cancels the channels, its loudest channel taken alone),
   resampled to 16 kHz, its DC offset removed and its level set (its loudest moments to -12 dBFS);
2. voice activity detection (WebRTC's, as packaged in pocketsphinx, aggressiveness 2 in 10 ms
   frames; gaps up to 10 cs filled, blips under 5 cs dropped) splits it into utterances, so
   silence stays X (any over 7 s is split again at its quietest 10 ms, so a step stays short);
3. each utterance (padded by 3 cs) is turned into timed phones, by one of two recognizers:
   - "phonetic": PocketSphinx's allphone search over the English phone language model;
   - "words" (Rhubarb's default): word recognition with the English language model (or, given
     the dialog text, a language model made from it), then forced alignment of those words
     for phone timings;
   parts of an utterance where no phone was heard become noise (mouth slightly open);
4. the phones become mouth shapes by Rhubarb's rules and timing steps (shapes.py).

`Analysis` is a job (jobs.py: `step()` until done, `cancel()` at any time) so a Blender modal
operator can run it without blocking the interface; `analyse()` runs one to the end. A step is
one utterance, or one step of the mouth-shape animation (each linear in the number of phones, or
one static segment fixed), so each lasts well under a second and a cancel takes effect as soon.
"""

import contextlib
import functools
import hashlib
import importlib.metadata
import io
import itertools
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..input_files import decode_text, not_a_file
from ..jobs import Job, Progress
from .audio_formats import (
    BLENDER_EXTENSIONS, OGG_EXTENSIONS, SOUNDFILE_EXTENSIONS, caf_cut_short, caf_data, container_header_frames,
    cut_caf_patch, mp3_cut_mid_frame, mp3_length_tagged, ogg_stream_ended, unsized_wav_data,
)
from .cues import MAX_SECONDS, parse_shape_set
from .shapes import PHONES, animate_step_by_step, cue_track

SAMPLE_RATE = 16000
# What this module reads itself (libsndfile 1.1+ decodes MP3, the form most dialogue arrives in).
AUDIO_EXTENSIONS = SOUNDFILE_EXTENSIONS
KINDS = {".wav": "WAVE", ".ogg": "Ogg Vorbis", ".oga": "Ogg", ".opus": "Ogg Opus", ".flac": "FLAC", ".mp3": "MP3",
         ".aif": "AIFF", ".aiff": "AIFF", ".aifc": "AIFF-C", ".caf": "Core Audio", ".w64": "Wave64", ".au": "AU"}
# What read_audio accepts: telephone quality to studio rates, up to 7.1 surround plus spares.
SAMPLE_RATES = (4000, 768000)
MAX_CHANNELS = 16
RECOGNIZERS = ("words", "phonetic")
# "auto": words when there is dialog text to guide them, else the phonetic recognizer, which here
# agrees as well with Rhubarb and runs about twice as fast (bench/bench_lipsync.py).
RECOGNIZER_CHOICES = ("auto",) + RECOGNIZERS

VAD_MODE = 2
VAD_MAX_GAP_CS = 10
VAD_MIN_SEGMENT_CS = 5
UTTERANCE_PADDING_CS = 3
# Utterances longer than this (speech with no pause the VAD hears) are split at their quietest
# 10 ms, no nearer than 2 s to either end: one utterance is one step of the job, and the word
# recognizer's ~10x real time keeps a 7 s one under a second. The shared recordings' longest
# utterance is 6.7 s, so none of them is split.
MAX_UTTERANCE_CS = 700
MIN_SPLIT_PART_CS = 200
# The VAD and the recognizers hear by level: the shared recordings (their loudest 10 ms at -5 to
# -15 dBFS) played 45 dB quieter, as a phone held away records, matched Rhubarb's shape groups
# in 36% of 10 ms frames instead of 82% (bench/bench_lipsync.py --quieter 45), and at -54 dBFS
# the VAD heard nothing. Every recording is brought to one level first: its loudest 10 ms frames
# (the 99.5th percentile of their RMS, so a click does not count) to LEVEL_DBFS, raised by at
# most MAX_GAIN_DB (digital silence stays silent).
LEVEL_DBFS = -12.0
MAX_GAIN_DB = 60.0
MIN_NOISE_CS = 12
SCHWA_CS = 6  # PocketSphinx does not tell AH from schwa; short ones are taken as schwa

# The word search's pruning. PocketSphinx's defaults (up to 30000 HMMs a frame, word beam 7e-29,
# last-phone beams 1e-40 and 7e-29, any number of words ending a frame, phone-loop lookahead
# weight 3) spend 85% of the analysis on the full-language-model pass; these keep the 4500 best
# HMMs and 20 best word ends a frame, narrow the word and last-phone beams, let the phone-loop
# lookahead veto more word starts (weight 5), and score each frame with the 3 best Gaussians of a
# codebook instead of 4. On the bench recordings that makes the pass about 2.3x faster with the
# shapes agreeing with Rhubarb's as well (bench/bench_lipsync.py). Each setting sits where the
# next step lost words in some recording (maxhmmpf 4000 or lpbeam 1e-25: s5_fricatives or
# en_male_watchingtv; pl_weight 4 or 6: s4_bilabials or s3_pauses).
WORD_SEARCH = dict(
    maxhmmpf=4500, maxwpf=20, wbeam=1e-20, lpbeam=1e-30, lponlybeam=1e-25, pl_weight=5.0, topn=3,
)
# The alignment passes score each frame with the 2 best Gaussians of a codebook (4 by default):
# 10% faster, and the phone boundaries barely move. They align the pronunciation that was
# recognised (as Rhubarb does), not whichever of the word's variants fits best: on the bench
# recordings the shapes agree with Rhubarb's 1 point more often.
ALIGNMENT_SEARCH = dict(topn=2, fsgusealtpron=False)

# Word variants whose first pronunciation animates better (Rhubarb's fixPronunciation).
PREFERRED_PRONUNCIATION = {
    "into(2)": "into", "to(2)": "to", "to(3)": "to", "today(2)": "today",
    "tomorrow(2)": "tomorrow", "tonight(2)": "tonight",
}


class AudioError(UserError, ValueError):
    """A recording that cannot be analysed; the message names the file and says why."""


# libsndfile's frame count for a stream whose header leaves its length out (a FLAC written to a
# pipe, whose encoder could not go back to fill it in): it is then decoded to its end.
UNKNOWN_FRAMES = 2**63 - 1
# A recording shorter than its header promises by less than this is taken as whole (a writer's
# rounding); more, and it was cut short.
CUT_SHORT_SECONDS = 0.01


def header_frames(path, info_frames):
    """The frame count a recording's header promises, where the header is exact about it (the
    data size of a WAV, AIFF, Wave64, AU or CAF; a FLAC's stream info, an MP3's Xing or Info tag:
    `info_frames`, libsndfile's count, is then that), else None. (An untagged MP3's count is an
    estimate from its bit rate and size; an Ogg's is what the file holds: ogg_stream_ended tells a
    cut one.)"""
    extension = Path(path).suffix.lower()
    if extension not in (".flac", ".mp3"):
        return container_header_frames(path)
    if 0 < info_frames < UNKNOWN_FRAMES and (extension == ".flac" or extension == ".mp3" and mp3_length_tagged(path)):
        return info_frames
    return None


def shortfall_note(decoded_frames, rate, promised_frames, damage=None):
    """What to tell the user of a recording decoded only in part, or None where it was whole.
    `damage`: the decoder's reason where it stopped on an error; `promised_frames`: header_frames."""
    decoded = decoded_frames / rate
    if damage is not None:
        length = f" of {promised_frames / rate:.2f} s" if promised_frames else ""
        return (f"the audio cannot be decoded past {decoded:.2f} s{length} ({damage}): the file is damaged or "
                f"cut short; the lip sync covers the {decoded:.2f} s before")
    if promised_frames is not None and promised_frames - decoded_frames > CUT_SHORT_SECONDS * rate:
        return (f"the recording ends at {decoded:.2f} s, though its header gives {promised_frames / rate:.2f} s: "
                f"the file was cut short (an interrupted copy or recording?); the lip sync covers the "
                f"{decoded:.2f} s there")
    return None


class PatchedFile(io.RawIOBase):
    """A file read with the bytes at each (offset, patch) of `patches` replaced by the patch's (a
    header field), for libsndfile's virtual IO: the file itself is left as it is."""

    def __init__(self, path, patches):
        super().__init__()
        self._file = open(path, "rb")  # noqa: SIM115 - closed with this object
        self._patches = list(patches)

    def readable(self):
        return True

    def seekable(self):
        return True

    def seek(self, offset, whence=io.SEEK_SET):
        return self._file.seek(offset, whence)

    def tell(self):
        return self._file.tell()

    def readinto(self, buffer):
        start = self._file.tell()
        count = self._file.readinto(buffer)
        for offset, patch in self._patches:
            low, high = max(offset, start), min(offset + len(patch), start + count)
            if low < high:
                memoryview(buffer).cast("B")[low - start : high - start] = patch[low - offset : high - offset]
        return count

    def close(self):
        self._file.close()
        super().close()


def open_sound(path):
    """A soundfile.SoundFile reading the recording. Where players read a file that libsndfile
    would not, it is handed the header with one field changed; the file itself is not changed:
    - a WAV whose header left the audio's size at 0 (audio_formats.unsized_wav_data), with that
      size taken as "to the end of the file";
    - a CAF cut short, which libsndfile refuses as malformed, with its audio's size as what the
      file holds, and an ALAC one's packet table counting the packets held (audio_formats.
      cut_caf_patch; the shortfall is then told by reading_notes)."""
    import soundfile

    unsized = unsized_wav_data(path)
    # (0xFFFFFFFF: the size of a stream, in either byte order.)
    patches = [(unsized.size_at, b"\xff\xff\xff\xff")] if unsized else cut_caf_patch(path)
    if patches is None:
        return soundfile.SoundFile(str(path))
    source = PatchedFile(path, patches)
    try:
        # (The SoundFile's callbacks hold the source; it closes when they go, with the SoundFile.)
        return soundfile.SoundFile(source)
    except BaseException:
        source.close()
        raise


def reading_notes(path, decoded_frames, rate, promised_frames, damage):
    """What to tell the user of how a recording was read (a list of notes, empty where it was read
    whole as it is): decoded only in part (shortfall_note), an Ogg stream that stops without its
    end mark, an untagged MP3 whose last frame is broken off, or a WAV read to its end because its
    header gave its size as 0."""
    decoded = decoded_frames / rate
    notes = [shortfall_note(decoded_frames, rate, promised_frames, damage)]
    extension = Path(path).suffix.lower()
    if damage is None and extension in OGG_EXTENSIONS and ogg_stream_ended(path) is False:
        notes.append(f"the recording stops at {decoded:.2f} s without the end mark of its Ogg stream: the file was cut "
                     f"short (an interrupted copy or recording?); the lip sync covers the {decoded:.2f} s there")
    if (damage is None and promised_frames is None and extension == ".mp3" and not mp3_length_tagged(path)
            and mp3_cut_mid_frame(path)):
        # (With a length tag, shortfall_note has said so already.)
        notes.append(f"the recording stops at {decoded:.2f} s in the middle of an MP3 frame: the file was cut short "
                     f"(an interrupted copy or download?); the lip sync covers the {decoded:.2f} s there")
    if unsized_wav_data(path) is not None:
        notes.append(f"its header gives the audio's size as 0 (a recording that was not closed properly?); it is read "
                     f"to the end of the file, {decoded:.2f} s")
    return [note for note in notes if note]


class BlockDecoder:
    """A recording's frames read by libsndfile a block at a time, as float32 (frames, channels)
    arrays, as far as they decode: `blocks(size)` ends at the end of the file, or where a read
    fails for good, with `failure` then set to the decoder's reason. `frames`: libsndfile's frame
    count (UNKNOWN_FRAMES where the header leaves it out).

    A failed read loses the whole block it was reading, and the error sticks to the open file; so
    the file is opened again, taken back to where the block began and read on in smaller blocks,
    down to single frames. What decodes before a damaged spot is kept, and so is the end of a
    stream that does not give its length (libsndfile fails reading past it)."""

    def __init__(self, path, frames):
        self.path = str(path)
        self.frames = frames
        self.failure = None

    @property
    def damage(self):
        """The failure, where it is damage: not the end of a stream of unknown length, which
        libsndfile reports as a failed read."""
        return self.failure if self.frames < UNKNOWN_FRAMES else None

    def blocks(self, size):
        import soundfile

        position, first_reason = 0, None  # (the first failure's words: the later ones are of reading past it)
        audio = open_sound(self.path)
        try:
            while True:
                try:
                    samples = audio.read(size, dtype="float32", always_2d=True)
                except soundfile.LibsndfileError as error:
                    audio.close()
                    first_reason = first_reason or decoder_reason(error)
                    if size == 1:
                        self.failure = first_reason
                        return
                    try:
                        audio = self._reopened_at(position, size)
                    except (RuntimeError, OSError):  # libsndfile's errors are RuntimeErrors
                        self.failure = first_reason
                        return
                    size = max(size // 16, 1)
                    continue
                if not len(samples):
                    return
                position += len(samples)
                yield samples
        finally:
            audio.close()

    def _reopened_at(self, position, size):
        """The file opened again at frame `position`: sought, or where seeking fails (near the end
        of a FLAC of unknown length) read up to there again in blocks of `size`, as before."""
        import soundfile

        audio = open_sound(self.path)
        try:
            audio.seek(position)
            return audio
        except soundfile.LibsndfileError:
            audio.close()
        audio = open_sound(self.path)
        try:
            for start in range(0, position, size):
                audio.read(min(size, position - start), dtype="float32", always_2d=True)
        except BaseException:
            audio.close()
            raise
        return audio


def decoder_reason(error, path=None):
    """libsndfile's words for a decoding error, as a clause; with what the header of the file at
    `path` tells of it, where that explains it."""
    reason = str(error.error_string if hasattr(error, "error_string") else error).rstrip(".")
    reason = reason.removeprefix("Error : ")  # libFLAC's messages come so
    if reason.startswith("File does not exist"):
        # libsndfile's word for any file its MP3 decoder gives up on; the file is there.
        reason = "no audio frames could be decoded from it"
    if path is not None and Path(path).suffix.lower() == ".caf" and caf_cut_short(path):
        # (One that can be read as far as it goes is: open_sound.)
        reason += "; the file was cut short, before the end of the audio its header describes"
        data = caf_data(path)
        if data is not None and not data.bytes_per_packet and data.packet_table is None:
            reason += ", and with it the table of its compressed audio's packets, which came after the audio"
    return reason


# --------------------------------------------------------------------------------------------
# audio


def read_audio(path):
    """(mono float32 samples at 16 kHz, duration in seconds) of a recording libsndfile reads."""
    reader = AudioReader(path)
    for _ in reader.steps():
        pass
    return reader.samples, reader.duration


class AudioReader:
    """A recording read a block at a time, so a job can stop between blocks (within a second
    at any length) and memory holds one float32 copy of the audio, not four.

    The constructor checks the file and its header (rate, channels, length: a 32 KB file
    claiming 1 Hz is 4.4 hours at 16 kHz, one claiming 2.1 GHz resamples to nothing) and raises
    AudioError naming the file; `steps()` decodes, mixes to mono and resamples block by block;
    then `samples` (mono float32 at 16 kHz) and `duration` (seconds) are set.

    A recording that ends before its header says (cut short), or whose decoding fails part way
    (damaged), is read up to there, as players and Blender's sound strips play it; `notes` then
    says so, for the user. Nothing decoded at all is an AudioError.
    """

    BLOCK_SECONDS = 8.0

    def __init__(self, path):
        self.path = path = Path(path)
        self.opening = opening = f"Could not open sound file {path}."
        extension = path.suffix.lower()
        if extension in BLENDER_EXTENSIONS:
            raise AudioError(f"{opening} A '{path.suffix}' recording is read through Blender's FFmpeg (as the add-on and "
                             f"the commands do), not by libsndfile; or convert it to WAV or FLAC.")
        if extension not in AUDIO_EXTENSIONS:
            supported = ", ".join(f"'{e}'" for e in AUDIO_EXTENSIONS)
            raise AudioError(f"{opening} Unsupported file extension '{path.suffix}'. Supported extensions are {supported}.")
        if not path.exists():
            raise AudioError(f"{opening} No such file.")
        if kind := not_a_file(path):  # (a named pipe or a device reads as empty, or without end)
            raise AudioError(f"{opening} It is {kind}, not a recording.")
        if path.stat().st_size == 0:
            raise AudioError(f"{opening} The file is empty (0 bytes).")
        self.kind = KINDS[extension]
        with self._decoding_errors(), open_sound(path) as sound:  # (its header)
            check_audio_header(sound.samplerate, sound.channels, sound.frames, opening)
        self.rate = sound.samplerate
        self.frames = sound.frames  # libsndfile's count: UNKNOWN_FRAMES where the header leaves it out
        self.promised_frames = header_frames(path, sound.frames)
        self.samples = None
        self.duration = None
        self.notes = []

    @contextlib.contextmanager
    def _decoding_errors(self):
        import soundfile

        try:
            yield
        except soundfile.LibsndfileError as error:
            reason = decoder_reason(error, self.path)
            raise AudioError(f"{self.opening} It is not readable {self.kind} audio ({reason}).") from None
        except (RuntimeError, OSError) as error:
            raise AudioError(f"{self.opening} {error}") from None

    def steps(self):
        """Decode and resample a block per step (yields the fraction done, 0..1)."""
        energies = {}
        mono, damage = yield from self._decode(None, energies)
        if len(energies["channels"]) > 1 and mix_cancels(energies["mix"], energies["channels"]):
            # The mix lost the voice: one channel the inverse of the other (a mis-wired microphone
            # cancels to silence), or the voice in one channel of many. The loudest one alone.
            mono, damage = yield from self._decode(int(np.argmax(energies["channels"])), None)
        filled = len(mono)
        self.duration = filled / self.rate
        self.notes = reading_notes(self.path, filled, self.rate, self.promised_frames, damage)
        resampled = []
        for done, piece in resample_blocks(mono, self.rate, SAMPLE_RATE, self.BLOCK_SECONDS):
            resampled.append(piece)
            yield 0.5 + 0.5 * done
        self.samples = np.concatenate(resampled) if resampled else np.zeros(0, np.float32)

    def _decode(self, channel, energies):
        """(the samples as mono float32: the mean of the channels, or `channel` alone; the
        decoder's reason where it stopped on damage, else None), a block per step (yields the
        fraction done, 0..0.5); where `energies` is a dict, sets its "channels" (each channel's sum
        of squares) and "mix" (the mono samples')."""
        block = max(int(self.rate * self.BLOCK_SECONDS), 1)
        most = int(MAX_SECONDS * self.rate)
        with self._decoding_errors():
            known = self.frames < UNKNOWN_FRAMES
            mono = np.empty(self.frames if known else block, dtype=np.float32)
            filled = unreported = 0
            decoder = BlockDecoder(self.path, self.frames)
            for samples in decoder.blocks(block):
                # Float WAVs can hold NaN; a file may hold more frames than its header said.
                samples = playable(samples)
                part = samples.mean(axis=1) if channel is None else samples[:, channel]
                if energies is not None:
                    squares = np.einsum("ij,ij->j", samples, samples, dtype=np.float64)
                    energies["channels"] = energies.get("channels", 0.0) + squares
                    energies["mix"] = energies.get("mix", 0.0) + float(np.dot(part, part.astype(np.float64)))
                if filled + len(part) > len(mono):
                    if filled + len(part) > most:
                        raise AudioError(f"{self.opening} It is longer than {MAX_SECONDS / 3600:g} hours; at most "
                                         f"{MAX_SECONDS / 3600:g} hours are supported.")
                    # Grown by half at least: a stream of unknown length is read in blocks of 8 s.
                    size = min(max(filled + len(part), len(mono) + len(mono) // 2), most)
                    mono = np.concatenate([mono[:filled], np.empty(size - filled, np.float32)])
                mono[filled : filled + len(part)] = part
                filled += len(part)
                unreported += len(part)
                if unreported >= block:  # a step a block, however finely BlockDecoder reads past damage
                    unreported = 0
                    # (Of a stream of unknown length, a fraction that creeps towards the half.)
                    yield 0.5 * (filled / max(self.frames, 1) if known else filled / (filled + 60 * self.rate))
        if filled == 0:
            reason = f"It is not readable {self.kind} audio ({decoder.failure})" if decoder.failure else "It holds no audio frames"
            raise AudioError(f"{self.opening} {reason}.")
        return mono[:filled], decoder.damage


def mix_cancels(mix_energy, channel_energies, ratio=0.1):
    """Whether mixing the channels lost their sound: the mix holds under `ratio` of the loudest
    channel's energy (of two channels, one alone keeps a quarter, uncorrelated ones half, one the
    inverse of the other nothing)."""
    return mix_energy < ratio * float(np.max(channel_energies))


def check_audio_header(rate, channels, frames, opening):
    """Refuse a sample rate, channel count or length (frames; UNKNOWN_FRAMES: not known) that no
    recording of speech has."""
    low, high = SAMPLE_RATES
    if not low <= rate <= high:
        raise AudioError(f"{opening} Its sample rate is {rate} Hz; supported rates are {low} to {high} Hz.")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(f"{opening} It has {channels} channels; at most {MAX_CHANNELS} are supported.")
    if frames >= UNKNOWN_FRAMES:  # a stream that does not say: its length is checked as it is decoded
        return
    if frames == 0:
        raise AudioError(f"{opening} It holds no audio frames.")
    if frames / rate > MAX_SECONDS:
        raise AudioError(
            f"{opening} It is {frames / rate / 3600:.1f} hours long; at most {MAX_SECONDS / 3600:g} hours are supported."
        )


# A float recording can hold samples past full scale; every player clips them there, and so does
# the analysis (so does Rhubarb's 16-bit copy). A damaged float WAV's garbage, up to 3.4e38, set
# the level of the whole take otherwise (a line of speech came out as one closed-mouth cue), and
# overflowed float32 into infinities, with numpy's warning.
FULL_SCALE = 1.0


def playable(samples):
    """Decoded samples as a player plays them: NaN silent, the rest clipped to full scale."""
    samples = np.nan_to_num(samples, nan=0.0, posinf=FULL_SCALE, neginf=-FULL_SCALE)
    return np.clip(samples, -FULL_SCALE, FULL_SCALE, out=samples)


def resample(samples, rate, target_rate):
    """Band-limited resampling through the spectrum (cut above the lower Nyquist frequency)."""
    if rate == target_rate:
        return samples.astype(np.float32)
    count = int(round(len(samples) * target_rate / rate))
    if count == 0:  # shorter than one sample at the target rate
        return np.zeros(0, np.float32)
    spectrum = np.fft.rfft(samples)
    bins = count // 2 + 1
    if bins <= len(spectrum):
        spectrum = spectrum[:bins]
    else:
        spectrum = np.concatenate([spectrum, np.zeros(bins - len(spectrum), dtype=spectrum.dtype)])
    return (np.fft.irfft(spectrum, count) * (count / len(samples))).astype(np.float32)


def resample_blocks(samples, rate, target_rate, block_seconds=8.0, margin_seconds=0.5, whole_seconds=60.0):
    """`resample` in pieces a step can take: yields (fraction done, resampled samples).

    Up to `whole_seconds` the recording is resampled at once (well under a second), exactly as
    before. Longer ones go a block at a time: each block is resampled with half a second of its
    neighbours on both sides and only its own part kept, so the spectral method's wrap-around at
    the window's edges falls in the margins; block edges sit on sample positions both rates
    share, so the pieces join on the same grid. Against one transform of the whole file the
    result differs by less than 3e-4 of full scale away from the file's two ends (where the
    whole-file transform wraps one end onto the other, and blocks do not).
    """
    if rate == target_rate:
        yield 1.0, samples.astype(np.float32)
        return
    if len(samples) <= whole_seconds * rate:
        yield 1.0, resample(samples, rate, target_rate)
        return
    step = rate // math.gcd(rate, target_rate)  # input samples per whole number of output samples
    out_step = target_rate // math.gcd(rate, target_rate)
    block = max(int(block_seconds * rate) // step, 1) * step
    margin = max(int(margin_seconds * rate) // step, 1) * step
    total = len(samples)
    count = int(round(total * target_rate / rate))
    made = 0
    for start in range(0, total, block):
        first, last = max(start - margin, 0), min(start + block + margin, total)
        # Extend the window to whole steps so its output samples fall on the global grid.
        last = min(first + -(-(last - first) // step) * step, total)
        piece = resample(samples[first:last], rate, target_rate)
        offset = (start - first) // step * out_step
        wanted = min((min(start + block, total) - start) // step * out_step if start + block < total else count - made,
                     len(piece) - offset)
        yield min(start + block, total) / total, piece[offset : offset + wanted]
        made += wanted


def to_level(samples, rate=SAMPLE_RATE):
    """`samples` scaled so that their loudest 10 ms frames sit at LEVEL_DBFS (see there)."""
    frame = rate // 100
    count = len(samples) // frame
    if count == 0:
        return samples
    energies = np.empty(count)
    for first in range(0, count, 8192):  # in blocks: an hour-long take needs no float64 copy
        framed = samples[first * frame : min(first + 8192, count) * frame].reshape(-1, frame).astype(np.float64)
        energies[first : first + len(framed)] = np.mean(framed * framed, axis=1)
    level = float(np.percentile(np.sqrt(energies), 99.5))
    if level <= 0.0:
        return samples
    gain = min(10.0 ** (LEVEL_DBFS / 20.0) / level, 10.0 ** (MAX_GAIN_DB / 20.0))
    return (samples * gain).astype(np.float32)


def to_pcm16(samples):
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")


def dither(pcm, seed):
    """16-bit audio with one unit added to a random quarter of its samples, as pocketsphinx's own
    dither does (so digital silence has a finite log energy). Done here rather than by the
    decoders because their random generator is one for the whole process: with it, a recording's
    cues depended on what had been decoded before; seeded per utterance, they do not."""
    noise = np.random.default_rng(seed).integers(0, 4, len(pcm)) == 0
    return np.minimum(pcm.astype(np.int32) + noise, 32767).astype("<i2")


# --------------------------------------------------------------------------------------------
# voice activity


def voice_activity(pcm):
    """Speech stretches [(start cs, end cs)] in 16-bit 16 kHz audio."""
    from pocketsphinx import Vad

    vad = Vad(VAD_MODE, SAMPLE_RATE, 0.01)
    frame = vad.frame_bytes // 2
    active = [
        vad.is_speech(pcm[i * frame : (i + 1) * frame].tobytes())
        for i in range(len(pcm) // frame)
    ]
    stretches = []
    for index, speech in enumerate(active):
        if not speech:
            continue
        if stretches and index - stretches[-1][1] <= VAD_MAX_GAP_CS:
            stretches[-1][1] = index + 1
        else:
            stretches.append([index, index + 1])
    return [(s, e) for s, e in stretches if e - s >= VAD_MIN_SEGMENT_CS]


def split_long_utterances(pcm, utterances, max_cs=MAX_UTTERANCE_CS):
    """The utterances with each longer than `max_cs` split at its quietest 10 ms (by energy),
    at least MIN_SPLIT_PART_CS from either end, until none is longer."""
    frame = SAMPLE_RATE // 100
    result, pending = [], list(reversed(utterances))
    while pending:
        start, end = pending.pop()
        if end - start <= max_cs:
            result.append((start, end))
            continue
        low, high = start + min(MIN_SPLIT_PART_CS, max_cs // 2), end - min(MIN_SPLIT_PART_CS, max_cs // 2)
        frames = pcm[low * frame : high * frame].astype(np.float64).reshape(-1, frame)
        split = low + int(np.argmin((frames**2).sum(axis=1)))
        pending += [(split, end), (start, split)]  # the first half is taken next
    return result


# --------------------------------------------------------------------------------------------
# recognition


def model_path(*parts):
    from pocketsphinx import get_model_path

    return os.path.join(get_model_path(), *parts)


def _phone_name(name, duration):
    """Our phone name for a PocketSphinx one (None for silence and fillers)."""
    name = name.upper()
    if name == "AH" and duration < SCHWA_CS:
        return "Schwa"
    return name if name in PHONES else None


class DialogError(UserError, ValueError):
    """A dialog text file that cannot be read; the message names the file and says why."""


class DialogWordsUnknown(DialogError):
    """Dialog text of which the pronunciation dictionary knows no word (another language, or only
    names and numbers): the word recognizer has nothing to guide it with."""


def read_dialog(path):
    """The text of a dialog file: UTF-8 (a byte-order mark allowed), as Rhubarb reads it too, or
    UTF-16 that starts with its byte-order mark.

    DialogError names the file when it is missing, a folder, unreadable, or not UTF-8 text (an
    old editor's Latin-1 or Windows-1252 file, or a binary file given by mistake).
    """
    path = Path(path)
    if kind := not_a_file(path):
        raise DialogError(f"{path}: is {kind}, not a dialog text file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DialogError(f"{path}: no such dialog text file") from None
    except IsADirectoryError:
        raise DialogError(f"{path}: is a folder, not a dialog text file") from None
    except OSError as error:
        raise DialogError(f"{path}: cannot read the dialog text ({error.strerror or error})") from None
    try:
        text = decode_text(data)
    except UnicodeDecodeError as error:
        raise DialogError(
            f"{path}: the dialog text is not UTF-8 (byte 0x{data[error.start]:02x} at position {error.start}); "
            "save it as UTF-8 text"
        ) from None
    if "\0" in text:
        raise DialogError(f"{path}: is not a text file (it holds NUL bytes); give the line's words as plain text")
    return text


def tokenize_dialog(text):
    """Lower-case words of a dialog text as the dictionary spells them."""
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())


def dialog_language_model(words):
    """pocketsphinx's ArpaBoLM of the dialog's words as one sentence (<s> words </s>), counted here:
    its own corpus reader, given the text, runs a backtracking regular expression over each line,
    quadratic in the line's length (a dialog of 7,000 words took 2.7 s, one of 58,000 three
    minutes, for a 4-second recording). The same counts, so the same model."""
    from pocketsphinx.lm import ArpaBoLM

    model = ArpaBoLM()
    sentence = ["<s>", *words, "</s>"]
    for first, second, third in itertools.zip_longest(sentence, sentence[1:], sentence[2:]):
        model.grams_1[first] += 1
        if second is not None:
            model.grams_2[first][second] += 1
            if third is not None:
                model.grams_3[first][second][third] += 1
    model.compute()
    return model


class PhoneticRecognizer:
    """PocketSphinx allphone search (Rhubarb's "phonetic" recognizer)."""

    name = "phonetic"

    def __init__(self, dialog=None):
        from pocketsphinx import Decoder

        self.decoder = Decoder(
            allphone=model_path("en-us", "en-us-phone.lm.bin"), lm=None, allphone_ci=True, lw=0.8,
            beam=1e-20, pbeam=1e-20, dither=False, cmn="batch", loglevel="FATAL",
        )
        self.unknown_words = []

    def phones(self, pcm):
        """[(start cs, end cs, phone)] relative to the start of `pcm`."""
        decoder = self.decoder
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), False, True)
        decoder.end_utt()
        result = []
        for segment in decoder.seg():
            start, end = segment.start_frame, segment.end_frame + 1
            phone = _phone_name(segment.word, end - start)
            if phone:
                result.append((start, end, phone))
        return result


class WordRecognizer:
    """Word recognition then forced alignment (Rhubarb's default "pocketSphinx" recognizer).

    With dialog text, the words are recognized with a language model built from the dialog
    alone (Rhubarb mixes it 9:1 with the general one; pocketsphinx's Python API has no mixing).
    """

    name = "words"

    def __init__(self, dialog=None):
        from pocketsphinx import Decoder

        common = dict(dither=False, cmn="batch", loglevel="FATAL")  # dithered by Analysis
        self.unknown_words = []
        self._folder = None
        if dialog and dialog.strip():
            language_model, dictionary = self._dialog_model(dialog, Decoder)
            self.decoder = Decoder(lm=language_model, dict=dictionary, **common, **WORD_SEARCH)
        else:
            # No second (flat-lexicon) pass: 30% faster, and on the bench recordings the shapes
            # agree with Rhubarb's as well as with it (within half a percent).
            self.decoder = Decoder(fwdflat=False, **common, **WORD_SEARCH)
        # Alignment runs on its own decoder: no language model, and no bestpath pass, which
        # would give the sentence start an impossible one-frame phone.
        self.aligner = Decoder(lm=None, bestpath=False, **common, **ALIGNMENT_SEARCH)

    def _dialog_model(self, dialog, Decoder):
        """(language model, dictionary) files for the dialog's words. The dictionary holds just
        those words (with their alternative pronunciations): loading all of CMUdict beside a
        text language model takes seconds."""
        probe = Decoder(lm=None, loglevel="FATAL")
        known, unknown, pronunciations = [], [], []
        looked_up = {}  # word -> in the dictionary; its pronunciations are taken the first time
        for word in tokenize_dialog(dialog):
            if word not in looked_up:  # (each word once: a long dialog repeats its words)
                looked_up[word] = bool(probe.lookup_word(word))
                variant, number = word, 1
                while looked_up[word] and (pronunciation := probe.lookup_word(variant)):
                    pronunciations.append(f"{variant} {pronunciation}")
                    number += 1
                    variant = f"{word}({number})"
            (known if looked_up[word] else unknown).append(word)
        self.unknown_words = sorted(set(unknown))
        if not known:
            raise DialogWordsUnknown("none of the dialog text's words is in the US English pronunciation dictionary")
        self._folder = tempfile.TemporaryDirectory(prefix="tha_studio_dialog_")
        folder = Path(self._folder.name)
        dialog_language_model(known).write_file(str(folder / "dialog.arpa"))
        (folder / "dialog.dict").write_text("\n".join(pronunciations) + "\n", encoding="utf-8")
        return str(folder / "dialog.arpa"), str(folder / "dialog.dict")

    def words(self, pcm):
        decoder = self.decoder
        decoder.start_utt()
        decoder.process_raw(pcm.tobytes(), False, True)
        decoder.end_utt()
        if decoder.hyp() is None:
            return []
        words = []
        for segment in decoder.seg():
            word = segment.word
            if word.startswith("<") or word.startswith("[") or word.startswith("+"):
                continue
            words.append(PREFERRED_PRONUNCIATION.get(word, word))
        return words

    def phones(self, pcm):
        words = self.words(pcm)
        if not words:
            return []
        aligner = self.aligner
        data = pcm.tobytes()
        try:
            aligner.set_align_text(" ".join(words))
            aligner.start_utt()
            aligner.process_raw(data, False, True)
            aligner.end_utt()
            aligner.set_alignment()
            aligner.start_utt()
            aligner.process_raw(data, False, True)
            aligner.end_utt()
            alignment = aligner.get_alignment()
        except RuntimeError:
            return []  # the words could not be aligned: the utterance stays noise
        if alignment is None:
            return []
        result = []
        for phone in alignment.phones():
            start, end = phone.start, phone.start + phone.duration
            name = _phone_name(phone.name, end - start)
            if name:
                result.append((start, end, name))
        return result


def make_recognizer(name, dialog=None):
    if name == "phonetic":
        return PhoneticRecognizer(dialog)
    if name == "words":
        return WordRecognizer(dialog)
    raise ValueError(f"unknown recognizer {name!r}; recognizers are {', '.join(RECOGNIZERS)}")


def noise_stretches(utterance, phones):
    """Parts of an utterance with no phone, 12 cs or longer and not at time 0: noise."""
    start, end = utterance
    covered = np.zeros(end - start, dtype=bool)
    for s, e, _ in phones:
        covered[max(s, start) - start : max(min(e, end) - start, 0)] = True
    stretches, index = [], 0
    while index < len(covered):
        if covered[index]:
            index += 1
            continue
        stop = index
        while stop < len(covered) and not covered[stop]:
            stop += 1
        if stop - index >= MIN_NOISE_CS and start + index > 0:
            stretches.append((start + index, start + stop, "Noise"))
        index = stop
    return stretches


# --------------------------------------------------------------------------------------------
# the job


# The modules whose code makes cues from a recording (an analysis kept by an older version of them
# is made anew: lipsync/analyses.py).
ANALYSING_MODULES = ("analyser.py", "audio_formats.py", "shapes.py", "cues.py")


@functools.cache
def analyser_version():
    """What decides the analyser's cues besides the recording and the settings: a digest of its
    modules' code and pocketsphinx's version (its models come with it)."""
    digest = hashlib.sha256()
    for name in ANALYSING_MODULES:
        digest.update((Path(__file__).parent / name).read_bytes())
    try:
        digest.update(importlib.metadata.version("pocketsphinx").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    return digest.hexdigest()[:16]


@dataclass
class AnalysisResult:
    track: object
    phones: list
    utterances: list
    unknown_words: list = field(default_factory=list)


class Analysis(Job):
    """One recording analysed as a job: `start()` checks the audio file, the first steps read it
    a block at a time and find the utterances, each later `step()` recognizes one utterance or
    takes one step of the mouth shapes; `result` is an AnalysisResult. `notes`: what to tell the
    user of the recording (cut short or damaged: AudioReader.notes), once it is read. Nothing is
    shared between analyses except a recognizer passed in, which may be reused for the next recording."""

    def __init__(self, audio_path, recognizer="auto", dialog=None, extended_shapes="GHX", recognizer_object=None):
        super().__init__()
        self.audio_path = Path(audio_path)
        self.title = f"Lip sync analysis of {self.audio_path.name}"
        self.shape_set = parse_shape_set(extended_shapes)
        self._automatic = recognizer == "auto"
        if recognizer == "auto":
            recognizer = "words" if dialog and dialog.strip() else "phonetic"
        self.recognizer_name = recognizer if recognizer_object is None else recognizer_object.name
        if self.recognizer_name not in RECOGNIZERS:
            raise ValueError(f"unknown recognizer {recognizer!r}; recognizers are {', '.join(RECOGNIZERS)}")
        self.dialog = dialog
        self._recognizer = recognizer_object
        self._pending = []
        self._reading = None
        self._animation_steps = None
        self.phones = []
        self.utterances = []
        self.notes = []
        if dialog is not None and not dialog.strip():  # (the wrong file given, or one never saved)
            self.notes.append("the dialog text is empty: the line was recognized without it")

    def _start(self):
        """Check the audio file and its header (raises AudioError for bad audio); the samples are
        read block by block in the first steps."""
        self._reader = AudioReader(self.audio_path)
        self._reading = self._reader.steps()
        self.progress = Progress(0.0, "reading the audio")

    def _read_audio_step(self):
        """Read one block of the audio; once it is all read, find the utterances."""
        try:
            fraction = next(self._reading)
            return Progress(0.02 * fraction, "reading the audio")
        except StopIteration:
            pass
        self._reading = None
        samples, self.duration = self._reader.samples, self._reader.duration
        self.notes = [*self._reader.notes, *self.notes]  # (the reader's first; the dialog's from __init__)
        if len(samples):
            samples = samples - float(np.mean(samples))  # DC offset would fool the VAD
        self.pcm = to_pcm16(to_level(samples))
        self.length_cs = int(self.duration * 100)
        self.utterances = split_long_utterances(self.pcm, voice_activity(self.pcm))
        if not self.utterances and len(samples):
            # (A video's silent track, a muted microphone, the wrong channel of a mix: the result
            # is a closed mouth, which looks like a failure without this.)
            peak = float(np.max(np.abs(samples)))
            level = "it is digital silence" if peak == 0 else f"its loudest sample is {20 * math.log10(peak):.0f} dBFS"
            self.notes.append(f"no speech was found in its {self.duration:.2f} s ({level}): the mouth stays closed")
        if self._recognizer is None:
            self._recognizer = self._make_recognizer()
        self._pending = list(reversed(self.utterances))  # popped from the end, in time order
        self._total_cs = max(sum(e - s for s, e in self.utterances), 1)
        self._done_cs = 0
        return Progress(0.02, f"{len(self.utterances)} utterance(s)")

    def _make_recognizer(self):
        """The recognizer asked for. Dialog text the dictionary knows no word of (a line in
        another language) is left out with a note: "auto" then takes the phonetic recognizer, as
        for a line without dialog text, and "words" recognizes with its general language model."""
        try:
            return make_recognizer(self.recognizer_name, self.dialog)
        except DialogWordsUnknown as error:
            if self._automatic:
                self.recognizer_name = "phonetic"
            words = tokenize_dialog(self.dialog)
            shown = f" ({', '.join(words[:5])}{', ...' if len(words) > 5 else ''})" if words else ""
            self.notes.append(f"{error}{shown}: the line was recognized without it, by the {self.recognizer_name} "
                              f"recognizer")
            return make_recognizer(self.recognizer_name, None)

    def _step(self):
        """Read a block of the audio, recognize one more utterance, or take one step of turning the
        phones into mouth shapes."""
        if self._reading is not None:
            return self._read_audio_step()
        if self._pending:
            utterance = self._pending.pop()
            self._recognize(utterance)
            self._done_cs += utterance[1] - utterance[0]
            left = len(self._pending)
            return Progress(0.02 + 0.93 * self._done_cs / self._total_cs,
                            f"{left} utterance(s) left" if left else "mouth shapes")
        if self._animation_steps is None:
            self.phones.sort()
            self._animation_steps = animate_step_by_step(self.phones, self.length_cs, self.shape_set)
            self._animation_step_count = 0
        try:
            message = next(self._animation_steps)
        except StopIteration as finished:
            return self._finish(finished.value)
        # The number of steps depends on the static segments found: progress creeps towards 1.
        self._animation_step_count += 1
        count = self._animation_step_count
        return Progress(0.95 + 0.049 * count / (count + 4), f"mouth shapes: {message}")

    def _recognize(self, utterance):
        start, end = utterance
        first = max(start - UTTERANCE_PADDING_CS, 0)
        last = min(end + UTTERANCE_PADDING_CS, len(self.pcm) * 100 // SAMPLE_RATE)
        chunk = dither(self.pcm[first * SAMPLE_RATE // 100 : last * SAMPLE_RATE // 100], seed=first)
        phones = [(s + first, e + first, p) for s, e, p in self._recognizer.phones(chunk)]
        phones += noise_stretches(utterance, phones)
        self.phones += sorted(phones)

    def _finish(self, animation):
        track = cue_track(animation, self.length_cs, self.shape_set, str(self.audio_path.resolve()), "analyser")
        return self.finish(AnalysisResult(track, self.phones, self.utterances, list(self._recognizer.unknown_words)))


def analyse(audio_path, recognizer="auto", dialog=None, extended_shapes="GHX"):
    """The cue track of a recording (AudioError for unreadable audio)."""
    return Analysis(audio_path, recognizer, dialog, extended_shapes).run().track


__all__ = ["Analysis", "AnalysisResult", "AudioError", "RECOGNIZERS", "RECOGNIZER_CHOICES", "analyse", "read_audio"]
