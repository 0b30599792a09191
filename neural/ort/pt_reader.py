"""Reading PyTorch `.pt` state_dicts without PyTorch.

A file written by `torch.save` is a zip archive: `<name>/data.pkl`, a pickle of the state_dict
whose tensors point by key to raw little-endian storages `<name>/data/<key>`. A pickle can name
any Python callable, so the unpickler here resolves only the names a weights file needs
(an OrderedDict, the tensor and parameter rebuild functions, the typed storage classes) and
refuses every other name before anything runs, as torch.load(weights_only=True) does.
"""

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ...errors import UserError
from ...input_files import ZIP_DAMAGE, file_problem

# What a weights archive may unpack to. Official THA files hold a few hundred MB at most; a damaged
# or crafted archive declaring gigabytes (a zip bomb: zeros compressed a thousandfold) would be
# unpacked whole to check its checksums, then again by the reader.
MAX_UNPACKED_BYTES = 2 * 2**30

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "DoubleStorage": np.float64,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class PtFileError(UserError):
    """A .pt file that is not a plain state_dict of tensors."""


class StorageType:
    def __init__(self, name):
        self.name, self.dtype = name, np.dtype(STORAGE_DTYPES[name])

    def __repr__(self):  # (named in errors: a damaged file's storage reference)
        return f"torch.{self.name}"


class Storage:
    """A storage's bytes, read from the archive when a tensor first needs them."""

    def __init__(self, archive, member, dtype):
        self.archive, self.member, self.dtype = archive, member, dtype
        self._array = None

    def __repr__(self):
        return f"storage {self.member!r}"

    def array(self):
        if self._array is None:
            data = self.archive.read(self.member)
            self._array = np.frombuffer(data, dtype=self.dtype.newbyteorder("<"))
        return self._array


def _whole_numbers(values):
    return isinstance(values, tuple) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


def rebuild_tensor(storage, offset, shape, stride, requires_grad=False, hooks=None, metadata=None):
    # The view is made with as_strided, which reads wherever it is told: a negative offset or
    # stride read memory outside the storage, and a zero stride made a copy of any size (a file
    # of bytes asking for 64 GB). A weights file's tensors are plain views inside their storage.
    if not (isinstance(storage, Storage) and _whole_numbers(shape) and _whole_numbers(stride)
            and len(shape) == len(stride) and _whole_numbers((offset,))):
        raise PtFileError(f"a tensor with offset {offset!r:.40}, shape {shape!r:.80} and strides {stride!r:.80}, "
                          f"which is no view of a storage")
    flat = storage.array()
    itemsize = flat.dtype.itemsize
    count = 1 + sum((size - 1) * step for size, step in zip(shape, stride)) if all(shape) else 0
    if offset + count > flat.size or int(np.prod(shape, dtype=object)) > flat.size:
        raise PtFileError(f"a tensor of shape {tuple(shape)} reaches past its storage {storage.member!r}")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(shape),
                                           strides=tuple(step * itemsize for step in stride), writeable=False)
    return np.array(view, dtype=flat.dtype.newbyteorder("="))


def rebuild_parameter(data, requires_grad=False, hooks=None, *rest):
    return data


ALLOWED = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    **{("torch", name): StorageType(name) for name in STORAGE_DTYPES},
}


class StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix, source):
        super().__init__(file)
        self.archive, self.prefix, self.source = archive, prefix, source
        self.storages = {}

    def find_class(self, module, name):
        found = ALLOWED.get((module, name))
        if found is None:
            raise PtFileError(
                f"{self.source}: refused: the file names {module}.{name}, which is not part of a plain "
                f"state_dict of tensors and could run code when loaded")
        return found

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], StorageType)):
            raise PtFileError(f"{self.source}: an unexpected storage reference {pid!r:.80}")
        _tag, storage_type, key, _location, _count = pid
        if key not in self.storages:
            member = f"{self.prefix}/data/{key}"
            self.storages[key] = Storage(self.archive, member, storage_type.dtype)
        return self.storages[key]


def check_archive(path):
    """Refuse a zip archive whose members do not match the checksums stored with them: torch.load
    and the reader below would otherwise hand on the damaged tensors (a bit flipped in a copy
    poses every picture wrongly); and one that unpacks past MAX_UNPACKED_BYTES, before anything
    is unpacked. Not a zip: left to the readers to name."""
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > MAX_UNPACKED_BYTES:
                raise PtFileError(f"{path}: its archive unpacks to {unpacked / 2**30:,.1f} GiB, more than the "
                                  f"{MAX_UNPACKED_BYTES // 2**30} GiB a weights file holds (damaged or made to attack)")
            damaged = archive.testzip()
    except zipfile.BadZipFile as error:
        with open(path, "rb") as handle:
            if handle.read(4) == b"PK\x03\x04":
                raise PtFileError(f"{path}: cut short or damaged: its zip archive is incomplete ({error})") from None
        return
    except OSError as error:
        raise PtFileError(f"{path}: could not be read ({error.strerror or error})") from None
    except ZIP_DAMAGE as error:  # (a damaged directory: a version, compression or encryption zipfile lacks)
        raise PtFileError(f"{path}: damaged: its zip archive cannot be read ({error})") from None
    if damaged is not None:
        raise PtFileError(f"{path}: damaged: the bytes of {damaged} do not match the checksum stored with them "
                          f"(a cut or corrupted copy: fetch the file again)")


def read_state_dict(path):
    """{key: numpy array} of a torch.save'd state_dict, without torch."""
    path = Path(path)
    if problem := file_problem(path, "weights file"):
        raise PtFileError(f"{path}: {problem}")
    check_archive(path)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [name for name in archive.namelist() if name.endswith("/data.pkl") and name.count("/") == 1]
            if len(pickles) != 1:
                raise PtFileError(f"{path}: not a PyTorch weights archive (no data.pkl)")
            prefix = pickles[0].split("/")[0]
            byteorder = f"{prefix}/byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
                raise PtFileError(f"{path}: big-endian tensors are not supported")
            with archive.open(pickles[0]) as handle:
                state = StateDictUnpickler(handle, archive, prefix, path).load()
            if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
                raise PtFileError(f"{path}: expected a state_dict (names to tensors), found {type(state).__name__}")
            return dict(state)
    except PtFileError as error:
        if str(error).startswith(f"{path}: "):
            raise
        raise PtFileError(f"{path}: {error}") from None  # (rebuild_tensor's, which knows no file)
    except zipfile.BadZipFile:
        if path.stat().st_size == 0:  # (an interrupted copy, often: say so, as the torch reader does)
            raise PtFileError(f"{path}: not a PyTorch weights file (it is empty)") from None
        raise PtFileError(f"{path}: not a readable PyTorch weights file (not a zip archive; files saved by "
                          f"torch older than 1.6 need torch to read)") from None
    except Exception as error:  # a damaged pickle fails in many ways: an unknown opcode, an append to
        # what is no list, a length past memory (each found by flipping bytes of the official files)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PtFileError(f"{path}: not a readable PyTorch weights file ({first})") from None
