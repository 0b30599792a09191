"""Pose schemas of the Talking Head Anime networks: one definition used by everything.

A schema lists a network family's pose parameters in the order its networks read them, with
each parameter's range, default and group, and says which slice of the pose vector each
sub-network takes (shared/reference/tha.md §2.2 and §6). The sliders, the pose sampler, the
networks, the lip-sync mapping and the dataset manifest all read these objects.

Zero is eyes open, mouth closed, facing forward for every parameter, so `vector()` starts from
zeros; that is the picture as drawn for THA2-THA4, while THA1 draws its pictures with the mouth
open (`rest_pose()`). `defaults()` gives the official demos' slider defaults, where only the
mouth starts open.
"""

import difflib
from dataclasses import dataclass, field

import numpy as np

GROUPS = ("eyebrow", "eye", "iris", "mouth", "head", "body", "breathing")


@dataclass(frozen=True)
class PoseParameter:
    name: str
    group: str
    minimum: float
    maximum: float
    default: float = 0.0

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"pose parameter {self.name!r}: unknown group {self.group!r}; groups are {GROUPS}")
        if not self.minimum <= self.default <= self.maximum:
            raise ValueError(f"pose parameter {self.name!r}: default {self.default} outside [{self.minimum}, {self.maximum}]")


@dataclass(frozen=True)
class PoseSchema:
    """The pose vector of one network family.

    `slices` maps a sub-network's name (as in its weight file's name) to the part of the pose
    vector it takes. `image_size` is the square input/output size and `head_box` the
    (top, bottom, left, right) pixel box where the character's head must be.
    """

    name: str
    parameters: tuple
    slices: dict
    image_size: int
    head_box: tuple
    # The input picture's pose, as {parameter: value} (the rest not named is 0). THA1's input has
    # the eyes and the mouth wide open (its mouth parameter closes it from there: write-up §3);
    # THA2-THA4 take a neutral face. The dataset builder renders its rest image in this pose.
    input_rest: dict = field(default_factory=dict)
    _index: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "parameters", tuple(self.parameters))
        index = {p.name: i for i, p in enumerate(self.parameters)}
        if len(index) != len(self.parameters):
            raise ValueError(f"pose schema {self.name!r} repeats a parameter name")
        for network, part in self.slices.items():
            if not (0 <= part.start < part.stop <= len(self.parameters)):
                raise ValueError(f"pose schema {self.name!r}: slice of {network!r} outside the vector")
        object.__setattr__(self, "_index", index)

    @property
    def size(self):
        return len(self.parameters)

    @property
    def names(self):
        return tuple(p.name for p in self.parameters)

    @property
    def minimums(self):
        return np.array([p.minimum for p in self.parameters], dtype=np.float32)

    @property
    def maximums(self):
        return np.array([p.maximum for p in self.parameters], dtype=np.float32)

    def parameter(self, name):
        return self.parameters[self.index(name)]

    def index(self, name):
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(self._unknown_name_message(name)) from None

    def _unknown_name_message(self, name):
        # Compared in lower case (MOUTH_AAA is mouth_aaa), the ones that begin with the name first
        # (mouth: mouth_aaa, ... before what merely looks alike).
        wanted = str(name).strip().lower()
        lowered = {parameter.lower(): parameter for parameter in self.names}
        starting = [parameter for parameter in self.names if wanted and parameter.startswith(wanted)]
        alike = [lowered[match] for match in difflib.get_close_matches(wanted, list(lowered), n=4, cutoff=0.5)]
        close = list(dict.fromkeys(starting + alike))[:4]
        hint = f"; did you mean {', '.join(close)}?" if close else f"; names are: {', '.join(self.names)}"
        return f"{self.name} pose has no parameter {name!r}{hint}"

    def group_names(self, group):
        if group not in GROUPS:
            raise KeyError(f"unknown pose group {group!r}; groups are {', '.join(GROUPS)}")
        return tuple(p.name for p in self.parameters if p.group == group)

    def group_indices(self, group):
        return tuple(self.index(name) for name in self.group_names(group))

    def neutral(self):
        """All zeros: eyes open, mouth closed, facing forward (THA2-THA4: the picture as it is)."""
        return np.zeros(self.size, dtype=np.float32)

    def rest_pose(self):
        """The pose of the picture the networks take as input (`input_rest`): the rest image of a dataset."""
        return self.vector(self.input_rest)

    @property
    def rest_convention(self):
        """A short name of `input_rest` that a dataset records, e.g. "mouth=1" or "neutral"."""
        return ",".join(f"{name}={float(value):g}" for name, value in sorted(self.input_rest.items())) or "neutral"

    def defaults(self):
        """The official demos' slider defaults."""
        return np.array([p.default for p in self.parameters], dtype=np.float32)

    def vector(self, values=None, **named):
        """A float32 pose vector: zeros, with the given parameters set (a mapping and/or keywords).

        Raises KeyError naming close parameter names for an unknown name, ValueError for a
        value outside the parameter's range.
        """
        vector = self.neutral()
        for name, value in {**(values or {}), **named}.items():
            parameter = self.parameters[self.index(name)]
            value = float(value)
            if not parameter.minimum <= value <= parameter.maximum:
                raise ValueError(
                    f"{self.name} pose: {name}={value} is outside [{parameter.minimum}, {parameter.maximum}]"
                )
            vector[self._index[name]] = value
        return vector

    def as_dict(self, vector):
        """{name: value} of one pose vector."""
        vector = self.check(vector)
        if vector.ndim != 1:
            raise ValueError(f"{self.name} pose: as_dict takes one vector, got shape {vector.shape}")
        return {name: float(value) for name, value in zip(self.names, vector)}

    def check(self, vectors):
        """The vectors as a float32 array whose last axis is this schema's size (else ValueError)."""
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim == 0 or array.shape[-1] != self.size:
            raise ValueError(f"{self.name} pose vectors need {self.size} values in their last axis, got shape {array.shape}")
        return array

    def clamp(self, vectors):
        """The vectors (shape (..., size)) clipped into each parameter's range, as float32."""
        return np.clip(self.check(vectors), self.minimums, self.maximums).astype(np.float32)

    def slice_for(self, network):
        try:
            return self.slices[network]
        except KeyError:
            raise KeyError(f"{self.name} has no network {network!r}; networks are {', '.join(self.slices)}") from None


def _morph(name, group, default=0.0):
    return PoseParameter(name, group, 0.0, 1.0, default)


def _rotation(name, group):
    return PoseParameter(name, group, -1.0, 1.0, 0.0)


def _pair(name, make, group):
    return [make(f"{name}_left", group), make(f"{name}_right", group)]


def _tha2_parameters():
    parameters = []
    for name in ("troubled", "angry", "lowered", "raised", "happy", "serious"):
        parameters += _pair(f"eyebrow_{name}", _morph, "eyebrow")
    for name in ("wink", "happy_wink", "surprised", "relaxed", "unimpressed", "raised_lower_eyelid"):
        parameters += _pair(f"eye_{name}", _morph, "eye")
    parameters += _pair("iris_small", _morph, "iris")
    parameters.append(_morph("mouth_aaa", "mouth", default=1.0))
    parameters += [_morph(f"mouth_{name}", "mouth") for name in ("iii", "uuu", "eee", "ooo", "delta")]
    parameters += _pair("mouth_lowered_corner", _morph, "mouth")
    parameters += _pair("mouth_raised_corner", _morph, "mouth")
    parameters.append(_morph("mouth_smirk", "mouth"))
    parameters += [_rotation("iris_rotation_x", "iris"), _rotation("iris_rotation_y", "iris")]
    parameters += [_rotation(name, "head") for name in ("head_x", "head_y", "neck_z")]
    return parameters


def _tha3_parameters():
    return _tha2_parameters() + [
        _rotation("body_y", "body"),
        _rotation("body_z", "body"),
        _morph("breathing", "breathing"),
    ]


# THA1/THA2: 256x256, head in the centre 128 box. THA3/THA4: 512x512, head in rows 64-192, cols 192-320.
_HEAD_BOX_256 = (64, 192, 64, 192)
_HEAD_BOX_512 = (64, 192, 192, 320)

THA1 = PoseSchema(
    name="tha1",
    parameters=(
        _rotation("head_x", "head"),
        _rotation("head_y", "head"),
        _rotation("neck_z", "head"),
        _morph("left_eye", "eye"),
        _morph("right_eye", "eye"),
        _morph("mouth", "mouth", default=1.0),
    ),
    slices={
        "face_morpher": slice(3, 6),
        "two_algo_face_rotator": slice(0, 3),
        "combiner": slice(0, 3),
    },
    image_size=256,
    head_box=_HEAD_BOX_256,
    input_rest={"mouth": 1.0},  # eyes open (0) and mouth wide open
)

THA2 = PoseSchema(
    name="tha2",
    parameters=_tha2_parameters(),
    slices={
        "eyebrow_morphing_combiner": slice(0, 12),
        "face_morpher": slice(12, 39),
        "two_algo_face_rotator": slice(39, 42),
        "combiner": slice(39, 42),
    },
    image_size=256,
    head_box=_HEAD_BOX_256,
)

THA3 = PoseSchema(
    name="tha3",
    parameters=_tha3_parameters(),
    slices={
        "eyebrow_morphing_combiner": slice(0, 12),
        "face_morpher": slice(12, 39),
        "two_algo_face_body_rotator": slice(39, 45),
        "editor": slice(39, 45),
    },
    image_size=512,
    head_box=_HEAD_BOX_512,
)

# THA4 reads THA3's 45 parameters; its student networks take different slices.
THA4 = PoseSchema(
    name="tha4",
    parameters=_tha3_parameters(),
    slices={
        "face_morpher": slice(0, 39),
        "body_morpher": slice(0, 45),
    },
    image_size=512,
    head_box=_HEAD_BOX_512,
)

SCHEMAS = {schema.name: schema for schema in (THA1, THA2, THA3, THA4)}


def get_schema(name):
    """The schema called `name` ("tha1", "tha2", "tha3", "tha4"; case-insensitive)."""
    key = str(name).lower()
    if key not in SCHEMAS:
        raise KeyError(f"unknown pose schema {name!r}; schemas are {', '.join(SCHEMAS)}")
    return SCHEMAS[key]
