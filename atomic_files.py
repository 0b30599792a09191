"""Files that are either whole or absent: write to a temporary name in the same folder, then rename.

A killed process leaves at worst a temporary file (named `.<name>.<tag>.tmp`), never a
half-written file under the real name. `os.replace` is atomic on one file system, which is
why the temporary file lives beside the target.
"""

import hashlib
import os
import re
from pathlib import Path

TEMP_SUFFIX = ".tmp"
MAX_NAME_BYTES = 255  # a file name's limit on ext4, XFS, Btrfs, APFS and NTFS (in UTF-16 units there)
TAG_ROOM = 48  # bytes kept for ".<tag>" in a temporary name (tags are a shard and a process id)


# The names Windows keeps for its devices: a file or folder so named, with any extension ("con.wav"),
# cannot be made there. (COM and LPT with superscript digits are among them.)
WINDOWS_DEVICE_NAMES = frozenset({"CON", "PRN", "AUX", "NUL", *(f"{port}{digit}" for port in ("COM", "LPT")
                                                                  for digit in "123456789\u00b9\u00b2\u00b3")})
WINDOWS_REFUSED = re.compile(r'[<>:"/\\|?*\x00-\x1f]')  # characters no Windows file name holds


def portable_name(name):
    """A file or folder name made from a user's (a sprite's, a sound's) as every system can make
    it: a .blend moves between systems, and its bake goes wherever it is opened. Windows refuses
    some characters (each becomes an underscore), its device names whatever their case and
    extension, and a name that ends in a dot or a space (those get an underscore)."""
    name = WINDOWS_REFUSED.sub("_", name)
    stem, dot, rest = name.partition(".")
    if stem.rstrip(" ").upper() in WINDOWS_DEVICE_NAMES:
        name = f"{stem}_{dot}{rest}"
    return name if not name.endswith((".", " ")) else name + "_"


def temp_stem(path):
    """The part of a temporary name before its tag: `.<name>`, or `.<hash of the name>` for a name
    so long that the tag would take it past MAX_NAME_BYTES (a legal 244-byte model file name gave
    its sidecar's temporary file a name the file system refused). It depends on the name only, so
    a cleanup can find the temporary files of one target."""
    name = Path(path).name
    if len(os.fsencode(name)) + 1 + TAG_ROOM + len(TEMP_SUFFIX) < MAX_NAME_BYTES:
        return f".{name}"
    return "." + hashlib.sha256(os.fsencode(name)).hexdigest()[:24]


def temp_path_for(path, tag=None):
    """The temporary name for `path`: hidden, in the same folder, tagged (default: this process)."""
    path = Path(path)
    tag = tag if tag is not None else str(os.getpid())
    return path.with_name(f"{temp_stem(path)}.{tag}{TEMP_SUFFIX}")


class TargetIsFolder(IsADirectoryError):
    """The path to write names a folder (`--out renders/` where a file was meant). An OSError,
    which the command line and the operators report as the user's to act on; no UserError base,
    as this module is stdlib only (scripts/fetch_wheels.py runs it before the package exists)."""


def _check_target(path):
    # Otherwise the rename fails with the temporary file's name in its message, not the user's.
    if path.is_dir():
        raise TargetIsFolder(f"{path}: is a folder; give the name of a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)


def _naming(error, path):
    """A write's OSError that names no file (a full disk's "[Errno 28] No space left on device")
    as the same error naming `path`, the file the user asked for; any other error as it is."""
    if isinstance(error, OSError) and error.filename is None and error.errno is not None:
        return OSError(error.errno, error.strerror, str(path))  # (the same subclass: errno picks it)
    return error


def write_chunks_atomic(path, chunks, tag=None):
    """Write an iterable of bytes as one file, a chunk at a time (a file larger than memory, such
    as a million-line manifest, never needs to be held whole)."""
    path = Path(path)
    _check_target(path)
    temp = temp_path_for(path, tag)
    try:
        with open(temp, "wb", buffering=1 << 20) as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException as error:
        temp.unlink(missing_ok=True)
        named = _naming(error, path)
        if named is error:
            raise
        raise named from None
    return path


def write_bytes_atomic(path, data, tag=None):
    return write_chunks_atomic(path, (data,), tag)


def write_text_atomic(path, text, tag=None):
    """Write UTF-8 text exactly as given (no newline translation)."""
    return write_bytes_atomic(path, text.encode("utf-8"), tag)


def write_atomically(path, write, tag=None):
    """Have `write(temporary_path)` make the file (a library's own saver), then move it to `path`.

    For writers that want a file name rather than bytes: PIL, safetensors, Blender's image and
    .blend savers. A writer that leaves no file or an empty one is an error, not a success.
    """
    path = Path(path)
    _check_target(path)
    temp = temp_path_for(path, tag)
    try:
        write(str(temp))
        if not temp.is_file() or temp.stat().st_size == 0:
            raise OSError(f"nothing was written for {path}")
        os.replace(temp, path)
    except OSError as error:
        named = _naming(error, path)
        if named is error:
            raise
        raise named from None
    finally:
        temp.unlink(missing_ok=True)
    return path


def sha256_file(path):
    """Hex SHA-256 of a file's bytes (read in blocks: images and weights can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remove_stale_temps(folder, tag_prefix=""):
    """Delete temporary files under `folder` whose tag starts with `tag_prefix`; return how many.

    A resumed run calls this for its own tag prefix only, so another shard writing into the
    same folder at the same time keeps its files.
    """
    removed = 0
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    for temp in folder.rglob(f".*{TEMP_SUFFIX}"):
        tag = temp.name[: -len(TEMP_SUFFIX)].rsplit(".", 1)[-1]
        if tag.startswith(tag_prefix):
            temp.unlink(missing_ok=True)
            removed += 1
    return removed
