"""Reading a user's files (pure: no bpy): names that are no regular file, and what zipfile
raises for an archive it cannot read.

A named pipe blocks its reader until something writes into it, and a device such as /dev/zero
never ends: a reader handed either waits, or fills memory, for ever. The readers of a user's
files (pictures, recordings, cue and dialog files, keyframes, captures, models and motions) ask
`not_a_file` before they open one.
"""

import os
import stat
import zipfile
import zlib

# What zipfile raises for an archive or a member it cannot read: damaged (BadZipFile, zlib.error,
# EOFError; ValueError: a name not UTF-8 though flagged so), or made with what it lacks
# (NotImplementedError: a zip version or compression method; RuntimeError: encryption).
ZIP_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError)

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))


def kind_of(mode):
    """What a file of this st_mode is, in words, where it is no regular file; else None."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "not a regular file")


def file_problem(path, what):
    """Words for a `what` ("weights file", say) at `path` that is no regular file: "no such
    weights file", or "is a named pipe, not a weights file"; None for a regular file."""
    if kind := not_a_file(path):
        return f"is {kind}, not a {what}"
    return None if os.path.isfile(path) else f"no such {what}"


def not_a_file(path):
    """What `path` is ("a folder", "a named pipe", "a device", ...) where it exists and is no
    regular file; None for a regular file, or where nothing is there (its reader names that)."""
    try:
        return kind_of(os.stat(path).st_mode)
    except (OSError, ValueError):  # (ValueError: a NUL in the name)
        return None
