"""Which poser runs: PyTorch (neural/poser.py) or ONNX Runtime (neural/ort/poser.py).

Both have the same interface and agree with the official THA code within 1e-4 on its end-to-end
goldens. "auto" takes PyTorch where it can be imported (on this project's CPU benchmark its
cached poser is the faster of the two, and it has GPUs and float16), else ONNX Runtime: a stock
Blender has no torch, and the extension bundles ONNX Runtime. Importable without torch.
"""

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


def keep_freed_memory():
    """Ask glibc's malloc to keep freed blocks instead of returning them to the system.

    The networks allocate and free the same large activations every frame; by default glibc
    maps each one freshly and the kernel zero-fills its pages again (about a tenth of a
    frame's time in system CPU here). For batch processes (command line, render farm); not
    called by the add-on, since Blender's memory would then only grow. Returns whether it
    took effect (False where the C library is not glibc).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))
