"""Analyses of recordings kept, so that a recording is analysed once (pure: no bpy).

An animator often records a scene's dialogue in one take, lays it in the Sequencer and cuts it
into lines (its sound strip split, each part made a line, for one sprite or several). Each line
is the take's analysis as that part hears it, so the take is analysed once, not once a line: a
line lip-synced from the same recording, by the same analyser with the same settings, reuses
the analysis. Kept in memory for the session and, given a folder (beside a saved .blend), on
disk as well, so the next session or `sprite-lipsync` run reuses it too: a ten-minute take is
20-40 s of the built-in analyser's work (bench/bench_lipsync.py).

A file kept on disk is a cache: one that cannot be read (damaged, from another version, another
key) is analysed anew and written over; one that cannot be written leaves the analysis in memory.
Each file is named by the analyser's version and its key's digest. Writing one removes what no
lookup can reach any more and what has lain unused for months: the files of another version of
the analyser (every update of it, or of pocketsphinx, would leave the project's analyses behind),
and those not read for `UNUSED_DAYS` (a dialog text edited since, a recording replaced); a file
read is marked used (its modification time).
"""

import hashlib
import json
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..atomic_files import sha256_file, write_text_atomic
from ..json_text import is_number, loads
from .analyser import analyser_version
from .cues import CueError, CueTrack, cue_rows, cues_from_rows

RECORD_FORMAT = "tha_studio lip-sync analysis 1"
RECORD_SUFFIX = ".json"
UNUSED_DAYS = 90
# A kept file's name: its analyser's version, then its key's digest (a name before versions led
# it: the digest alone). Nothing else in the folder is touched (a temporary file being written).
KEPT_NAME = re.compile(r"(?:(?P<version>[0-9A-Za-z_.]{1,64})-)?[0-9a-f]{64}" + re.escape(RECORD_SUFFIX))


@dataclass(frozen=True)
class KeptAnalysis:
    """What an analysis of a recording found: its cues, the dialog's words the dictionary did not
    know, and the notes for the user (a recording cut short, damaged)."""

    track: CueTrack
    unknown_words: tuple = ()
    notes: tuple = ()


class AnalysisMemo:
    """The last `size` analyses in memory, and those of a `folder` on disk, each by what decides
    it: the recording's bytes (a file changed since is analysed anew; a packed sound written out
    again is the same), the analyser and its settings (the analyser's version, the recognizer,
    the dialog text)."""

    def __init__(self, size=16):
        self.size = size
        self._kept = OrderedDict()

    @staticmethod
    def key(recording, *settings):
        """The key of an analysis of `recording` (a path) with `settings` (strings or None)."""
        return (sha256_file(recording), *settings)

    def get(self, key, folder=None):
        """What was kept under `key` (in memory, else in `folder`), or None."""
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        if folder is None:
            return None
        analysis = read_kept(folder, key)
        if analysis is not None:
            self._remember(key, analysis)
        return analysis

    def put(self, key, analysis, folder=None):
        """Keep `analysis` under `key`: in memory, and in `folder` where it is given (a
        KeptAnalysis there); a folder that cannot be written to is passed over."""
        self._remember(key, analysis)
        if folder is not None:
            try:
                write_kept(folder, key, analysis)
            except OSError:
                return  # (a read-only project or a full disk: the analysis is kept for the session)
            prune_kept(folder, key)

    def _remember(self, key, analysis):
        self._kept[key] = analysis
        self._kept.move_to_end(key)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)

    def clear(self):
        """Forget the analyses in memory (the files on disk stay)."""
        self._kept.clear()


def analyser_identity(rhubarb=None):
    """What decides an analysis besides the recording and the settings: the built-in analyser's
    version and, where Rhubarb analyses, its executable's digest (its path where the file cannot
    be read, only run)."""
    if rhubarb is None:
        return analyser_version()
    try:
        return f"{analyser_version()} Rhubarb {sha256_file(rhubarb)}"
    except OSError:
        return f"{analyser_version()} Rhubarb {rhubarb}"


def analyser_version_of(key):
    """The version of the analyser that `key` names, as a file name carries it: the first word of
    its analyser's identity (`analyser_identity`), characters no file name takes as underscores."""
    words = str(key[1]).split() if len(key) > 1 else []
    return re.sub(r"[^0-9A-Za-z_.]", "_", words[0])[:64] if words else "_"


def kept_path(folder, key):
    """The file of `key`'s analysis in `folder`: named by the analyser's version and the key's digest."""
    digest = hashlib.sha256(json.dumps(list(key), ensure_ascii=True).encode("ascii")).hexdigest()
    return Path(folder) / f"{analyser_version_of(key)}-{digest}{RECORD_SUFFIX}"


def prune_kept(folder, key):
    """Remove from `folder` the kept analyses that `key`'s analyser cannot use (another version's,
    or named before versions led the name) and those unused for `UNUSED_DAYS`; other files stay.
    A file that cannot be removed (another process's, a read-only share) stays too."""
    version, oldest = analyser_version_of(key), time.time() - UNUSED_DAYS * 86400
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = KEPT_NAME.fullmatch(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            if match["version"] != version or entry.stat(follow_symlinks=False).st_mtime < oldest:
                os.unlink(entry.path)
        except OSError:
            pass


def write_kept(folder, key, analysis):
    track = analysis.track
    record = {
        "format": RECORD_FORMAT,
        "key": list(key),
        "cues": cue_rows(track.cues),
        "duration": track.duration,
        "sound_file": track.sound_file,
        "closed_shape": track.closed_shape,
        "source": track.source,
        "unknown_words": list(analysis.unknown_words),
        "notes": list(analysis.notes),
    }
    write_text_atomic(kept_path(folder, key), json.dumps(record, ensure_ascii=False))


def read_kept(folder, key):
    """The analysis kept for `key` in `folder`, or None where there is none that can be read."""
    path = kept_path(folder, key)
    try:
        record = loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):  # (json's errors are ValueErrors)
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or record.get("key") != list(key):
        return None
    strings = [record.get(name) for name in ("sound_file", "source")]
    texts = [record.get(name) for name in ("unknown_words", "notes")]
    if not all(isinstance(value, str) for value in strings) or not all(isinstance(value, list) for value in texts):
        return None
    unknown_words, notes = texts
    if not all(isinstance(text, str) for text in unknown_words + notes):
        return None
    duration, closed_shape = record.get("duration"), record.get("closed_shape")
    if not is_number(duration) or not (closed_shape is None or isinstance(closed_shape, str)):
        return None
    try:
        track = CueTrack(cues_from_rows(record.get("cues")), duration, strings[0], closed_shape, strings[1])
    except CueError:
        return None
    try:
        os.utime(path)  # (used: kept by `prune_kept` for another UNUSED_DAYS)
    except OSError:
        pass
    return KeptAnalysis(track, tuple(unknown_words), tuple(notes))
