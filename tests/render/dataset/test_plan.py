"""Batch planning without Blender: splits, shards, resume plans, dataset options; the PNG writer."""

import io
import json
import os
import threading

import numpy as np
import pytest
from PIL import Image

from tha_studio.render.blender.dataset_run import DatasetRun
from tha_studio.render.dataset import manifest, plan
from tha_studio.render.dataset.settings import RenderSettings
from tha_studio.render.formats.png import encode_png, zero_transparent_rgb


@pytest.fixture
def models(tmp_path):
    root = tmp_path / "models"
    for name in ("train/anime/a.pmx", "train/anime/b.PMD", "nijisanji/c.pmx", "test/d.pmx", "loose.pmx", "notes.txt"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())  # each its own bytes: no two are copies of one model
    return root


def test_splits_by_top_level_folder_split_file_and_default(models, tmp_path):
    split_file = tmp_path / "splits.txt"
    split_file.write_text("# THA1 §5.4: one source per split\nnijisanji validation\ntrain/anime/b.PMD  test\n")
    rules = plan.read_split_file(split_file)
    entries = plan.discover_models(models, rules, default_split="train")
    assert [(e.model_id, e.split) for e in entries] == [
        ("loose.pmx", "train"), ("nijisanji/c.pmx", "validation"), ("test/d.pmx", "test"),
        ("train/anime/a.pmx", "train"), ("train/anime/b.PMD", "test"),
    ]
    assert entries[0].folder.startswith("images/train/loose-")
    assert entries[3].example_paths(7) == (f"{entries[3].folder}/000007_expression.png", f"{entries[3].folder}/000007_posed.png")


def test_a_bad_split_file_line_is_named(tmp_path):
    split_file = tmp_path / "splits.txt"
    split_file.write_text("anime train\nvtubers holdout\n")
    with pytest.raises(plan.DatasetError, match="splits.txt: line 2"):
        plan.read_split_file(split_file)


def test_split_file_folders_may_hold_hashes_and_backslashes_and_a_folder_takes_one_split(models, tmp_path):
    split_file = tmp_path / "splits.txt"
    split_file.write_text("# a comment line\nミク #2  validation  # the second release\n.\\nijisanji\\ test\n"
                          "nijisanji test\nvtuber test\n", encoding="utf-8")
    rules = plan.read_split_file(split_file)
    assert rules == [("ミク #2", "validation"), ("nijisanji", "test"), ("nijisanji", "test"), ("vtuber", "test")]
    entries = plan.discover_models(models, rules)
    assert {e.model_id: e.split for e in entries}["nijisanji/c.pmx"] == "test"
    # A misspelt folder is told (its models would go to the default split without a word).
    assert plan.unmatched_split_rules(rules, entries) == ["ミク #2", "vtuber"]
    assert plan.unmatched_split_rules([("train/anime", "test"), ("train/anime/a.pmx", "test"), ("train/an", "test")],
                                      entries) == ["train/an"]  # a prefix of a folder's name is not its folder
    split_file.write_text("anime train\nvtubers test\nanime/ test\n", encoding="utf-8")
    with pytest.raises(plan.DatasetError, match="splits.txt: line 3: anime is given to test, and to train on line 1"):
        plan.read_split_file(split_file)


def test_a_split_file_saved_in_another_encoding_is_named_and_a_bom_is_read(tmp_path):
    split_file = tmp_path / "splits.txt"
    split_file.write_bytes("caf\xe9 holdout\n".encode("latin-1"))
    with pytest.raises(plan.DatasetError, match="splits.txt: the split file is not UTF-8 text"):
        plan.read_split_file(split_file)
    split_file.write_bytes("\ufeffvtubers test\n".encode("utf-8"))
    assert plan.read_split_file(split_file) == [("vtubers", "test")]  # (Notepad's byte-order mark is no path)
    split_file.write_bytes("vtubers test\r\n\u30df\u30af train\r\n".encode("utf-16"))  # (Notepad's "Unicode")
    assert plan.read_split_file(split_file) == [("vtubers", "test"), ("\u30df\u30af", "train")]


def test_shards_deal_every_model_to_exactly_one_shard(models):
    entries = plan.discover_models(models)
    dealt = [plan.shard_models(entries, k, 3) for k in (1, 2, 3)]
    assert sorted(e.model_id for part in dealt for e in part) == [e.model_id for e in entries]
    many = [plan.ModelEntry(f"folder_{i}/model.pmx", models / f"{i}.pmx", "train") for i in range(500)]
    for shards in (1, 2, 7):
        dealt = [plan.shard_models(many, k, shards) for k in range(1, shards + 1)]
        assert sorted(e.model_id for part in dealt for e in part) == sorted(e.model_id for e in many)
        assert min(map(len, dealt)) > 500 / shards * 0.7  # a hash deals them about evenly
    assert plan.parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "1", "a/b"):
        with pytest.raises(plan.DatasetError, match="K/N"):
            plan.parse_shard(bad)


def test_shard_from_slurm_and_kubernetes(monkeypatch):
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX", "THA_SHARD_COUNT"):
        monkeypatch.delenv(name, raising=False)
    assert plan.shard_from_environment() is None
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "0")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    assert plan.shard_from_environment() == (1, 4)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    monkeypatch.setenv("THA_SHARD_COUNT", "3")
    assert plan.shard_from_environment() == (3, 3)


def test_plan_skips_finished_examples_and_recorded_failures(models, tmp_path):
    out = tmp_path / "out"
    config = plan.DatasetConfig(poses_per_model=3)
    entries = plan.discover_models(models)[:3]
    done = entries[0]
    for path in (done.rest_path(), *done.example_paths(0), *done.example_paths(2)):
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_bytes(b"png")
    records = [
        {"type": "model", "model": done.model_id, "split": done.split, "rest": done.rest_path(), "sha256": {}},
        {"type": "example", "model": done.model_id, "split": done.split, "index": 0},
        {"type": "example", "model": done.model_id, "split": done.split, "index": 2},
        {"type": "example", "model": done.model_id, "split": done.split, "index": 1},  # listed, but its files are gone
        {"type": "failure", "model": entries[1].model_id, "split": "train", "reason": "lacks mouth_aaa"},
    ]
    work, skipped = plan.plan_work(entries, manifest.Progress(records), config, out)
    assert [(w.entry.model_id, w.rest, w.indices) for w in work] == [
        (done.model_id, False, [1]), (entries[2].model_id, True, [0, 1, 2])]
    assert skipped == {entries[1].model_id: "lacks mouth_aaa"}
    assert work[1].images == 7
    retried, _ = plan.plan_work(entries, manifest.Progress(records), config, out, retry_failed=True)
    assert entries[1].model_id in [w.entry.model_id for w in retried]


def test_a_folder_made_with_other_options_is_refused(tmp_path):
    plan.ensure_config(tmp_path, plan.DatasetConfig(seed=1))
    plan.ensure_config(tmp_path, plan.DatasetConfig(seed=1))
    with pytest.raises(plan.DatasetError, match=r"seed 1 \(now 2\)"):
        plan.ensure_config(tmp_path, plan.DatasetConfig(seed=2))



@pytest.mark.parametrize("damage", [b"\x89PNG\r\n\x1a\n\0\0", b"[1, 2]", b'{"format": "tha_studio.dataset"', b""])
def test_a_damaged_dataset_description_is_named(tmp_path, damage):
    # Binary bytes were a UnicodeDecodeError traceback; a list an AttributeError.
    (tmp_path / plan.CONFIG_NAME).write_bytes(damage)
    with pytest.raises(plan.DatasetError, match=r"dataset.json: not (valid JSON|a THA Studio dataset description)"):
        plan.ensure_config(tmp_path, plan.DatasetConfig(seed=1))
    with pytest.raises(plan.DatasetError, match=r"dataset.json: not"):
        plan.read_config_file(tmp_path / plan.CONFIG_NAME)


@pytest.mark.parametrize("field, value, problem", [
    ("poses_per_model", "3", r"poses per model '3': expected a whole number from 0 to 1,000,000"),
    ("poses_per_model", 10**12, r"poses per model 1000000000000"),
    ("seed", 1.5, r"seed 1.5: expected a whole number"),
    ("samples", -1, r"samples -1: expected a whole number from 1 to 65,536"),
    ("schema", "tha9", r"unknown pose schema 'tha9'"),
])
def test_a_hand_edited_dataset_description_is_named(tmp_path, field, value, problem):
    """Read back by the trainer and by a resumed run: a poses-per-model given as text ended
    training in a TypeError; a wrong schema was refused without naming the file."""
    data = plan.DatasetConfig().to_json()
    data[field] = value
    with pytest.raises(plan.DatasetError, match=rf"d/dataset.json: .*{problem}"):
        plan.DatasetConfig.from_json(data, "d/dataset.json")

    del data[field]
    with pytest.raises(plan.DatasetError) as missing:
        plan.DatasetConfig.from_json(data, "d/dataset.json")
    assert str(missing.value) == f"d/dataset.json: malformed dataset description: it has no {field!r}"


def test_run_refuses_bad_options_before_rendering(tmp_path):
    with pytest.raises(ValueError, match="engine 'eevee'"):
        plan.DatasetConfig(render=RenderSettings(engine="eevee"))
    with pytest.raises(KeyError, match="unknown pose schema"):
        DatasetRun(tmp_path, tmp_path / "out", plan.DatasetConfig(schema="tha9"))
    with pytest.raises(plan.DatasetError, match="no such folder"):
        plan.discover_models(tmp_path / "missing")
    with pytest.raises(plan.DatasetError, match=r"--limit-models -1: must be 0 or more"):  # (it left the last model out)
        DatasetRun(tmp_path, tmp_path / "out", plan.DatasetConfig(), limit_models=-1)
    cpus = len(os.sched_getaffinity(0))
    # A typo of 800 for 8 forked 800 Blenders, each holding a model in memory.
    with pytest.raises(plan.DatasetError, match=rf"--workers {cpus + 1}: .* use {cpus} CPU"):
        DatasetRun(tmp_path, tmp_path / "out", plan.DatasetConfig(), workers=cpus + 1)
    assert DatasetRun(tmp_path, tmp_path / "out", plan.DatasetConfig(), workers=cpus).workers == cpus


@pytest.mark.parametrize("option, value", [("--model-timeout", "nan"), ("--model-memory", "nan"),
                                           ("--model-memory", "inf"), ("--model-timeout", "-5")])
def test_a_limit_that_is_no_number_is_refused_before_rendering(tmp_path, capsys, option, value):
    # A NaN timeout was no limit without a word; a NaN or infinite memory limit, a traceback.
    from tha_studio.commands import main

    assert main(["render-dataset", str(tmp_path), str(tmp_path / "out"), option, value]) == 1
    assert f"error: {option} {float(value):g}: must be 0 (no limit) or a positive number" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_png_writer_round_trips_and_zeroes_colour_under_transparency():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)
    rgba[::3, :, 3] = 0
    fixed = zero_transparent_rgb(rgba)
    assert (fixed[fixed[..., 3] == 0, :3] == 0).all()
    assert np.array_equal(fixed[fixed[..., 3] > 0], rgba[rgba[..., 3] > 0])
    data = encode_png(fixed)
    decoded = np.array(Image.open(io.BytesIO(data)))
    assert decoded.shape == (37, 53, 4) and np.array_equal(decoded, fixed)
    assert encode_png(fixed) == data


def test_model_paths_are_absolute_however_the_root_was_typed(models, monkeypatch):
    # Failure reasons name the model's path: they must read the same on a rerun typed otherwise.
    monkeypatch.chdir(models.parent)
    typed = [plan.discover_models(root) for root in ("models", "./models/", str(models), "models/../models")]
    assert all([e.path for e in entries] == [e.path for e in typed[2]] for entries in typed)
    assert all(e.path.is_absolute() for e in typed[0])


def test_a_model_name_that_is_not_utf8_is_planned_journaled_and_merged_with_its_real_bytes(tmp_path):
    # A cp932 name from a Japanese zip, unpacked as raw bytes: not valid UTF-8, so Python holds
    # it surrogate-escaped; it used to crash the manifest writer on every rerun.
    name = "初音ミク.pmx".encode("cp932")
    folder = os.fsencode(tmp_path / "models" / "train")
    os.makedirs(folder)
    with open(os.path.join(folder, name), "wb") as handle:
        handle.write(b"one model")
    (tmp_path / "models" / "train" / "ok.pmx").write_bytes(b"another one")
    out = tmp_path / "out"
    config = plan.DatasetConfig(poses_per_model=1)
    entries = plan.discover_models(tmp_path / "models")
    ok, odd = entries  # sorted: the escaped bytes come after ASCII
    assert os.fsencode(odd.model_id) == b"train/" + name and odd.path.is_file()
    assert odd.folder.isascii() and odd.folder != ok.folder
    journal = out / plan.journal_name(1, 1)
    manifest.append_record(journal, {"type": "model", "model": odd.model_id, "split": odd.split,
                                     "rest": odd.rest_path(), "sha256": {}})
    manifest.append_record(journal, {"type": "failure", "model": "train/ok.pmx", "split": "train",
                                     "reason": f"cannot read {odd.path}"})
    journal.read_bytes().decode("utf-8")  # the journal stays valid UTF-8 (JSON escapes)
    progress = manifest.read_progress([journal])
    assert progress.has_model(odd.model_id)
    assert manifest.read_records(journal)[1]["reason"] == f"cannot read {odd.path}"
    work, skipped = plan.plan_work(entries, progress, config, out)
    assert [w.entry.model_id for w in work] == [odd.model_id] and list(skipped) == ["train/ok.pmx"]
    manifest.merge(out)
    first = (out / manifest.MANIFEST_NAME).read_bytes()
    [record] = [json.loads(line) for line in first.decode("utf-8").splitlines()]
    assert os.fsencode(record["model"]) == b"train/" + name
    manifest.merge(out)  # and again: the same bytes
    assert (out / manifest.MANIFEST_NAME).read_bytes() == first


# --- Discovery: folder links, copies of one model; shards that do not move


def write_model(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_a_link_back_up_the_tree_lists_each_model_once(tmp_path):
    root = tmp_path / "models"
    write_model(root / "a" / "one.pmx", b"one")
    write_model(root / "a" / "b" / "two.pmd", b"two")
    (root / "a" / "up").symlink_to("..", target_is_directory=True)  # one such link listed a model 40 times
    assert [e.model_id for e in plan.discover_models(root)] == ["a/b/two.pmd", "a/one.pmx"]


def test_two_links_making_a_loop_end_and_list_each_model_once(tmp_path):
    root = tmp_path / "models"
    write_model(root / "x" / "m.pmx", b"m")
    write_model(root / "y" / "n.pmx", b"n")
    (root / "x" / "to_y").symlink_to("../y", target_is_directory=True)  # x -> y -> x -> ...: endless before
    (root / "y" / "to_x").symlink_to("../x", target_is_directory=True)
    (root / "x" / "root").symlink_to(root, target_is_directory=True)
    assert [e.model_id for e in plan.discover_models(root)] == ["x/m.pmx", "y/n.pmx"]


def test_linked_folders_outside_the_root_are_followed_once(tmp_path):
    elsewhere = tmp_path / "downloads"
    write_model(elsewhere / "miku" / "miku.pmx", b"miku")
    root = tmp_path / "models"
    root.mkdir()
    (root / "first").symlink_to(elsewhere, target_is_directory=True)
    (root / "second").symlink_to(elsewhere / "miku", target_is_directory=True)
    (root / "broken").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    assert [e.model_id for e in plan.discover_models(root)] == ["first/miku/miku.pmx"]


def test_a_model_name_that_is_no_file_is_listed_for_its_render_to_name_and_never_opened(tmp_path):
    # A link to a model that was moved, a named pipe, a link to itself: left out without a word
    # before, a model the user linked in went missing from the dataset with no failure saying so.
    root = tmp_path / "models"
    write_model(root / "empty.pmx", b"")  # of the pipe's size: copies are found by size, then hashed
    (root / "moved.pmx").symlink_to(tmp_path / "old" / "moved.pmx")
    os.mkfifo(root / "pipe.pmx")
    os.mkfifo(root / "pipe.zip")  # an archive is listed when discovered: a pipe would block that too
    (root / "self.vrm").symlink_to("self.vrm")
    (root / "folder.pmx").mkdir()  # a folder named as a model is a folder
    found = []
    discovering = threading.Thread(target=lambda: found.append(plan.discover_models(root)), daemon=True)
    discovering.start()
    discovering.join(timeout=60)
    assert not discovering.is_alive(), "discovery opened the named pipe"
    entries = {e.model_id: e for e in found[0]}
    assert sorted(entries) == ["empty.pmx", "moved.pmx", "pipe.pmx", "pipe.zip", "self.vrm"]
    assert entries["pipe.zip"].archive is None  # (its render names the problem before any extraction)
    assert plan.model_file_problem(root / "empty.pmx") is None  # (its reader says what is wrong with it)
    assert plan.model_file_problem(root / "moved.pmx") == (
        f"{root / 'moved.pmx'}: a link to {tmp_path / 'old' / 'moved.pmx'}, which is not there")
    assert plan.model_file_problem(root / "pipe.pmx") == f"{root / 'pipe.pmx'}: a named pipe, not a model file"
    assert plan.model_file_problem(root / "self.vrm").startswith(f"{root / 'self.vrm'}: cannot be read (")
    assert plan.model_file_problem(root / "nothing.pmx") == f"{root / 'nothing.pmx'}: no such file"


def test_copies_of_one_model_share_the_most_held_out_split_under_any_split_rule(tmp_path):
    root = tmp_path / "models"
    model = b"PMX " + bytes(range(256)) * 40
    write_model(root / "train" / "miku" / "miku.pmx", model)
    write_model(root / "test" / "miku (1)" / "初音ミク.pmx", model)  # the same file, renamed
    write_model(root / "train" / "rin" / "rin.pmx", b"PMX " + bytes(range(255, -1, -1)) * 40)  # same size only
    write_model(root / "validation" / "len" / "len.pmx", b"len")
    write_model(root / "validation" / "len_copy" / "len.pmx", b"len")
    write_model(root / "train" / "len" / "len.pmx", b"len")
    (root / "train" / "linked.pmx").symlink_to(root / "validation" / "len" / "len.pmx")
    by_id = {e.model_id: e for e in plan.discover_models(root)}
    assert len(by_id) == 7  # every copy is still a model of its own
    assert by_id["train/miku/miku.pmx"].split == by_id["test/miku (1)/初音ミク.pmx"].split == "test"
    assert by_id["train/miku/miku.pmx"].same_as == "test/miku (1)/初音ミク.pmx"  # the first copy by id
    assert by_id["test/miku (1)/初音ミク.pmx"].same_as == ""
    assert by_id["train/rin/rin.pmx"].split == "train" and by_id["train/rin/rin.pmx"].same_as == ""
    lens = ["train/len/len.pmx", "train/linked.pmx", "validation/len/len.pmx", "validation/len_copy/len.pmx"]
    assert {by_id[i].split for i in lens} == {"validation"}

    # A split file that puts the copies apart still gets one split; no content is in two splits.
    split_file = tmp_path / "splits.txt"
    split_file.write_text("train/miku train\ntest train\nvalidation/len_copy test\n")
    entries = plan.discover_models(root, plan.read_split_file(split_file))
    splits_of_content = {}
    for entry in entries:
        splits_of_content.setdefault(entry.path.read_bytes(), set()).add(entry.split)
    assert all(len(splits) == 1 for splits in splits_of_content.values())
    assert {e.split for e in entries if e.path.read_bytes() == b"len"} == {"test"}
    assert {e.split for e in entries if e.path.read_bytes() == model} == {"train"}


def finish(entries, shards, out, config):
    """Journal every model as rendered by its shard, with its image files, as a finished run leaves it."""
    for shard in range(1, shards + 1):
        for entry in plan.shard_models(entries, shard, shards):
            journal = out / plan.journal_name(shard, shards)
            paths = [entry.rest_path()] + [p for i in range(config.poses_per_model) for p in entry.example_paths(i)]
            for path in paths:
                write_model(out / path, b"png")
            manifest.append_record(journal, {"type": "model", "model": entry.model_id, "split": entry.split,
                                             "rest": entry.rest_path(), "sha256": {}})
            for i in range(config.poses_per_model):
                manifest.append_record(journal, {"type": "example", "model": entry.model_id, "split": entry.split,
                                                 "index": i})


def test_adding_a_model_to_a_finished_two_shard_dataset_plans_only_that_model(tmp_path):
    root, out = tmp_path / "models", tmp_path / "out"
    config = plan.DatasetConfig(poses_per_model=2)
    for i in range(30):
        write_model(root / f"m{i:02d}" / "model.pmx", f"model {i}".encode())
    before = plan.discover_models(root)
    finish(before, 2, out, config)
    write_model(root / "m00a" / "model.pmx", b"a new model, sorted near the front")
    after = plan.discover_models(root)
    left = []
    for shard in (1, 2):
        progress = manifest.read_progress([out / plan.journal_name(shard, 2)])
        work, _ = plan.plan_work(plan.shard_models(after, shard, 2), progress, config, out)
        left += [w.entry.model_id for w in work]
    assert left == ["m00a/model.pmx"]
    # Each old model kept its shard; the shards still cover every model once, and merge them.
    assert all(plan.shard_of(e.model_id, 2) == next(k for k in (1, 2) if e in plan.shard_models(before, k, 2))
               for e in before)
    finish([e for e in after if e.model_id == "m00a/model.pmx"], 2, out, config)
    plan.ensure_config(out, config)
    merged = plan.merge_dataset(out)
    records = manifest.read_records(out / manifest.MANIFEST_NAME)
    assert sorted(r["model"] for r in records if r["type"] == "model") == sorted(e.model_id for e in after)
    assert merged is not None
