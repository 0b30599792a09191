"""MMD models in plain Python: PMX 2.0/2.1 and PMD 1.0 reading, PMX writing, name matching and
the project's own procedural sample character. No bpy, no torch (the pure layer).

    from .render.formats.mmd import read_model, normalize_name
    model = read_model("Gene_light.pmx")          # Model (render/formats/mmd/model.py)
"""

from pathlib import Path

from . import names, pmd, pmx, procedural
from .model import MMDFormatError, Model, read_file_bytes
from .names import find_name, normalize_name, same_name
from .procedural import make_character, write_character

MMD_SUFFIXES = (".pmx", ".pmd")

__all__ = [
    "MMD_SUFFIXES", "MMDFormatError", "Model", "find_name", "make_character", "names", "normalize_name", "pmd", "pmx",
    "procedural", "read_model", "same_name", "write_character",
]


def read_model(path) -> Model:
    """Read a .pmx or .pmd file, chosen by its first bytes ("PMX " or "Pmd"), not its suffix."""
    path = Path(path)
    data = read_file_bytes(path)
    if data.startswith(pmx.MAGIC):
        return pmx.parse(data, path)
    if data.startswith(pmd.MAGIC):
        return pmd.parse(data, path)
    if not data:
        raise MMDFormatError(path, "header", 0, "the file is empty (0 bytes)")
    raise MMDFormatError(path, "header", 0, f"not an MMD model: it starts with {data[:4]!r}, not b'PMX ' or b'Pmd'")
