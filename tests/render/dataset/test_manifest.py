"""Manifest journals: whole lines only, torn tails dropped, merge sorted and checked."""

import json
import os

import pytest

from tha_studio.render.dataset import manifest
from tha_studio.atomic_files import TargetIsFolder, remove_stale_temps, temp_path_for, write_atomically, write_text_atomic


def example(model, index, split="train"):
    return {"type": "example", "model": model, "split": split, "index": index, "pose": [0.5, -1.0],
            "expression": f"images/{model}/{index:06d}_expression.png", "posed": f"images/{model}/{index:06d}_posed.png",
            "sha256": {"expression": "a" * 64, "posed": "b" * 64}}


def test_append_and_read_back(tmp_path):
    journal = tmp_path / "parts" / "shard-1-of-1.jsonl"
    records = [example("m1", 0), example("m1", 1), {"type": "failure", "model": "bad", "split": "test", "reason": "r"}]
    for record in records:
        manifest.append_record(journal, record)
    assert manifest.read_records(journal) == records
    assert journal.read_text(encoding="utf-8").count("\n") == 3


def test_a_torn_last_line_is_dropped_then_cut_off(tmp_path):
    journal = tmp_path / "j.jsonl"
    manifest.append_record(journal, example("m", 0))
    with open(journal, "ab") as handle:
        handle.write(b'{"type": "example", "mod')  # a killed write
    assert manifest.read_records(journal) == [example("m", 0)]
    manifest.append_record(journal, example("m", 1))
    assert manifest.read_records(journal) == [example("m", 0), example("m", 1)]


def test_a_broken_line_in_the_middle_is_an_error_naming_the_line(tmp_path):
    journal = tmp_path / "j.jsonl"
    journal.write_text(json.dumps(example("m", 0)) + "\nnot json\n" + json.dumps(example("m", 1)) + "\n")
    with pytest.raises(manifest.ManifestError, match=r"j.jsonl: line 2 is not JSON"):
        manifest.read_records(journal)


@pytest.mark.parametrize("damage, problem", [
    (b"\0" * 5000, r"line 2 is not JSON"),  # a crash's zeros: json.loads on bytes took them for UTF-32
    (b'{"type":"model","model":"a\xff"}', r"line 2 is not UTF-8 text \(byte 27\)"),
    (bytes(range(128, 256)), r"line 2 is not UTF-8 text \(byte 1\)"),
    (b"[" * 100_000 + b"]" * 100_000, r"line 2 is not JSON \(nested more than"),
])
def test_a_damaged_line_is_named_not_a_traceback(tmp_path, damage, problem):
    journal = tmp_path / "parts" / "shard-1-of-2.jsonl"
    journal.parent.mkdir()
    good = json.dumps(example("m", 0)).encode()
    journal.write_bytes(good + b"\n" + damage + b"\n" + good + b"\n")
    with pytest.raises(manifest.ManifestError, match="shard-1-of-2.jsonl: " + problem):
        manifest.merge(tmp_path)
    assert not (tmp_path / manifest.MANIFEST_NAME).exists()


@pytest.mark.parametrize("change, problem", [
    (lambda r: r.pop("model"), "a record of type 'example' without a model name"),
    (lambda r: r.update(index="x"), "example index 'x' is not a pose number"),
    (lambda r: r.update(index=-2), "example index -2 is not a pose number"),
    (lambda r: r.update(split=5), "split 5 is not a name"),
])
def test_a_hand_edited_line_is_named_not_a_traceback_from_the_merge(tmp_path, change, problem):
    """merge-shards ended in a KeyError or a ValueError from int() on such a line."""
    journal = tmp_path / "parts" / "shard-1-of-1.jsonl"
    journal.parent.mkdir()
    edited = example("m", 1)
    change(edited)
    journal.write_text(json.dumps(example("m", 0)) + "\n" + json.dumps(edited) + "\n")
    with pytest.raises(manifest.ManifestError, match=rf"shard-1-of-1.jsonl: line 2: {problem}"):
        manifest.merge(tmp_path)

def test_merge_sorts_by_split_model_and_index_whatever_the_journal_order(tmp_path):
    parts = tmp_path / "parts"
    manifest.append_record(parts / "a.jsonl", example("m2", 1, "test"))
    manifest.append_record(parts / "a.jsonl", example("m1", 1))
    manifest.append_record(parts / "b.jsonl", example("m1", 0))
    manifest.append_record(parts / "b.jsonl", {"type": "model", "model": "m1", "split": "train", "rest": "r.png",
                                               "sha256": {"rest": "c" * 64}})
    manifest.append_record(parts / "b.jsonl", example("m0", 0, "validation"))
    manifest.append_record(parts / "b.jsonl", {"type": "failure", "model": "x", "split": "train", "reason": "no あ"})
    progress = manifest.merge(tmp_path)
    lines = (tmp_path / manifest.MANIFEST_NAME).read_text(encoding="utf-8").splitlines()
    order = [(json.loads(l)["model"], json.loads(l).get("index")) for l in lines]
    assert order == [("m1", None), ("m1", 0), ("m1", 1), ("m0", 0), ("m2", 1)]
    assert progress.has_example("m1", 1) and not progress.has_example("m1", 2)
    assert progress.failure("x") == "no あ"
    failures = (tmp_path / manifest.FAILURES_NAME).read_text(encoding="utf-8")
    assert "no あ" in failures  # kept readable, not escaped
    # merging again gives the same bytes
    first = (tmp_path / manifest.MANIFEST_NAME).read_bytes()
    manifest.merge(tmp_path)
    assert (tmp_path / manifest.MANIFEST_NAME).read_bytes() == first


def test_two_journals_that_disagree_about_one_example_are_refused(tmp_path):
    manifest.append_record(tmp_path / "parts" / "a.jsonl", example("m", 0))
    changed = example("m", 0)
    changed["pose"] = [0.0, 0.0]
    manifest.append_record(tmp_path / "parts" / "b.jsonl", changed)
    with pytest.raises(manifest.ManifestError, match="two different records"):
        manifest.merge(tmp_path)


def test_atomic_write_leaves_no_temp_and_stale_temps_of_one_tag_are_removed(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    write_text_atomic(target, "whole")
    assert target.read_text() == "whole"
    assert os.listdir(target.parent) == ["file.txt"]
    mine = temp_path_for(target, "s1of2-123")
    theirs = temp_path_for(target, "s2of2-456")
    mine.write_text("half"), theirs.write_text("half")
    assert remove_stale_temps(tmp_path, "s1of2-") == 1
    assert not mine.exists() and theirs.exists()


def test_a_folder_as_the_target_is_named_and_left_as_it_was(tmp_path):
    # `--out renders` where renders/ exists: the error names it, not the temporary file.
    folder = tmp_path / "renders"
    (folder / "kept").mkdir(parents=True)
    for write in (lambda: write_text_atomic(folder, "x"), lambda: write_atomically(folder, lambda p: open(p, "w").write("x"))):
        with pytest.raises(TargetIsFolder, match=f"{folder}: is a folder; give the name of a file to write"):
            write()
    assert os.listdir(folder) == ["kept"] and os.listdir(tmp_path) == ["renders"]


def failure(model, reason):
    return {"type": "failure", "model": model, "split": "train", "reason": reason}


def test_a_retried_model_that_fails_again_with_other_wording_keeps_the_newest_reason(tmp_path):
    # --retry-failed: the same model fails again, worded differently; this used to wedge every
    # later run and merge with "two different records".
    journal = tmp_path / "parts" / "shard-1-of-1.jsonl"
    manifest.append_record(journal, failure("m", "old wording"))
    manifest.append_record(journal, example("ok", 0))
    manifest.append_record(journal, failure("m", "new wording"))
    assert manifest.read_progress([journal]).failure("m") == "new wording"
    manifest.merge(tmp_path)
    failures = manifest.read_records(tmp_path / manifest.FAILURES_NAME)
    assert failures == [failure("m", "new wording")]


def test_a_retried_model_that_renders_is_no_longer_failed(tmp_path):
    journal = tmp_path / "parts" / "shard-1-of-1.jsonl"
    manifest.append_record(journal, failure("m", "broke"))
    manifest.append_record(journal, example("m", 0))
    progress = manifest.read_progress([journal])
    assert progress.failure("m") is None and progress.has_example("m", 0)
    # a failure after renders (it broke half way) still counts
    manifest.append_record(journal, failure("m", "broke at 1"))
    assert manifest.read_progress([journal]).failure("m") == "broke at 1"


def test_a_torn_line_longer_than_a_read_block_or_with_no_line_before_it_is_cut(tmp_path, monkeypatch):
    # The cut looks back from the end a block at a time: torn lines across blocks, and a journal
    # that is one torn line, must still be cut to the last whole line.
    monkeypatch.setattr(manifest, "_TAIL_BLOCK", 7)
    journal = tmp_path / "j.jsonl"
    journal.write_bytes(b'{"type": "exam')
    manifest.append_record(journal, example("m", 0))
    assert manifest.read_records(journal) == [example("m", 0)]
    with open(journal, "ab") as handle:
        handle.write(b'{"type": "example", "model": "m", "index": 1, "pose": [0.1, 0.2, 0.3')
    manifest.append_record(journal, example("m", 2))
    assert manifest.read_records(journal) == [example("m", 0), example("m", 2)]
    assert journal.read_bytes().count(b"\n") == 2


def test_merge_writes_canonical_lines_even_from_a_hand_edited_journal(tmp_path):
    # Merge writes from the lines it holds, not from dicts: they must still be canonical.
    journal = tmp_path / "parts" / "a.jsonl"
    journal.parent.mkdir()
    records = [example("m", 1), {"type": "model", "model": "m", "split": "train", "rest": "r.png", "sha256": {}},
               example("m", 0), failure("z", "gone"), failure("m", "superseded by nothing")]
    journal.write_text("".join(json.dumps(r, indent=None) + "\n" for r in records))  # spaces, key order kept
    progress = manifest.merge(tmp_path)
    expected = sorted(records[:3], key=manifest.sort_key)
    assert (tmp_path / manifest.MANIFEST_NAME).read_text() == "".join(manifest.dumps(r) + "\n" for r in expected)
    # m broke after its renders (its newest record), so it is listed as failed beside z
    assert (tmp_path / manifest.FAILURES_NAME).read_text() == "".join(
        manifest.dumps(f) + "\n" for f in (failure("m", "superseded by nothing"), failure("z", "gone")))
    assert progress.count("example") == 2 and progress.of_type("model") == [records[1]]


def test_a_run_start_reads_hashes_but_still_tells_an_edited_record_from_a_different_one(tmp_path):
    # read_progress (a run's start) holds a hash of each line as read: a record written again
    # with other spacing is the same record; one with another pose is still refused.
    journal = tmp_path / "parts" / "a.jsonl"
    manifest.append_record(journal, example("m", 0))
    with open(journal, "a") as handle:
        handle.write(json.dumps(example("m", 0)) + "\n")  # same record, other bytes
    progress = manifest.read_progress([journal])
    assert progress.has_example("m", 0) and progress.count("example") == 1
    changed = example("m", 0)
    changed["pose"] = [0.0, 0.0]
    manifest.append_record(journal, changed)
    with pytest.raises(manifest.ManifestError, match=r"a.jsonl: two different records .*\n.*0.5,-1.0"):
        manifest.read_progress([journal])
    with pytest.raises(ValueError, match="lines=False"):
        manifest.read_progress([journal][:0]).of_type("example")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux), where every write is ENOSPC")
def test_a_journal_on_a_full_disk_is_an_output_error_naming_the_file_not_a_traceback(tmp_path):
    journal = tmp_path / "parts" / "shard-1-of-1.jsonl"
    journal.parent.mkdir()
    journal.symlink_to("/dev/full")  # a real ENOSPC from the kernel, root or not
    with pytest.raises(manifest.OutputError, match=r"shard-1-of-1.jsonl: cannot write the dataset journal "
                                                   r"\(No space left on device\); nothing was recorded"):
        manifest.append_record(journal, failure("m", "reason"))
