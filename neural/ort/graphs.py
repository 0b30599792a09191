"""The shipped ONNX graph templates (neural/ort/graphs/) and ONNX Runtime sessions made from them.

Per family, `<family>.json` lists its networks, the pipeline's stages, and per variant which
graph set runs it and the weights it expects ({key: (shape, dtype)}, the catalog the weights
are checked against); `<set>.<stage>.onnx` are the templates: graphs whose weight initializers
are named `<network>.<key>` and hold no data. A session is made by handing ONNX Runtime the
user's arrays for them (neural/onnx_export.py writes the templates and says why they ship).
"""

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...errors import UserError
from .stages import Stage

FORMAT = "tha_studio.onnx_graphs"
VERSION = 1
GRAPHS_FOLDER = Path(__file__).resolve().parent / "graphs"
WEIGHTS_LOCATION = "weights supplied at load"


class GraphError(UserError):
    """Graph templates that are missing, damaged, or do not fit the weights."""


@lru_cache(maxsize=None)
def manifest(family, folder=GRAPHS_FOLDER):
    path = Path(folder) / f"{family}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GraphError(f"{path}: no ONNX graphs for {family.upper()} in this build") from None
    except (OSError, ValueError) as error:
        raise GraphError(f"{path}: unreadable graph manifest ({error})") from None
    if data.get("format") != FORMAT or data.get("version") != VERSION:
        raise GraphError(f"{path}: not a THA Studio graph manifest of version {VERSION}")
    return data


def families(folder=GRAPHS_FOLDER):
    return [path.stem for path in sorted(Path(folder).glob("*.json"))]


class ManifestCatalog:
    """What each network expects, from the manifests (for neural/ort/weight_sources.py)."""

    def __init__(self, folder=GRAPHS_FOLDER):
        self.folder = folder

    def families(self):
        return families(self.folder)

    def networks(self, family):
        return tuple(manifest(family, self.folder)["networks"])

    def variants(self, family):
        return tuple(manifest(family, self.folder)["variants"])

    def signature(self, family, network, variant):
        entries = manifest(family, self.folder)["variants"][variant]["signature"][network]
        return {key: (tuple(shape), dtype) for key, (shape, dtype) in entries.items()}


def stages(family, folder=GRAPHS_FOLDER):
    return tuple(Stage.from_json(entry) for entry in manifest(family, folder)["stages"])


def template_bytes(family, variant, stage_name, folder=GRAPHS_FOLDER):
    """A stage's template for a variant, checked against the manifest's hash."""
    data = manifest(family, folder)
    set_id = data["variants"][variant]["graphs"]
    entry = data["graph_sets"][set_id][stage_name]
    path = Path(folder) / entry["file"]
    try:
        content = path.read_bytes()
    except OSError as error:
        raise GraphError(f"{path}: cannot read the graph ({error.strerror or error})") from None
    if hashlib.sha256(content).hexdigest() != entry["sha256"]:
        raise GraphError(f"{path}: the graph differs from the one its manifest names (damaged or edited)")
    return content


def weight_names(family, variant, stage_name, folder=GRAPHS_FOLDER):
    """The weights (`<network>.<key>`) a stage's template leaves to be supplied."""
    data = manifest(family, folder)
    return tuple(data["graph_sets"][data["variants"][variant]["graphs"]][stage_name]["weights"])


def flat_weights(weight_set):
    """{`<network>.<key>`: float32 C-contiguous array} of a WeightSet (half weights widened)."""
    return {
        f"{network}.{key}": np.ascontiguousarray(np.asarray(array), dtype=np.float32)
        for network, state in weight_set.state_dicts.items()
        for key, array in state.items()
    }
