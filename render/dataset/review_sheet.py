"""Review sheets: pages tiling many models' rest renders, to check thousands of models by eye.

Pure (Pillow, numpy). Each tile shows a model's rest image over a grey checkerboard (so
transparent areas show), the head box's rows drawn in red (the head must sit between them),
and under it the tile number with the model's folder path (file names repeat across a
download tree: model.pmx, 初音ミク.pmx), its file name, the roles THA1 needs with their
confidence (a missing one in red, a low one in orange) and its flags: failed, missing
textures (the manifest's "texture_warnings"), low-confidence roles, flagged by a person.
Flagged and failed models get a red frame. A person notes the numbers of bad tiles and marks
them with `review-sheet --flag N ...`, which writes the flag into those sidecars.

A sheet is pages of a fixed number of tiles (`<sheet stem>-p001.png`, ...) and an index page
(the sheet's own name) listing each page's tiles and flagged tiles: one image of 8,000 models
was 252 megapixels, which Pillow and image viewers refuse. Tiles are numbered in manifest
order (split, model id), the order the JSON index (`<sheet>.json`) lists them in with their
page, so numbers stay valid until the dataset changes.

Labels are drawn with Noto Sans CJK, which Blender ships with every install and the bpy wheel
(datafiles/fonts): 11 MB, too large to ship again in the extension, and model names are
mostly Japanese. Without it the labels fall back to Pillow's own font, which draws kanji and
kana as empty boxes, and `label_font` says so.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import json_text
from ...atomic_files import write_bytes_atomic, write_text_atomic
from .annotation import REVIEW_CONFIDENCE as LOW_CONFIDENCE  # below it a role asks for a person's look

ROLE_LABELS = (("eye_wink_left", "L"), ("eye_wink_right", "R"), ("mouth_aaa", "A"))
FLAG_COLOUR = (220, 30, 30, 255)
BAND_COLOUR = (255, 40, 40, 255)
TEXT_COLOUR = (20, 20, 20, 255)
FOLDER_COLOUR = (70, 70, 110, 255)
MISSING_COLOUR = (200, 0, 0, 255)
LOW_COLOUR = (215, 110, 0, 255)
LINE_HEIGHT = 14
CAPTION_LINES = 4  # folder, file, roles, flags
CAPTION_HEIGHT = CAPTION_LINES * LINE_HEIGHT + 2
MODELS_PER_PAGE = 100
MAX_PAGE_PIXELS = 100_000_000  # 400 MB of RGBA a page; the defaults make 3.6 million
FONT_SIZE = 11
CJK_FONT_FILE = "Noto Sans CJK Regular.woff2"


@dataclass
class SheetEntry:
    model_id: str
    image: Path | None  # the rest render, or None if the model has none (it failed)
    head_box: tuple  # rows and columns in the image's own pixels
    roles: dict = field(default_factory=dict)  # role -> confidence (None: missing)
    flagged: bool = False  # framed in red: failed, or flagged in its sidecar
    note: str = ""  # a failure's reason, or the flag's reasons
    failed: bool = False
    texture_warnings: list = field(default_factory=list)

    @property
    def low_roles(self):
        return [label for role, label in ROLE_LABELS
                if self.roles.get(role) is not None and self.roles[role] < LOW_CONFIDENCE]

    @property
    def flags(self):
        """Short words for what needs a look: failed, textures, low-confidence roles, flagged."""
        words = []
        if self.failed:
            words.append("failed")
        if self.texture_warnings:
            words.append(f"textures ({len(self.texture_warnings)})")
        if self.low_roles:
            words.append("low " + "".join(self.low_roles))
        if self.flagged and not self.failed:
            words.append("flagged")
        return words


# ----------------------------------------------------------------------------------------------
# The font


def font_candidates():
    """Where Blender's Noto Sans CJK may be: the bpy wheel's package, or Blender's own install
    (its Python runs from <blender>/<version>/python/bin)."""
    places = []
    # Located, not imported; where bpy is imported already (a test run, Blender) its own spec says
    # where it lives (find_spec of an imported module may have none to give).
    module = sys.modules.get("bpy")
    spec = getattr(module, "__spec__", None) if module is not None else importlib.util.find_spec("bpy")
    for location in (spec.submodule_search_locations or []) if spec else []:
        places += sorted(Path(location).glob(f"*/datafiles/fonts/{CJK_FONT_FILE}"))
    executable = Path(sys.executable).resolve()
    for parent in executable.parents[:5]:
        places += [parent / "datafiles" / "fonts" / CJK_FONT_FILE]
        places += sorted(parent.glob(f"*/datafiles/fonts/{CJK_FONT_FILE}"))
    return places


def label_font(size=FONT_SIZE):
    """(Pillow font, None) with Japanese glyphs, or (Pillow's own font, a warning) without them."""
    from PIL import ImageFont

    for path in font_candidates():
        if path.is_file():
            try:
                return ImageFont.truetype(str(path), size), None
            except OSError:
                continue
    return ImageFont.load_default(size), (
        f"no font with Japanese glyphs found (Blender's {CJK_FONT_FILE}): Japanese names on the sheet "
        "show as boxes; the sheet's JSON index has them in full")


def missing_glyphs(font, text):
    """The characters of `text` that `font` draws as its notdef glyph (an empty box)."""
    notdef = _glyph_image(font, "\U0010fffd")  # a private-use code point no font maps
    return [ch for ch in dict.fromkeys(text) if not ch.isspace() and _glyph_image(font, ch) == notdef]


def _glyph_image(font, ch):
    mask = font.getmask(ch)
    return mask.size, bytes(mask)


# ----------------------------------------------------------------------------------------------
# Tiles and pages


def _checkerboard(size, square=8):
    y, x = np.indices((size, size))
    light = ((x // square + y // square) % 2).astype(bool)
    board = np.where(light[..., None], 205, 160).astype(np.uint8)
    return np.concatenate([np.repeat(board, 3, axis=2), np.full((size, size, 1), 255, np.uint8)], axis=2)


def fit(draw, text, font, width, keep="end"):
    """`text` cut with an ellipsis to fit `width` pixels, keeping its end (paths) or its start."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("…" + text if keep == "end" else text + "…", font=font) > width:
        text = text[1:] if keep == "end" else text[:-1]
    return "…" + text if keep == "end" else text + "…"


def model_folder(model_id):
    """The folder part of a model id ('.' for a model at the root)."""
    folder = model_id.rsplit("/", 1)[0] if "/" in model_id else "."
    return folder + "/"


def _tile(entry, number, size, font):
    from PIL import Image, ImageDraw

    tile = Image.fromarray(_checkerboard(size), "RGBA")
    scale = 1.0
    if entry.image is not None and Path(entry.image).exists():
        render = Image.open(entry.image).convert("RGBA")
        scale = size / render.width
        tile.alpha_composite(render.resize((size, size), Image.Resampling.LANCZOS))
    draw = ImageDraw.Draw(tile)
    if entry.image is not None:
        for row in entry.head_box[:2]:
            y = round(row * scale)
            draw.line([(0, y), (size - 1, y)], fill=BAND_COLOUR, width=1)
    else:
        draw.text((6, size // 2 - 20), "no render", fill=MISSING_COLOUR, font=font)
    if entry.flagged:
        draw.rectangle([0, 0, size - 1, size - 1], outline=FLAG_COLOUR, width=4)

    caption = Image.new("RGBA", (size, CAPTION_HEIGHT), (255, 255, 255, 255))
    text = ImageDraw.Draw(caption)
    width = size - 6
    lead = f"{number} "
    lead_width = int(text.textlength(lead, font=font))
    text.text((3, 0), lead, fill=FLAG_COLOUR if entry.flagged else TEXT_COLOUR, font=font)
    text.text((3 + lead_width, 0), fit(text, model_folder(entry.model_id), font, width - lead_width),
              fill=FOLDER_COLOUR, font=font)
    text.text((3, LINE_HEIGHT), fit(text, entry.model_id.rsplit("/", 1)[-1], font, width, keep="start"),
              fill=TEXT_COLOUR, font=font)
    x = 3
    for role, label in ROLE_LABELS:
        confidence = entry.roles.get(role)
        words = f"{label}:{confidence:.2f} " if confidence is not None else f"{label}:-- "
        colour = MISSING_COLOUR if confidence is None else LOW_COLOUR if confidence < LOW_CONFIDENCE else TEXT_COLOUR
        text.text((x, 2 * LINE_HEIGHT), words, fill=colour, font=font)
        x += int(text.textlength(words, font=font))
    if entry.flags:
        text.text((3, 3 * LINE_HEIGHT), fit(text, ", ".join(entry.flags), font, width, keep="start"),
                  fill=FLAG_COLOUR, font=font)
    whole = Image.new("RGBA", (size, size + CAPTION_HEIGHT), (255, 255, 255, 255))
    whole.paste(tile, (0, 0))
    whole.paste(caption, (0, size))
    return whole


def build_sheet(entries, tile=160, columns=10, first_number=1, font=None):
    """One page (Pillow RGBA) tiling the entries in order, numbered from `first_number`."""
    from PIL import Image

    if not entries:
        raise ValueError("no models to put on a review sheet")
    font = font or label_font()[0]
    columns = max(1, min(columns, len(entries)))
    rows = -(-len(entries) // columns)
    cell = cell_size(tile)
    sheet = Image.new("RGBA", (columns * cell[0] + 4, rows * cell[1] + 4), (255, 255, 255, 255))
    for i, entry in enumerate(entries):
        row, column = divmod(i, columns)
        sheet.paste(_tile(entry, first_number + i, tile, font), (4 + column * cell[0], 4 + row * cell[1]))
    return sheet


def cell_size(tile):
    """(width, height) of a tile's cell on a page: the tile, its caption and a 4-pixel gap."""
    return tile + 4, tile + CAPTION_HEIGHT + 4


def page_pixels(tile, per_page):
    """The pixels of the cells of a page of `per_page` tiles of `tile` pixels (a full page; its
    margins and a short last row's gaps aside)."""
    width, height = cell_size(tile)
    return per_page * width * height


def page_path(path, page):
    path = Path(path)
    return path.with_name(f"{path.stem}-p{page:03d}{path.suffix}")


def page_ranges(count, per_page=MODELS_PER_PAGE):
    """[(first tile number, last tile number)] of each page."""
    per_page = max(1, per_page)
    return [(start + 1, min(start + per_page, count)) for start in range(0, count, per_page)]


def build_index_page(entries, pages, path, font, width=900):
    """The index page: the sheet's pages with their tile ranges and flagged tiles, and the totals."""
    from PIL import Image, ImageDraw

    lines = [(f"Review sheet: {len(entries)} model(s), {sum(e.flagged for e in entries)} flagged, "
              f"{sum(e.failed for e in entries)} failed, {sum(bool(e.texture_warnings) for e in entries)} "
              f"with missing textures, {sum(bool(e.low_roles) for e in entries)} with low-confidence roles", TEXT_COLOUR),
             ("", TEXT_COLOUR)]
    for number, (first, last) in enumerate(pages, start=1):
        marked = [str(i) for i in range(first, last + 1) if entries[i - 1].flags]
        lines.append((f"{page_path(path, number).name}: tiles {first}-{last}", TEXT_COLOUR))
        if marked:
            shown = ", ".join(marked[:24]) + (f" ... ({len(marked)})" if len(marked) > 24 else "")
            lines.append((f"    to look at: {shown}", FLAG_COLOUR))
    image = Image.new("RGBA", (width, 12 + LINE_HEIGHT * len(lines)), (255, 255, 255, 255))
    draw = ImageDraw.Draw(image)
    for row, (words, colour) in enumerate(lines):
        draw.text((8, 6 + row * LINE_HEIGHT), fit(draw, words, font, width - 16, keep="start"), fill=colour, font=font)
    return image


def save_sheets(entries, path, tile=160, columns=10, per_page=MODELS_PER_PAGE, font=None):
    """Write the pages, the index page (at `path`) and the JSON index (`<path>.json`: tile number ->
    model id and page) atomically; remove pages an earlier, longer sheet left. Returns the paths
    written, the index page first."""
    if not entries:
        raise ValueError("no models to put on a review sheet")
    path = Path(path)
    font = font or label_font()[0]
    pages = page_ranges(len(entries), per_page)
    written = [path]
    for number, (first, last) in enumerate(pages, start=1):
        page = build_sheet(entries[first - 1:last], tile, columns, first, font)
        written.append(_save_png(page, page_path(path, number)))
    _save_png(build_index_page(entries, pages, path, font), path)
    for stale in path.parent.glob(f"{path.stem}-p[0-9][0-9][0-9]*{path.suffix}"):
        if stale not in written:
            stale.unlink(missing_ok=True)
    tiles = []
    for page, (first, last) in enumerate(pages, start=1):
        for number in range(first, last + 1):
            entry = entries[number - 1]
            tiles.append({"tile": number, "page": page, "model": entry.model_id, "flagged": entry.flagged,
                          "flags": entry.flags, "note": entry.note, "texture_warnings": entry.texture_warnings})
    index = {"pages": [{"page": n, "file": page_path(path, n).name, "tiles": [first, last]}
                       for n, (first, last) in enumerate(pages, start=1)], "tiles": tiles}
    text = json.dumps(index, ensure_ascii=False, indent=1) + "\n"
    # A model id that is not UTF-8 (surrogate-escaped) goes out as JSON escapes, as in the manifest.
    write_text_atomic(path.with_name(path.name + ".json"), text.encode("utf-8", "backslashreplace").decode("utf-8"))
    return written


def _save_png(image, path):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return write_bytes_atomic(path, buffer.getvalue())


# ----------------------------------------------------------------------------------------------
# Entries from a dataset folder


def dataset_entries(dataset_dir, head_box):
    """Sheet entries for a dataset folder: every model of its manifest, then its failures."""
    from . import annotation as annotations
    from .manifest import FAILURES_NAME, MANIFEST_NAME, read_records

    dataset_dir = Path(dataset_dir)
    records = read_records(dataset_dir / MANIFEST_NAME) + read_records(dataset_dir / FAILURES_NAME)
    if not records:
        raise ValueError(f"{dataset_dir}: no {MANIFEST_NAME} with models (render the dataset or merge its shards first)")
    entries = []
    for record in records:
        if record["type"] == "example":
            continue
        sidecar = sidecar_for(dataset_dir, record["model"])
        roles, flagged, note = {}, False, record.get("reason", "")
        if sidecar.exists():
            found = annotations.load_sidecar(sidecar)
            roles = {role: found.morph_roles.get(role, {}).get("confidence") if found.morphs_for(role) else None
                     for role, _ in ROLE_LABELS}
            flagged = bool(found.review.get("flagged"))
            note = note or "; ".join(found.review.get("reasons", []))
        failed = record["type"] == "failure"
        image = dataset_dir / record["rest"] if not failed else None
        warnings = [str(w) for w in record.get("texture_warnings") or []]
        entries.append(SheetEntry(record["model"], image, head_box, roles, flagged or failed, note, failed, warnings))
    return entries


def sidecar_for(dataset_dir, model_id):
    from . import annotation as annotations
    from .plan import ANNOTATIONS_FOLDER

    return annotations.sidecar_path(model_id, Path(dataset_dir) / ANNOTATIONS_FOLDER, model_id)


def read_sheet_index(path):
    """The tiles of a sheet's JSON index ({"tile": N, "model": ID, ...}, ...); ValueError names the
    file when it is not JSON or not an index save_sheets wrote (a damaged or hand-edited file)."""
    try:
        data = json_text.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a sheet index (not UTF-8 text: {error.reason})") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not a sheet index (not valid JSON: {error})") from None
    tiles = data.get("tiles") if isinstance(data, dict) else None
    if not isinstance(tiles, list):
        raise ValueError(f"{path}: not a sheet index (no list of tiles); make the sheet again")
    for position, tile in enumerate(tiles, start=1):
        number, model = (tile.get("tile"), tile.get("model")) if isinstance(tile, dict) else (None, None)
        if isinstance(number, bool) or not isinstance(number, int) or not isinstance(model, str) or not model:
            raise ValueError(f"{path}: tile entry {position} is not a tile number with a model; make the sheet again")
        # Model ids are paths under the models folder; one leaving the dataset's annotations is not ours.
        if Path(model).is_absolute() or ".." in Path(model).parts:
            raise ValueError(f"{path}: tile {number} names model {model!r}, which is not a model id")
    return tiles


def flag_tiles(dataset_dir, sheet_index_path, numbers, reason="flagged on the review sheet"):
    """Mark the models of the given tile numbers as flagged in their sidecars; return their ids."""
    from . import annotation as annotations

    index = read_sheet_index(sheet_index_path)
    by_number = {tile["tile"]: tile["model"] for tile in index}
    flagged = []
    for number in numbers:
        if number not in by_number:
            raise ValueError(f"{sheet_index_path}: no tile {number} (the sheet has 1..{len(index)})")
        sidecar = sidecar_for(dataset_dir, by_number[number])
        if not sidecar.exists():
            raise ValueError(f"{sidecar}: no annotation for tile {number} ({by_number[number]})")
        found = annotations.load_sidecar(sidecar)
        found.flag(reason)
        annotations.save_sidecar(found, sidecar)
        flagged.append(by_number[number])
    return flagged
