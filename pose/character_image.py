"""Character pictures: checking a user's picture, and the networks' pixel convention (numpy + PIL).

Network convention (shared/reference/tha.md §0.2): channels RGBA first (4, H, W), straight
alpha, RGB in linear light (sRGB decoded with the IEC formula), every channel mapped x*2-1 to
[-1, 1], and RGB zero wherever alpha is zero (colour hidden under transparent pixels breaks
the networks' output). The way back: (y+1)/2, clipped, RGB encoded to sRGB.

`prepare_character_image` turns a user's picture into the RGBA uint8 square its schema wants
(centre square crop and LANCZOS resize, like the official demos) and refuses, with a message
naming the file, a picture the networks cannot use. `fit_character_image` is what a user asks
for instead when the character is not yet where THA wants it (a full-body drawing, a head too
small or off-centre): it scales and moves the picture so the head fills the schema's head box.
"""

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..input_files import not_a_file
from .colour_space import COLOUR_TAGS, in_srgb, linear_to_srgb, srgb_to_linear
from .colour_tags import cicp_code_points


# The picture files a file browser offers: those with alpha that THA Studio reads (Pillow). Blender
# itself reads neither AVIF nor QOI; a sprite packs its prepared copy of those (animation/blender/sprite.py).
PICTURE_SUFFIXES = (".png", ".webp", ".avif", ".tga", ".tif", ".tiff", ".gif", ".qoi")


class CharacterImageError(UserError, ValueError):
    """A picture the networks cannot use; the message names the file and the problem."""

    def __init__(self, source, problem):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


def to_network(rgba):
    """RGBA uint8 (H, W, 4) -> float32 (4, H, W) in the network convention.

    As the official THA3 converter: RGB zeroed where alpha is 0, /255 and sRGB decoding in
    float64, straight alpha, x*2-1, then float32.
    """
    rgba = np.asarray(rgba)
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an RGBA uint8 array (H, W, 4), got {rgba.dtype} {rgba.shape}")
    values = rgba.astype(np.float64) / 255.0
    values[rgba[..., 3] == 0] = 0.0
    values[..., :3] = srgb_to_linear(values[..., :3])
    return np.ascontiguousarray((values * 2.0 - 1.0).transpose(2, 0, 1), dtype=np.float32)


def from_network(image):
    """Float (4, H, W) or (B, 4, H, W) in the network convention -> RGBA uint8 (H, W, 4) or (B, H, W, 4)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (3, 4) or image.shape[-3] != 4:
        raise ValueError(f"expected (4, H, W) or (B, 4, H, W) network images, got shape {image.shape}")
    values = np.clip((np.moveaxis(image, -3, -1).astype(np.float64) + 1.0) / 2.0, 0.0, 1.0)
    values[..., :3] = linear_to_srgb(values[..., :3])
    return np.rint(values * 255.0).astype(np.uint8)


def zero_hidden_colour(rgba):
    """A copy with RGB set to 0 wherever alpha is 0."""
    rgba = np.array(rgba, dtype=np.uint8, copy=True)
    rgba[rgba[..., 3] == 0, :3] = 0
    return rgba


def _open_rgba(path_or_array):
    """(RGBA PIL image, source name); refuses pictures without an alpha channel."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(path_or_array, (str, Path)):
        source = str(path_or_array)
        if kind := not_a_file(source):
            raise CharacterImageError(source, f"is {kind}, not a picture")
        try:
            with warnings.catch_warnings():
                # Pillow warns from 89 million pixels (a 12000x12000 drawing is large, not an
                # attack) and refuses from twice that, which is named below.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(source) as opened:
                    opened.load()
                    colour_tags = {tag: opened.info[tag] for tag in COLOUR_TAGS if tag in opened.info}
                    # (an AVIF's nclx box names its colour space where it has no ICC profile)
                    if opened.format == "PNG" or opened.format == "AVIF" and not colour_tags.get("icc_profile"):
                        colour_tags["cicp"] = cicp_code_points(source, opened.format)
                    depth, colour_type = _png_header(source) if opened.format == "PNG" else (None, None)
                    keyed_depth = _keyed_png_depth(opened, depth)
                    # Grey, grey and alpha, 16-bit grey; and 16-bit grey and alpha, which Pillow reads as RGBA.
                    grey = Image.getmodebase(opened.mode) == "L" or colour_type == PNG_GREY_AND_ALPHA
                    # Upright as every viewer shows it (a phone's or an editor's orientation tag).
                    image = ImageOps.exif_transpose(opened)
                    if keyed_depth:
                        image = _apply_colour_key(image, keyed_depth)
        except FileNotFoundError:
            raise CharacterImageError(source, "no such file") from None
        except Image.DecompressionBombError as error:
            # A few bytes can declare billions of pixels: past Pillow's limit nothing is decoded.
            declared = re.search(r"\((\d+) pixels\)", str(error))
            pixels = f"{int(declared.group(1)):,} pixels, " if declared else ""
            raise CharacterImageError(source, f"is too large to read ({pixels}past the "
                                      f"{2 * Image.MAX_IMAGE_PIXELS:,} a picture may have): "
                                      "scale it down") from None
        except (UnidentifiedImageError, OSError) as error:
            raise CharacterImageError(source, f"not a readable picture ({error})") from None
        except Exception as error:  # noqa: BLE001 - Pillow's decoders fail a damaged file in many ways
            # (a cut QOI: ValueError; a broken PNG chunk: SyntaxError; AVIF: RuntimeError)
            reason = str(error).strip() or type(error).__name__
            raise CharacterImageError(source, f"not a readable picture (damaged: {reason})") from None
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        if not has_alpha:
            raise CharacterImageError(
                source,
                f"has no alpha channel (mode {image.mode}); THA needs a transparent background: "
                "save it as an RGBA PNG with the background erased",
            )
        return in_srgb(image.convert("RGBA"), colour_tags, grey), source
    array = np.asarray(path_or_array)
    source = "the picture"
    if array.ndim != 3 or array.shape[2] != 4:
        raise CharacterImageError(source, f"has no alpha channel (array shape {array.shape}, expected H x W x 4)")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.min() >= 0 and array.max() <= 1:
            array = np.rint(array * 255).astype(np.uint8)
        else:
            raise CharacterImageError(source, f"expected uint8 or [0, 1] float values, got {array.dtype}")
    return Image.fromarray(array, "RGBA"), source


PNG_GREY_AND_ALPHA = 4  # (IHDR's colour type)


def _png_header(source):
    """A PNG's (bit depth, colour type) from its IHDR, or (None, None)."""
    with open(source, "rb") as handle:
        header = handle.read(26)[24:]  # (after the signature and IHDR's size, kind, width, height)
    return tuple(header) if len(header) == 2 else (None, None)


def _keyed_png_depth(opened, depth):
    """The bit depth of a grey or RGB PNG whose transparency is a colour key (tRNS) that Pillow
    does not apply right (any depth but 8 and 1), else None."""
    key = opened.info.get("transparency")
    keyed = (opened.mode in ("L", "I;16") and isinstance(key, int)
             or opened.mode == "RGB" and isinstance(key, tuple) and len(key) == 3)
    return depth if keyed and depth not in (None, 1, 8) else None


def _apply_colour_key(image, depth):
    """An RGBA copy of a grey or RGB PNG of `depth` bits with its colour key applied, where
    Pillow's own conversion misses it: it scales shades of 2 and 4 bits up but not the key,
    turns 16-bit grey past level 255 white, and matches a 16-bit colour key, clipped to 255,
    against the colours' high bytes. Here the key is matched on those high bytes too (as an
    8-bit viewer matches it: Pillow keeps no more of a 16-bit colour)."""
    from PIL import Image

    key, values = image.info["transparency"], np.asarray(image)
    if image.mode == "RGB":
        opaque = np.any(values != np.asarray(key) >> 8, axis=-1)
        rgb = values
    else:
        opaque = values != key * (255 // (2 ** depth - 1) if depth < 8 else 1)
        shades = np.rint(values / 257.0).astype(np.uint8) if depth == 16 else values
        rgb = np.repeat(shades[..., None], 3, axis=-1)
    return Image.fromarray(np.dstack([rgb, np.where(opaque, 255, 0)]).astype(np.uint8), "RGBA")


ORIENTATION_TAG = 0x0112  # EXIF's Orientation: 1 is upright


def turned_by_exif(path):
    """Whether the picture file's EXIF orientation turns or mirrors it (as THA Studio reads it,
    upright; Blender loads the pixels as stored and ignores the tag)."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # (as in _open_rgba)
            with Image.open(path) as opened:
                return opened.getexif().get(ORIENTATION_TAG, 1) not in (1, None)
    except Exception:  # noqa: BLE001 - (an unreadable picture is named by _open_rgba)
        return False


def _square(image, size, source):
    """Centre square crop then LANCZOS resize to size x size, refusing what that would ruin."""
    from PIL import Image

    width, height = image.size
    side = min(width, height)
    if side < size // 2:
        raise CharacterImageError(
            source, f"is {width}x{height}; at least {size // 2}x{size // 2} is needed (the networks work at {size}x{size})"
        )
    if width != height:
        alpha = np.asarray(image)[..., 3] > 0
        left, top = (width - side) // 2, (height - side) // 2
        kept = alpha[top : top + side, left : left + side].sum()
        if kept < alpha.sum():
            raise CharacterImageError(
                source,
                f"is {width}x{height}: its centre {side}x{side} square would cut off part of the character; "
                "pad it to a square with transparent pixels, head in the middle of the top half",
            )
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        # Resample premultiplied, so hidden colour does not bleed into edges (PIL does so for RGBA).
        image = image.resize((size, size), Image.LANCZOS)
    return image


LEAST_BACKGROUND = 0.15  # the least transparent share of a character picture (THA's samples: 70-83%)


def check_background(alpha, source="the picture"):
    """Refuse a picture whose background is not erased (not at all, faintly, or but for its
    corners), or that is nothing but background."""
    lowest = int(alpha.min())
    if lowest == 255:
        raise CharacterImageError(
            source, "has no transparent background (every pixel is opaque); erase the background to alpha 0"
        )
    if lowest > 0:
        # (An eraser or a background remover that left the background faintly there: THA takes
        # its colour for part of the character.)
        raise CharacterImageError(
            source, f"has no transparent background: no pixel is fully transparent (the least opaque have alpha "
                    f"{lowest} of 255); erase the background to alpha 0"
        )
    if alpha.max() == 0:
        raise CharacterImageError(source, "is fully transparent")
    # A background left but for its corners (an avatar or icon with rounded corners) or a frame:
    # around a character's head and above it there is always far more background than that.
    clear = float((alpha == 0).mean())
    if clear < LEAST_BACKGROUND:
        raise CharacterImageError(
            source, f"its background is not erased: only {clear:.0%} of the picture is transparent (rounded "
                    "corners or a frame?); erase the background around the character to alpha 0"
        )


def check_composition(rgba, schema, source="the picture"):
    """Refuse a square RGBA picture whose background or head placement the networks cannot use."""
    alpha = rgba[..., 3]
    check_background(alpha, source)
    top, bottom, left, right = schema.head_box
    box_height, box_width = bottom - top, right - left
    opaque = alpha > 0
    first_row = int(np.argmax(opaque.any(axis=1)))
    fill = opaque[top:bottom, left:right].mean()
    where = f"rows {top}-{bottom}, columns {left}-{right} of the {schema.image_size}x{schema.image_size} picture"
    if first_row > top + box_height // 4 or fill < 0.5:
        raise CharacterImageError(
            source,
            f"the head is not inside the head box ({where}): the character starts at row {first_row} and "
            f"covers {fill:.0%} of the box; scale and move the character so its head fills that box "
            f"(--fit or fit-picture on the command line, Fit in Blender's Add Talking Head)",
        )
    columns = np.nonzero(opaque[first_row:bottom])[1]
    centre = float(columns.mean())
    if not left + box_width / 4 <= centre <= right - box_width / 4:
        raise CharacterImageError(
            source,
            f"the head is not centred in the head box ({where}): the upper body's centre is at column "
            f"{centre:.0f}; centre the character horizontally",
        )


def prepare_character_image(path_or_array, schema):
    """The picture as RGBA uint8 (size, size, 4) for `schema`, RGB zeroed where alpha is 0.

    Accepts a path or an RGBA array. Raises CharacterImageError naming the file when it has no
    alpha channel, no transparent background, a size a centre crop cannot fix, or the head
    outside the schema's head box.
    """
    image, source = _open_rgba(path_or_array)
    image = _square(image, schema.image_size, source)
    rgba = zero_hidden_colour(np.asarray(image))
    check_composition(rgba, schema, source)
    return rgba


# --- fitting a picture into the head box ------------------------------------------------------

OPAQUE = 128  # alpha from which a pixel is the character's, when finding the head (not a halo)
NECK_NARROWING = 0.6  # the neck: the silhouette narrower than this share of the head's width
NECK_SEARCH = 1.15  # ... found within this many head widths below the top, or not at all
TOP_SHARE = 0.06  # the top: the first row with this share of the silhouette's widest row (no speck or ahoge)


@dataclass(frozen=True)
class HeadPlacement:
    """Where a picture's head is, in that picture's pixels: the row of the top of the head (hair
    included), the chin's row and the head's centre column; `found` says how each was had."""

    top: float
    chin: float
    centre: float
    found: str = "given"

    def describe(self):
        return f"head rows {self.top:.0f}-{self.chin:.0f}, centre column {self.centre:.0f} ({self.found})"

    def scale_into(self, schema):
        """The factor that makes this head as tall as `schema`'s head box."""
        return (schema.head_box[1] - schema.head_box[0]) / (self.chin - self.top)


def find_head(rgba, source="the picture", top=None, chin=None, centre=None):
    """The HeadPlacement of a character in an RGBA uint8 picture; given values are kept.

    From the silhouette (alpha >= OPAQUE): the top is the first row with at least TOP_SHARE of
    the silhouette's widest row opaque (so a stray speck or a lone strand is not the head); the
    centre is the median opaque column of the first opaque rows from there; the chin is the neck, the
    first row where the silhouette through the centre column narrows below NECK_NARROWING of
    the widest it was above, looked for down to NECK_SEARCH head widths (the samples' chins
    lie 0.8-1.0 of one below the top; a narrowing further down is the waist or an arm). Hair
    over the neck, a collar or a hand can hide it: then the error says to give the rows.
    """
    mask = np.asarray(rgba)[..., 3] >= OPAQUE
    height, width = mask.shape
    for name, value, limit in (("top", top, height), ("chin", chin, height + 1), ("centre", centre, width)):
        if value is not None and not 0 <= value < limit:
            side = f"{width} pixels wide" if name == "centre" else f"{height} pixels high"
            raise CharacterImageError(source, f"the head's {name} {value:g} is outside the picture ({side})")
    how = []
    if top is None:
        counts = mask.sum(axis=1)
        rows = np.nonzero(counts >= max(4, TOP_SHARE * counts.max()))[0]
        if len(rows) == 0:
            raise CharacterImageError(source, "is fully transparent (or nearly): there is no character to fit")
        top = int(rows[0])
        how.append("top found")
    if centre is None:
        below = np.nonzero(mask[int(top) :].any(axis=1))[0]
        if len(below) == 0:
            raise CharacterImageError(source, f"nothing is opaque below row {top:.0f}, the top of the head given")
        start = int(top) + int(below[0])
        centre = float(np.median(np.nonzero(mask[start : start + max(4, int(round(0.04 * height)))])[1]))
        how.append("centre found")
    if chin is None:
        neck = _find_neck(mask, int(top), int(round(centre)))
        if neck is None:
            raise CharacterImageError(
                source, f"could not find the chin under the head at row {top:.0f} (hair, clothes or a hand hide the "
                "neck): give the rows of the head's top and of the chin (--head TOP,CHIN; in Blender, Head Top and Chin)")
        chin = neck
        how.append("chin at the neck")
    if not top < chin:
        raise CharacterImageError(source, f"head rows {top:.0f}-{chin:.0f}: the top of the head must be above the chin")
    return HeadPlacement(float(top), float(chin), float(centre), ", ".join(how) or "given")


def _find_neck(mask, top, centre):
    """The first row below `top` where the opaque run through `centre` narrows to a neck, or None."""
    height, width = mask.shape
    widest = 0
    for row in range(top, height):
        line = mask[row]
        if not line[centre]:
            run = 0
        else:
            gaps_left = np.nonzero(~line[:centre])[0]
            gaps_right = np.nonzero(~line[centre:])[0]
            left = gaps_left[-1] + 1 if len(gaps_left) else 0
            right = centre + gaps_right[0] if len(gaps_right) else width
            run = right - left
        depth = row - top
        if widest and depth > NECK_SEARCH * widest:
            return None
        # (A run of 0 is a gap, not a neck: the neck is opaque where the head's centre is.)
        if 0 < run < NECK_NARROWING * widest and depth >= NECK_NARROWING * widest:
            return row
        widest = max(widest, run)
    return None


def fit_character_image(path_or_array, schema, top=None, chin=None, centre=None):
    """(RGBA uint8 picture for `schema`, HeadPlacement): the picture scaled and moved so that its
    head's top lands on the head box's top row, its chin on the box's bottom row and its centre
    on the box's centre column, as THA's pictures have them; what falls outside is cut off.

    top/chin/centre: the head's rows and column in the picture's own pixels, each found from
    the silhouette where not given (find_head). The result is checked as prepare_character_image
    checks a picture; an error names the file and the head placement that was used.
    """
    from PIL import Image

    image, source = _open_rgba(path_or_array)
    rgba = np.asarray(image)
    check_background(rgba[..., 3], source)  # (an opaque background has no silhouette to find a head in)
    head = find_head(rgba, source, top, chin, centre)
    box_top, _, box_left, box_right = schema.head_box
    size = schema.image_size
    scale = head.scale_into(schema)
    # Where the picture's pixel edge (0, 0) lands on the canvas; then the canvas pixels it covers.
    offset_x = (box_left + box_right) / 2 - (head.centre + 0.5) * scale
    offset_y = box_top - head.top * scale
    width, height = image.size
    x0, y0 = max(0, int(np.ceil(offset_x))), max(0, int(np.ceil(offset_y)))
    x1, y1 = min(size, int(np.floor(offset_x + width * scale))), min(size, int(np.floor(offset_y + height * scale)))
    canvas = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    if x1 > x0 and y1 > y0:
        # The covered part alone is resampled (a 10-pixel head is not blown up whole), with
        # the exact scale: PIL takes the source box in fractional pixels, premultiplied for RGBA.
        box = (max(0.0, (x0 - offset_x) / scale), max(0.0, (y0 - offset_y) / scale),
               min(width, (x1 - offset_x) / scale), min(height, (y1 - offset_y) / scale))  # (no rounding past the edge)
        canvas.paste(image.resize((x1 - x0, y1 - y0), Image.LANCZOS, box=box), (x0, y0))
    rgba = zero_hidden_colour(np.asarray(canvas))
    try:
        check_composition(rgba, schema, source)
    except CharacterImageError as error:
        raise CharacterImageError(source, f"fitted with {head.describe()}, but {error.problem}") from None
    return rgba, head
