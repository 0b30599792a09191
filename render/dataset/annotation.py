"""Model annotation for dataset rendering: where the head is, which morphs and bones play which role.

Pure (numpy); works on the parsed `render.formats.mmd.Model`, so a thousand models annotate without
Blender. The THA1 write-up §5.1 names the two things raw models lack: the head's vertical
extent (chin tip to the top of the skull, hair pointing upward left out) and which morphs
close each eye and open the mouth. THA2/THA3 add eyebrow, eye, iris and mouth shapes
(shared/reference/tha.md §6); the roles here are those pose parameters' names.

Role assignment reads names (Japanese MMD names and their spelling variants, through
`normalize_name`; English, VRM and ARKit names) and checks them against the geometry: which
side of the face a morph moves decides whether it serves the left or the right role, so a
model whose "left wink" closes the right eye is caught. A morph that moves both sides can
serve a one-sided role restricted to that side's half of the face (`side`), which is how the
THA1 write-up's models with only a both-eyes blink still get winks. A wink or blink must also
move the eyelid (`eyelid_travel`): a morph named 笑い that barely moves the eye is a guess for a
person to check, not a smile-wink.

The sidecar is versioned JSON beside the model (`<model file>.tha.json`) or in an
annotation folder; each entry says whether a program ("auto") or a person made it, and
re-annotating keeps what a person set. Heights are in the model file's own units and axes
(MMD: Y up, the character faces -Z, its left is +X).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...atomic_files import MAX_NAME_BYTES, TEMP_SUFFIX, sha256_file, temp_stem, write_text_atomic
from ...errors import UserError
from ...input_files import read_text
from ... import json_text
from ..formats.coordinates import MAX_MMD_COORDINATE, first_unreal_row
from ..formats.mmd.import_plan import GroupMorphError, flatten_group
from ..formats.mmd.names import normalize_name

SIDECAR_FORMAT = "tha_studio.annotation"
SIDECAR_VERSION = 1
SIDECAR_SUFFIX = ".tha.json"
AUTO, PERSON = "auto", "person"
LEFT, RIGHT = "left", "right"

# Role families: a family ending in a side has roles <family>_left and <family>_right.
# Each entry: a name (compared after normalize_name, side marker and separators removed)
# and how sure that name alone makes us. Japanese MMD names first (tha.md §6; mmd.md §2),
# then VRM 0.x/1.0 presets (mmd.md §4), ARKit blendshapes and VRoid's own morph names (Fcl_...).
MORPH_NAMES = {
    "eyebrow_troubled": [("困る", 0.95), ("困り", 0.9), ("browinnerup", 0.6), ("Fcl_BRW_Sorrow", 0.85)],
    "eyebrow_angry": [("怒り", 0.95), ("怒る", 0.9), ("Fcl_BRW_Angry", 0.9)],
    "eyebrow_lowered": [("下", 0.95), ("眉下", 0.9), ("下げ", 0.9), ("browdown", 0.8)],
    "eyebrow_raised": [("上", 0.95), ("眉上", 0.9), ("上げ", 0.9), ("browouterup", 0.7), ("Fcl_BRW_Surprised", 0.8)],
    "eyebrow_happy": [("にこり", 0.95), ("Fcl_BRW_Joy", 0.8)],
    "eyebrow_serious": [("真面目", 0.95)],
    # Normal winks (eyelid curved down): まばたき, and ウィンク２ / ウィンク２右 in MMD models.
    "eye_wink": [
        ("まばたき", 0.95), ("ウィンク2", 0.95), ("まば", 0.9), ("目閉じ", 0.85), ("目_閉じ", 0.85),
        ("blink", 0.9), ("eyeblink", 0.85), ("eyeclose", 0.6), ("まばたき2", 0.8), ("Fcl_EYE_Close", 0.9),
    ],
    # Smile winks (eyelid curved up): 笑い, and ウィンク / ウィンク右.
    "eye_happy_wink": [("笑い", 0.95), ("ウィンク", 0.95), ("ウインク", 0.95), ("Fcl_EYE_Joy", 0.9)],
    "eye_surprised": [("びっくり", 0.95), ("見開き", 0.85), ("くわっ", 0.85), ("eyewide", 0.8), ("surprised", 0.5),
                      ("Fcl_EYE_Surprised", 0.85)],
    "eye_relaxed": [("なごみ", 0.95), ("relaxed", 0.5), ("fun", 0.4), ("Fcl_EYE_Fun", 0.6)],
    "eye_unimpressed": [("じと目", 0.95), ("ジト目", 0.95), ("じど目", 0.8)],
    "eye_raised_lower_eyelid": [("下瞼上げ", 0.95), ("下まぶた上げ", 0.9), ("eyesquint", 0.6)],
    "iris_small": [("瞳小", 0.95), ("瞳孔小", 0.8), ("瞳小さく", 0.8)],
    "mouth_aaa": [("あ", 0.95), ("発音「あ」", 0.85), ("あ2", 0.8), ("aa", 0.9), ("a", 0.9), ("jawopen", 0.75),
                  ("Fcl_MTH_A", 0.9)],
    "mouth_iii": [("い", 0.95), ("発音「い」", 0.85), ("ih", 0.9), ("i", 0.9), ("Fcl_MTH_I", 0.9)],
    "mouth_uuu": [("う", 0.95), ("発音「う」", 0.85), ("ou", 0.9), ("u", 0.9), ("mouthpucker", 0.6), ("Fcl_MTH_U", 0.9)],
    "mouth_eee": [("え", 0.95), ("発音「え」", 0.85), ("えー", 0.6), ("ee", 0.9), ("e", 0.9), ("Fcl_MTH_E", 0.9)],
    "mouth_ooo": [("お", 0.95), ("発音「お」", 0.85), ("oh", 0.9), ("o", 0.9), ("mouthfunnel", 0.6), ("Fcl_MTH_O", 0.9)],
    "mouth_delta": [("▲", 0.95), ("δ", 0.9), ("△", 0.85), ("∧", 0.6)],
    "mouth_lowered_corner": [("口角下げ", 0.95), ("mouthfrown", 0.8), ("Fcl_MTH_Sorrow", 0.6)],
    "mouth_raised_corner": [("口角上げ", 0.95), ("微笑", 0.85), ("mouthsmile", 0.8), ("Fcl_MTH_Joy", 0.6)],
    "mouth_smirk": [("はんっ!", 0.9), ("にやり", 0.6)],
}
SIDED_MORPH_FAMILIES = (
    "eyebrow_troubled", "eyebrow_angry", "eyebrow_lowered", "eyebrow_raised", "eyebrow_happy",
    "eyebrow_serious", "eye_wink", "eye_happy_wink", "eye_surprised", "eye_relaxed", "eye_unimpressed",
    "eye_raised_lower_eyelid", "iris_small", "mouth_lowered_corner", "mouth_raised_corner",
)

BONE_NAMES = {
    "neck": [("首", 0.95), ("neck", 0.85), ("j_bip_c_neck", 0.85)],
    "head": [("頭", 0.95), ("head", 0.85), ("j_bip_c_head", 0.85)],
    "upper_body": [("上半身", 0.95), ("upper body", 0.85), ("spine", 0.7), ("j_bip_c_spine", 0.8)],
    "upper_body_2": [("上半身2", 0.95), ("上半身２", 0.95), ("chest", 0.8), ("upperchest", 0.7), ("j_bip_c_chest", 0.8)],
    "eyes": [("両目", 0.95), ("eyes", 0.8)],
    # (VRoid's rigs put the side in the middle, J_Adj_L_FaceEye: the side comes from where it sits.)
    "eye": [("目", 0.95), ("eye", 0.85), ("j_adj_faceeye", 0.8), ("J_Adj_L_FaceEye", 0.8), ("J_Adj_R_FaceEye", 0.8)],
    "shoulder": [("肩", 0.95), ("shoulder", 0.85), ("J_Bip_L_Shoulder", 0.8), ("J_Bip_R_Shoulder", 0.8)],
}
SIDED_BONE_FAMILIES = ("eye", "shoulder")

# Pose parameters of THA1 that play a THA2/THA3 role (tha.md §2.2: 0 = open, 1 = closed).
THA1_ROLES = {"left_eye": "eye_wink_left", "right_eye": "eye_wink_right", "mouth": "mouth_aaa"}
# Roles a model must have to be rendered for a schema; the others, when missing, stay at 0.
REQUIRED_MORPH_ROLES = ("eye_wink_left", "eye_wink_right", "mouth_aaa")
REQUIRED_BONE_ROLES = {"tha1": ("neck", "head"), "tha2": ("neck", "head"), "tha3": ("neck", "head", "upper_body")}
# Bone-driven parameters and the bone roles they need.
BONE_PARAMETERS = {
    "head_x": ("head",), "head_y": ("head",), "neck_z": ("neck",),
    "iris_rotation_x": ("eye_left", "eye_right"), "iris_rotation_y": ("eye_left", "eye_right"),
    "body_y": ("upper_body",), "body_z": ("upper_body",), "breathing": ("shoulder_left", "shoulder_right"),
}

# Names often lead with the face part they move: 眉上げ, 左眉怒り, 口_微笑, 目_笑い. Such a name
# also matches its rest, for the families of that part only (口上 is not a raised eyebrow).
PART_PREFIXES = {"眉": ("eyebrow_",), "目": ("eye_", "iris_"), "口": ("mouth_",)}
PART_PREFIX_FACTOR = 0.95

# Winks and blinks are checked against how far they move the eyelid, as a share of the head's
# height (chin to skull), among the vertices in the eyes' band of the face: Gene's blink moves
# it 9%, its smile-wink 6%, the sample character's 11%; a morph named 笑い that moves it 1% does
# not close the eye, whatever its name says. Full trust from EYELID_FULL of the head height and
# from EYELID_SHARE of the model's strongest wink or blink, less below either, in proportion.
EYE_CLOSING_FAMILIES = ("eye_wink", "eye_happy_wink")
EYELID_FULL = 0.04
EYELID_SHARE = 0.5
EYE_BAND = (0.25, 0.8)  # the eyes lie in this band of the head's height, from the chin

# A morph moving at least this share of its displacement on one side is one-sided.
ONE_SIDED_SHARE = 0.75
SPLIT_PENALTY = 0.75  # a both-sides morph restricted to one half
WRONG_SIDE_PENALTY = 0.8  # the name says one side, the geometry the other
ONE_SIDED_MOUTH_PENALTY = 0.7  # a one-sided morph offered for a centred mouth shape
ENGLISH_NAME_FACTOR = 0.9  # a match found through the English name field
REVIEW_CONFIDENCE = 0.7  # below this, a needed role asks for a person's look

_JAPANESE_SIDE = re.compile(r"[左右]")
_LATIN_SIDE = re.compile(
    r"(?:[_\-. ]?(?P<word>[Ll]eft|[Rr]ight|LEFT|RIGHT)|[_\-. ](?P<letter>[LlRr])|(?<=[a-z0-9])(?P<camel>[LR]))$"
)
_SEPARATORS = re.compile(r"[ _\-.・]")


class AnnotationError(UserError, ValueError):
    """An annotation that cannot be made or read: says which model or file and why."""


def split_side(name):
    """(base name, side hint or None): ウィンク右 -> (ウィンク, right); eyeBlinkLeft -> (eyeBlink, left)."""
    found = _JAPANESE_SIDE.search(name)
    if found:
        side = LEFT if found.group() == "左" else RIGHT
        return name[: found.start()] + name[found.end() :], side
    found = _LATIN_SIDE.search(name)
    if found:
        marker = (found.group("word") or found.group("letter") or found.group("camel")).lower()
        return name[: found.start()], LEFT if marker.startswith("l") else RIGHT
    return name, None


def name_key(name):
    """The key names are compared by: normalize_name, then separators removed."""
    return _SEPARATORS.sub("", normalize_name(name))


def _table(entries):
    table = {}
    for family, names in entries.items():
        for rank, (name, confidence) in enumerate(names):
            table.setdefault(name_key(name), []).append((family, confidence, rank))
    return table


_MORPH_TABLE = _table(MORPH_NAMES)
_BONE_TABLE = _table(BONE_NAMES)


def morph_roles_for_schema(schema):
    """{pose parameter name: role} for the schema's morph-driven parameters."""
    roles = {}
    for parameter in schema.parameters:
        if parameter.group not in ("eyebrow", "eye", "iris", "mouth") or parameter.minimum < 0:
            continue  # iris rotation turns the eye bones
        roles[parameter.name] = THA1_ROLES.get(parameter.name, parameter.name)
    return roles


# ----------------------------------------------------------------------------------------------
# Morph geometry


def morph_offsets(model, index):
    """(vertex indices, offsets) a morph moves, group morphs flattened (`flatten_group`, shared
    with the importer); empty for other kinds. A group morph that contains itself or nests too
    deep is an AnnotationError."""
    morph = model.morphs[index]
    if morph.kind == "vertex":
        return np.asarray(morph.vertex_indices, np.int64), np.asarray(morph.vertex_offsets, np.float64)
    if morph.kind != "group":
        return np.zeros(0, np.int64), np.zeros((0, 3))
    try:
        leaves = flatten_group(model.morphs, index)
    except GroupMorphError as error:
        raise AnnotationError(f"model {model.name!r}: {error}") from None
    parts = [(model.morphs[leaf], weight) for leaf, weight in leaves.items() if model.morphs[leaf].kind == "vertex"]
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, 3))
    return (np.concatenate([np.asarray(m.vertex_indices, np.int64) for m, _ in parts]),
            np.concatenate([np.asarray(m.vertex_offsets, np.float64) * weight for m, weight in parts]))


def morph_side(model, index, center_x=0.0):
    """"left", "right" or "both" (the character's sides, +X is left in MMD), or None if it moves nothing."""
    indices, offsets = morph_offsets(model, index)
    magnitude = np.linalg.norm(offsets, axis=1) if len(offsets) else np.zeros(0)
    total = float(magnitude.sum())
    if total <= 1e-9:
        return None
    left_share = float(magnitude[model.positions[indices, 0] > center_x].sum()) / total
    if left_share >= ONE_SIDED_SHARE:
        return LEFT
    if left_share <= 1 - ONE_SIDED_SHARE:
        return RIGHT
    return "both"


@dataclass
class Candidate:
    """A morph (or bone) offered for a role: `side` restricts a both-sides morph to one half."""

    name: str
    confidence: float
    side: str | None = None
    why: str = ""
    rank: tuple = ()

    def as_json(self):
        entry = {"name": self.name, "confidence": round(self.confidence, 3)}
        if self.side:
            entry["side"] = self.side
        if self.why:
            entry["why"] = self.why
        return entry


def _name_matches(table, name, name_en):
    """(family, confidence, rank, side hint, via) for each family a name or English name matches."""
    found = []
    for text, factor, via in ((name, 1.0, "name"), (name_en, ENGLISH_NAME_FACTOR, "English name")):
        if not text:
            continue
        base, hint = split_side(text)
        for key in {name_key(text), name_key(base)}:
            # A full-name match (side marker included) is a different name from its base.
            side_hint = hint if key == name_key(base) and key != name_key(text) else None
            for family, confidence, rank in table.get(key, ()):
                found.append((family, confidence * factor, rank, side_hint, via))
            part, rest = key[:1], key[1:]
            for family, confidence, rank in table.get(rest, ()) if part in PART_PREFIXES and rest else ():
                if family.startswith(PART_PREFIXES[part]):
                    found.append((family, confidence * factor * PART_PREFIX_FACTOR, rank, side_hint, via))
    return found


def morph_families_by_name(name):
    """[(role family, confidence, side hint)] that a morph's name alone offers, the likeliest first
    (no model to look at: a motion file's morph keys name their morphs and nothing else)."""
    found = sorted(_name_matches(_MORPH_TABLE, name, ""), key=lambda match: (-match[1], match[2]))
    return [(family, confidence, hint) for family, confidence, _, hint, _ in found]


def eyelid_travel(model, index, head):
    """How far a morph moves the eyelid, as a share of the head's height: the 95th percentile of
    its vertices' vertical movement within the eyes' band of the face (`EYE_BAND` of `head`, a
    HeadExtent in model units; every vertex it moves without one)."""
    indices, offsets = morph_offsets(model, index)
    if not len(indices):
        return 0.0
    height = head.height if head is not None else 1.0  # then only compared with the other winks
    vertical = np.abs(offsets[:, 1])
    if head is not None:
        rows = (np.asarray(model.positions, np.float64)[indices, 1] - head.bottom) / height
        vertical = vertical[(rows >= EYE_BAND[0]) & (rows <= EYE_BAND[1])]
    return float(np.percentile(vertical, 95)) / height if len(vertical) else 0.0


def _eyelid_factor(travel, strongest, full=EYELID_FULL):
    """How much a wink or blink moving the eyelid `travel` (share of the head) is trusted: 1 when
    it moves it at least `full` and at least EYELID_SHARE of the strongest, less in proportion."""
    needed = max(full, EYELID_SHARE * strongest)
    return min(1.0, travel / needed) if needed > 0 else 1.0


def morph_candidates(model, center_x=0.0, head=None):
    """{role: [Candidate], best first} for every morph role, from names checked against geometry.

    `head` (a HeadExtent in model units, if known) places the eyes' band in which winks and
    blinks must move the eyelid (`eyelid_travel`); without it every moved vertex counts."""
    candidates, offers = {}, []
    for index, morph in enumerate(model.morphs):
        if morph.kind not in ("vertex", "group"):
            continue  # only these become shape keys
        matches = _name_matches(_MORPH_TABLE, morph.name, morph.name_en)
        if not matches:
            continue
        side = morph_side(model, index, center_x)
        if side is None:
            continue  # an empty morph changes nothing
        for family, confidence, rank, hint, via in matches:
            for role, candidate in _morph_offers(family, confidence, side, hint, morph.name, via):
                offers.append((family, index, rank, role, candidate))
    travel = {index: eyelid_travel(model, index, head) for family, index, *_ in offers if family in EYE_CLOSING_FAMILIES}
    strongest = max(travel.values(), default=0.0)
    for family, index, rank, role, candidate in offers:
        if index in travel:
            factor = _eyelid_factor(travel[index], strongest, EYELID_FULL if head is not None else 0.0)
            if factor < 1.0:
                candidate.confidence *= factor
                candidate.why += (f"; moves the eyelid {100 * travel[index]:.1f}% of the head height "
                                  f"(the strongest wink or blink {100 * strongest:.1f}%)")
        candidate.rank = (-candidate.confidence, rank, index)
        candidates.setdefault(role, []).append(candidate)
    for role, offered in candidates.items():
        offered.sort(key=lambda c: c.rank)
        candidates[role] = _unique_by_name_and_side(offered)
    return candidates


def _morph_offers(family, confidence, side, hint, name, via):
    if family not in SIDED_MORPH_FAMILIES:
        if side in (LEFT, RIGHT):
            yield family, Candidate(name, confidence * ONE_SIDED_MOUTH_PENALTY, why=f"{via}; moves only the {side} side")
        else:
            yield family, Candidate(name, confidence, why=via)
        return
    if side in (LEFT, RIGHT):
        why = via
        if hint and hint != side:
            confidence *= WRONG_SIDE_PENALTY
            why = f"{via} says {hint}, but it moves the {side} side"
        yield f"{family}_{side}", Candidate(name, confidence, why=why)
        return
    if hint:
        # Named for one side but moving both: offer it for the named side, restricted.
        yield f"{family}_{hint}", Candidate(name, confidence * SPLIT_PENALTY, side=hint, why=f"{via}; moves both sides, {hint} half used")
        return
    for half in (LEFT, RIGHT):
        yield f"{family}_{half}", Candidate(name, confidence * SPLIT_PENALTY, side=half, why=f"{via}; moves both sides, {half} half used")


def _unique_by_name_and_side(candidates):
    seen, unique = set(), []
    for candidate in candidates:
        key = (candidate.name, candidate.side)
        if key not in seen:
            seen.add(key)
            unique.append(candidate)
    return unique


def bone_candidates(model):
    """{bone role: [Candidate]} from bone names (Japanese first, then English)."""
    candidates = {}
    for index, bone in enumerate(model.bones):
        for family, confidence, rank, hint, via in _name_matches(_BONE_TABLE, bone.name, bone.name_en):
            if family in SIDED_BONE_FAMILIES:
                side = hint or (LEFT if bone.position[0] > 0 else RIGHT)
                role = f"{family}_{side}"
            else:
                if hint:
                    continue  # 左上半身 is not the upper body
                role = family
            candidate = Candidate(bone.name, confidence, why=via, rank=(-confidence, rank, index))
            candidates.setdefault(role, []).append(candidate)
    for role, offered in candidates.items():
        offered.sort(key=lambda c: c.rank)
        candidates[role] = _unique_by_name_and_side(offered)
    return candidates


# ----------------------------------------------------------------------------------------------
# Head extent


@dataclass(frozen=True)
class HeadExtent:
    """The head band in model units (as the sidecar stores it), or in Blender units once `scaled`."""

    top: float
    bottom: float
    center_x: float = 0.0
    front_z: float = 0.0  # the most forward point of the head (MMD: smallest z)

    @property
    def height(self):
        return self.top - self.bottom

    def scaled(self, scale):
        """The same extent with every length multiplied by `scale` (model units to Blender units)."""
        return HeadExtent(self.top * scale, self.bottom * scale, self.center_x * scale, self.front_z * scale)


def _children(model):
    children = [[] for _ in model.bones]
    for i, bone in enumerate(model.bones):
        if 0 <= bone.parent < len(model.bones) and bone.parent != i:
            children[bone.parent].append(i)
    return children


def _subtree(children, root):
    found, stack = [], [root]
    while stack:
        bone = stack.pop()
        if bone in found:
            continue
        found.append(bone)
        stack.extend(children[bone])
    return found


def _first_direction(model, children, root, min_length):
    """The direction of the first segment of a bone chain at least `min_length` long, or None.
    Shorter ones are passed over: Gene's ahoge, which rises over the skull, starts with two joints
    0.05 mm apart, a segment pointing anywhere."""
    start = np.asarray(model.bones[root].position, np.float64)
    for bone in _subtree(children, root):
        data = model.bones[bone]
        if 0 <= data.tail_bone < len(model.bones):
            tail = np.asarray(model.bones[data.tail_bone].position, np.float64)
        else:
            tail = np.asarray(data.position, np.float64) + np.asarray(data.tail_offset, np.float64)
        for point in (np.asarray(data.position, np.float64), tail):
            step = point - start
            if np.linalg.norm(step) >= min_length:
                return step / np.linalg.norm(step)
    return None


def upward_chains(model, head):
    """Bones in chains hanging from the head whose first segment points upward (ahoge, raised tails).
    A segment counts from 0.5% of the model's height (8 mm on a 1.6 m character), in any units;
    the height between its 0.5th and 99.5th percentile vertices (a stray vertex far off does not count)."""
    children = _children(model)
    heights = np.asarray(model.positions, np.float64).reshape(-1, 3)[:, 1]
    height = float(np.subtract(*np.percentile(heights, [99.5, 0.5]))) if len(heights) else 0.0
    min_length = max(0.005 * height, 1e-9)
    upward = set()
    for child in children[head]:
        direction = _first_direction(model, children, child, min_length)
        if direction is not None and direction[1] > 0.5:  # within 60 degrees of straight up
            upward.update(_subtree(children, child))
    return upward


def dominant_bones(model):
    weights = np.where(model.bone_indices >= 0, model.bone_weights, -1.0)
    return model.bone_indices[np.arange(len(weights)), np.argmax(weights, axis=1)]


def estimate_head(model, head_bone, mouth=None):
    """The head's extent from the head bone and the vertices it moves (THA1 write-up §5.1).

    Bottom: the chin tip, the lowest vertex that the head bone itself drives on the face's front
    centre line, below the mouth: within the mouth's width of its centre when `mouth` (the
    vertices the mouth-opening morph moves) is given, else within a quarter of the face's width.
    Side locks, twin tails and back hair hanging lower are not the chin: a twin-tailed model's
    side hair tips, weighted to the head, were taken for it. Top: the highest horizontal slice of
    the head whose width is at least a quarter of the face's, among the vertices the head moves,
    leaving out hair chains that point upward; thin spikes (an ahoge weighted to the head) end
    below that width. The face's width is measured in front of the head bone, so hair hanging
    behind or beside the shoulders does not widen it.
    """
    bones = model.bones
    if not 0 <= head_bone < len(bones):
        raise AnnotationError(f"model {model.name!r}: no head bone to estimate the head from")
    children = _children(model)
    head_tree = np.zeros(len(bones), bool)
    head_tree[_subtree(children, head_bone)] = True
    indices = np.where(model.bone_indices >= 0, model.bone_indices, 0)
    weights = np.where(model.bone_indices >= 0, model.bone_weights, 0.0)
    head_weight = (weights * head_tree[indices]).sum(axis=1)
    moved = head_weight >= 0.5
    if moved.sum() < 10:
        raise AnnotationError(f"model {model.name!r}: the head bone {bones[head_bone].name!r} moves almost no vertices")
    positions = np.asarray(model.positions, np.float64)
    dominant = dominant_bones(model)
    head_x, _, head_z = (float(v) for v in bones[head_bone].position)

    upward = np.zeros(len(bones), bool)
    upward[list(upward_chains(model, head_bone))] = True
    kept = moved & ~upward[dominant]
    front = moved & (positions[:, 2] < head_z)
    xs = positions[front if front.sum() >= 10 else moved, 0]
    width = float(np.percentile(xs, 98) - np.percentile(xs, 2))

    top = _top_of_skull(positions[kept], width)
    bottom = _chin(positions, moved & (dominant == head_bone), head_x, head_z, width, mouth)
    if bottom is None:
        bottom = float(positions[moved & (dominant == head_bone), 1].min()) if (moved & (dominant == head_bone)).any() else float(positions[moved, 1].min())
    if not top > bottom:
        raise AnnotationError(f"model {model.name!r}: head top {top:.3f} is not above the chin {bottom:.3f}")
    front_z = float(positions[moved, 2].min())
    return HeadExtent(top=top, bottom=bottom, center_x=head_x, front_z=front_z)


def _top_of_skull(points, width, bins=200, min_share=0.25):
    low, high = float(points[:, 1].min()), float(points[:, 1].max())
    edges = np.linspace(low, high, bins + 1)
    slot = np.clip(np.searchsorted(edges, points[:, 1], side="right") - 1, 0, bins - 1)
    for b in range(bins - 1, -1, -1):
        in_slice = points[slot == b, 0]
        if len(in_slice) and in_slice.max() - in_slice.min() >= min_share * width:
            return float(points[slot == b, 1].max())
    return high


def _chin(positions, face, head_x, head_z, width, mouth=None):
    in_front = face & (positions[:, 2] < head_z)
    if mouth is not None and len(mouth):
        lips = positions[np.asarray(mouth, np.int64)]
        centre = float(np.median(lips[:, 0]))
        half_width = max(float(np.percentile(lips[:, 0], 95) - np.percentile(lips[:, 0], 5)) / 2, 1e-3 * width)
        below = in_front & (np.abs(positions[:, 0] - centre) <= half_width) & (positions[:, 1] < float(lips[:, 1].min()))
        if below.any():
            return float(positions[below, 1].min())
    front_centre = in_front & (np.abs(positions[:, 0] - head_x) < 0.25 * width)
    if not front_centre.any():
        return None
    return float(positions[front_centre, 1].min())


def mouth_anchor(model, center_x=0.0):
    """The vertices the model's best mouth-opening morph (mouth_aaa by name, moving both sides)
    moves, or None: the chin is found below the mouth, on its centre line."""
    best = None
    for index, morph in enumerate(model.morphs):
        if morph.kind not in ("vertex", "group"):
            continue
        for family, confidence, rank, hint, _ in _name_matches(_MORPH_TABLE, morph.name, morph.name_en):
            if family == "mouth_aaa" and hint is None and (best is None or (-confidence, rank) < best[0]):
                best = ((-confidence, rank), index)
    if best is None:
        return None
    indices, offsets = morph_offsets(model, best[1])
    moving = indices[np.linalg.norm(offsets, axis=1) > 1e-6] if len(offsets) else indices
    if not len(moving) or morph_side(model, best[1], center_x) != "both":
        return None
    return np.unique(moving)


# ----------------------------------------------------------------------------------------------
# The sidecar


@dataclass
class Annotation:
    """A model's annotation, as stored in its sidecar (see the module docstring)."""

    model_file: str
    model_sha256: str = ""
    model_name: str = ""
    head: dict = field(default_factory=dict)  # top, bottom, center_x, front_z, units, source
    morph_roles: dict = field(default_factory=dict)  # role -> {morphs: [{name, weight, side?}], confidence, source, candidates}
    bone_roles: dict = field(default_factory=dict)  # role -> {bone, confidence, source, candidates}
    review: dict = field(default_factory=lambda: {"flagged": False, "reasons": [], "source": AUTO})

    def to_json(self):
        return {
            "format": SIDECAR_FORMAT,
            "version": SIDECAR_VERSION,
            "model": {"file": self.model_file, "sha256": self.model_sha256, "name": self.model_name},
            "head": self.head,
            "morph_roles": dict(sorted(self.morph_roles.items())),
            "bone_roles": dict(sorted(self.bone_roles.items())),
            "review": self.review,
        }

    @classmethod
    def from_json(cls, data, source="<annotation>"):
        if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
            raise AnnotationError(f"{source}: not a THA Studio annotation (format is not {SIDECAR_FORMAT!r})")
        version = data.get("version")
        if not isinstance(version, int) or version > SIDECAR_VERSION or version < 1:
            raise AnnotationError(f"{source}: annotation version {version!r} is not supported (this program reads 1..{SIDECAR_VERSION})")
        model = data.get("model")
        if not isinstance(model, dict) or "file" not in model:
            raise AnnotationError(f"{source}: malformed annotation: 'model' must be an object naming the "
                                  "model's 'file'")
        for key in ("head", "morph_roles", "bone_roles", "review"):
            if not isinstance(data.get(key) or {}, dict):
                raise AnnotationError(f"{source}: malformed annotation: {key!r} must be an object")
        annotation = cls(
            model_file=str(model["file"]),
            model_sha256=str(model.get("sha256", "")),
            model_name=str(model.get("name", "")),
            head=dict(data.get("head") or {}),
            morph_roles=dict(data.get("morph_roles") or {}),
            bone_roles=dict(data.get("bone_roles") or {}),
            review=dict(data.get("review") or {"flagged": False, "reasons": [], "source": AUTO}),
        )
        annotation.check(source)
        return annotation

    def check(self, source="<annotation>"):
        if self.head:
            try:
                top, bottom = float(self.head["top"]), float(self.head["bottom"])
                place = [float(self.head.get(key, 0.0)) for key in ("center_x", "front_z")]
            except (KeyError, TypeError, ValueError):
                raise AnnotationError(f"{source}: head needs numeric 'top' and 'bottom'") from None
            found = first_unreal_row([[top, bottom, *place]], MAX_MMD_COORDINATE)
            if found:
                raise AnnotationError(f"{source}: head (top, bottom, center_x, front_z) {found[1]}")
            if not top > bottom:
                raise AnnotationError(f"{source}: head top {top} is not above head bottom {bottom}")
        for role, entry in self.morph_roles.items():
            morphs = entry.get("morphs") if isinstance(entry, dict) else None
            if not isinstance(morphs, list) or not all(isinstance(m, dict) and isinstance(m.get("name"), str)
                                                       for m in morphs):
                raise AnnotationError(f"{source}: morph role {role!r} needs a list of morphs with names")
            for morph in morphs:
                weight = morph.get("weight", 1.0)
                if not json_text.is_number(weight):
                    raise AnnotationError(f"{source}: morph role {role!r}: weight must be a number, got {weight!r}")
                if morph.get("side") not in (None, LEFT, RIGHT):
                    raise AnnotationError(f"{source}: morph role {role!r}: side must be 'left' or 'right'")
            _check_offered(entry, f"{source}: morph role {role!r}")
        for role, entry in self.bone_roles.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("bone"), str):
                raise AnnotationError(f"{source}: bone role {role!r} needs a bone name")
            _check_offered(entry, f"{source}: bone role {role!r}")
        reasons = self.review.get("reasons", [])
        if not isinstance(reasons, list) or not all(isinstance(reason, str) for reason in reasons):
            raise AnnotationError(f"{source}: review reasons must be a list of text")

    # --- reading roles

    @property
    def head_top(self):
        return float(self.head["top"])

    @property
    def head_bottom(self):
        return float(self.head["bottom"])

    @property
    def head_extent(self):
        """The sidecar's head entry as a HeadExtent (model units); centre and front default to 0."""
        if not self.head:
            raise AnnotationError(f"{self.model_file}: the annotation has no head extent")
        head = self.head
        return HeadExtent(
            top=float(head["top"]),
            bottom=float(head["bottom"]),
            center_x=float(head.get("center_x", 0.0)),
            front_z=float(head.get("front_z", 0.0)),
        )

    def morphs_for(self, role):
        """[(morph name, weight, side or None)] that play `role`; empty if none does."""
        entry = self.morph_roles.get(role)
        if not entry:
            return []
        return [(m["name"], float(m.get("weight", 1.0)), m.get("side")) for m in entry["morphs"]]

    def bone_for(self, role):
        entry = self.bone_roles.get(role)
        return entry["bone"] if entry else None

    def available_parameters(self, schema):
        """The schema's parameters this model can show: morph roles found, bones found."""
        roles = morph_roles_for_schema(schema)
        names = [name for name, role in roles.items() if self.morphs_for(role)]
        for name in schema.names:
            needed = BONE_PARAMETERS.get(name)
            if needed and all(self.bone_for(role) for role in needed):
                names.append(name)
        return [n for n in schema.names if n in set(names)]

    def missing_roles(self, schema):
        """Roles this schema needs that the model lacks (it cannot be rendered without them)."""
        missing = [role for role in REQUIRED_MORPH_ROLES if not self.morphs_for(role)]
        missing += [role for role in REQUIRED_BONE_ROLES.get(schema.name, ("neck", "head")) if not self.bone_for(role)]
        if not self.head:
            missing.append("head extent")
        return missing

    # --- changes

    def set_morph_role(self, role, name, side=None, weight=1.0, source=PERSON, confidence=1.0):
        entry = self.morph_roles.setdefault(role, {"candidates": []})
        morph = {"name": name, "weight": float(weight)}
        if side:
            morph["side"] = side
        entry.update(morphs=[morph], source=source, confidence=float(confidence))

    def clear_morph_role(self, role, source=PERSON):
        entry = self.morph_roles.setdefault(role, {"candidates": []})
        entry.update(morphs=[], source=source, confidence=1.0)

    def set_bone_role(self, role, bone, source=PERSON, confidence=1.0):
        entry = self.bone_roles.setdefault(role, {"candidates": []})
        entry.update(bone=bone, source=source, confidence=float(confidence))

    def set_head(self, top, bottom, source=PERSON):
        if not float(top) > float(bottom):
            raise AnnotationError(f"{self.model_file}: head top {top} must be above head bottom {bottom}")
        self.head.update(top=float(top), bottom=float(bottom), source=source)
        self.head.setdefault("units", "model")

    def flag(self, reason, source=PERSON):
        self.review["flagged"] = True
        if reason not in self.review.setdefault("reasons", []):
            self.review["reasons"].append(reason)
        self.review["source"] = source

    def unflag(self, source=PERSON):
        self.review.update(flagged=False, reasons=[], source=source)


def _check_offered(entry, where):
    """A role's confidence and candidates, which the panel and the review sheet show: a number,
    and a list of objects each with a name and, where given, a number."""
    if not json_text.is_number(entry.get("confidence", 1.0)):
        raise AnnotationError(f"{where}: confidence must be a number, got {entry.get('confidence')!r}")
    offered = entry.get("candidates", [])
    if not isinstance(offered, list) or not all(
            isinstance(c, dict) and isinstance(c.get("name"), str) and json_text.is_number(c.get("confidence", 0.0))
            for c in offered):
        raise AnnotationError(f"{where}: candidates must be a list of named morphs or bones with numeric confidences")


def annotate_model(model, model_file, model_sha256="", previous=None):
    """The automatic annotation of a parsed model; entries a person made in `previous` are kept."""
    annotation = Annotation(model_file=str(model_file), model_sha256=model_sha256, model_name=model.name)
    bones = bone_candidates(model)
    for role, offered in sorted(bones.items()):
        best = offered[0]
        annotation.bone_roles[role] = {
            "bone": best.name, "confidence": round(best.confidence, 3), "source": AUTO,
            "candidates": [c.as_json() for c in offered[:8]],
        }
    if previous is not None:
        for role, entry in previous.bone_roles.items():
            if entry.get("source") == PERSON:
                annotation.bone_roles[role] = entry

    reasons = []
    head_name = annotation.bone_for("head")
    head_bone = _bone_index(model, head_name)
    center_x = float(model.bones[head_bone].position[0]) if head_bone >= 0 else 0.0
    if head_bone >= 0:
        try:
            extent = estimate_head(model, head_bone, mouth_anchor(model, center_x))
            annotation.head = {
                "top": round(extent.top, 5), "bottom": round(extent.bottom, 5),
                "center_x": round(extent.center_x, 5), "front_z": round(extent.front_z, 5),
                "units": "model", "source": AUTO,
            }
        except AnnotationError as error:
            reasons.append(str(error))
    else:
        reasons.append("no head bone found")
    if previous is not None and previous.head.get("source") == PERSON:
        annotation.head = dict(previous.head)

    head = annotation.head_extent if annotation.head else None
    for role, offered in sorted(morph_candidates(model, center_x, head).items()):
        best = offered[0]
        morph = {"name": best.name, "weight": 1.0}
        if best.side:
            morph["side"] = best.side
        annotation.morph_roles[role] = {
            "morphs": [morph], "confidence": round(best.confidence, 3), "source": AUTO,
            "candidates": [c.as_json() for c in offered[:8]],
        }
    if previous is not None:
        for role, entry in previous.morph_roles.items():
            if entry.get("source") == PERSON:
                kept = dict(entry)
                kept["candidates"] = annotation.morph_roles.get(role, {}).get("candidates", entry.get("candidates", []))
                annotation.morph_roles[role] = kept

    for role in REQUIRED_MORPH_ROLES:
        entry = annotation.morph_roles.get(role)
        if not entry or not entry["morphs"]:
            reasons.append(f"no morph found for {role}")
        elif entry.get("confidence", 1.0) < REVIEW_CONFIDENCE:  # (a person's entry may leave it out)
            reasons.append(f"{role} is a guess ({entry['morphs'][0]['name']}, confidence {entry['confidence']})")
    for role in ("neck", "head"):
        if not annotation.bone_for(role):
            reasons.append(f"no bone found for {role}")
    if previous is not None and previous.review.get("source") == PERSON:
        annotation.review = dict(previous.review)
    elif reasons:
        annotation.review = {"flagged": True, "reasons": reasons, "source": AUTO}
    return annotation


def _bone_index(model, name):
    if name is None:
        return -1
    key = normalize_name(name)
    for i, bone in enumerate(model.bones):
        if normalize_name(bone.name) == key:
            return i
    return -1


# ----------------------------------------------------------------------------------------------
# Files


def sidecar_path(model_path, annotations_dir=None, model_id=None):
    """Where a model's sidecar lives: beside it, or in `annotations_dir` under its model id."""
    model_path = Path(model_path)
    if annotations_dir is None:
        return model_path.with_name(model_path.name + SIDECAR_SUFFIX)
    relative = model_id if model_id is not None else model_path.name
    return Path(annotations_dir) / (str(relative) + SIDECAR_SUFFIX)


def load_sidecar(path):
    path = Path(path)
    try:
        data = json_text.loads(read_text(path))
    except FileNotFoundError:
        raise AnnotationError(f"{path}: no such annotation file") from None
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read the annotation file ({error.strerror or error})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnnotationError(f"{path}: not valid JSON ({error})") from None
    return Annotation.from_json(data, source=str(path))


def save_sidecar(annotation, path):
    """Write the sidecar atomically, first removing temporary copies of it that a killed process
    of this machine left (they were never cleaned up)."""
    path = Path(path)
    annotation.check(str(path))
    if len(os.fsencode(path.name)) > MAX_NAME_BYTES:
        raise AnnotationError(f"{path}: the annotation's file name would be {len(os.fsencode(path.name))} bytes, more "
                              f"than the {MAX_NAME_BYTES} a file system allows; shorten the model's file name")
    text = json.dumps(annotation.to_json(), ensure_ascii=False, indent=1, sort_keys=False) + "\n"
    remove_stale_sidecar_temps(path)
    # A model file name that is not UTF-8 (cp932 from a Japanese zip) arrives surrogate-escaped
    # (PEP 383): those characters go out as JSON escapes, which read back as the same name.
    return write_text_atomic(path, text.encode("utf-8", "backslashreplace").decode("utf-8"), temp_tag())


# Sidecar temporary files are tagged "ann-<machine>-<process id>", so that a later write can tell
# a temporary file whose writer is dead (killed mid-write) from one another process of this
# machine, or a process on another machine sharing the folder, is writing right now.
TEMP_TAG_PREFIX = "ann-"


def _machine_key():
    return hashlib.sha256(socket.gethostname().encode("utf-8", "surrogateescape")).hexdigest()[:8]


def temp_tag(pid=None):
    return f"{TEMP_TAG_PREFIX}{_machine_key()}-{os.getpid() if pid is None else pid}"


def remove_stale_sidecar_temps(path):
    """Remove the temporary files of sidecar `path` left by processes of this machine that have
    ended; returns how many. Reads one folder, so a write costs little even among thousands."""
    path = Path(path)
    stem = temp_stem(path) + "."
    mine = re.compile(re.escape(f"{TEMP_TAG_PREFIX}{_machine_key()}-") + r"(\d+)" + re.escape(TEMP_SUFFIX))
    removed = 0
    try:
        names = [entry.name for entry in os.scandir(path.parent) if entry.name.startswith(stem)]
    except OSError:
        return 0  # no folder yet: nothing left there
    for name in names:
        found = mine.fullmatch(name[len(stem):])
        if found and not _process_alive(int(found.group(1))):
            (path.parent / name).unlink(missing_ok=True)
            removed += 1
    return removed


def _process_alive(pid):
    if pid == os.getpid():
        return False  # this process writes one sidecar at a time: a leftover of its own is stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or no way to tell: keep its file
    return True


def annotate_model_file(model_path, previous=None, read_model=None):
    """The automatic annotation of a model file (read, hashed, annotated); a person's entries in `previous` kept.
    An MMD model is read by render/formats/mmd, a VRM or glTF avatar by render/formats/avatar_model."""
    model_path = Path(model_path)
    if read_model is None:
        from ..formats.avatar_model import AVATAR_SUFFIXES, read_avatar_model
        from ..formats.mmd import read_model

        if model_path.suffix.lower() == ".blend":
            raise AnnotationError(f"{model_path}: a .blend is read in Blender (render/blender/blend_model.py): "
                                  "run this where the bpy module is installed")
        if model_path.suffix.lower() in AVATAR_SUFFIXES:
            read_model = read_avatar_model
    return annotate_model(read_model(model_path), model_path.name, sha256_file(model_path), previous)


def load_or_annotate(model_path, sidecars, read_model=None):
    """(annotation, the sidecar it was read from): the first of `sidecars` that exists, else the model's
    automatic annotation and None (nothing is written). `read_model`: as annotate_model_file's."""
    for place in sidecars:
        if Path(place).exists():
            return load_sidecar(place), Path(place)
    return annotate_model_file(model_path, read_model=read_model), None


def annotate_file(model_path, annotations_dir=None, model_id=None, keep_person_edits=True, read_model=None):
    """Annotate one model file and write its sidecar; return (annotation, sidecar path)."""
    model_path = Path(model_path)
    path = sidecar_path(model_path, annotations_dir, model_id)
    try:
        previous = load_sidecar(path) if keep_person_edits and path.exists() else None
    except AnnotationError as error:  # a person's edits may be in it: not written over unasked
        raise AnnotationError(f"{error}; fix or delete it, or annotate afresh (--fresh), which replaces it") from None
    annotation = annotate_model_file(model_path, previous, read_model)
    save_sidecar(annotation, path)
    return annotation, path
