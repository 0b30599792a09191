"""The dataset manifest: JSON Lines written by appending whole lines, merged into one sorted file.

While a run renders, each shard appends to its own journal (`parts/<shard>.jsonl`) one line
per finished unit of work, after that unit's images are in place:

    {"type": "model",   "model": ID, "split": S, "rest": PATH, "sha256": {"rest": HEX}, ...}
    {"type": "example", "model": ID, "split": S, "index": I, "pose": [...],
                        "expression": PATH, "posed": PATH, "sha256": {"expression": HEX, "posed": HEX}}
    {"type": "failure", "model": ID, "split": S, "reason": TEXT}

A line is written with one `write` on a file opened for appending and synced, so a killed run
leaves at most a torn last line, which readers drop and the next append cuts off. A journal
is therefore exactly the list of finished work: resuming means skipping what it lists.

`merge` reads every journal, checks that work listed twice agrees, and writes the final
`manifest.jsonl` and `failures.jsonl` sorted by (split, model, index), so the same work gives
the same bytes whatever the order, sharding or number of workers that produced it.
Paths in records are relative to the dataset folder, with forward slashes.
"""

import errno
import json
import os
from pathlib import Path

from ... import json_text
from ...atomic_files import write_chunks_atomic
from ...errors import UserError

MANIFEST_NAME = "manifest.jsonl"
FAILURES_NAME = "failures.jsonl"
PARTS_FOLDER = "parts"
RECORD_TYPES = ("model", "example", "failure")
SPLIT_ORDER = ("train", "validation", "test")


class ManifestError(UserError, ValueError):
    """A journal or manifest that contradicts itself: names the file and the record."""


class OutputError(UserError):
    """The dataset folder cannot take more (no space, no permission, a read-only disk).

    The machine's fault, not a model's: a run stops with this and records nothing against the
    model it was rendering, so a plain rerun after the cause is fixed finishes the job.
    """


# errno values that mean "the output folder cannot be written", whatever file was being written
OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS}


def output_problem(error):
    """The OSError's words if it says the output cannot be written (see OUTPUT_ERRNOS), else None."""
    if isinstance(error, OSError) and error.errno in OUTPUT_ERRNOS:
        return error.strerror or os.strerror(error.errno)
    return None


def output_error(path, error, what):
    """An OutputError naming the file and the machine's words, with what to do about it."""
    return OutputError(f"{path}: cannot write {what} ({output_problem(error) or error}); nothing was recorded "
                       f"against any model: free space or fix the folder's permissions, then rerun the same command")


def dumps(record):
    """One record as one canonical JSON line (sorted keys, no spaces, UTF-8 kept readable).

    A file name that is not valid UTF-8 (cp932 from a Japanese zip) reaches us with its bytes
    surrogate-escaped (PEP 383); those lone surrogates cannot be written as UTF-8, so they are
    written as JSON escapes ("\\udc82"), which read back as the same string, and so as the
    same bytes through os.fsencode.
    """
    text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _cut_torn_tail(handle):
    """Truncate a journal after its last newline (a line torn by a killed write).

    Looks at the last byte only, so an append costs the same at a million lines as at one; a
    torn line is short, so the search back for its start reads a block or two.
    """
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return
    handle.seek(end - 1)
    if handle.read(1) == b"\n":
        return
    position = end
    while position > 0:
        start = max(0, position - _TAIL_BLOCK)
        handle.seek(start)
        newline = handle.read(position - start).rfind(b"\n")
        if newline >= 0:
            handle.truncate(start + newline + 1)
            return
        position = start
    handle.truncate(0)


_TAIL_BLOCK = 1 << 16


def append_record(path, record):
    """Append one record as a whole line, synced to disk before returning."""
    if record.get("type") not in RECORD_TYPES:
        raise ValueError(f"record type must be one of {RECORD_TYPES}: {record!r}")
    path = Path(path)
    line = (dumps(record) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            with open(path, "rb+") as handle:
                _cut_torn_tail(handle)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):  # a full disk can take part of a line: the next append cuts it off
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(line)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as error:
        if output_problem(error):
            raise output_error(path, error, "the dataset journal") from None
        raise


def iter_records(path):
    """(line number, record) for each line of a journal or manifest, read as a stream; a torn
    last line (no newline) is dropped.

    A line in the middle that is not JSON is an error naming the file and line number.
    """
    for number, _, record in _iter_lines(path):
        yield number, record


def _iter_lines(path):
    """(line number, line as read, record): see iter_records."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.endswith(b"\n"):
                return  # torn by a killed write; the next append cuts it off
            if not line.strip():
                continue
            try:
                # Decoded here, not by json.loads: given bytes it guesses the encoding, and a line of
                # NULs (a crash on some file systems) read as UTF-32 escaped as a traceback.
                record = json_text.loads(line.decode("utf-8"))
            except UnicodeDecodeError as error:
                raise ManifestError(f"{path}: line {number} is not UTF-8 text (byte {error.start + 1}); "
                                    f"the journal is damaged") from None
            except json.JSONDecodeError as error:
                raise ManifestError(f"{path}: line {number} is not JSON ({error.msg})") from None
            if not isinstance(record, dict) or record.get("type") not in RECORD_TYPES:
                raise ManifestError(f"{path}: line {number} is not a manifest record")
            problem = record_problem(record)
            if problem:
                raise ManifestError(f"{path}: line {number}: {problem}")
            yield number, line, record


def record_problem(record):
    """What is wrong with the fields every reader relies on (model, split, an example's index),
    or None: a hand-edited or damaged line, named instead of a KeyError from deep in a merge."""
    if not isinstance(record.get("model"), str) or not record["model"]:
        return f"a record of type {record['type']!r} without a model name"
    if not isinstance(record.get("split", ""), str):
        return f"split {record['split']!r} is not a name"
    if record["type"] == "example":
        index = record.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            return f"example index {index!r} is not a pose number"
    return None


def read_records(path):
    """The records of a journal or manifest, as a list (see iter_records)."""
    return [record for _, record in iter_records(path)]


def record_key(record):
    """What a record is about: ("model", id), ("example", id, index) or ("failure", id)."""
    if record["type"] == "example":
        return ("example", record["model"], int(record["index"]))
    return (record["type"], record["model"])


def _split_rank(split):
    return (SPLIT_ORDER.index(split), "") if split in SPLIT_ORDER else (len(SPLIT_ORDER), split)


def sort_key(record):
    kind_rank = {"model": 0, "example": 1, "failure": 2}[record["type"]]
    return (_split_rank(record.get("split", "")), record["model"], kind_rank, int(record.get("index", -1)))


class Progress:
    """What one or more journals say is finished: done examples, rendered models, failed models.

    Each record is held as its canonical line with its split, not as a dict: a million dicts
    took gigabytes to start a run or merge one (issue 14). Model ids are shared between their
    records. With lines=False (the start of a run, which only asks what is done) a model's or
    example's line is held as a hash of the line as read, which is cheaper still; an apparent
    disagreement is then checked against the earlier record read again from `sources`.
    """

    def __init__(self, records=(), lines=True):
        self._lines = {}  # record_key -> (split, canonical JSON line, or hash of the line read)
        self._models = {}  # model id -> the one string object its keys share
        self._keep_lines = lines
        self.sources = []  # the journals read, in order (to find an earlier record again)
        for record in records:
            self.add(record)

    def add(self, record, source="journal", raw=None):
        """Add the next record read; a model's newest failure (or a render after it) wins.

        A model retried with --retry-failed can fail again with other wording, or render: the
        newer record replaces its failure, so the journal never needs editing by hand. Renders
        are deterministic, so two different renders of one image are still an error.
        """
        model = self._models.setdefault(record["model"], record["model"])
        kind = record["type"]
        key = ("example", model, int(record["index"])) if kind == "example" else (kind, model)
        split = record.get("split", "")
        if kind == "failure":
            self._lines[key] = (split, dumps(record))  # few; failure() reads the reason back
            return
        self._lines.pop(("failure", model), None)
        if self._keep_lines or raw is None:
            value = (split, dumps(record))
        else:
            value = (split, hash(raw.strip()))
        previous = self._lines.get(key)
        if previous is not None and previous != value:
            earlier = previous[1] if isinstance(previous[1], str) else self._find(key)
            if earlier is None or json.loads(earlier) != record:
                raise ManifestError(f"{source}: two different records for {key}:\n  {earlier}\n  {dumps(record)}")
            return  # the same record written another way (a hand-edited line)
        self._lines[key] = value

    def _find(self, key):
        """The first record for `key` in the journals read so far, as a canonical line."""
        for path in self.sources:
            for _, record in iter_records(path):
                if record_key(record) == key:
                    return dumps(record)
        return None

    def has_model(self, model_id):
        return ("model", model_id) in self._lines

    def has_example(self, model_id, index):
        return ("example", model_id, int(index)) in self._lines

    def failure(self, model_id):
        value = self._lines.get(("failure", model_id))
        return json.loads(value[1])["reason"] if value else None

    def count(self, kind):
        return sum(1 for key in self._lines if key[0] == kind)

    def _sorted(self, kinds):
        """(key, canonical line) of these kinds of record, in sort_key order."""
        if not self._keep_lines:
            raise ValueError("this Progress was read with lines=False: it holds no records to list")
        rank = {"model": 0, "example": 1, "failure": 2}
        splits = {}
        order = []
        for key, (split, _) in self._lines.items():
            if key[0] in kinds:
                split_rank = splits.get(split) or splits.setdefault(split, _split_rank(split))
                order.append((split_rank, key[1], rank[key[0]], key[2] if key[0] == "example" else -1, key))
        order.sort()
        return ((item[-1], self._lines[item[-1]][1]) for item in order)

    def of_type(self, kind):
        """The records of one kind as dicts, sorted (every one parsed: prefer count for a number)."""
        return [json.loads(line) for _, line in self._sorted((kind,))]


def journal_paths(dataset_dir):
    return sorted((Path(dataset_dir) / PARTS_FOLDER).glob("*.jsonl"))


def read_progress(paths, lines=False):
    """What the journals at `paths` list as finished: has_model, has_example, failure and count,
    as a run's start asks; lines=True also keeps the records to list (merge, of_type)."""
    progress = Progress(lines=lines)
    for path in paths:
        progress.sources.append(path)
        for _, line, record in _iter_lines(path):
            progress.add(record, source=str(path), raw=line)
    return progress


def _write_lines_atomic(path, lines):
    """Write text lines to `path` whole or not at all, a block at a time."""
    return write_chunks_atomic(path, (f"{line}\n".encode("utf-8") for line in lines))


def merge(dataset_dir, paths=None):
    """Merge journals into `manifest.jsonl` (models, examples) and `failures.jsonl`; return the Progress.

    A model whose newest record is a failure is listed in failures.jsonl even if some of its
    images rendered before it broke (a worker that died half way): the manifest lists those
    images, and the failure says the model is not whole (a plain rerun finishes such a model,
    see plan.plan_work). Of two failures of one model the one read last (journals in name order)
    is kept. The files are written a line at a time from the Progress's canonical lines, not
    built in memory.
    """
    dataset_dir = Path(dataset_dir)
    paths = journal_paths(dataset_dir) if paths is None else [Path(p) for p in paths]
    progress = read_progress(paths, lines=True)
    for name, kinds in ((MANIFEST_NAME, ("model", "example")), (FAILURES_NAME, ("failure",))):
        try:
            _write_lines_atomic(dataset_dir / name, (line for _, line in progress._sorted(kinds)))
        except OSError as error:
            if output_problem(error):
                raise output_error(dataset_dir / name, error, "the merged manifest") from None
            raise
    return progress
