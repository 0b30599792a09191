"""The poser: a character picture and pose vectors in, posed pictures out, for any THA family.

    poser = Poser("tha3")                      # weights source, device="auto", precision="auto"
    poser.set_image("character.png")           # pose-independent work, done once per picture
    images = poser.pose(poses)                 # (B, P) -> (B, 4, H, W) network images
    rgba = poser.pose_rgba(poses)              # (B, H, W, 4) uint8

Family protocol: every network family is one module, neural/<family>.py (tha1, tha2, tha3,
tha4), that provides

    FAMILY      "tha3"                 the family's name
    SCHEMA      "tha3"                 its pose schema's name (pose/schema.py)
    IMAGE_SIZE  512                    input/output picture size
    VARIANTS    ("separable_float", …) variant names; the official folder names where they exist
    CPU_CHANNELS_LAST  True            optional: NHWC activations by default on the CPU
    FLOAT16     False                  optional: the networks break in float16 (refused)
    NETWORKS    ("eyebrow_decomposer", …) network names = the official file stems (<name>.pt)
    build_network(name, variant) -> nn.Module
                                       freshly initialised, eval mode, the variant's dtype; its
                                       state_dict keys/shapes equal the official file's
    class Pipeline:
        __init__(self, networks)       networks: {name: loaded nn.Module}, on the device and in
                                       the compute dtype already
        prepare(self, image) -> cache  image (1, 4, H, W) network image; does the pose-independent
                                       work (e.g. THA3's eyebrow decomposer) and returns anything
                                       `pose` needs
        pose(self, cache, pose) -> dict
                                       pose (B, P) tensor; returns {"image": (B, 4, H, W) final
                                       image, ...any named intermediate outputs}

The Poser runs the pipeline under torch.inference_mode(); pipelines need not. Weight files are
found and checked by neural/weights.py, which also uses VARIANTS, NETWORKS and build_network.
"""

import contextlib
import threading

import numpy as np
import torch

from ..pose.schema import get_schema
from . import image as image_io
from . import weights as weights_io
from .backends import keep_freed_memory  # noqa: F401 (callers import it from here too)
from .staged import StageGraphs

PRECISIONS = ("auto", "float32", "float16")
TORCH_DEVICES = ("cpu", "cuda", "mps")  # (an index allowed: cuda:1)


def resolve_device(device="auto"):
    """A torch.device: "auto" picks CUDA, then Apple's MPS, then the CPU."""
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = None
    # torch.device also takes meta, xpu, vulkan, ...: devices the posers were never run on.
    if resolved is None or resolved.type not in TORCH_DEVICES:
        hint = "; DirectML and CoreML are ONNX Runtime's (backend onnxruntime)" if device in ("directml", "coreml") else ""
        raise ValueError(f"unknown device {device!r} for PyTorch; choose one of auto, {', '.join(TORCH_DEVICES)}{hint}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but this torch has no usable CUDA GPU")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' asked for, but Apple's Metal backend is not available")
    return resolved


def resolve_dtype(precision, variant, device, module=None):
    """The compute dtype. "auto": the variant's own, except that half weights run in float32
    on the CPU (CPU float16 kernels are slow and some are missing)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "float32":
        return torch.float32
    if precision == "float16":
        if module is not None and not getattr(module, "FLOAT16", True):
            raise ValueError(f"precision 'float16': {module.FAMILY.upper()}'s networks {module.FLOAT16_BREAKS}; "
                             "choose float32 or auto")
        if device.type == "cpu":
            # Measured (torch 2.13.0): a THA3 `pose` run took 57 s against 3.5 s in float32 (the
            # convs fall back to a slow kernel).
            raise ValueError("precision 'float16' runs on a GPU only: on the CPU PyTorch's float16 "
                             "convolutions are over 100x slower than float32; choose float32 or auto")
        return torch.float16
    half = variant.endswith("half")
    return torch.float16 if half and device.type != "cpu" else torch.float32


# cuDNN may pick convolution algorithms whose sums come out in a different order from one call
# to the next: on an H200 the THA1, THA2 and THA3 standard networks (dense convolutions) gave
# a different picture each time they posed the same frame (tests/neural/test_gpu.py). Posing
# asks for its deterministic algorithms, so a frame is the same picture every time it is posed
# (a bake's cache, graphs and eager posing agree bit for bit). A benchmark switches it off to
# measure what it costs (bench/bench_poser_gpu.py).
CUDNN_DETERMINISTIC = True


# cuDNN's switches are global, and posers may run in two threads at once (a live preview beside
# a bake): the first to start posing sets them, the last to finish puts them back.
_EXACT = {"lock": threading.Lock(), "posing": 0, "previous": None}


@contextlib.contextmanager
def exact_arithmetic(device):
    """cuDNN as precise and repeatable as the CPU while the networks run: float32 convolutions
    in float32 (moot for float16 ones), and deterministic algorithms (CUDNN_DETERMINISTIC).
    PyTorch lets cuDNN use TF32 (10-bit mantissas) by default: on an H200 that moved THA3's
    pictures up to 0.08 from the official code's float32 ones (26 levels in 8 bits), and a
    batch's frames 0.01 from the same frames posed alone, for no speed at one frame
    (bench/bench_poser_gpu.py)."""
    if device.type != "cuda":
        yield
        return
    cudnn = torch.backends.cudnn
    with _EXACT["lock"]:
        if _EXACT["posing"] == 0:
            _EXACT["previous"] = cudnn.allow_tf32, cudnn.deterministic
            cudnn.allow_tf32 = False
            cudnn.deterministic = CUDNN_DETERMINISTIC or cudnn.deterministic
        _EXACT["posing"] += 1
    try:
        yield
    finally:
        with _EXACT["lock"]:
            _EXACT["posing"] -= 1
            if _EXACT["posing"] == 0:
                cudnn.allow_tf32, cudnn.deterministic = _EXACT["previous"]


class Poser:
    """Poses one character picture at a time with one family's networks."""

    backend = "torch"

    def __init__(
        self,
        weights=None,
        device="auto",
        precision="auto",
        family=None,
        variant=None,
        channels_last="auto",
        chunk_size=None,
        cuda_graphs="auto",
    ):
        """`weights`: a source for neural/weights.py's open_weights, or a WeightSet.

        `channels_last` stores activations NHWC; "auto": in float32 on the CPU for the families
        that measured faster so at the same precision (CPU_CHANNELS_LAST in their module:
        oneDNN's convolutions run NHWC without reordering every activation), not on GPUs.
        `chunk_size`: the most frames the networks see at once (default: 1 on the CPU, so that
        each frame's activations stay in cache; on a GPU, the whole batch).
        `cuda_graphs` replays each stage of a one-frame pose as a CUDA graph (neural/staged.py
        StageGraphs): the same pictures with a launch a stage instead of hundreds; "auto": on
        CUDA devices.

        No torch.compile mode: on the CPU it was slower than the channels-last default and
        up to 3.6e-4 from the official output on random poses (bench/bench_poser.py).
        """
        weight_set = weights if isinstance(weights, weights_io.WeightSet) else weights_io.open_weights(
            weights, family, variant
        )
        self.weights = weight_set
        self.family = weight_set.family
        self.variant = weight_set.variant
        self.module = weights_io.family_module(self.family)
        self.schema = get_schema(self.module.SCHEMA)
        self.image_size = self.module.IMAGE_SIZE
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(precision, self.variant, self.device, self.module)
        if channels_last == "auto":  # measured: float32 on the CPU
            channels_last = (self.device.type == "cpu" and self.dtype == torch.float32
                             and getattr(self.module, "CPU_CHANNELS_LAST", False))
        networks = {}
        for name in self.module.NETWORKS:
            network = self.module.build_network(name, self.variant)
            network.load_state_dict(weight_set.state_dicts[name], strict=True)
            network = network.to(device=self.device, dtype=self.dtype).eval()
            if channels_last:
                network = network.to(memory_format=torch.channels_last)
            networks[name] = network
        self.networks = networks
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.pipeline = self.module.Pipeline(networks)
        if cuda_graphs == "auto":
            cuda_graphs = self.device.type == "cuda"
        if cuda_graphs and self.device.type != "cuda":
            raise ValueError(f"cuda_graphs asked for on {self.device}: CUDA graphs run on CUDA devices only")
        if cuda_graphs:
            self.pipeline.graphs = StageGraphs(self.pipeline)
        # On the CPU one frame at a time is fastest: a frame's activations fit in cache.
        self.chunk_size = chunk_size or (1 if self.device.type == "cpu" else None)
        self._cache = None

    def __repr__(self):
        return f"Poser({self.family} {self.variant}, {self.device}, {str(self.dtype).replace('torch.', '')})"

    def set_image(self, image):
        """Take a new character picture and do its pose-independent work.

        `image`: a path or an RGBA uint8 array (checked and prepared for the schema), or a
        network-convention tensor (4, H, W) or (1, 4, H, W).
        """
        if isinstance(image, torch.Tensor):
            tensor = image if image.dim() == 4 else image.unsqueeze(0)
            expected = (1, 4, self.image_size, self.image_size)
            if tuple(tensor.shape) != expected:
                raise ValueError(f"network image of shape {tuple(tensor.shape)}; {self.family} needs {expected}")
        else:
            tensor = image_io.load_character(image, self.schema)
        tensor = tensor.to(device=self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), exact_arithmetic(self.device):
            self._cache = self.pipeline.prepare(tensor)
        return self

    @property
    def prepared(self):
        """The current picture's pose-independent work; hand it back to `use_prepared` to switch
        pictures without redoing it (several sprites share one loaded Poser)."""
        return self._cache

    def use_prepared(self, prepared):
        self._cache = prepared
        return self

    def pose_tensor(self, poses):
        """(B, P) float tensor on the device from an array, tensor, or one (P,) vector."""
        array = poses if isinstance(poses, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(poses, dtype=np.float32))
        if array.dim() == 1:
            array = array.unsqueeze(0)
        if array.dim() != 2 or array.shape[1] != self.schema.size:
            raise ValueError(f"{self.family} poses need shape (B, {self.schema.size}), got {tuple(array.shape)}")
        return array.to(device=self.device, dtype=self.dtype)

    def pose_outputs(self, poses):
        """The pipeline's named outputs for a batch of poses."""
        if self._cache is None:
            raise RuntimeError("call set_image() before pose()")
        poses = self.pose_tensor(poses)
        size = self.chunk_size or len(poses)
        with torch.inference_mode(), exact_arithmetic(self.device):
            chunks = [self.pipeline.pose(self._cache, poses[i : i + size]) for i in range(0, len(poses), size)]
        if len(chunks) == 1:
            return chunks[0]
        return {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}

    def pose(self, poses):
        """(B, 4, H, W) posed images in the network convention, float32."""
        return self.pose_outputs(poses)["image"].float()

    def pose_rgba(self, poses):
        """(B, H, W, 4) RGBA uint8 posed pictures (straight alpha, sRGB)."""
        return image_io.tensor_to_rgba(self.pose(poses))
