"""Character pictures: the network convention, and refusing pictures the networks cannot use."""

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from colour_profiles import (CICP_OF_PROFILES, DISPLAY_P3_CHROMATICITY, PROFILES, grey_profile, icc_profile,
                             png_colour_chunks, save_avif_with_nclx, save_in_profile, save_with_cicp, save_with_gamma,
                             set_nclx)
from tha_studio.pose.character_image import (
    PICTURE_SUFFIXES,
    CharacterImageError,
    fit_character_image,
    from_network,
    prepare_character_image,
    to_network,
    turned_by_exif,
)
from tha_studio.pose.colour_space import linear_to_srgb, srgb_to_linear
from tha_studio.pose.schema import THA2, THA3


def png_chunk(kind, data):
    """A PNG chunk as its specification writes it: length, kind, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


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


@pytest.mark.parametrize("orientation, turn", [(6, Image.Transpose.ROTATE_90), (3, Image.Transpose.ROTATE_180),
                                               (2, Image.Transpose.FLIP_LEFT_RIGHT)])
def test_a_picture_stored_on_its_side_is_read_as_its_exif_orientation_shows_it(character, tmp_path, orientation, turn):
    # A phone or an editor may store the pixels turned and say so in EXIF; every viewer shows it upright.
    stored = tmp_path / "stored.png"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.open(character).convert("RGBA").transpose(turn).save(stored, exif=exif)
    assert turned_by_exif(stored) and not turned_by_exif(character)
    assert np.array_equal(prepare_character_image(stored, THA3), prepare_character_image(character, THA3))


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
    with pytest.raises(CharacterImageError, match=r"opaque.png: has no transparent background \(every pixel is opaque\)"):
        prepare_character_image(save(rgba, tmp_path / "opaque.png"), THA3)


def test_a_background_left_faintly_opaque_is_refused_saying_how_faint(character, tmp_path):
    rgba = np.array(Image.open(character).convert("RGBA"))
    rgba[rgba[..., 3] < 2, 3] = 2  # what a background remover leaves now and then
    with pytest.raises(CharacterImageError, match=r"faint.png: has no transparent background: no pixel is fully "
                                                  r"transparent \(the least opaque have alpha 2 of 255\)"):
        prepare_character_image(save(rgba, tmp_path / "faint.png"), THA3)


@pytest.mark.parametrize("radius", [40, 180])
def test_a_background_erased_only_in_its_rounded_corners_is_refused(character, tmp_path, radius):
    # An avatar or icon exported with rounded corners: RGBA, some pixels fully transparent, yet
    # the character sits on its background. Fit and pose would take the background for the head.
    rgba = np.array(Image.open(character).convert("RGBA"))
    rgba[..., :3][rgba[..., 3] == 0] = (120, 170, 220)
    y, x = np.mgrid[:512, :512]
    near = np.clip(np.minimum(x, 511 - x), None, radius), np.clip(np.minimum(y, 511 - y), None, radius)
    rgba[..., 3] = np.where(np.hypot(radius - near[0], radius - near[1]) > radius, 0, 255)
    path = save(rgba, tmp_path / "avatar.png")
    message = r"avatar.png: its background is not erased: only \d+% of the picture is transparent"
    with pytest.raises(CharacterImageError, match=message):
        prepare_character_image(path, THA3)
    with pytest.raises(CharacterImageError, match=message):
        fit_character_image(path, THA3)


def test_a_character_filling_most_of_the_picture_is_accepted(character, tmp_path):
    # Long hair and shoulders may reach the sides and fill the picture below the head.
    rgba = np.array(Image.open(character).convert("RGBA"))
    rgba[150:, :] = (200, 150, 150, 255)
    rgba[100:, :150] = rgba[100:, -150:] = (90, 60, 40, 255)
    assert (rgba[..., 3] == 0).mean() < 0.3
    assert prepare_character_image(save(rgba, tmp_path / "wide.png"), THA3).shape == (512, 512, 4)


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


@pytest.mark.parametrize("suffix", PICTURE_SUFFIXES)
def test_every_kind_of_picture_file_offered_is_read(character, tmp_path, suffix):
    """Each picture file the add-on's browser offers, saved from a real sample: the same picture
    where the format is lossless, the same silhouette where it is not (AVIF; GIF's one-bit alpha)."""
    saved = tmp_path / f"picture{suffix}"
    Image.open(character).convert("RGBA").save(saved, **({"lossless": True} if suffix == ".webp" else {}))
    expected, read = prepare_character_image(character, THA3), prepare_character_image(saved, THA3)
    if suffix in (".avif", ".gif"):
        assert np.mean((read[..., 3] > 0) != (expected[..., 3] > 0)) < 0.01
    else:
        assert np.array_equal(read, expected)


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif"])
@pytest.mark.parametrize("profile", list(PROFILES))
def test_a_picture_saved_in_another_colour_space_is_read_in_srgb(tha3_data, tmp_path, profile, suffix):
    """A drawing app on an iPad or a Mac saves in Display P3; its values read as sRGB were up to
    117 levels off the colours drawn (a saturated red), and THA's networks work in sRGB."""
    for name in ("crypko_00", "lambda_00"):
        drawn = np.asarray(Image.open(tha3_data / f"images/{name}.png").convert("RGBA"))
        saved = save_in_profile(drawn, profile, tmp_path / f"{name}{suffix}", lossless=True)
        expected, read = prepare_character_image(drawn, THA3), prepare_character_image(saved, THA3)
        assert np.array_equal(read[..., 3], expected[..., 3])
        difference = np.abs(read.astype(int) - expected)[expected[..., 3] > 0]
        assert difference.max() <= 3 and difference.mean() < 0.2  # (8-bit rounding in the other space)
        as_stored = np.asarray(Image.open(saved).convert("RGBA")).astype(int)
        assert np.abs(as_stored - drawn)[drawn[..., 3] > 0].max() >= 13  # what reading it as sRGB gave


def test_a_picture_whose_profile_is_srgb_or_unreadable_is_read_as_stored(character, tmp_path):
    """An sRGB profile (littleCMS's own here) leaves the values as they are, not a level moved
    by a conversion, and a damaged profile is passed over, as viewers pass it over."""
    expected = prepare_character_image(character, THA3)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    damaged = icc_profile("Display P3")[:200]
    for name, profile in (("srgb", srgb), ("damaged", damaged), ("junk", b"not a profile" * 40)):
        saved = tmp_path / f"{name}.png"
        Image.open(character).convert("RGBA").save(saved, icc_profile=profile)
        assert np.array_equal(prepare_character_image(saved, THA3), expected)


def test_a_grey_picture_saved_with_a_grey_profile_is_read_in_srgb(tha3_data, tmp_path):
    """A grey drawing (a manga character) saved in Photoshop carries its grey working space's
    profile, Gray Gamma 1.8 here; such a profile was passed over and the shades read as sRGB."""
    drawn = np.asarray(Image.open(tha3_data / "images/crypko_00.png").convert("LA").convert("RGBA"))
    expected = prepare_character_image(drawn, THA3)
    shown = expected[..., 3] > 0
    light = srgb_to_linear(drawn[..., 0] / 255.0)
    stored = np.stack([np.rint(light ** (1 / 1.8) * 255.0), drawn[..., 3]], axis=-1).astype(np.uint8)
    saved = tmp_path / "grey.png"
    Image.fromarray(stored, "LA").save(saved, icc_profile=grey_profile(1.8))
    assert Image.open(saved).mode == "LA"
    read = prepare_character_image(saved, THA3)
    assert np.array_equal(read[..., 3], expected[..., 3])
    assert np.abs(read.astype(int) - expected)[shown].max() <= 1
    as_stored = np.abs(stored[..., 0].astype(int) - drawn[..., 0])[drawn[..., 3] > 0]
    assert as_stored.max() >= 15  # what reading it as sRGB gave
    # The same in 16 bits, which Pillow reads as RGBA: the profile was passed over there.
    deep = np.stack([np.rint(light ** (1 / 1.8) * 65535.0), drawn[..., 3] * 257.0], axis=-1).astype(">u2")
    saved = save_16_bit_grey_and_alpha_png(tmp_path / "grey16.png", deep, grey_profile(1.8))
    read = prepare_character_image(saved, THA3)
    assert np.array_equal(read[..., 3], expected[..., 3])
    difference = np.abs(read.astype(int) - expected)[shown]
    assert difference.max() <= 2 and difference.mean() < 0.5  # (Pillow keeps the high byte of 16 bits, unrounded)


def save_16_bit_grey_and_alpha_png(path, samples, icc_profile):
    """(H, W, 2) big-endian 16-bit grey and alpha samples as a PNG with an ICC profile (iCCP),
    which Pillow cannot write."""
    height, width = samples.shape[:2]
    rows = b"".join(b"\0" + row.tobytes() for row in samples)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0))
                     + png_chunk(b"iCCP", b"grey\0\0" + zlib.compress(icc_profile))
                     + png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))
    return path


def test_a_grey_profile_of_srgbs_curve_or_on_a_colour_picture_leaves_it_as_stored(character, tmp_path):
    """A grey profile with sRGB's curve (sGray) is sRGB's grey; on a colour picture a grey
    profile does not fit, and is passed over as viewers pass it over."""
    levels = np.arange(1024) / 1023
    s_grey = grey_profile(table=srgb_to_linear(levels), name="sGray")
    grey = np.asarray(Image.open(character).convert("LA"))
    saved = tmp_path / "sgrey.png"
    Image.fromarray(grey, "LA").save(saved, icc_profile=s_grey)
    assert np.array_equal(prepare_character_image(saved, THA3),
                          prepare_character_image(np.asarray(Image.fromarray(grey, "LA").convert("RGBA")), THA3))
    coloured = tmp_path / "colour with a grey profile.png"
    Image.open(character).convert("RGBA").save(coloured, icc_profile=grey_profile(1.8))
    assert np.array_equal(prepare_character_image(coloured, THA3), prepare_character_image(character, THA3))


def save_colour_keyed_png(path, samples, depth, key):
    """Grey (H, W) or RGB (H, W, 3) samples of `depth` bits as a PNG whose transparency is the
    colour key `key` (tRNS), as older tools and PngSuite's tbbn/tbwn/tbgn files hold it."""
    samples = np.asarray(samples)
    colour = samples.ndim == 3
    if depth == 16:
        rows = [row.astype(">u2").tobytes() for row in samples]
    else:  # (grey of 1, 2 or 4 bits: the samples packed into bytes, first one highest)
        bits = np.unpackbits(samples.astype(np.uint8)[..., None], axis=-1)[..., 8 - depth:]
        rows = [np.packbits(row.reshape(-1)).tobytes() for row in bits]
    height, width = samples.shape[:2]
    colour_type = 2 if colour else 0  # (RGB or grey, neither with alpha)
    header = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
                     + png_chunk(b"tRNS", struct.pack(">3H" if colour else ">H", *np.atleast_1d(key)))
                     + png_chunk(b"IDAT", zlib.compress(b"".join(b"\0" + row for row in rows)))
                     + png_chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("kind", ["16-bit grey", "4-bit grey", "2-bit grey", "16-bit colour"])
def test_a_png_whose_transparency_is_a_colour_key_of_other_than_8_bits_is_read_with_it(character, tmp_path, kind):
    """A grey or RGB PNG may mark its background by a colour key (tRNS) instead of alpha. Of 2 or
    4 bits, Pillow's read had no transparent pixel (so the picture was refused for its
    background); of 16-bit grey, every shade past 255 out of 65535 read white."""
    drawn = np.asarray(Image.open(character).convert("RGBA"))
    shown = drawn[..., 3] >= 128  # (a key's transparency is all or nothing)
    depth = int(kind.split("-")[0])
    if kind.endswith("colour"):
        key = (0x2000, 0x8000, 0x2000)  # (a green the drawing has not, even to 8 bits: 32, 128, 32)
        assert not np.any(np.all(drawn[..., :3] == (32, 128, 32), axis=-1) & shown)
        samples = np.where(shown[..., None], drawn[..., :3].astype(np.uint16) * 257, np.array(key))
        expected_rgb = drawn[..., :3]
    else:
        grey = np.asarray(Image.fromarray(drawn).convert("L")).astype(np.int64)
        top = 2 ** depth - 1
        levels = np.rint(grey * top / 255) if depth < 8 else grey * 257
        key = top if depth < 8 else 0xFFFF  # (white: the shades kept are brought below it)
        samples = np.where(shown, np.minimum(levels, key - 1), key)
        expected_rgb = np.repeat(np.rint(np.minimum(levels, key - 1) * 255 / top)[..., None], 3, axis=-1)
    saved = save_colour_keyed_png(tmp_path / f"{kind}.png", samples, depth, key)
    expected = np.dstack([expected_rgb, np.where(shown, 255, 0)]).astype(np.uint8)
    assert np.array_equal(prepare_character_image(saved, THA3), prepare_character_image(expected, THA3))


def test_a_png_whose_gama_and_chrm_chunks_name_another_colour_space_is_read_in_srgb(tha3_data, tmp_path):
    """A PNG may give its colour space by its own chunks and no profile: ImageMagick writes a
    picture of linear values with gAMA 1.0, an editor of an old Mac's gamma 1.8 writes 0.55556,
    and cHRM gives primaries (Display P3's here). Read as stored they were off what was drawn."""
    drawn = np.asarray(Image.open(tha3_data / "images/crypko_00.png").convert("RGBA"))
    expected = prepare_character_image(drawn, THA3)
    shown = expected[..., 3] > 0
    for gamma in (1.0, 1 / 1.8):
        saved = save_with_gamma(drawn, gamma, tmp_path / f"gamma {gamma:.2f}.png")
        read = prepare_character_image(saved, THA3)
        assert np.array_equal(read[..., 3], expected[..., 3])
        difference = np.abs(read.astype(int) - expected)[shown]
        # (a dark shade stored in 8-bit linear values loses levels: the mean says the rest)
        assert difference.mean() < 0.6 and np.percentile(difference, 99) <= 3
        as_stored = np.abs(np.asarray(Image.open(saved)).astype(int) - drawn)[drawn[..., 3] > 0]
        assert as_stored.mean() > 10  # what reading it as sRGB gave
    # Display P3 by cHRM reads as the same picture saved with Display P3's ICC profile does.
    profiled = save_in_profile(drawn, "Display P3", tmp_path / "profile.png")
    tagged = tmp_path / "chunks.png"
    Image.fromarray(np.asarray(Image.open(profiled))).save(  # (the same values, without the profile)
        tagged, pnginfo=png_colour_chunks(gamma=1 / 2.2, chromaticity=DISPLAY_P3_CHROMATICITY))
    assert Image.open(tagged).info.get("icc_profile") is None
    by_chunks, by_profile = prepare_character_image(tagged, THA3), prepare_character_image(profiled, THA3)
    assert np.abs(by_chunks.astype(int) - by_profile).max() <= 1
    assert np.abs(by_chunks.astype(int) - expected)[shown].max() <= 3


@pytest.mark.parametrize("chunks, why", [
    ({"gamma": 1 / 2.2}, "sRGB's stand-in, as libpng and ImageMagick write it"),
    ({"gamma": 0.45455, "chromaticity": (0.3127, 0.329, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)}, "sRGB's"),
    ({"gamma": 1.0, "srgb": True}, "an sRGB chunk ranks above gAMA"),
    ({"gamma": 0.0}, "a gAMA of 0 is wrong, and passed over"),
    ({"chromaticity": (0.3127, 0.329) + (0.3, 0.6) * 3}, "primaries that span no colour space"),
    ({"chromaticity": (0.3127, 0.0, 0.64, 0.33, 0.3, 0.6, 0.15, 0.06)}, "a white of no brightness"),
])
def test_a_png_whose_colour_chunks_give_srgb_or_nothing_is_read_as_stored(character, tmp_path, chunks, why):
    saved = tmp_path / "tagged.png"
    Image.open(character).convert("RGBA").save(saved, pnginfo=png_colour_chunks(**chunks))
    assert np.array_equal(prepare_character_image(saved, THA3), prepare_character_image(character, THA3)), why


def test_an_icc_profile_ranks_above_a_pngs_gama(character, tmp_path):
    """A PNG may carry both; PNG's specification ranks the profile first, as viewers do."""
    saved = tmp_path / "both.png"
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open(character).convert("RGBA").save(saved, icc_profile=srgb, pnginfo=png_colour_chunks(gamma=1.0))
    assert Image.open(saved).info["gamma"] == 1.0
    assert np.array_equal(prepare_character_image(saved, THA3), prepare_character_image(character, THA3))


@pytest.mark.parametrize("profile", list(CICP_OF_PROFILES))
def test_a_png_whose_cicp_chunk_names_another_colour_space_is_read_in_srgb(tha3_data, tmp_path, profile):
    """PNG's third edition names a colour space by ITU-T H.273's code points (cICP), and ranks
    them above any other tag; a PNG that names Display P3 or Rec. 2020 so was read as sRGB."""
    drawn = np.asarray(Image.open(tha3_data / "images/crypko_00.png").convert("RGBA"))
    expected = prepare_character_image(drawn, THA3)
    profiled = save_in_profile(drawn, profile, tmp_path / "profile.png")
    values = np.asarray(Image.open(profiled))  # (the same values, named by cICP instead)
    tagged = save_with_cicp(values, tmp_path / "cicp.png", *CICP_OF_PROFILES[profile])
    by_code_points, by_profile = prepare_character_image(tagged, THA3), prepare_character_image(profiled, THA3)
    assert np.abs(by_code_points.astype(int) - by_profile).max() <= 1
    assert np.abs(by_code_points.astype(int) - expected)[expected[..., 3] > 0].max() <= 3
    assert np.abs(values.astype(int) - drawn)[drawn[..., 3] > 0].max() >= 13  # what reading it as sRGB gave
    # cICP ranks above a profile: sRGB's code points over Display P3's profile leave the values as stored.
    both = save_with_cicp(values, tmp_path / "both.png", 1, 13, icc_profile=icc_profile("Display P3"))
    assert np.array_equal(prepare_character_image(both, THA3), prepare_character_image(values, THA3))


def test_a_cicp_chunk_of_narrow_range_or_linear_grey_is_read_in_srgb(character, tmp_path):
    """cICP may say the levels span 16-235 (a video frame's), and name a grey picture's curve."""
    drawn = np.asarray(Image.open(character).convert("RGBA"))
    expected = prepare_character_image(drawn, THA3)
    shown = expected[..., 3] > 0
    narrow = drawn.copy()
    narrow[..., :3] = np.rint(16 + drawn[..., :3] * (219 / 255))
    read = prepare_character_image(save_with_cicp(narrow, tmp_path / "narrow.png", 1, 13, full_range=False), THA3)
    assert np.abs(read.astype(int) - expected)[shown].max() <= 1
    grey = np.asarray(Image.fromarray(drawn).convert("LA"))
    linear = np.stack([np.rint(srgb_to_linear(grey[..., 0] / 255.0) * 255.0), grey[..., 1]], axis=-1)
    read = prepare_character_image(save_with_cicp(linear, tmp_path / "grey.png", 1, 8), THA3)
    grey_expected = prepare_character_image(np.asarray(Image.fromarray(grey, "LA").convert("RGBA")), THA3)
    difference = np.abs(read.astype(int) - grey_expected)[shown]
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 4  # (8-bit linear loses dark shades)


def encode_hdr(rgba, transfer):
    """An sRGB picture as an HDR one in BT.2020's primaries, its white at BT.2408's reference
    white (203 nits), stored in 8 bits by PQ's or HLG's curve (their formulas, written out here
    from ST 2084 and BT.2100 in the direction the reader does not go)."""
    light = srgb_to_linear(rgba[..., :3] / 255.0)
    to_bt2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])
    nits = light @ to_bt2020.T * 203.0
    if transfer == "PQ":
        m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
        power = (nits / 10000.0) ** m1
        signal = ((c1 + c2 * power) / (1 + c3 * power)) ** m2
    else:  # HLG: the display's light back to the scene's (system gamma 1.2 at 1000 nits), then its curve
        brightness = nits @ np.array([0.2627, 0.6780, 0.0593]) / 1000.0
        scene = nits / 1000.0 * np.where(brightness > 0, brightness, 1.0)[..., None] ** (-0.2 / 1.2)
        a, b, c = 0.17883277, 0.28466892, 0.55991073
        signal = np.where(scene <= 1 / 12, np.sqrt(3 * np.maximum(scene, 0)),
                          a * np.log(np.maximum(12 * scene - b, 1e-12)) + c)
    stored = np.array(rgba, np.uint8)
    stored[..., :3] = np.rint(np.clip(signal, 0, 1) * 255.0)
    return stored


@pytest.mark.parametrize("transfer, code", [("PQ", 16), ("HLG", 18)])
def test_an_hdr_picture_is_read_with_its_reference_white_as_srgbs_white(character, tmp_path, transfer, code):
    """An HDR PNG or AVIF (PQ or HLG, BT.2020's primaries) is brought to SDR by BT.2408's
    reference white, where SDR's white sits in HDR: its white reads white, its colours as drawn."""
    drawn = np.asarray(Image.open(character).convert("RGBA"))
    expected = prepare_character_image(drawn, THA3)
    shown = expected[..., 3] > 0
    stored = encode_hdr(drawn, transfer)
    read = prepare_character_image(save_with_cicp(stored, tmp_path / "hdr.png", 9, code), THA3)
    difference = np.abs(read.astype(int) - expected)[shown]
    # (8 bits of PQ or HLG hold SDR's range in some 150 or 190 levels: a dark shade moves a few)
    assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 8
    assert np.abs(stored.astype(int) - drawn)[..., :3][drawn[..., 3] > 0].mean() > 15  # what reading it as sRGB gave
    white = encode_hdr(np.full((1, 1, 4), 255, np.uint8), transfer)[0, 0, 0]
    assert white == (148 if transfer == "PQ" else 191)  # (PQ's 203 nits, HLG's 75%: BT.2408's figures)


def test_an_avif_whose_nclx_box_names_another_colour_space_is_read_in_srgb(tha3_data, tmp_path):
    """An AVIF without an ICC profile names its colour space by its nclx colour box (H.273's code
    points), which Pillow does not read: Display P3 read as sRGB was up to 117 levels off."""
    drawn = np.asarray(Image.open(tha3_data / "images/crypko_00.png").convert("RGBA"))
    expected = prepare_character_image(drawn, THA3)
    shown = expected[..., 3] > 0
    values = np.asarray(Image.open(save_in_profile(drawn, "Display P3", tmp_path / "profile.png")))
    by_code_points = prepare_character_image(save_avif_with_nclx(values, tmp_path / "nclx.avif", 12, 13), THA3)
    profiled = tmp_path / "profile.avif"
    Image.fromarray(values).save(profiled, quality=100, subsampling="4:4:4", icc_profile=icc_profile("Display P3"))
    by_profile = prepare_character_image(profiled, THA3)
    assert np.abs(by_code_points.astype(int) - by_profile)[shown].max() <= 1  # (the same pixels decoded)
    assert np.abs(by_code_points.astype(int) - expected)[shown].mean() < 2.5  # (AVIF's own loss)
    as_srgb = prepare_character_image(save_avif_with_nclx(values, tmp_path / "srgb.avif", 1, 13), THA3)
    assert np.abs(as_srgb.astype(int) - expected)[shown].max() >= 100
    # A profile ranks above nclx in an AVIF (its nclx then gives only the YUV coding).
    both = tmp_path / "both.avif"
    both.write_bytes(profiled.read_bytes())
    set_nclx(both, 9, 8)  # (Rec. 2020, linear)
    assert np.array_equal(prepare_character_image(both, THA3), by_profile)


@pytest.mark.parametrize("codes, why", [
    ((2, 2, 0, 1), "unspecified"),
    ((12, 13, 1, 1), "matrix coefficients of a YUV coding, which a PNG may not name"),
    ((10, 17, 0, 1), "CIE XYZ, which holds no primaries"),
    ((12, 3, 0, 1), "a reserved transfer"),
    ((12, 13, 0, 7), "a range flag of neither 0 nor 1"),
])
def test_a_cicp_chunk_that_cannot_be_followed_is_passed_over_for_the_next_tag(character, tmp_path, codes, why):
    """Code points no reader follows are passed over, as an unreadable profile is, and the
    next tag read (here gAMA 1.0 of a picture of linear values)."""
    drawn = np.asarray(Image.open(character).convert("RGBA"))
    by_gamma = save_with_gamma(drawn, 1.0, tmp_path / "gamma.png")
    info = png_colour_chunks(gamma=1.0)
    info.add(b"cICP", bytes(codes))
    saved = tmp_path / "tagged.png"
    Image.open(by_gamma).save(saved, pnginfo=info)
    assert np.array_equal(prepare_character_image(saved, THA3), prepare_character_image(by_gamma, THA3)), why


def test_damaged_colour_boxes_raise_nothing_but_a_named_error(character, tmp_path):
    """The chunks and boxes read here that Pillow does not read, damaged: each picture is read
    or refused by name, never failed with another exception."""
    drawn = np.asarray(Image.open(character).convert("RGBA").resize((128, 128)))
    sources = [save_with_cicp(drawn, tmp_path / "cicp.png", 12, 13),
               save_avif_with_nclx(drawn, tmp_path / "nclx.avif", 12, 13)]
    generator = np.random.default_rng(7)
    for source in sources:
        original = source.read_bytes()
        header = original.index(b"IDAT") if source.suffix == ".png" else original.index(b"mdat")
        for trial in range(60):
            data = bytearray(original)
            for at in generator.integers(8, header, size=generator.integers(1, 4)):
                data[at] = generator.integers(0, 256)
            damaged = tmp_path / f"damaged{trial}{source.suffix}"
            damaged.write_bytes(bytes(data))
            try:
                prepare_character_image(damaged, THA3)
            except CharacterImageError as error:
                assert damaged.name in str(error)


def test_unreadable_and_missing_files_are_named(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_text("not a picture")
    with pytest.raises(CharacterImageError, match="junk.png: not a readable picture"):
        prepare_character_image(junk, THA3)
    with pytest.raises(CharacterImageError, match="nope.png: no such file"):
        prepare_character_image(tmp_path / "nope.png", THA3)


def test_damaged_pictures_are_named(character, tmp_path):
    """Pillow's decoders fail damaged files with more than OSError (each found by flipping bytes):
    they went through as tracebacks."""
    qoi, png = tmp_path / "cut.qoi", tmp_path / "chunk.png"
    Image.open(character).save(qoi)
    qoi.write_bytes(qoi.read_bytes()[: qoi.stat().st_size // 2])  # ValueError: not enough image data
    data, at, idat = bytearray(Path(character).read_bytes()), 8, 0
    while idat < 2:  # to the second IDAT chunk: its type damaged gives SyntaxError as the pixels load
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        idat += kind == b"IDAT"
        at += 12 + length if idat < 2 else 0
    data[at + 4 : at + 8] = b"\x00\x01\x02\x03"
    png.write_bytes(data)
    for damaged in (qoi, png):
        with pytest.raises(CharacterImageError, match=rf"{damaged.name}: not a readable picture \(damaged: .+\)$"):
            prepare_character_image(damaged, THA3)


def test_a_picture_declaring_billions_of_pixels_is_refused_by_name(tmp_path):
    """A decompression bomb: a few hundred bytes whose header declares 60000x60000 pixels."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 6, 0, 0, 0))
                     + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b""))
    limit = f"{2 * Image.MAX_IMAGE_PIXELS:,}"  # (Pillow's: 178,956,970)
    with pytest.raises(CharacterImageError, match=rf"bomb.png: is too large to read \(3,600,000,000 pixels, past the "
                       rf"{limit} a picture may have\): scale it down$"):
        prepare_character_image(bomb, THA3)


def test_a_large_picture_below_the_limit_is_read_without_pillows_warning(tha3_data, monkeypatch):
    """Pillow warns of pictures between its limit and twice it ("could be decompression bomb DOS
    attack"), a line that reached users of a 12000x12000 drawing; here the limit is lowered under
    a real 512x512 sample (262,144 pixels) rather than a 140-million-pixel file decoded."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)
    picture = tha3_data / "images" / "crypko_00.png"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepared = prepare_character_image(picture, THA3)
    assert prepared.shape == (512, 512, 4)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # twice that is under 262,144: refused
    with pytest.raises(CharacterImageError, match=r"crypko_00.png: is too large to read \(262,144 pixels, past the "
                       r"200,000 a picture may have\)"):
        prepare_character_image(picture, THA3)


# Sample pictures whose neck shows under the chin (in the others hair or a collar hides it).
NECK_SHOWS = ("crypko_00", "crypko_04", "crypko_07", "lambda_00", "lambda_01")


def user_picture(path, tmp_path, side=300, canvas=(900, 1300), at=(520, 640)):
    """A THA sample as a user might have it: small, off-centre, on a tall canvas."""
    picture = Image.new("RGBA", canvas)
    picture.paste(Image.open(path).convert("RGBA").resize((side, side), Image.LANCZOS), at)
    out = tmp_path / f"{path.stem}_user.png"
    picture.save(out)
    return out


def test_a_thas_picture_fitted_by_its_own_head_box_is_unchanged(tha3_data):
    for path in sorted((tha3_data / "images").glob("*.png")):
        fitted, head = fit_character_image(path, THA3, top=64, chin=192, centre=255.5)
        assert head.found == "given"
        assert np.array_equal(fitted, prepare_character_image(path, THA3)), path.name


def test_a_small_character_on_a_large_canvas_is_fitted_as_its_own_picture(tha3_data, tmp_path):
    for stem in NECK_SHOWS:
        path = tha3_data / "images" / f"{stem}.png"
        own, head = fit_character_image(path, THA3)
        # The samples were drawn to THA's box: what is found lies near it.
        assert abs(head.top - 64) <= 10 and abs(head.chin - 192) <= 25 and abs(head.centre - 256) <= 16, head
        assert head.found == "top found, centre found, chin at the neck"
        user = user_picture(path, tmp_path)
        with pytest.raises(CharacterImageError, match="the head is not inside the head box.*--fit"):
            prepare_character_image(user, THA3)
        fitted, moved = fit_character_image(user, THA3)
        assert abs((moved.chin - moved.top) * 512 / 300 - (head.chin - head.top)) <= 12, (stem, head, moved)
        ours, theirs = own[..., 3] >= 128, fitted[..., 3] >= 128
        assert (ours & theirs).sum() / (ours | theirs).sum() >= 0.93, stem
        assert np.array_equal(prepare_character_image(fitted, THA3), fitted)  # passes every check


def test_given_rows_put_the_head_on_the_head_box_exactly():
    # A drawn character: a disc of a head (rows 300-500, centre column 700), a neck, a wide body.
    rows, columns = np.mgrid[:1600, :1400]
    head = (columns - 700) ** 2 + (rows - 400) ** 2 <= 100**2
    neck = (abs(columns - 700) <= 40) & (rows >= 480) & (rows < 560)
    body = (abs(columns - 700) <= 300) & (rows >= 560)
    rgba = np.zeros((1600, 1400, 4), np.uint8)
    rgba[head | neck | body] = (200, 150, 120, 255)
    fitted, _ = fit_character_image(rgba, THA3, top=300, chin=500, centre=700)
    alpha = fitted[..., 3] >= 128
    column = np.nonzero(alpha[:, 256])[0]
    assert column[0] == 64  # the top of the head on the box's top row
    middle = np.nonzero(alpha[128])[0]  # the disc's widest row, 100 of its pixels below its top
    assert abs((middle[0] + middle[-1] + 1) / 2 - 256) <= 1  # centred on the box's middle
    assert abs(len(middle) - 128) <= 2  # a 200-pixel head became 128
    _, where = fit_character_image(rgba, THA3)
    # Found: the top where the disc is 6% of the body's width, the chin where the jaw meets the neck.
    assert abs(where.top - 300) <= 3 and where.centre == 700 and abs(where.chin - 500) <= 25, where


def test_a_hidden_neck_is_named_and_the_rows_can_be_given(tha3_data):
    path = tha3_data / "images" / "crypko_01.png"
    with pytest.raises(CharacterImageError, match=r"crypko_01.png: could not find the chin under the head at row 6\d .*--head TOP,CHIN"):
        fit_character_image(path, THA3)
    _, head = fit_character_image(path, THA3, top=64, chin=192)
    assert head.found == "centre found" and (head.top, head.chin) == (64, 192)


def test_fitting_refuses_what_it_cannot_place(tha3_data, tmp_path):
    empty = np.zeros((600, 600, 4), np.uint8)
    with pytest.raises(CharacterImageError, match="fully transparent"):
        fit_character_image(empty, THA3)
    opaque = np.asarray(Image.open(tha3_data / "images" / "crypko_00.png").convert("RGBA")).copy()
    opaque[..., 3] = 255
    with pytest.raises(CharacterImageError, match="has no transparent background"):
        fit_character_image(opaque, THA3)
    path = tha3_data / "images" / "crypko_00.png"
    with pytest.raises(CharacterImageError, match=r"crypko_00.png: head rows 300-200: the top of the head must be above the chin"):
        fit_character_image(path, THA3, top=300, chin=200)
    with pytest.raises(CharacterImageError, match=r"the head's centre 900 is outside the picture \(512 pixels wide\)"):
        fit_character_image(path, THA3, top=64, chin=192, centre=900)
    for top in (-5, 600):
        with pytest.raises(CharacterImageError, match=rf"the head's top {top} is outside the picture \(512 pixels high\)"):
            fit_character_image(path, THA3, top=top, chin=192)
    # Rows that put the character where the networks cannot use it: the checks say so, with the rows.
    with pytest.raises(CharacterImageError, match=r"crypko_00.png: fitted with head rows 0-512.*but the head is not"):
        fit_character_image(path, THA3, top=0, chin=512)  # the whole picture in the head box


def test_a_tiny_head_on_a_huge_canvas_is_fitted_from_the_covered_part_alone(tha3_data, tmp_path):
    user = user_picture(tha3_data / "images" / "crypko_04.png", tmp_path, side=80, canvas=(4000, 3000), at=(2500, 2200))
    fitted, head = fit_character_image(user, THA3)
    assert head.found == "top found, centre found, chin at the neck" and 20 <= head.chin - head.top <= 24
    assert fitted.shape == (512, 512, 4)
    assert np.array_equal(prepare_character_image(fitted, THA3), fitted)
