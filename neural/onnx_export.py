"""Exporting the networks' stages (neural/ort/stages.py) as ONNX graph templates.

A template is a stage's graph with the weights left out: each weight stays in the graph as an
initializer named `<network>.<key>` (the official state_dict key) marked as external data, and
ONNX Runtime is handed the arrays from the user's weight files when a session starts
(neural/ort/graphs.py). So the templates hold no weights (a few hundred KB each, no licence of
the weights' authors to carry) and one template serves every file of its architecture.

Why templates ship in the extension rather than being made per weights folder: where they are
needed most, a desktop Blender, there is no torch to export them with. They are reproducible:
`cli.py weights export-onnx` rebuilds them from the torch modules, and a test compares a fresh
export with the shipped files.

Graphs are float32: half weights are widened when they are loaded (CPU float16 is slow and
partly missing; the torch poser does the same on the CPU).
"""

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..atomic_files import write_bytes_atomic
from ..pose.schema import get_schema
from . import weights as weights_io
from .ort import graphs as graph_files
from .ort.stages import check_stages

OPSET = 18
EXAMPLE_BATCH = 2


class StageModule(nn.Module):
    """One stage of a pipeline as a module: the networks registered under their official names,
    so that every weight's initializer is called `<network>.<key>`."""

    def __init__(self, pipeline, networks, stage):
        super().__init__()
        for name, network in networks.items():
            self.add_module(name, network)
        self.method = getattr(pipeline, stage.name)
        self.stage = stage

    def forward(self, *inputs):
        produced = self.method(**dict(zip(self.stage.inputs, inputs, strict=True)))
        return tuple(produced[name] for name in self.stage.outputs)


def architecture_groups(module):
    """[[variant, ...], ...]: variants whose networks have the same keys and shapes (float and half
    of one architecture share float32 graphs), in the module's order."""
    groups = {}
    for variant in module.VARIANTS:
        shapes = tuple(
            (name, tuple((key, tuple(shape)) for key, (shape, _dtype) in
                         weights_io.expected_signature(module.FAMILY, name, variant).items()))
            for name in module.NETWORKS
        )
        groups.setdefault(shapes, []).append(variant)
    return list(groups.values())


def signature_json(family, variant, networks):
    return {
        name: {key: [list(shape), str(dtype).replace("torch.", "")]
               for key, (shape, dtype) in weights_io.expected_signature(family, name, variant).items()}
        for name in networks
    }


def export_stage(module, networks, pipeline, stage, values, batched, fixed_batch=None):
    """(template bytes, weight names, outputs) of one stage; `values` holds the example tensors by
    name, `batched` the names whose first axis is the pose batch. Per-pose stages take any batch
    size unless the family fixes one."""
    wrapper = StageModule(pipeline, networks, stage).eval()
    inputs = tuple(values[name] for name in stage.inputs)
    batch = torch.export.Dim("batch", min=1, max=1024)
    dynamic = tuple({0: batch} if name in batched else None for name in stage.inputs)
    dynamic_batch = stage.per_pose and not fixed_batch
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            wrapper, inputs, None, dynamo=True, opset_version=OPSET, input_names=list(stage.inputs),
            output_names=list(stage.outputs), dynamic_shapes=(dynamic,) if dynamic_batch else None,
            verbose=False, optimize=False,
        )
        outputs = wrapper(*inputs)
    proto = program.model_proto
    if dynamic_batch:
        pose_input = next(i for i in proto.graph.input if i.name == "pose")
        if not pose_input.type.tensor_type.shape.dim[0].dim_param:
            raise RuntimeError(f"{module.FAMILY} stage {stage.name}: the exporter fixed the batch size; "
                               f"set ONNX_FIXED_BATCH in neural/{module.FAMILY}.py")
    drop_zero_biases(proto)
    state_keys = {f"{name}.{key}" for name, network in networks.items() for key in network.state_dict()}
    weights = strip_weights(proto, state_keys)
    return proto.SerializeToString(deterministic=True), weights, dict(zip(stage.outputs, outputs))


def drop_zero_biases(proto):
    """Take the exporter's zero bias off every convolution that has none, and drop the nodes
    left unused.

    The exporter gives a bias-free Conv the bias Expand(CastLike(0, activation), out channels):
    computed from the activation, so ONNX Runtime cannot fold it into a constant, and its
    NCHWc layout pass (the fast CPU convolutions) skips every conv with a non-constant bias:
    THA3's editor ran its depthwise convs 20 times slower than the same convs without."""
    from onnx import numpy_helper

    producers = {output: node for node in proto.graph.node for output in node.output}

    def is_zero_constant(name):
        node = producers.get(name)
        if node is None or node.op_type != "Constant":
            return False
        values = [numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"]
        return len(values) == 1 and not np.any(values[0])

    def is_zero_fill(name):
        expand = producers.get(name)
        if expand is None or expand.op_type != "Expand":
            return False
        cast = producers.get(expand.input[0])
        return cast is not None and cast.op_type == "CastLike" and is_zero_constant(cast.input[0])

    for node in proto.graph.node:
        if node.op_type in ("Conv", "ConvTranspose") and len(node.input) == 3 and is_zero_fill(node.input[2]):
            del node.input[2]
    graph_outputs = {output.name for output in proto.graph.output}
    while True:
        used = {name for node in proto.graph.node for name in node.input} | graph_outputs
        unused = [node for node in proto.graph.node if not any(output in used for output in node.output)]
        if not unused:
            return
        for node in unused:
            proto.graph.node.remove(node)


def strip_weights(proto, weight_names):
    """Turn the initializers that are weights into external-data references (no bytes kept).

    Whether the exporter folded a weight into some other constant is not checked here: the
    parity tests run every template with real weights against the torch modules, which such
    a constant (made from the random weights the export ran with) would fail."""
    import onnx

    stripped = []
    for initializer in proto.graph.initializer:
        if initializer.name not in weight_names:
            continue
        stripped.append(initializer.name)
        length = int(np.prod(initializer.dims)) * 4
        for field in ("raw_data", "float_data"):
            initializer.ClearField(field)
        initializer.data_location = onnx.TensorProto.EXTERNAL
        del initializer.external_data[:]
        for key, value in (("location", graph_files.WEIGHTS_LOCATION), ("offset", "0"), ("length", str(length))):
            entry = initializer.external_data.add()
            entry.key, entry.value = key, value
    # Metadata that differs between runs or machines and says nothing about the graph (the
    # exporter records each node's Python stack, with this checkout's paths).
    proto.ClearField("producer_version")
    proto.ClearField("metadata_props")
    proto.graph.ClearField("doc_string")
    for node in proto.graph.node:
        node.ClearField("doc_string")
        node.ClearField("metadata_props")
    return sorted(stripped)


def export_family(family, out_dir=None, seed=0):
    """Write the family's templates and manifest into `out_dir` (default: the shipped folder)."""
    module = weights_io.family_module(family)
    out_dir = Path(out_dir or graph_files.GRAPHS_FOLDER)
    groups = architecture_groups(module)
    manifest = {
        "format": graph_files.FORMAT, "version": graph_files.VERSION, "family": family, "schema": module.SCHEMA,
        "image_size": module.IMAGE_SIZE, "networks": list(module.NETWORKS), "opset": OPSET,
        "stages": [stage.to_json() for stage in module.Pipeline.STAGES], "variants": {}, "graph_sets": {},
    }
    check_stages(module.Pipeline.STAGES)
    fixed_batch = getattr(module, "ONNX_FIXED_BATCH", None)
    manifest["fixed_batch"] = fixed_batch
    generator = torch.Generator().manual_seed(seed)
    for group in groups:
        set_id = f"{family}_{group[0]}"
        networks = {name: module.build_network(name, group[0]).float().eval() for name in module.NETWORKS}
        pipeline = module.Pipeline(networks)
        size = module.IMAGE_SIZE
        image = torch.rand(1, 4, size, size, generator=generator) * 2 - 1
        pose = torch.rand(fixed_batch or EXAMPLE_BATCH, get_schema(module.SCHEMA).size, generator=generator)
        values, batched = {"image": image, "pose": pose}, {"pose"}
        files = {}
        for stage in module.Pipeline.STAGES:
            data, weights, outputs = export_stage(module, networks, pipeline, stage, values, batched, fixed_batch)
            values.update(outputs)
            if stage.per_pose:
                batched.update(stage.outputs)
            name = f"{set_id}.{stage.name}.onnx"
            write_bytes_atomic(out_dir / name, data)
            files[stage.name] = {"file": name, "sha256": hashlib.sha256(data).hexdigest(), "weights": weights}
        manifest["graph_sets"][set_id] = files
        for variant in group:
            manifest["variants"][variant] = {"graphs": set_id,
                                             "signature": signature_json(family, variant, module.NETWORKS)}
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    write_bytes_atomic(out_dir / f"{family}.json", text.encode())
    # Graphs of stages this family no longer has would otherwise ship in the extension unused.
    written = {entry["file"] for files in manifest["graph_sets"].values() for entry in files.values()}
    for old in out_dir.glob(f"{family}_*.onnx"):
        if old.name not in written:
            old.unlink()
    return out_dir / f"{family}.json"
