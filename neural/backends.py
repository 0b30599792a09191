"""Which poser runs: PyTorch (neural/poser.py) or ONNX Runtime (neural/ort/poser.py).

Both have the same interface and agree with the official THA code within 1e-4 on its end-to-end
goldens. "auto" takes ONNX Runtime where it is installed: it is the faster of the two on the
CPU (bench/bench_poser.py) and the only one a stock Blender can have. PyTorch is taken where it
alone is installed, where float16 is asked for (the graphs are float32), or where it has a GPU
that ONNX Runtime's providers lack. Importable without torch.
"""

import importlib.util

from ..errors import UserError

BACKENDS = ("auto", "onnxruntime", "torch")
TORCH_ONLY_PRECISIONS = ("float16",)


class BackendError(UserError):
    """No backend that can run the poser as asked."""


def installed(backend):
    """Whether a backend's package can be imported here (without importing it)."""
    name = {"onnxruntime": "onnxruntime", "torch": "torch"}[backend]
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def resolve_backend(backend="auto", device="auto", precision="auto"):
    """The backend that will run for these options ("onnxruntime" or "torch"), or BackendError."""
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        if not installed(backend):
            raise BackendError(f"the {backend} backend was asked for, but {backend} is not installed here")
        return backend
    has_ort, has_torch = installed("onnxruntime"), installed("torch")
    if not (has_ort or has_torch):
        raise BackendError("posing needs ONNX Runtime (bundled with the extension) or PyTorch; neither is installed")
    if not has_ort:
        return "torch"
    if has_torch and (precision in TORCH_ONLY_PRECISIONS or device in ("mps",) or _torch_has_gpu_ort_lacks(device)):
        return "torch"
    return "onnxruntime"


def _torch_has_gpu_ort_lacks(device):
    if device not in ("auto", "cuda"):
        return False
    from .ort.poser import available_devices

    if "cuda" in available_devices():
        return False
    import torch

    return torch.cuda.is_available()


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


def describe(poser):
    """"onnxruntime on cpu" / "torch on cuda": what runs, for panels and logs."""
    return f"{getattr(poser, 'backend', 'torch')} on {poser.device}"


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
