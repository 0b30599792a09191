"""Running Rhubarb Lip Sync, when the user has it, as a job (jobs.py; Blender has no event loop).

    job = RhubarbJob(audio, executable=find_rhubarb()).start()
    while not job.done:        # a modal operator steps it from its timer
        show(job.step())
    track = job.result         # or RhubarbError with Rhubarb's own message

Rhubarb runs with `--machineReadable`, so its stderr is one JSON object per line (rhubarb.md
§1.2): progress, and on failure the reason it gives. It writes JSON cues to a temporary file,
which is read back with formats.read_json. `cancel()` stops it.
"""

import dataclasses
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .. import json_text
from ..errors import UserError
from ..jobs import Job, Progress
from .audio_formats import ogg_is_vorbis, ogg_stream_ended, rhubarb_reads_wav, unsized_wav_data, wav_header_frames
from .cues import parse_shape_set
from .formats import CueFileError, read_cues

RECOGNIZER_NAMES = {"words": "pocketSphinx", "phonetic": "phonetic"}
EXECUTABLE_NAMES = ("rhubarb", "rhubarb.exe")
# What Rhubarb 1.14 opens itself (audioFileReading.cpp); anything else the job converts to WAV.
RHUBARB_EXTENSIONS = (".wav", ".ogg")
CONVERT_BLOCK_FRAMES = 1 << 16


class RhubarbError(UserError, RuntimeError):
    """Rhubarb failed, could not be started, or was cancelled; the message says which and why."""


def find_rhubarb(path=None):
    """The Rhubarb executable: `path` (a file, or a folder holding it) if given, else on PATH;
    None when there is none."""
    if path:
        path = Path(path).expanduser()
        candidates = [path / name for name in EXECUTABLE_NAMES] if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.is_file() and os.access(candidate, os.X_OK):
                # Absolute: a bare relative name ("rhubarb", "./rhubarb" normalised) would be
                # looked up on PATH when started, not in the folder it was found in.
                return candidate.absolute()
        raise RhubarbError(f"{path}: no runnable Rhubarb Lip Sync executable there")
    for name in EXECUTABLE_NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def can_read(path):
    """Whether Rhubarb opens this recording itself (.wav, .ogg); others (.flac, .mp3), a WAV cut
    short (its header promises more than it holds), one whose header left the audio's size at 0,
    a compressed or big-endian WAV Rhubarb's reader refuses (rhubarb_reads_wav), an Ogg file of
    another codec than Vorbis (Opus) and an Ogg stream cut short, RhubarbJob first converts to a
    temporary WAV of what is there (and says what it found)."""
    path = Path(path)
    if path.suffix.lower() not in RHUBARB_EXTENSIONS:
        return False
    if path.suffix.lower() == ".ogg":
        return ogg_is_vorbis(path) is not False and ogg_stream_ended(path) is not False
    if path.suffix.lower() == ".wav":
        if unsized_wav_data(path) is not None or not rhubarb_reads_wav(path):
            return False
        promised = wav_header_frames(path)
        if promised is not None:
            try:
                import soundfile

                return soundfile.info(str(path)).frames >= promised
            except (RuntimeError, OSError):  # unreadable: Rhubarb says why, in its words
                return True
    return True


def convert_to_wav(source, target):
    """A recording libsndfile reads (FLAC, ...) as a 16-bit WAV for Rhubarb, block by block so a
    long one is never all in memory; its header checked as the built-in analyser checks it.
    Returns (the WAV's path, notes): as the analyser, a recording cut short or damaged part way is
    converted up to there, and the notes say so (analyser.reading_notes)."""
    import soundfile

    from .analyser import (
        MAX_SECONDS, BlockDecoder, check_audio_header, decoder_reason, header_frames, open_sound, playable,
        reading_notes,
    )

    opening = f"Could not open sound file {source}."
    written = 0
    try:
        with open_sound(source) as sound:  # (its header)
            rate, channels, frames = sound.samplerate, sound.channels, sound.frames
        check_audio_header(rate, channels, frames, opening)
        promised = header_frames(source, frames)
        decoder = BlockDecoder(source, frames)
        with soundfile.SoundFile(str(target), "w", rate, channels, "PCM_16", format="WAV") as wav:
            for block in decoder.blocks(CONVERT_BLOCK_FRAMES):
                wav.write(playable(block))  # (a NaN sample a click at full scale otherwise)
                written += len(block)
                if written > MAX_SECONDS * rate:
                    raise RhubarbError(f"{opening} It is longer than {MAX_SECONDS / 3600:g} hours; at most "
                                       f"{MAX_SECONDS / 3600:g} hours are supported.")
    except RhubarbError:
        raise
    except (RuntimeError, OSError) as error:  # libsndfile's errors are RuntimeErrors
        raise RhubarbError(f"{opening} It is not readable audio ({decoder_reason(error, source)}).") from None
    if written == 0:
        reason = f"It is not readable audio ({decoder.failure})" if decoder.failure else "It holds no audio frames"
        raise RhubarbError(f"{opening} {reason}.")
    return Path(target), reading_notes(source, written, rate, promised, decoder.damage)


def rhubarb_arguments(executable, audio, output, recognizer="words", dialog_file=None, extended_shapes="GHX", threads=None):
    """The command line for one run (JSON out, machine-readable progress)."""
    parse_shape_set(extended_shapes)  # refuse what Rhubarb would refuse, before starting it
    if recognizer not in RECOGNIZER_NAMES:
        raise ValueError(f"unknown recognizer {recognizer!r}; recognizers are {', '.join(RECOGNIZER_NAMES)}")
    arguments = [
        str(executable), "--machineReadable", "-f", "json", "-o", str(output),
        "-r", RECOGNIZER_NAMES[recognizer], "--extendedShapes", extended_shapes,
    ]
    if dialog_file:
        arguments += ["-d", str(dialog_file)]
    if threads:
        arguments += ["--threads", str(int(threads))]
    return arguments + [str(audio)]


class RhubarbJob(Job):
    """One Rhubarb run: `start()` starts the process, each `step()` reads what it said (waiting
    at most STEP_WAIT seconds for it); `result` is the cue track, or a step raises RhubarbError."""

    STEP_WAIT = 0.05  # long enough that a blocking `run()` does not spin, short enough for a UI timer

    def __init__(self, audio, executable=None, recognizer="words", dialog=None, extended_shapes="GHX", threads=None):
        super().__init__()
        self.audio = Path(audio)
        self.title = f"Rhubarb Lip Sync on {self.audio.name}"
        self.executable = Path(executable).absolute() if executable else find_rhubarb()
        if self.executable is None:
            raise RhubarbError("Rhubarb Lip Sync is not installed (no 'rhubarb' on PATH); give its path")
        self.recognizer = recognizer
        self.dialog = dialog
        self.extended_shapes = extended_shapes
        self.threads = threads
        self.log = []
        self.notes = []  # what to tell the user of the recording (convert_to_wav's notes)
        self._fraction = 0.0
        self._failure = None
        self.process = None  # the running Rhubarb, once started
        self._lines = queue.Queue()
        self._stderr_closed = False
        self._folder = None

    def _start(self):
        self._folder = tempfile.TemporaryDirectory(prefix="tha_studio_rhubarb_")
        folder = Path(self._folder.name)
        dialog_file = None
        if self.dialog:
            dialog_file = folder / "dialog.txt"
            dialog_file.write_text(self.dialog, encoding="utf-8")
        self._output = folder / "cues.json"
        try:
            audio = self.audio
            if not can_read(audio):
                audio, self.notes = convert_to_wav(audio, folder / (audio.stem + ".wav"))
            arguments = rhubarb_arguments(
                self.executable, audio, self._output, self.recognizer, dialog_file, self.extended_shapes,
                self.threads,
            )
            self.process = subprocess.Popen(
                arguments, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True, encoding="utf-8", errors="replace",
            )
        except OSError as error:
            self._cleanup()
            raise RhubarbError(f"could not start Rhubarb Lip Sync ({self.executable}): {error.strerror or error}") from None
        except BaseException:
            self._cleanup()
            raise
        # A thread reads stderr so that a step never blocks on a pipe.
        threading.Thread(target=self._read_stderr, args=(self.process.stderr,), daemon=True).start()

    def _read_stderr(self, stream):
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def _take_lines(self, wait=0.0):
        """Read what Rhubarb has said, waiting up to `wait` seconds for its first line."""
        while True:
            try:
                line = self._lines.get(timeout=wait) if wait > 0 else self._lines.get_nowait()
            except queue.Empty:
                return
            wait = 0.0
            if line is None:
                self._stderr_closed = True
                continue
            self._read_event(line.strip())

    def _read_event(self, line):
        if not line:
            return
        try:
            event = json_text.loads(line)
        except json.JSONDecodeError:
            self.log.append(line[:500])  # not machine-readable output: keep it for the error message
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        # Another Rhubarb build may shape its events otherwise: read what fits, ignore the rest.
        log = event.get("log")
        message = log.get("message") if isinstance(log, dict) else None
        if isinstance(message, str) and message:
            self.log.append(message[:500])
        if kind == "progress" and isinstance(event.get("value"), (int, float)):
            self._fraction = max(self._fraction, min(float(event["value"]), 1.0))
        elif kind == "failure":
            self._failure = str(event.get("reason", "")).strip()

    def _step(self):
        """Read what Rhubarb said; finish once it has exited (RhubarbError if it failed)."""
        self._take_lines(wait=0 if self._stderr_closed else self.STEP_WAIT)
        if self.process.poll() is None:
            return Progress(self._fraction, "analysing")
        # Exited: wait for the rest of stderr, then judge.
        self._drain(timeout=5.0)
        try:
            return self.finish(self._read_result(self.process.returncode))
        finally:
            self._cleanup()

    def _drain(self, timeout):
        deadline = time.monotonic() + timeout
        while not self._stderr_closed and time.monotonic() < deadline:
            self._take_lines(wait=0.05)

    def _read_result(self, code):
        if code != 0 or self._failure is not None:
            reason = self._failure or "\n".join(self.log[-5:]) or f"exit code {code}"
            raise RhubarbError(f"Rhubarb Lip Sync failed on {self.audio}: {reason.replace(chr(10), ' ').strip()}")
        if not self._output.exists():
            raise RhubarbError(f"Rhubarb Lip Sync finished but wrote no cues for {self.audio}")
        try:
            track = read_cues(self._output, "json")
        except CueFileError as error:  # named after our temporary file: say whose output it was
            raise RhubarbError(f"Rhubarb Lip Sync ({self.executable}) wrote cues for {self.audio} that cannot be "
                               f"read: {f'line {error.line}: ' if error.line else ''}{error.problem}") from None
        # Rhubarb names the file it read: the user's, not a temporary WAV made from it.
        return dataclasses.replace(track, sound_file=str(self.audio)) if not can_read(self.audio) else track

    def _stop(self):
        """Stop Rhubarb (the next step raises JobCancelled)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._cleanup()

    def _cleanup(self):
        if self._folder is not None:
            try:
                self._folder.cleanup()
            except OSError:
                pass
            self._folder = None
