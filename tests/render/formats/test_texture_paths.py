"""Texture paths stored in MMD models resolve on a Linux disk, however they were mangled."""

import os

from tha_studio.render.formats.texture_paths import resolve_texture, split_stored_path


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_windows_separators_and_case(tmp_path):
    target = touch(tmp_path / "Tex" / "Face.PNG")
    assert resolve_texture(tmp_path, "tex\\face.png") == target
    assert resolve_texture(tmp_path, ".\\Tex\\Face.PNG") == target
    assert split_stored_path("a\\\\b/./c.png") == ["a", "b", "c.png"]


def test_cp932_bytes_on_a_utf8_disk(tmp_path):
    # A zip made on Japanese Windows unpacked as raw bytes: the name is not valid UTF-8.
    raw_name = "顔.png".encode("cp932")
    (tmp_path / "テクスチャ".encode("cp932").decode("utf-8", "surrogateescape")).mkdir()
    folder = tmp_path / "テクスチャ".encode("cp932").decode("utf-8", "surrogateescape")
    target = folder / os.fsdecode(raw_name)
    target.write_bytes(b"x")
    assert resolve_texture(tmp_path, "テクスチャ\\顔.png") == target


def test_cp932_bytes_unzipped_as_cp437(tmp_path):
    target = touch(tmp_path / "目.png".encode("cp932").decode("cp437"))
    assert resolve_texture(tmp_path, "目.png") == target


def test_full_width_and_absolute_paths_fall_back_to_the_file_name(tmp_path):
    target = touch(tmp_path / "sub" / "hair2.png")
    assert resolve_texture(tmp_path, "C:\\Users\\author\\MMD\\hair2.png") == target
    assert resolve_texture(tmp_path, "ｈａｉｒ２.png") == target  # NFKC folds full-width letters


def test_missing_texture_is_none(tmp_path):
    touch(tmp_path / "other.png")
    assert resolve_texture(tmp_path, "tex\\missing.png") is None
    assert resolve_texture(tmp_path, "") is None


def test_real_model_textures_all_resolve(shared):
    folder = shared / "assets" / "mmd" / "gene_light"
    for name in os.listdir(folder / "light"):
        assert resolve_texture(folder, "light\\" + name) == folder / "light" / name


def test_gbk_bytes_as_a_chinese_windows_zip_leaves_them(tmp_path):
    # Raw on a UTF-8 disk, unzipped as cp437, and read as cp932 (THA Studio's own extraction of
    # an archive whose names are not UTF-8).
    stored = "贴图\\衣服.png"
    raw = os.fsdecode("贴图".encode("gbk")), os.fsdecode("衣服.png".encode("gbk"))
    cp437 = "贴图".encode("gbk").decode("cp437"), "衣服.png".encode("gbk").decode("cp437")
    as_cp932 = "贴图".encode("gbk").decode("cp932"), "衣服.png".encode("gbk").decode("cp932")
    for number, (folder, name) in enumerate((raw, cp437, as_cp932)):
        target = touch(tmp_path / str(number) / folder / name)
        assert resolve_texture(tmp_path / str(number), stored) == target, number
