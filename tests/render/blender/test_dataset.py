"""Dataset rendering on Gene_light: the head band, the eye roles, the head in the box, a triplet.

Images go to a temporary folder; set THA_STUDIO_KEEP_IMAGES=<folder> to keep them for a look.
"""

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

GENE = ("assets", "mmd", "gene_light", "Gene_light.pmx")


@pytest.fixture
def gene(shared, ext_module):
    """Gene_light imported, annotated automatically, with a THA1 renderer."""
    from tha_studio.render.formats.mmd import read_model

    annotations = ext_module("render.dataset.annotation")
    path = shared.joinpath(*GENE)
    annotation = annotations.annotate_model(read_model(path), path.name)
    imported = ext_module("render.blender.model_import").import_model(path)
    schema = ext_module("pose.schema").get_schema("tha1")
    triplets = ext_module("render.blender.triplets")
    renderer = triplets.TripletRenderer(imported, annotation, schema)
    return imported, annotation, schema, renderer


@pytest.fixture
def image_folder(tmp_path):
    keep = os.environ.get("THA_STUDIO_KEEP_IMAGES")
    folder = Path(keep) if keep else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def scenes(ext_module):
    """render.blender.scene of the installed extension (evaluated_vertices: the mesh as rendered)."""
    return ext_module("render.blender.scene")


def read(path):
    return np.array(Image.open(path))


def head_vertex_rows(scenes, imported, annotation, renderer):
    """Image rows of the evaluated (posed) vertices inside the annotated band at rest."""
    mesh = imported.meshes[0]
    scale = 0.08
    rest = np.empty(len(mesh.data.vertices) * 3, np.float32)
    mesh.data.vertices.foreach_get("co", rest)
    rest = rest.reshape(-1, 3)
    head = (rest[:, 2] >= annotation.head_bottom * scale) & (rest[:, 2] <= annotation.head_top * scale)
    head &= np.abs(rest[:, 0]) < 0.6 * (annotation.head_top - annotation.head_bottom) * scale  # no side locks
    posed = scenes.evaluated_vertices(mesh)
    return renderer.framing.world_to_pixel(posed[head])[:, 1]


@pytest.mark.slow
def test_gene_rest_render_puts_the_annotated_head_in_the_box(gene, scenes, image_folder):
    imported, annotation, schema, renderer = gene
    renderer.render_rest(image_folder / "gene_rest.png")
    image = read(image_folder / "gene_rest.png")
    assert image.shape == (256, 256, 4)
    assert (image[image[..., 3] == 0, :3] == 0).all()  # RGB zero where alpha is zero
    rows = head_vertex_rows(scenes, imported, annotation, renderer)
    assert rows.min() == pytest.approx(64, abs=1.0) and rows.max() == pytest.approx(192, abs=1.0)
    # The picture: the head fills the band's rows, centred; nothing of the character above the
    # band but the upward hair; the shoulders below it.
    opaque = image[..., 3] > 0
    columns = np.flatnonzero(opaque[64:192].any(axis=0))
    assert abs((columns.min() + columns.max()) / 2 - 128) < 12
    assert opaque[:56].sum() < 0.01 * opaque.sum()
    assert opaque[200:].any()


@pytest.mark.slow
def test_gene_eye_roles_close_the_eyes_and_change_nothing_else(gene, image_folder):
    imported, annotation, schema, renderer = gene
    # The model's own rest (THA1's rest image has the mouth open: test_rest_convention.py).
    renderer.render(schema.neutral(), image_folder / "gene_rest.png")
    rest = read(image_folder / "gene_rest.png")
    for name, side in (("left_eye", 1), ("right_eye", -1)):
        path = image_folder / f"gene_{name}.png"
        renderer.render(schema.vector(**{name: 1.0}), path)
        changed = np.abs(read(path).astype(int) - rest.astype(int)).max(axis=2) > 24
        rows, columns = np.nonzero(changed)
        assert changed.sum() > 150, f"{name}=1 changed almost nothing"
        # Only the eye region changes: a small patch, at eye height, on the character's side
        # (its left is the image's right).
        assert changed.sum() < 0.02 * changed.size
        assert 120 <= rows.min() and rows.max() <= 155
        assert ((columns - 128) * side > 0).all()
    mouth = image_folder / "gene_mouth.png"
    renderer.render(schema.vector(mouth=1.0), mouth)
    rows, _ = np.nonzero(np.abs(read(mouth).astype(int) - rest.astype(int)).max(axis=2) > 24)
    assert rows.min() > 140 and rows.max() < 200


@pytest.mark.slow
def test_gene_head_stays_in_the_box_for_sampled_poses_and_a_triplet_looks_right(gene, ext_module, scenes, image_folder):
    imported, annotation, schema, renderer = gene
    sampling = ext_module("render.dataset.sampling")
    overshoot = []
    for index in range(12):
        pose = sampling.sample_pose(schema, 0, "gene", index)
        renderer.poser.apply(sampling.expression_part(schema, pose))
        rows = head_vertex_rows(scenes, imported, annotation, renderer)
        assert 63 <= rows.min() and rows.max() <= 193  # the expression keeps the head still
        renderer.poser.apply(pose)
        rows = head_vertex_rows(scenes, imported, annotation, renderer)
        overshoot.append(max(64 - rows.min(), rows.max() - 192, 0.0))
    # ±15° turns about the neck joints swing the chin and the skull by up to 15° about a pivot
    # ~0.7 head heights away: about an eighth of the box at the sampled extremes, no more.
    assert max(overshoot) < 16, overshoot

    pose = schema.vector(left_eye=1.0, mouth=1.0, head_y=1.0, neck_z=0.5)
    renderer.render_rest(image_folder / "triplet_rest.png")
    renderer.render_example(pose, image_folder / "triplet_expression.png", image_folder / "triplet_posed.png")
    rest, expression, posed = (read(image_folder / f"triplet_{n}.png") for n in ("rest", "expression", "posed"))
    face_change = np.abs(expression.astype(int) - rest.astype(int)).max(axis=2) > 24
    turn_change = np.abs(posed.astype(int) - expression.astype(int)).max(axis=2) > 24
    assert 0 < face_change.sum() < 0.03 * face_change.size  # eyes and mouth only
    assert turn_change.sum() > 3 * face_change.sum()  # the whole head moved
    assert not turn_change[230:].any() or turn_change[230:].mean() < 0.02  # the body stays
    # head_y > 0 turns the face toward the character's right (the image's left), head_x > 0
    # tilts it up, neck_z > 0 tilts the head toward the character's left shoulder (image right).
    rest_positions = evaluated_positions(scenes, imported.meshes[0], renderer, schema.neutral())
    in_band = (rest_positions[:, 2] > annotation.head_bottom * 0.08) & (rest_positions[:, 2] < annotation.head_top * 0.08)
    in_band &= np.abs(rest_positions[:, 0]) < 0.02
    nose = int(np.argmin(np.where(in_band, rest_positions[:, 1], np.inf)))  # front-most in the head, centred
    top = int(np.argmax(rest_positions[:, 2]))
    turned = evaluated_positions(scenes, imported.meshes[0], renderer, schema.vector(head_y=1.0))
    assert turned[nose, 0] < rest_positions[nose, 0] - 0.01
    raised = evaluated_positions(scenes, imported.meshes[0], renderer, schema.vector(head_x=1.0))
    assert raised[nose, 2] > rest_positions[nose, 2] + 0.005
    tilted = evaluated_positions(scenes, imported.meshes[0], renderer, schema.vector(neck_z=1.0))
    assert tilted[top, 0] > rest_positions[top, 0] + 0.02


def evaluated_positions(scenes, mesh, renderer, pose):
    renderer.poser.apply(pose)
    return scenes.evaluated_vertices(mesh)

