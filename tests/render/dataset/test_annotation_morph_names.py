"""Morph roles on models built here and written as real PMX files: the name variants real models
use (one-sided brows, 眉上げ, くわっ, 口_微笑) and the eyelid check that keeps a morph named like a
wink but barely moving the eye from being taken for one."""

import numpy as np
import pytest

from tha_studio.render.dataset import annotation as A
from tha_studio.render.formats.mmd import make_character, pmx, read_model
from tha_studio.render.formats.mmd.model import PANEL_EYE, PANEL_EYEBROW, PANEL_MOUTH, Morph
from tha_studio.render.formats.mmd.procedural import EYE_Y, MOUTH_Y


def material_vertices(model, name):
    """The vertices the faces of material `name` use."""
    start = 0
    for material in model.materials:
        count = material.index_count // 3
        if material.name == name:
            return np.unique(model.faces[start:start + count])
        start += count
    raise KeyError(name)


def morph_of(model, name):
    return next(m for m in model.morphs if m.name == name)


def vertex_morph(name, indices, offsets, panel):
    indices = np.asarray(indices, np.int64)
    offsets = np.broadcast_to(np.asarray(offsets, np.float32), (len(indices), 3)).copy()
    return Morph(name=name, panel=panel, kind="vertex", vertex_indices=indices, vertex_offsets=offsets)


def scaled(morph, name, scale):
    """A copy of `morph` under another name moving its vertices `scale` as far."""
    return Morph(name=name, panel=morph.panel, kind="vertex", vertex_indices=morph.vertex_indices.copy(),
                 vertex_offsets=(morph.vertex_offsets * scale).astype(np.float32))


def brows(model):
    """(left brow vertices, right brow vertices): the lash-and-brow material above the lashes."""
    lines = material_vertices(model, "まつげ")
    brow = lines[model.positions[lines, 1] > EYE_Y + 0.42]
    return brow[model.positions[brow, 0] > 0], brow[model.positions[brow, 0] < 0]


def written(model, tmp_path, name="model.pmx"):
    """The model as a real PMX file read back (what annotation reads from a download folder)."""
    for frame in model.display_frames:  # the expression panel lists the morphs as they are now
        if any(kind == 1 for kind, _ in frame.items):
            frame.items = [(1, i) for i in range(len(model.morphs))]
    return read_model(pmx.write(model, tmp_path / name))


def test_one_sided_and_part_prefixed_brow_eye_and_mouth_names_are_found(tmp_path):
    model = make_character()
    left, right = brows(model)
    assert len(left) > 20 and len(right) > 20
    mouth = material_vertices(model, "口")
    corners = mouth[np.abs(model.positions[mouth, 0]) > 0.08]
    lashes = material_vertices(model, "まつげ")
    lashes = lashes[model.positions[lashes, 1] < EYE_Y + 0.42]
    model.morphs += [
        vertex_morph("左眉上げ", left, (0, 0.08, 0), PANEL_EYEBROW),
        vertex_morph("右眉上げ", right, (0, 0.08, 0), PANEL_EYEBROW),
        vertex_morph("眉上げ", np.concatenate([left, right]), (0, 0.06, 0), PANEL_EYEBROW),
        vertex_morph("左眉怒り", left, (0, -0.05, 0), PANEL_EYEBROW),
        vertex_morph("右眉困り", right, (0, 0.03, 0), PANEL_EYEBROW),
        vertex_morph("くわっ", lashes, (0, 0.05, 0), PANEL_EYE),
        vertex_morph("口_微笑", corners, (0, 0.04, 0), PANEL_MOUTH),
        vertex_morph("口上", corners, (0, 0.04, 0), PANEL_MOUTH),  # 口 + 上: not an eyebrow
    ]
    annotation = A.annotate_model(written(model, tmp_path), "model.pmx")

    assert annotation.morphs_for("eyebrow_raised_left") == [("左眉上げ", 1.0, None)]
    assert annotation.morphs_for("eyebrow_raised_right") == [("右眉上げ", 1.0, None)]
    assert annotation.morph_roles["eyebrow_raised_left"]["confidence"] >= A.REVIEW_CONFIDENCE
    assert annotation.morphs_for("eyebrow_angry_left") == [("左眉怒り", 1.0, None)]
    assert annotation.morphs_for("eyebrow_troubled_right") == [("右眉困り", 1.0, None)]
    raised = [c["name"] for c in annotation.morph_roles["eyebrow_raised_left"]["candidates"]]
    assert raised[:2] == ["左眉上げ", "眉上げ"]  # the both-sides brow is the second choice for each side
    assert annotation.morphs_for("eye_surprised_left") == [("くわっ", 1.0, "left")]
    assert annotation.morphs_for("eye_surprised_right") == [("くわっ", 1.0, "right")]
    assert annotation.morphs_for("mouth_raised_corner_left") == [("口_微笑", 1.0, "left")]
    assert not any("口上" in [c["name"] for c in entry["candidates"]]
                   for role, entry in annotation.morph_roles.items() if role.startswith("eyebrow"))


def test_a_smile_wink_that_barely_moves_the_eyelid_is_a_low_confidence_guess(tmp_path):
    # As on a real model: 笑い named a smile-wink, but it lifts the eyelid a hair (1/12 of a wink).
    model = make_character()
    wink = morph_of(model, "ウィンク")
    model.morphs = [m for m in model.morphs if m.name not in ("ウィンク", "ウィンク右")]
    model.morphs += [scaled(wink, "ウィンク２", 1.0), scaled(morph_of(model, "まばたき"), "笑い", 1 / 12)]
    annotation = A.annotate_model(written(model, tmp_path), "model.pmx")

    happy = annotation.morph_roles["eye_happy_wink_left"]
    assert happy["morphs"][0]["name"] == "笑い"  # the only smile-wink there is, but not trusted
    assert happy["confidence"] < A.REVIEW_CONFIDENCE
    assert "moves the eyelid" in happy["candidates"][0]["why"]
    # The real winks keep their trust.
    assert annotation.morphs_for("eye_wink_left") == [("ウィンク２", 1.0, None)]
    assert annotation.morph_roles["eye_wink_left"]["confidence"] >= 0.9

    # The same morph moving the eyelid as far as a wink is trusted as before.
    model.morphs[-1] = scaled(morph_of(model, "まばたき"), "笑い", 0.8)
    trusted = A.annotate_model(written(model, tmp_path, "closing.pmx"), "closing.pmx")
    assert trusted.morph_roles["eye_happy_wink_left"]["confidence"] >= A.REVIEW_CONFIDENCE


def test_a_blink_that_does_not_close_the_eye_loses_to_one_that_does(tmp_path):
    model = make_character()
    blink = morph_of(model, "まばたき")
    model.morphs = [m for m in model.morphs if m.name not in ("まばたき", "ウィンク", "ウィンク右")]
    model.morphs += [scaled(blink, "まばたき", 0.1), scaled(blink, "目閉じ", 1.0)]
    annotation = A.annotate_model(written(model, tmp_path), "model.pmx")
    # By name alone まばたき (0.95) comes before 目閉じ (0.85); by the eyelid it closes nothing.
    assert annotation.morphs_for("eye_wink_left") == [("目閉じ", 1.0, "left")]
    assert annotation.morphs_for("eye_wink_right") == [("目閉じ", 1.0, "right")]
    candidates = {c["name"]: c["confidence"] for c in annotation.morph_roles["eye_wink_left"]["candidates"]}
    assert candidates["まばたき"] < 0.3


def test_a_mouth_morph_moving_far_does_not_count_as_eyelid_travel(tmp_path):
    # A smile-wink that also opens the mouth wide: only the eyes' band of the face is measured.
    model = make_character()
    mouth = material_vertices(model, "口")
    model.morphs = [m for m in model.morphs if m.name not in ("ウィンク", "ウィンク右")]
    model.morphs.append(vertex_morph("笑い", mouth, (0, -0.6, 0), PANEL_EYE))
    annotation = A.annotate_model(written(model, tmp_path), "model.pmx")
    assert annotation.morph_roles["eye_happy_wink_left"]["confidence"] < 0.2
    assert MOUTH_Y < EYE_Y
