"""The bake cache without Blender: keys, the index, files that are trusted only when intact."""

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from tha_studio.animation.core import bake_cache
from tha_studio.animation.core.bake_cache import BakeCache, dequantise_pose, pose_key, quantise_pose
from tha_studio.render.formats.png import encode_png


def picture(value):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (value, 40, 50, 255)
    return rgba


def test_keys_name_picture_weights_schema_and_pose():
    pose = np.zeros(45, np.float32)
    pose[26] = 0.5
    key = pose_key("picture", "weights", "tha3", quantise_pose(pose))
    assert key == pose_key("picture", "weights", "tha3", quantise_pose(pose + 1e-6)), "float noise is not a new pose"
    changed = pose.copy()
    changed[26] = 0.5 + 2 * bake_cache.POSE_STEP
    others = {pose_key("picture", "weights", "tha3", quantise_pose(changed)),
              pose_key("other picture", "weights", "tha3", quantise_pose(pose)),
              pose_key("picture", "other weights", "tha3", quantise_pose(pose)),
              pose_key("picture", "weights", "tha2", quantise_pose(pose))}
    assert key not in others and len(others) == 4


def test_the_networks_get_the_quantised_pose():
    pose = np.array([0.123456, -0.98765, 1.0], np.float32)
    again = dequantise_pose(quantise_pose(pose))
    assert np.abs(again - pose).max() <= bake_cache.POSE_STEP / 2
    assert np.array_equal(quantise_pose(again), quantise_pose(pose))


def test_stored_poses_survive_a_reopen_and_frames_are_files_of_their_pose(tmp_path):
    cache = BakeCache(tmp_path / "cache")
    pngs = {"a" * 32: encode_png(picture(10)), "b" * 32: encode_png(picture(200))}
    for key, data in pngs.items():
        cache.store_pose(key, data)
    cache.write_frames({1: "a" * 32, 2: "b" * 32, 3: "a" * 32})
    cache.save_index()

    again = BakeCache(tmp_path / "cache")
    assert all(again.has_pose(key) for key in pngs)
    assert again.index.frames == {1: "a" * 32, 2: "b" * 32, 3: "a" * 32}
    assert sorted(p.name for p in (tmp_path / "cache" / "frames").iterdir()) == [
        "frame_0001.png", "frame_0002.png", "frame_0003.png"]
    assert again.frame_path(3).read_bytes() == pngs["a" * 32]
    assert again.frame_path(2).read_bytes() == pngs["b" * 32]


def test_a_range_from_below_frame_0_is_numbered_from_0(tmp_path):
    # Blender's image sequences show no file numbered below 0: frames -3 to -1 showed frame 0's.
    assert [bake_cache.frame_number(f, -3) for f in (-3, -1, 0, 2)] == [0, 2, 3, 5]
    assert [bake_cache.frame_number(f, first) for f, first in ((0, 0), (7, 0), (7, 5))] == [0, 7, 7]
    cache = BakeCache(tmp_path / "cache")
    pngs = {key * 32: encode_png(picture(value)) for key, value in (("a", 10), ("b", 200))}
    for key, data in pngs.items():
        cache.store_pose(key, data)
    cache.write_frames({1: "b" * 32, 2: "b" * 32})
    cache.write_frames({-2: "a" * 32, -1: "b" * 32, 0: "a" * 32})  # the scene now starts at -2
    cache.save_index()
    assert sorted(p.name for p in (tmp_path / "cache" / "frames").iterdir()) == [
        "frame_0000.png", "frame_0001.png", "frame_0002.png"]
    again = BakeCache(tmp_path / "cache")
    assert again.frame_path(-2).name == "frame_0000.png" and again.frame_path(-2).read_bytes() == pngs["a" * 32]
    assert again.frame_path(-1).read_bytes() == pngs["b" * 32]
    assert BakeCache.frame_file(tmp_path / "cache", 0, -2) == again.frame_path(0)


def test_removing_unused_poses_keeps_every_frame_and_a_running_bakes_files(tmp_path):
    cache = BakeCache(tmp_path / "cache")
    pngs = {key * 32: encode_png(picture(value)) for key, value in (("a", 10), ("b", 100), ("c", 200))}
    for key, data in pngs.items():
        cache.store_pose(key, data)
    cache.write_frames({1: "a" * 32, 2: "b" * 32})  # "c": an earlier take's pose
    cache.save_index()
    poses = tmp_path / "cache" / "poses"
    old_leftover, fresh_leftover = poses / f".{'d' * 32}.123.tmp", poses / f".{'e' * 32}.456.tmp"
    for leftover in (old_leftover, fresh_leftover):
        leftover.write_bytes(b"half a png")
    os.utime(old_leftover, (0, 0))  # a killed bake's, long ago; the fresh one may be a bake running now

    removed, freed, kept = BakeCache(tmp_path / "cache").remove_unused()
    assert (removed, freed, kept) == (2, len(pngs["c" * 32]) + len(b"half a png"), 2)
    assert sorted(p.name for p in poses.iterdir()) == sorted([f"{'a' * 32}.png", f"{'b' * 32}.png", fresh_leftover.name])
    again = BakeCache(tmp_path / "cache")
    assert again.has_pose("a" * 32) and again.has_pose("b" * 32) and not again.has_pose("c" * 32)
    assert again.frame_path(1).read_bytes() == pngs["a" * 32] and again.frame_path(2).read_bytes() == pngs["b" * 32]
    assert BakeCache(tmp_path / "never baked").remove_unused() == (0, 0, 0)
    assert not (tmp_path / "never baked").exists()


def test_a_truncated_or_edited_pose_file_is_not_trusted(tmp_path):
    cache = BakeCache(tmp_path)
    data = encode_png(picture(10))
    cache.store_pose("k" * 32, data)
    cache.save_index()
    path = cache.pose_path("k" * 32)
    path.write_bytes(data[: len(data) // 2])  # as a kill in the middle of someone else's copy would leave it
    assert not BakeCache(tmp_path).has_pose("k" * 32)
    path.unlink()
    assert not BakeCache(tmp_path).has_pose("k" * 32)


def test_a_deleted_or_damaged_index_means_nothing_is_trusted(tmp_path):
    cache = BakeCache(tmp_path)
    cache.store_pose("k" * 32, encode_png(picture(10)))
    cache.save_index()
    (tmp_path / bake_cache.INDEX_NAME).write_text("{ not json")
    assert not BakeCache(tmp_path).has_pose("k" * 32)
    (tmp_path / bake_cache.INDEX_NAME).write_bytes(b'{"version": \xff\xfe}')  # not UTF-8: a traceback before
    assert not BakeCache(tmp_path).has_pose("k" * 32)
    (tmp_path / bake_cache.INDEX_NAME).unlink()
    assert not BakeCache(tmp_path).has_pose("k" * 32)
    assert not BakeCache(tmp_path / "never made").has_pose("k" * 32)


def test_frames_out_of_the_new_range_are_removed(tmp_path):
    cache = BakeCache(tmp_path)
    cache.store_pose("a" * 32, encode_png(picture(10)))
    cache.write_frames({frame: "a" * 32 for frame in range(1, 6)})
    cache.write_frames({frame: "a" * 32 for frame in range(2, 4)})
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_0002.png", "frame_0003.png"]


def test_index_is_readable_json_with_its_format(tmp_path):
    cache = BakeCache(tmp_path)
    cache.index.picture, cache.index.weights, cache.index.schema = "p", "w", "tha3"
    cache.save_index()
    data = json.loads((tmp_path / bake_cache.INDEX_NAME).read_text())
    assert data["format"] == bake_cache.INDEX_FORMAT and data["schema"] == "tha3"
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]


def test_an_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cache = BakeCache(blocker / "cache")
    with pytest.raises(bake_cache.BakeCacheError, match="cache"):
        cache.store_pose("a" * 32, b"png")


def test_a_folder_that_takes_no_writes_says_where_a_bake_goes(tmp_path):
    # A .blend opened from a read-only share, or a protected folder: its sprites bake beside it.
    # (/sys takes no new folders on Linux, as root too: EPERM, EACCES or EROFS by kernel and container.)
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("no /sys: a folder that refuses writes even to root is Linux's")
    cache = BakeCache(Path("/sys/kernel/tha_cache/crypko_00"))
    with pytest.raises(bake_cache.BakeCacheError, match=r"^/sys/kernel/tha_cache/crypko_00/poses/a+\.png: cannot write "
                       r"\(.+; a saved \.blend's sprites bake beside it \(//tha_cache/\): save it in a folder you "
                       r"can write to\)$"):
        cache.store_pose("a" * 32, b"png")
    full = bake_cache._cannot_write(tmp_path / "pose.png", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert str(full) == f"{tmp_path / 'pose.png'}: cannot write (No space left on device)"  # (no hint there)


def test_a_cache_adopts_the_intact_poses_of_another(tmp_path):
    old = BakeCache(tmp_path / "user" / "Anna")
    pngs = {"a" * 32: encode_png(picture(10)), "b" * 32: encode_png(picture(200)), "c" * 32: encode_png(picture(90))}
    for key, data in pngs.items():
        old.store_pose(key, data)
    old.save_index()
    old.pose_path("b" * 32).write_bytes(b"cut")  # damaged since: not taken
    new = BakeCache(tmp_path / "project" / "tha_cache" / "Anna")
    new.store_pose("c" * 32, pngs["c" * 32])  # already there: kept as it is
    assert new.adopt_poses(BakeCache(tmp_path / "user" / "Anna")) == 1
    assert new.has_pose("a" * 32) and not new.has_pose("b" * 32) and new.has_pose("c" * 32)
    assert new.pose_path("a" * 32).read_bytes() == pngs["a" * 32]
    new.save_index()
    assert set(BakeCache(new.folder).index.files) == {"a" * 32, "c" * 32}
    assert old.pose_path("a" * 32).read_bytes() == pngs["a" * 32]  # the old folder is left as it was
