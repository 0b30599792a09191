"""The toon render style (render.blender.toon): MikuMikuDance's shading and outlines, rendered.

Every test renders a real PMX ball (toon_fixtures) or Gene_light with Cycles on the CPU and reads
the PNG's pixels. MMD's default light comes from the viewer's upper right and front, so on the
ball the upper right is the lit side and the lower left the side facing away.
"""

import json
import subprocess
import sys
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

import toon_fixtures as balls
from shared_assets import ROOT
from toon_fixtures import BLUE, GOLD, WHITE

SIZE = 64
LIT, AWAY = (18, 46), (46, 18)  # (row, column): the ball's upper right and lower left


def toon_render(ext_module, path, png, samples=8, margin=0.15):
    """Import `path` into an empty scene, style and frame it, render it with Cycles to `png`:
    (RGBA int array, the imported model, its camera, what apply_toon_style returned)."""
    import bpy

    model_import = ext_module("render.blender.model_import")
    scenes = ext_module("render.blender.scene")
    toon = ext_module("render.blender.toon")
    bpy.ops.wm.read_homefile(use_empty=True)
    imported = model_import.import_model(path)
    scene = bpy.context.scene
    scenes.setup_render(scene, engine="CYCLES", resolution=(SIZE, SIZE), samples=samples)
    toon.setup_toon_render(scene, samples)
    low, high = scenes.world_bounds(imported.meshes)
    camera = scenes.aim_orthographic_camera(low, high, margin=margin)
    styled = toon.apply_toon_style(imported, camera.data.ortho_scale / SIZE, camera)
    ext_module("render.blender.triplets").render_rgba_png(png, scene)
    return np.asarray(Image.open(png).convert("RGBA")).astype(int), imported, camera, styled


@pytest.fixture
def render_toon(ext_module, tmp_path):
    """render_toon(pmx path, name) -> RGBA array of the ball rendered in the toon style at SIZE²."""
    return lambda path, name="toon": toon_render(ext_module, path, tmp_path / f"{name}.png")[0]


def near(pixel, rgb, tolerance=6):
    return np.abs(np.asarray(pixel[:3]) - np.asarray(rgb)).max() <= tolerance


def test_an_additive_sphere_map_colours_a_white_texture(render_toon, tmp_path):
    # The gold trim: a white texture that MMD colours with an additive (.spa) sphere map.
    images = {"white.png": WHITE, "gold.spa": GOLD}
    fields = dict(diffuse=(0.5, 0.5, 0.5, 1.0), ambient=(0.1, 0.1, 0.1), texture=0, sphere_texture=1)
    added = render_toon(balls.write_ball(tmp_path / "add", images, sphere_mode=2, **fields), "add")
    multiplied = render_toon(balls.write_ball(tmp_path / "mul", images, sphere_mode=1, **fields), "mul")
    plain = render_toon(balls.write_ball(tmp_path / "plain", images, sphere_mode=0, **fields), "plain")
    base = 0.5 * 154 / 255 + 0.1  # diffuse x MMD's light colour + ambient
    centre = SIZE // 2, SIZE // 2
    assert near(plain[centre], [255 * base] * 3)  # grey without the sphere map
    assert near(added[centre], [min(255, 255 * base + g) for g in GOLD])  # (255, 197, 102): gold
    assert near(multiplied[centre], [base * g for g in GOLD])
    assert added[centre][0] - added[centre][2] > 120


def test_the_toon_ramp_darkens_the_side_away_from_the_light(render_toon, tmp_path):
    images = {"white.png": WHITE, "ramp.png": (WHITE, BLUE)}  # the ramp: lit half white, shadow half blue
    fields = dict(diffuse=(1.0, 1.0, 1.0, 1.0), ambient=(0.0, 0.0, 0.0), texture=0)
    shared = render_toon(balls.write_ball(tmp_path / "shared", images, toon_shared=True, toon=2, **fields), "shared")
    own = render_toon(balls.write_ball(tmp_path / "own", images, toon=1, **fields), "own")
    none = render_toon(balls.write_ball(tmp_path / "none", images, **fields), "none")
    lit = 255 * 154 / 255
    assert near(none[LIT], [lit] * 3) and near(none[AWAY], [lit] * 3)  # no toon: MMD's flat white ramp
    assert near(shared[LIT], [lit] * 3)
    assert shared[AWAY][0] < lit - 40 and near(shared[AWAY], [shared[AWAY][0]] * 3, 2)  # toon03: grey shadow
    assert near(own[LIT], [lit] * 3)
    assert near(own[AWAY], [lit * c / 255 for c in BLUE])  # the model's own ramp's bottom colour


def test_outlines_in_the_edge_colour_only_for_materials_that_draw_edges(render_toon, tmp_path):
    images = {"white.png": WHITE}
    fields = dict(diffuse=(1.0, 1.0, 1.0, 1.0), ambient=(0.4, 0.4, 0.4), texture=0, edge_color=(1.0, 0.0, 0.0, 1.0),
                  edge_size=3.0)
    edged = render_toon(balls.write_ball(tmp_path / "edged", images, flags=0x10, **fields), "edged")
    plain = render_toon(balls.write_ball(tmp_path / "plain", images, flags=0, **fields), "plain")
    inside = plain[..., 3] > 128
    rim = (edged[..., 3] > 128) & ~inside
    assert rim.sum() > 2 * np.pi * (SIZE * 0.35) * 1.5  # a band all round, about 3 pixels wide
    red = (edged[..., 0] > 200) & (edged[..., 1] < 60) & (edged[..., 2] < 60)
    assert red[rim].mean() > 0.6  # anti-aliased at its outer border
    assert not red[inside & (np.abs(np.indices(inside.shape) - SIZE // 2).max(axis=0) < 12)].any()
    # Without the flag: no red anywhere, and nothing drawn where the outline was.
    assert not ((plain[..., 0] > 200) & (plain[..., 1] < 60)).any()
    assert (plain[..., 3][rim] > 0).mean() < 0.5


@pytest.mark.shared
def test_gene_light_renders_in_the_toon_style_framed_as_the_other_styles(ext_module, shared, tmp_path):
    import bpy

    model_import = ext_module("render.blender.model_import")
    triplets = ext_module("render.blender.triplets")
    schema = ext_module("pose.schema").get_schema("tha1")
    plan = ext_module("render.dataset.plan")
    settings = ext_module("render.dataset.settings")
    gene = shared / "assets" / "mmd" / "gene_light" / "Gene_light.pmx"
    entry = plan.ModelEntry(gene.name, gene, "train")
    annotation = plan.load_or_make_annotation(entry, tmp_path)
    images = {}
    for style in ("workbench", "toon"):
        bpy.ops.wm.read_homefile(use_empty=True)
        renderer = triplets.TripletRenderer(model_import.import_model(gene), annotation, schema,
                                            settings.RenderSettings(engine=style, samples=8))
        renderer.render_rest(tmp_path / f"{style}.png")
        images[style] = np.asarray(Image.open(tmp_path / f"{style}.png").convert("RGBA")).astype(int)
    toon, workbench = images["toon"], images["workbench"]
    assert toon.shape == workbench.shape == (256, 256, 4)
    assert (toon[..., :3][toon[..., 3] == 0] == 0).all()  # straight alpha, RGB zero where transparent
    shown, reference = toon[..., 3] > 128, workbench[..., 3] > 128
    assert (shown & reference).sum() / (shown | reference).sum() > 0.95  # the same framing, plus outlines
    outline_grey = (np.abs(toon[..., :3] - 102).max(axis=-1) < 25) & shown & ~reference
    assert outline_grey.sum() > 20  # the hair's grey (0.4) outline just outside its silhouette
    assert bpy.data.objects[renderer.poser.imported.meshes[0].name].modifiers.get("THA outline") is not None


@pytest.mark.slow
def test_render_dataset_in_the_toon_style_gives_the_same_bytes_twice(ext_module, tmp_path):
    ext_module("render.formats.mmd").write_character(tmp_path / "models" / "character")
    images = {}
    for out in ("one", "two"):
        result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "render-dataset", str(tmp_path / "models"),
                                 str(tmp_path / out), "--engine", "toon", "--samples", "4", "--poses-per-model", "1",
                                 "--no-progress"], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "1 model(s), 3 image(s) rendered" in result.stdout, result.stdout
        description = json.loads((tmp_path / out / "dataset.json").read_text(encoding="utf-8"))
        assert (description["engine"], description["samples"]) == ("toon", 4)
        images[out] = {path.relative_to(tmp_path / out): path.read_bytes()
                       for path in sorted((tmp_path / out).rglob("*.png"))}
    assert len(images["one"]) == 3 and images["one"] == images["two"]
    for data in images["one"].values():
        rgba = np.asarray(Image.open(BytesIO(data)).convert("RGBA")).astype(int)
        assert rgba.shape == (256, 256, 4) and (rgba[..., 3] == 255).sum() > 5000
        assert (rgba[..., :3][rgba[..., 3] == 0] == 0).all()


def test_an_avatar_without_materials_renders_grey_not_black_and_without_outlines(ext_module, tmp_path):
    import gltf_fixtures

    glb = gltf_fixtures.export_face_glb(tmp_path / "face.glb")
    rgba, imported, camera, styled = toon_render(ext_module, glb, tmp_path / "avatar.png", samples=4, margin=0.1)
    assert styled >= 1
    toon = ext_module("render.blender.toon")
    assert toon.apply_toon_style(imported, camera.data.ortho_scale / SIZE, camera) == 0  # once only
    shown = rgba[..., 3] == 255
    assert shown.sum() > 200
    assert rgba[..., :3][shown].min() > 100  # lit by the shader: diffuse x light + ambient, no lights needed
    assert all(obj.modifiers.get("THA outline") is None for obj in imported.meshes)
