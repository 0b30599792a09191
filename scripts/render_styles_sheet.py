#!/usr/bin/env python3
"""A review sheet of the render styles: each evaluation model's rest image in every style, side by side.

    .venv/bin/python scripts/render_styles_sheet.py [OUT.png] [--samples 16]

Rows: Gene_light (../shared), THA Studio's sample character, and two edge-case PMX files of
../shared (a sphere with a multiply sphere map whose texture is missing, and two boxes with
MMD's shared toon02 and outlines). Columns: workbench, flat, cycles, toon. Gene and the character
are framed as the dataset frames them (THA1, 256²: the annotated head on the head box); the edge
cases, which have no head, are framed whole. Tiles lie on a grey checker so transparency shows.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "assets" / "mmd"
STYLES = ("workbench", "flat", "cycles", "toon")
TILE = 256
LABEL = 22


def models():
    from tha_studio.render.formats.mmd import write_character

    character = write_character(tempfile.mkdtemp(prefix="tha_studio_sheet_character_"))
    return [
        ("Gene_light", SHARED / "gene_light" / "Gene_light.pmx", True),
        ("sample character", character, True),
        ("edge case: matcap_sample", SHARED / "edge_cases" / "matcap_sample.pmx", False),
        ("edge case: constraint_test", SHARED / "edge_cases" / "constraint_test.pmx", False),
    ]


def whole_model_framing(imported, size):
    """An OrthoFraming that holds the whole model, for models without a head to frame."""
    from tha_studio.render.blender import scene as scenes
    from tha_studio.render.dataset.framing import OrthoFraming

    low, high = scenes.world_bounds(imported.meshes)
    extent = max(high[0] - low[0], high[2] - low[2]) * 1.15
    depth = high[1] - low[1]
    return OrthoFraming(image_size=size, center_x=float(low[0] + high[0]) / 2, center_z=float(low[2] + high[2]) / 2,
                        ortho_scale=float(extent), camera_y=float(low[1] - 1.0), clip_start=0.01,
                        clip_end=float(depth + 2.0))


def render_tile(path, style, model, annotated, folder, samples):
    import bpy

    from tha_studio.pose.schema import get_schema
    from tha_studio.render.blender import toon, triplets
    from tha_studio.render.blender.model_import import import_model
    from tha_studio.render.dataset.plan import ModelEntry, load_or_make_annotation
    from tha_studio.render.dataset.settings import RenderSettings

    settings = RenderSettings(engine=style, samples=samples)
    schema = get_schema("tha1")
    bpy.ops.wm.read_homefile(use_empty=True)
    imported = import_model(model)
    if annotated:
        annotation = load_or_make_annotation(ModelEntry(model.name, model, "train"), folder)
        triplets.TripletRenderer(imported, annotation, schema, settings).render_rest(path)
        return
    framing = whole_model_framing(imported, schema.image_size)
    camera = triplets.setup_scene(framing, settings)
    if style == "toon":
        toon.apply_toon_style(imported, framing.units_per_pixel, camera)
    triplets.render_rgba_png(path)


def checker(size, cell=16):
    from PIL import Image

    tile = Image.new("RGBA", (size, size), (200, 200, 200, 255))
    for y in range(0, size, cell):
        for x in range((y // cell) % 2 * cell, size, 2 * cell):
            tile.paste((170, 170, 170, 255), (x, y, x + cell, y + cell))
    return tile


def compose(rows, out):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=15)
    sheet = Image.new("RGBA", (TILE * len(STYLES), (TILE + LABEL) * len(rows) + LABEL), (255, 255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for column, style in enumerate(STYLES):
        draw.text((column * TILE + 6, 3), style, fill=(0, 0, 0, 255), font=font)
    for row, (name, tiles) in enumerate(rows):
        top = LABEL + row * (TILE + LABEL)
        draw.text((6, top + 3), name, fill=(0, 0, 0, 255), font=font)
        for column, tile in enumerate(tiles):
            background = checker(TILE)
            background.alpha_composite(Image.open(tile).convert("RGBA").resize((TILE, TILE)))
            sheet.paste(background, (column * TILE, top + LABEL))
    sheet.convert("RGB").save(out, optimize=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=ROOT / "docs" / "render_styles.png")
    parser.add_argument("--samples", type=int, default=16, help="Cycles and toon samples per pixel (default 16)")
    args = parser.parse_args()
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="tha_studio_sheet_"))
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)
    from tha_studio.render.blender.scene import quiet_output

    folder = Path(tempfile.mkdtemp(prefix="tha_studio_sheet_"))
    rows = []
    for name, model, annotated in models():
        tiles = []
        for style in STYLES:
            tile = folder / f"{len(rows)}-{style}.png"
            with quiet_output():
                render_tile(tile, style, model, annotated, folder, args.samples)
            tiles.append(tile)
        rows.append((name, tiles))
    compose(rows, args.out)
    print(f"{args.out}: {args.out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
