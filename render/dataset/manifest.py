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

import json
import os
from pathlib import Path

from ...atomic_files import write_text_atomic
from ...errors import UserError

MANIFEST_NAME = "manifest.jsonl"
FAILURES_NAME = "failures.jsonl"
PARTS_FOLDER = "parts"
RECORD_TYPES = ("model", "example", "failure")
SPLIT_ORDER = ("train", "validation", "test")


class ManifestError(UserError, ValueError):
    """A journal or manifest that contradicts itself: names the file and the record."""


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
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with open(path, "rb+") as handle:
            _cut_torn_tail(handle)
    line = (dumps(record) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, line)
        if written != len(line):
            raise OSError(f"{path}: short write ({written} of {len(line)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


def read_records(path):
    """The records of a journal or manifest; a torn last line (no newline) is dropped.

    A line in the middle that is not JSON is an error naming the file and line number.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]  # the part after the last newline is empty or torn
    records = []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ManifestError(f"{path}: line {number} is not JSON ({error.msg})") from None
        if not isinstance(record, dict) or record.get("type") not in RECORD_TYPES:
            raise ManifestError(f"{path}: line {number} is not a manifest record")
        records.append(record)
    return records


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
    """What one or more journals say is finished: done examples, rendered models, failed models."""

    def __init__(self, records=()):
        self.records = {}
        for record in records:
            self.add(record)

    def add(self, record, source="journal"):
        """Add the next record read; a model's newest failure (or a render after it) wins.

        A model retried with --retry-failed can fail again with other wording, or render: the
        newer record replaces its failure, so the journal never needs editing by hand. Renders
        are deterministic, so two different renders of one image are still an error.
        """
        key = record_key(record)
        if record["type"] == "failure":
            self.records[key] = record
            return
        self.records.pop(("failure", record["model"]), None)
        previous = self.records.get(key)
        if previous is not None and previous != record:
            raise ManifestError(f"{source}: two different records for {key}:\n  {dumps(previous)}\n  {dumps(record)}")
        self.records[key] = record

    def has_model(self, model_id):
        return ("model", model_id) in self.records

    def has_example(self, model_id, index):
        return ("example", model_id, int(index)) in self.records

    def failure(self, model_id):
        record = self.records.get(("failure", model_id))
        return record["reason"] if record else None

    def of_type(self, kind):
        return sorted((r for r in self.records.values() if r["type"] == kind), key=sort_key)


def journal_paths(dataset_dir):
    return sorted((Path(dataset_dir) / PARTS_FOLDER).glob("*.jsonl"))


def read_progress(paths):
    progress = Progress()
    for path in paths:
        for record in read_records(path):
            progress.add(record, source=str(path))
    return progress


def merge(dataset_dir, paths=None):
    """Merge journals into `manifest.jsonl` (models, examples) and `failures.jsonl`; return the Progress.

    A model that rendered in one journal and failed in another keeps only its renders; of two
    failures of one model the one read last (journals in name order) is kept.
    """
    dataset_dir = Path(dataset_dir)
    paths = journal_paths(dataset_dir) if paths is None else [Path(p) for p in paths]
    progress = read_progress(paths)
    rendered = {r["model"] for r in progress.of_type("model")}
    done = sorted(progress.of_type("model") + progress.of_type("example"), key=sort_key)
    failures = [r for r in progress.of_type("failure") if r["model"] not in rendered]
    write_text_atomic(dataset_dir / MANIFEST_NAME, "".join(dumps(r) + "\n" for r in done))
    write_text_atomic(dataset_dir / FAILURES_NAME, "".join(dumps(r) + "\n" for r in failures))
    return progress
