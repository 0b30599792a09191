"""Models in zip archives, as they are downloaded: names, listing, safe extraction, discovery."""

import hashlib
import shutil
import sys
import zipfile
from pathlib import Path

import pytest

from tha_studio.render.dataset import plan
from tha_studio.render.dataset.archives import (
    ArchiveError, extract, member_name, member_sha256, model_member_sizes, model_members,
)

sys.path.insert(0, str(Path(__file__).parent))
from archive_files import windows_zip  # noqa: E402

MODEL = b"PMX " + bytes(range(256)) * 4
TEXTURE = bytes(reversed(range(256))) * 8


def test_names_read_as_their_maker_wrote_them(tmp_path):
    path = windows_zip(tmp_path / "chara.zip", {"キャラ/モデル.pmx": MODEL, "キャラ/テクスチャ/服.png": TEXTURE})
    with zipfile.ZipFile(path) as bundle:
        assert not any(info.flag_bits & 0x800 for info in bundle.infolist())
        assert "キャラ" not in bundle.namelist()[0]  # Python alone reads cp437 mojibake
        assert [member_name(info) for info in bundle.infolist()] == ["キャラ/モデル.pmx", "キャラ/テクスチャ/服.png"]
    # UTF-8 names with and without the flag; forward slashes either way.
    with zipfile.ZipFile(tmp_path / "utf8.zip", "w") as bundle:
        bundle.writestr("フォルダ/model.pmx", MODEL)  # (zipfile flags it)
        info = zipfile.ZipInfo("plain/a.pmd".replace("/", "\\"))
        bundle.writestr(info, MODEL)
    with zipfile.ZipFile(tmp_path / "utf8.zip") as bundle:
        assert [member_name(info) for info in bundle.infolist()] == ["フォルダ/model.pmx", "plain/a.pmd"]


def test_model_members_are_listed_and_extracted_under_their_names(tmp_path):
    path = windows_zip(tmp_path / "chara.zip", {"キャラ/モデル.pmx": MODEL, "キャラ/テクスチャ/服.png": TEXTURE,
                                                "キャラ/別/モデル2.PMX": MODEL[:-1], "readme.txt": b"hello"})
    assert model_members(path, plan.MODEL_SUFFIXES) == ["キャラ/モデル.pmx", "キャラ/別/モデル2.PMX"]
    folder = extract(path, tmp_path / "out")
    assert (folder / "キャラ" / "テクスチャ" / "服.png").read_bytes() == TEXTURE
    assert (folder / "キャラ" / "モデル.pmx").read_bytes() == MODEL
    assert model_member_sizes(path, plan.MODEL_SUFFIXES) == {"キャラ/モデル.pmx": len(MODEL),
                                                             "キャラ/別/モデル2.PMX": len(MODEL) - 1}
    assert member_sha256(path, "キャラ/モデル.pmx") == hashlib.sha256(MODEL).hexdigest()
    with pytest.raises(ArchiveError, match=r"chara.zip: no member 'nothing.pmx'"):
        member_sha256(path, "nothing.pmx")


@pytest.mark.parametrize("name", ["../outside.pmx", "/etc/outside.pmx", "a/../../outside.pmx", "C:/outside.pmx"])
def test_a_member_that_would_land_outside_the_folder_is_refused(tmp_path, name):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("fine/model.pmx", MODEL)
        info = zipfile.ZipInfo("placeholder")
        info.filename = name  # (ZipInfo's constructor would clean the name up)
        bundle.writestr(info, MODEL)
    with pytest.raises(ArchiveError, match=r"evil.zip: member '.*outside.pmx' would be written outside the folder"):
        extract(path, tmp_path / "inside" / "out")
    assert not (tmp_path / "outside.pmx").exists() and not (tmp_path / "inside" / "outside.pmx").exists()


def test_a_zip_bomb_a_damaged_zip_and_a_damaged_member_are_named(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("model.pmx", MODEL)
        bundle.writestr("zeros.png", bytes(64 << 20))  # 64 MiB of zeros in some 64 KB
    with pytest.raises(ArchiveError, match=r"bomb.zip: member 'zeros.png' expands .* to 67,108,864 \(a zip bomb\?\)"):
        model_members(bomb, plan.MODEL_SUFFIXES)
    good = windows_zip(tmp_path / "good.zip", {"キャラ/モデル.pmx": MODEL, "キャラ/テクスチャ/服.png": TEXTURE})
    data = good.read_bytes()
    (tmp_path / "cut.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match=r"cut.zip: not a readable zip archive"):
        model_members(tmp_path / "cut.zip", plan.MODEL_SUFFIXES)
    flipped = bytearray(data)
    flipped[data.index(b"PK\x03\x04") + 60] ^= 0xFF  # a byte of the first member's compressed data
    (tmp_path / "flipped.zip").write_bytes(bytes(flipped))
    with pytest.raises(ArchiveError, match=r"flipped.zip: member 'キャラ/モデル.pmx' cannot be extracted"):
        extract(tmp_path / "flipped.zip", tmp_path / "out")
    flipped = bytearray(data)
    flipped[data.index(b"PK\x03\x04") + 80] ^= 0xFF  # one that inflates, to other bytes
    (tmp_path / "flipped.zip").write_bytes(bytes(flipped))
    with pytest.raises(ArchiveError, match=r"member 'キャラ/モデル.pmx' cannot be extracted \(Bad CRC-32 for file "
                       r"'キャラ/モデル.pmx'\)"):  # (zipfile's words gave the name as mojibake)
        extract(tmp_path / "flipped.zip", tmp_path / "out")


@pytest.mark.parametrize("damage, problem", [
    # (each found by flipping bytes of a model's archive; each went through as a traceback)
    ("the version needed to extract it", r"not a readable zip archive \(zip file version 25\.5"),
    ("where the central directory starts", r"member 'model.pmx' cannot be (read|extracted) \(\[Errno 22\]"),
    ("the member's name", r"a member has no name \(a damaged archive\)"),
])
def test_a_damaged_central_directory_is_named(tmp_path, damage, problem):
    path = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("model.pmx", MODEL)
    data = bytearray(path.read_bytes())
    record, end = data.index(b"PK\x01\x02"), data.index(b"PK\x05\x06")  # the member's record, the directory's end
    if damage == "the version needed to extract it":
        data[record + 6] = 255
    elif damage == "where the central directory starts":
        # 100 bytes later than it does: zipfile takes the difference as bytes prepended to the
        # archive, and seeks to the member at -100.
        data[end + 16 : end + 20] = (record + 100).to_bytes(4, "little")
    else:
        data[record + 28 : record + 30] = bytes(2)
        del data[record + 46 : record + 46 + len("model.pmx")]
        data[end - len("model.pmx") + 12 : end - len("model.pmx") + 16] = (46).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    for use in (lambda: model_members(path, plan.MODEL_SUFFIXES) and member_sha256(path, "model.pmx"),
                lambda: extract(path, tmp_path / "out")):
        with pytest.raises(ArchiveError, match=rf"damaged.zip: {problem}"):
            use()


def test_discovery_lists_each_model_of_an_archive_and_the_archives_it_cannot_open(tmp_path):
    root = tmp_path / "models"
    (root / "loose" / "キャラ" / "テクスチャ").mkdir(parents=True)
    (root / "loose" / "キャラ" / "モデル.pmx").write_bytes(MODEL)
    (root / "loose" / "キャラ" / "テクスチャ" / "服.png").write_bytes(TEXTURE)
    windows_zip(root / "downloads" / "chara.zip", {"キャラ/モデル.pmx": MODEL, "キャラ/テクスチャ/服.png": TEXTURE,
                                                   "キャラ/モデル_v2.pmx": MODEL + b"2"})
    windows_zip(root / "downloads" / "textures.zip", {"tex/服.png": TEXTURE})  # no model: nothing
    (root / "downloads" / "cut.zip").write_bytes(b"PK\x03\x04 not a whole archive")
    (root / "downloads" / "other.7z").write_bytes(b"7z\xbc\xaf\x27\x1c")
    (root / "test").mkdir()
    windows_zip(root / "test" / "held_out.zip", {"モデル/モデル.pmd": b"Pmd" + MODEL})
    entries, unopened = plan.discover(root)
    by_id = {entry.model_id: entry for entry in entries}
    assert sorted(by_id) == ["downloads/chara.zip/キャラ/モデル.pmx", "downloads/chara.zip/キャラ/モデル_v2.pmx",
                             "downloads/cut.zip", "loose/キャラ/モデル.pmx", "test/held_out.zip/モデル/モデル.pmd"]
    assert unopened == ["downloads/other.7z"]
    zipped = by_id["downloads/chara.zip/キャラ/モデル.pmx"]
    assert (zipped.archive, zipped.member, zipped.size) == (root / "downloads" / "chara.zip", "キャラ/モデル.pmx",
                                                            len(MODEL))
    assert by_id["downloads/cut.zip"].member == "" and by_id["downloads/cut.zip"].archive is not None
    assert by_id["test/held_out.zip/モデル/モデル.pmd"].split == "test"  # the archive's folder sets its split
    # A model both downloaded and unpacked is one model's two copies: one split, the second marked.
    assert by_id["loose/キャラ/モデル.pmx"].same_as == "downloads/chara.zip/キャラ/モデル.pmx"
    assert by_id["downloads/chara.zip/キャラ/モデル_v2.pmx"].same_as == ""
    assert plan.discover_models(root) == entries


def test_a_dataset_folder_inside_the_models_folder_is_not_searched_while_it_extracts(tmp_path):
    root = tmp_path / "models"
    (root / "chara").mkdir(parents=True)
    (root / "chara" / "model.pmx").write_bytes(MODEL)
    extracting = root / "dataset" / plan.EXTRACTING_FOLDER / "s1of1-42" / "0123456789ab" / "chara"
    extracting.mkdir(parents=True)
    (extracting / "model.pmx").write_bytes(MODEL)  # a copy an archive's render is using right now
    assert [entry.model_id for entry in plan.discover_models(root)] == ["chara/model.pmx"]


def test_the_variants_of_one_archive_are_extracted_once_and_the_next_archive_replaces_them(tmp_path):
    from tha_studio.render.blender.dataset_run import extracted_model, extraction_folder

    models, out = tmp_path / "models", tmp_path / "out"
    out.mkdir()
    windows_zip(models / "chara.zip", {"キャラ/モデル.pmx": MODEL, "キャラ/別/モデル2.pmx": MODEL,
                                       "キャラ/テクスチャ/服.png": TEXTURE})
    windows_zip(models / "other.zip", {"other.pmx": MODEL})
    first, second, other = plan.discover_models(models)
    assert (first.archive, second.archive, other.archive) == (models / "chara.zip",) * 2 + (models / "other.zip",)

    def extracted(entry):
        return extracted_model(entry, out, extraction_folder(out, "run-test", entry))

    path = extracted(first)
    assert path.read_bytes() == MODEL and path.name == "モデル.pmx"
    marker = path.parent / "extracted once"
    marker.touch()
    assert extracted(second).parent.parent == path.parent and marker.exists()  # the same extraction, kept
    other_path = extracted(other)
    assert other_path.read_bytes() == MODEL and not path.parent.exists()  # the next archive's replaces it
    # A folder removed under it (as the run's end removes it) or a changed archive is extracted again.
    shutil.rmtree(other_path.parent)
    assert extracted(other).read_bytes() == MODEL
    assert extracted(first).read_bytes() == MODEL
    windows_zip(models / "chara.zip", {"キャラ/モデル.pmx": MODEL[:100], "キャラ/別/モデル2.pmx": MODEL})
    assert extracted(first).read_bytes() == MODEL[:100]


def test_workers_keep_to_one_archive_and_start_on_archives_no_other_worker_holds(tmp_path):
    from tha_studio.render.blender.dataset_run import take_next_work

    models = tmp_path / "models"
    windows_zip(models / "a_pack.zip", {f"v{i}/model.pmx": MODEL for i in range(3)})
    windows_zip(models / "b_pack.zip", {f"v{i}/model.pmx": MODEL for i in range(2)})
    (models / "c_loose.pmx").write_bytes(MODEL)
    pending = [plan.ModelWork(entry, True, []) for entry in plan.discover_models(models)]
    a0, a1, a2, b0, b1, loose = pending[:]
    assert [work.entry.model_id for work in (a0, b0, loose)] == [
        "a_pack.zip/v0/model.pmx", "b_pack.zip/v0/model.pmx", "c_loose.pmx"]

    # Workers 1 and 2 start: 2 does not take a_pack's second variant, which 1 would extract again.
    assert take_next_work(pending, [], None) is a0
    assert take_next_work(pending, [a0], None) is b0
    # Worker 2 finishes b0 first and goes on with b_pack; then worker 1 with a_pack.
    assert take_next_work(pending, [a0], b0) is b1
    assert take_next_work(pending, [b1], a0) is a1
    # Worker 2's archive is done: it takes the loose model rather than a_pack, which 1 holds.
    assert take_next_work(pending, [a1], b1) is loose
    # Only a_pack is left, held by worker 1: worker 2 takes it too rather than wait idle.
    assert take_next_work(pending, [a1], loose) is a2
    assert take_next_work(pending, [a2], a1) is None and pending == []
