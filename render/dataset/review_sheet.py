"""Review sheets: one image tiling many models' rest renders, to check a thousand models by eye.

Pure (Pillow, numpy). Each tile shows a model's rest image over a grey checkerboard (so
transparent areas show), the head box's rows drawn in red (the head must sit between them),
the tile number, and the roles THA1 needs with their confidence (a missing one in red).
Models whose sidecar is flagged get a red frame. A person notes the numbers of bad tiles and
marks them with `review-sheet --flag N ...`, which writes the flag into those sidecars.

Tiles are numbered in manifest order (split, model id), the order the sheet lists them in its
JSON index (`<sheet>.json`), so numbers stay valid until the dataset changes.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...atomic_files import write_bytes_atomic, write_text_atomic

ROLE_LABELS = (("eye_wink_left", "L"), ("eye_wink_right", "R"), ("mouth_aaa", "A"))
FLAG_COLOUR = (220, 30, 30, 255)
BAND_COLOUR = (255, 40, 40, 255)
TEXT_COLOUR = (20, 20, 20, 255)
MISSING_COLOUR = (200, 0, 0, 255)
CAPTION_HEIGHT = 28


@dataclass
class SheetEntry:
    model_id: str
    image: Path | None  # the rest render, or None if the model has none (it failed)
    head_box: tuple  # rows and columns in the image's own pixels
    roles: dict = field(default_factory=dict)  # role -> confidence (None: missing)
    flagged: bool = False
    note: str = ""  # a failure's reason, or the flag's reasons


def _checkerboard(size, square=8):
    y, x = np.indices((size, size))
    light = ((x // square + y // square) % 2).astype(bool)
    board = np.where(light[..., None], 205, 160).astype(np.uint8)
    return np.concatenate([np.repeat(board, 3, axis=2), np.full((size, size, 1), 255, np.uint8)], axis=2)


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
    name = Path(entry.model_id).stem
    text.text((3, 1), f"{number} {name}"[:34], fill=FLAG_COLOUR if entry.flagged else TEXT_COLOUR, font=font)
    x = 3
    for role, label in ROLE_LABELS:
        confidence = entry.roles.get(role)
        words = f"{label}:{confidence:.2f} " if confidence is not None else f"{label}:-- "
        text.text((x, 14), words, fill=TEXT_COLOUR if confidence is not None else MISSING_COLOUR, font=font)
        x += int(text.textlength(words, font=font))
    whole = Image.new("RGBA", (size, size + CAPTION_HEIGHT), (255, 255, 255, 255))
    whole.paste(tile, (0, 0))
    whole.paste(caption, (0, size))
    return whole


def build_sheet(entries, tile=160, columns=8):
    """The sheet image (Pillow RGBA) tiling the entries in order, numbered from 1."""
    from PIL import Image, ImageFont

    if not entries:
        raise ValueError("no models to put on a review sheet")
    font = ImageFont.load_default()
    columns = max(1, min(columns, len(entries)))
    rows = -(-len(entries) // columns)
    cell = (tile + 4, tile + CAPTION_HEIGHT + 4)
    sheet = Image.new("RGBA", (columns * cell[0] + 4, rows * cell[1] + 4), (255, 255, 255, 255))
    for i, entry in enumerate(entries):
        row, column = divmod(i, columns)
        sheet.paste(_tile(entry, i + 1, tile, font), (4 + column * cell[0], 4 + row * cell[1]))
    return sheet


def save_sheet(sheet, entries, path):
    """Write the sheet PNG and its index (`<path>.json`: tile number -> model id) atomically."""
    path = Path(path)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())
    index = {"tiles": [{"tile": i + 1, "model": e.model_id, "flagged": e.flagged, "note": e.note} for i, e in enumerate(entries)]}
    write_text_atomic(path.with_name(path.name + ".json"), json.dumps(index, ensure_ascii=False, indent=1) + "\n")
    return path


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
        image = dataset_dir / record["rest"] if record["type"] == "model" else None
        entries.append(SheetEntry(record["model"], image, head_box, roles, flagged or record["type"] == "failure", note))
    return entries


def sidecar_for(dataset_dir, model_id):
    from . import annotation as annotations
    from .plan import ANNOTATIONS_FOLDER

    return annotations.sidecar_path(model_id, Path(dataset_dir) / ANNOTATIONS_FOLDER, model_id)


def flag_tiles(dataset_dir, sheet_index_path, numbers, reason="flagged on the review sheet"):
    """Mark the models of the given tile numbers as flagged in their sidecars; return their ids."""
    from . import annotation as annotations

    index = json.loads(Path(sheet_index_path).read_text(encoding="utf-8"))["tiles"]
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
