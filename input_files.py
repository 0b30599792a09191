"""Reading a user's files (pure: no bpy): names that are no regular file, their text, and what
zipfile raises for an archive it cannot read.

A named pipe blocks its reader until something writes into it, and a device such as /dev/zero
never ends: a reader handed either waits, or fills memory, for ever. The readers of a user's
files (pictures, recordings, cue and dialog files, keyframes, captures, models and motions) ask
`not_a_file` before they open one.
"""

import errno
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


# Byte-order marks of UTF-16 (little-endian first: Windows writes that).
UTF_16_MARKS = (b"\xff\xfe", b"\xfe\xff")


def decode_text(data):
    """A user's text file's bytes as text: UTF-8, with or without a byte-order mark, or UTF-16
    where its byte-order mark says so. Windows writes UTF-16: Windows PowerShell 5's `>` (a
    Rhubarb run's cue file redirected into a file there), and Notepad's or Excel's "Unicode"
    text. Raises UnicodeDecodeError (`.start`: where in `data`) for anything else."""
    return data.decode("utf-16") if data[:2] in UTF_16_MARKS else data.decode("utf-8-sig")


def read_text(path):
    """`decode_text` of a file, its line ends made "\n" as Python's text files make them. Raises
    OSError, or UnicodeDecodeError (`.object`: the bytes), as Path.read_text does; a name that
    is no regular file (a named pipe, a device) is not opened: OSError says what it is."""
    if kind := not_a_file(path):
        raise OSError(errno.EINVAL, f"is {kind}, not a regular file", str(path))
    with open(path, "rb") as handle:
        data = handle.read()
    return decode_text(data).replace("\r\n", "\n").replace("\r", "\n")
