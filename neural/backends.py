"""Which poser runs: PyTorch (neural/poser.py) or ONNX Runtime (neural/ort/poser.py).

Both have the same interface and agree with the official THA code within 1e-4 on its end-to-end
goldens. "auto" takes PyTorch where it can be imported (on this project's CPU benchmark its
cached poser is the faster of the two, and it has GPUs and float16), else ONNX Runtime: a stock
Blender has no torch, and the extension bundles ONNX Runtime. Importable without torch.
"""

import functools
import importlib.util

from ..errors import UserError

BACKENDS = ("auto", "onnxruntime", "torch")
TORCH_ONLY_PRECISIONS = ("float16",)
ORT_ONLY_DEVICES = ("directml", "coreml")  # ONNX Runtime's providers that torch has no match for


class BackendError(UserError):
    """No backend that can run the poser as asked."""


def installed(backend):
    """Whether a backend's package can be found here (without importing it)."""
    name = {"onnxruntime": "onnxruntime", "torch": "torch"}[backend]
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(backend="auto", device="auto", precision="auto", try_import=True):
    """The backend that will run for these options ("onnxruntime" or "torch"), or BackendError.
    `try_import=False` trusts an installed torch without importing it (for a panel's draw)."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        if not installed(backend):
            raise BackendError(f"the {backend} backend was asked for, but {backend} is not installed here")
        return backend
    ort_only_device = device in ORT_ONLY_DEVICES
    if not ort_only_device and installed("torch") and (not try_import or _torch_imports()):
        return "torch"
    if installed("onnxruntime"):
        if precision in TORCH_ONLY_PRECISIONS:
            raise BackendError(f"precision {precision} needs PyTorch, which is not installed here "
                               "(ONNX Runtime runs float32)")
        return "onnxruntime"
    raise BackendError("posing needs ONNX Runtime (bundled with the extension) or PyTorch; neither is installed")


def _torch_imports():
    """Whether torch imports (an install can be found yet fail to load, e.g. a missing DLL)."""
    try:
        import torch  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def open_poser(weights="tha3", variant=None, device="auto", precision="auto", backend="auto", **options):
    """A loaded poser of either backend (see module doc)."""
    chosen = resolve_backend(backend, device, precision)
    if chosen == "onnxruntime":
        from .ort.poser import OrtPoser

        return OrtPoser(weights, device=device, precision=precision, variant=variant or None, **options)
    from .poser import Poser

    try:
        return Poser(weights, device=device, precision=precision, variant=variant or None, **options)
    except ValueError as error:  # the poser's words on a device or precision
        raise BackendError(str(error)) from None


# glibc's mallopt parameters, and its initial thresholds (both 128 KiB).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
GLIBC_DEFAULT_THRESHOLD = 128 * 1024
_freed_memory = {"kept_for_good": False, "holders": 0}


@functools.cache
def _glibc():
    """The C library if it is glibc (has mallopt and malloc_trim), else None; looked up once
    (find_library runs ldconfig)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _keep(libc):
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(libc.mallopt(M_TRIM_THRESHOLD, (1 << 31) - 1))


def keep_freed_memory():
    """Ask glibc's malloc to keep freed blocks instead of returning them to the system, for the
    rest of the process.

    The networks allocate and free the same large activations every frame; by default glibc
    maps each one freshly and the kernel zero-fills its pages again: a THA3 frame of the
    channels-last torch poser took 1.2-2.3x as long (bench/bench_poser.py's child modes).
    For batch processes (command line, render farm); inside Blender, where memory would then
    only grow, jobs hold it for their length instead (`hold_freed_memory`). Returns whether it
    took effect (False where the C library is not glibc).
    """
    libc = _glibc()
    if libc is None:
        return False
    _freed_memory["kept_for_good"] = _keep(libc)
    return _freed_memory["kept_for_good"]


def hold_freed_memory():
    """keep_freed_memory for the length of a job (a bake): returns a release function that sets
    glibc's thresholds to their initial values and hands the kept memory to the system, once the
    last holder has released. (glibc's own raising of the mmap threshold as large blocks are
    freed stays off afterwards: mallopt cannot turn it back on.) Safe to release more than once;
    a no-op where the C library is not glibc."""
    libc = _glibc()
    if libc is None:
        return lambda: None
    if _freed_memory["holders"] == 0 and not _freed_memory["kept_for_good"]:
        _keep(libc)
    _freed_memory["holders"] += 1
    released = []

    def release():
        if released:
            return
        released.append(True)
        _freed_memory["holders"] -= 1
        if _freed_memory["holders"] == 0 and not _freed_memory["kept_for_good"]:
            libc.mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
            libc.mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT_THRESHOLD)
            libc.malloc_trim(0)

    return release
