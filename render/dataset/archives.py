"""Models inside the zip archives they were downloaded as (pure: the standard library).

MMD models, and many avatars, come as zip archives, most made on a Japanese Windows, whose
member names are cp932 bytes without the zip's UTF-8 flag (Python reads them as cp437). A
dataset's models folder may hold the archives as downloaded: each model file in an archive is a
model of its own, with the id `<archive's path>/<member's path>`, and is rendered from a copy of
its whole archive (a model's textures may sit in a sibling folder) extracted for its render
into the dataset's folder and removed after.

Extraction refuses what an archive must not do to the disk: members outside the folder (`..`,
absolute paths), and sizes past MAX_ARCHIVE_BYTES in all or MAX_RATIO times a member's stored
size (a zip bomb). zipfile itself stops a member at its stated size and checks its CRC.
"""

from __future__ import annotations

import hashlib
import shutil
import zipfile
from pathlib import Path, PurePosixPath

from ...errors import UserError
from ...input_files import ZIP_DAMAGE

ARCHIVE_SUFFIXES = (".zip",)
# Archives models also come in, which the standard library cannot open: named, left out.
OTHER_ARCHIVE_SUFFIXES = (".rar", ".7z", ".lzh", ".lha")
MAX_ARCHIVE_BYTES = 8 << 30  # uncompressed, in all: no model with its textures comes near
MAX_RATIO = 1000  # textures and models compress 1-10 times; a bomb's zeros, a thousand and more
MAX_MEMBERS = 100_000
UTF8_FLAG = 0x800


class ArchiveError(UserError):
    """An archive that cannot be read or extracted; the message names it and the problem."""


def member_name(info):
    """A member's name as its archive's maker meant it: UTF-8 where the zip says so or where its
    bytes are UTF-8 (writers that leave the flag unset), else cp932 (a Japanese Windows' zip),
    else as zipfile read it (cp437). Separators are '/' (some writers store '\\')."""
    name = info.filename
    if not info.flag_bits & UTF8_FLAG:
        raw = name.encode("cp437")
        for encoding in ("utf-8", "cp932"):
            try:
                name = raw.decode(encoding)
                break
            except UnicodeDecodeError:
                continue
    return name.replace("\\", "/")


def _safe_parts(name, archive):
    """The path parts of a member, refusing one that would land outside the extraction folder."""
    path = PurePosixPath(name)
    parts = [part for part in path.parts if part not in ("", ".")]
    if path.is_absolute() or ".." in parts or (parts and ":" in parts[0]):
        raise ArchiveError(f"{archive}: member {name!r} would be written outside the folder it is extracted to")
    return parts


def _open(archive):
    try:
        return zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise ArchiveError(f"{archive}: no such archive") from None
    except (*ZIP_DAMAGE, zipfile.LargeZipFile, OSError) as error:
        raise ArchiveError(f"{archive}: not a readable zip archive ({error})") from None


def _members(bundle, archive):
    members = bundle.infolist()
    if len(members) > MAX_MEMBERS:
        raise ArchiveError(f"{archive}: holds {len(members):,} members, more than the {MAX_MEMBERS:,} a model's "
                           "archive could")
    total = sum(info.file_size for info in members)
    if total > MAX_ARCHIVE_BYTES:
        raise ArchiveError(f"{archive}: its members add up to {total / 2**30:.1f} GiB extracted, more than the "
                           f"{MAX_ARCHIVE_BYTES / 2**30:.0f} GiB a model's archive could (a zip bomb?)")
    for info in members:
        if not info.filename:  # (zipfile's is_dir fails on it)
            raise ArchiveError(f"{archive}: a member has no name (a damaged archive)")
        if info.file_size > MAX_RATIO * max(info.compress_size, 1) + (1 << 20):
            raise ArchiveError(f"{archive}: member {member_name(info)!r} expands {info.compress_size:,} bytes to "
                               f"{info.file_size:,} (a zip bomb?)")
    return members


def model_member_sizes(archive, suffixes):
    """{name (member_name): size extracted} of the model files in `archive` whose suffix is one
    of `suffixes`, by name. ArchiveError names an archive that cannot be read or is no model's."""
    with _open(archive) as bundle:
        sizes = {member_name(info): info.file_size for info in _members(bundle, archive) if not info.is_dir()}
    return {name: sizes[name] for name in sorted(sizes) if PurePosixPath(name).suffix.lower() in suffixes}


def model_members(archive, suffixes):
    """The names of model_member_sizes, sorted."""
    return list(model_member_sizes(archive, suffixes))


def _member_info(bundle, archive, name):
    for info in _members(bundle, archive):
        if member_name(info) == name and not info.is_dir():
            return info
    raise ArchiveError(f"{archive}: no member {name!r}")


def member_sha256(archive, name):
    """The SHA-256 of member `name`'s bytes (as atomic_files.sha256_file gives a file's)."""
    digest = hashlib.sha256()
    with _open(archive) as bundle:
        info = _member_info(bundle, archive, name)
        try:
            with bundle.open(info) as source:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
        except (*ZIP_DAMAGE, OSError) as error:  # (only the archive is read here)
            raise _unreadable(archive, info, "read", error) from None
    return digest.hexdigest()


def extracted_size(archive):
    """The bytes the archive's members take extracted (ArchiveError where it cannot be read)."""
    with _open(archive) as bundle:
        return sum(info.file_size for info in _members(bundle, archive))


def extract(archive, target):
    """Extract every member of `archive` into the folder `target` (made), under member_name;
    returns `target`. A member that cannot be read (damaged, cut off, a wrong CRC) raises
    ArchiveError naming it; so does one that would leave `target`."""
    target = Path(target)
    with _open(archive) as bundle:
        for info in _members(bundle, archive):
            name = member_name(info)
            parts = _safe_parts(name, archive)
            if not parts:
                continue
            destination = target.joinpath(*parts)
            if info.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            try:
                source = bundle.open(info)
            except (*ZIP_DAMAGE, OSError) as error:  # (OSError: a damaged offset, before any write)
                raise _unreadable(archive, info, "extracted", error) from None
            try:
                with source, open(destination, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            except ZIP_DAMAGE as error:
                raise _unreadable(archive, info, "extracted", error) from None
    return target


def _unreadable(archive, info, verb, error):
    """The ArchiveError of a member zipfile could not read; zipfile's words name it as it decoded
    the name (cp437: mojibake for a Japanese one), so that name is given as its maker wrote it."""
    name = member_name(info)
    reason = str(error).replace(repr(info.filename), repr(name)).replace(info.filename, name)
    return ArchiveError(f"{archive}: member {name!r} cannot be {verb} ({reason})")
