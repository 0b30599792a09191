"""The shipped ONNX graph templates are what the torch modules export today, and hold no weights."""

import json

import pytest

from tha_studio.neural.ort import graphs


def shipped_files(family):
    return sorted(path.name for path in graphs.GRAPHS_FOLDER.iterdir()
                  if path.suffix in (".json", ".onnx") and path.name.split(".")[0].split("_")[0] == family)


# One test a family: tracing them all in one took six minutes on CI's 2-core VM, longer than any other test.
@pytest.mark.slow
@pytest.mark.parametrize("family", ["tha1", "tha2", "tha3", "tha4"])
def test_a_fresh_export_equals_the_shipped_templates(family, tmp_path):
    from tha_studio.neural.onnx_export import export_family

    if family == "tha3":
        (tmp_path / "tha3_separable_float.face_and_rotation.onnx").write_bytes(b"a stage THA3 no longer has")
    export_family(family, tmp_path)
    fresh = sorted(path.name for path in tmp_path.iterdir())
    assert fresh == shipped_files(family), "the shipped set of templates differs from a fresh export's"
    stale = [name for name in fresh if (tmp_path / name).read_bytes() != (graphs.GRAPHS_FOLDER / name).read_bytes()]
    assert not stale, f"rebuild with `cli.py weights export-onnx`: {stale} differ from a fresh export"


def test_every_template_matches_its_manifest_and_leaves_every_weight_out():
    for family in ("tha1", "tha2", "tha3", "tha4"):
        manifest = graphs.manifest(family)
        for variant, entry in manifest["variants"].items():
            expected = {f"{network}.{key}" for network, keys in entry["signature"].items() for key in keys}
            supplied = set()
            for stage in graphs.stages(family):
                data = graphs.template_bytes(family, variant, stage.name)  # checks the sha256
                supplied |= set(graphs.weight_names(family, variant, stage.name))
                # No weights inside: the largest constant is THA3's 512² identity grid (2 MB); the
                # weights a stage takes are tens of megabytes.
                weight_bytes = sum(4 * _count(entry["signature"], name)
                                   for name in graphs.weight_names(family, variant, stage.name))
                assert len(data) < 4_000_000 and (not weight_bytes or len(data) < weight_bytes), \
                    f"{family} {stage.name}: {len(data)} bytes for {weight_bytes} bytes of weights"
            assert supplied <= expected
            # Every weight is taken, the heads whose outputs the official pipelines throw away
            # (the eyebrow combiner's combine alpha, THA3's directly drawn rotated image) too: a
            # network's heads run as one conv (blocks.run_heads), where their channels cost nothing.
            assert supplied == expected, f"{family} {variant}: weights the graphs never take: {expected - supplied}"


def _count(signature, name):
    network, key = name.split(".", 1)
    count = 1
    for size in signature[network][key][0]:
        count *= size
    return count


def test_a_damaged_template_is_refused_naming_it(tmp_path):
    import shutil

    for path in graphs.GRAPHS_FOLDER.glob("tha1*"):
        shutil.copy(path, tmp_path / path.name)
    template = next(tmp_path.glob("tha1_*.onnx"))
    template.write_bytes(template.read_bytes()[:-10] + b"0123456789")
    stage = json.loads((tmp_path / "tha1.json").read_text())["stages"][0]["name"]
    with pytest.raises(graphs.GraphError, match=template.name):
        graphs.template_bytes("tha1", "float", stage, folder=tmp_path)


def export_and_run(module, inputs):
    """`module` exported as the product exports its stages (dynamo, its opset), and ONNX Runtime's
    first output for `inputs`: (graph, output)."""
    import io
    import warnings

    import onnx
    import onnxruntime
    import torch

    from tha_studio.neural.onnx_export import OPSET

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own deprecations, as in onnx_export.export_stage
        program = torch.onnx.export(module.eval(), tuple(inputs), None, dynamo=True, opset_version=OPSET,
                                    optimize=False, verbose=False)
    graph = program.model_proto.graph
    buffer = io.BytesIO()
    onnx.save(program.model_proto, buffer)
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    return graph, session.run(None, {port.name: x.numpy() for port, x in zip(graph.input, inputs)})[0]


def within_float_rounding(exported, expected):
    import numpy as np

    return np.abs(exported - expected).max() < 1e-5 * max(1.0, float(np.abs(expected).max()))


def test_an_exported_unet_decoder_block_convolves_its_halves_without_joining_them():
    """Exported, a separable U-Net decoder block (THA3's editor) never makes the join of its
    upsampled input and skip: ONNX Runtime would concatenate and reorder the whole joined tensor.
    Its output is the joined block's within float rounding."""
    import torch

    from tha_studio.neural import blocks

    torch.manual_seed(0)
    block = blocks.conv_block(24 + 8, 16, 3, 1, blocks.leaky_relu, separable=True).eval()

    class Decoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = block

        def forward(self, x, skip):
            return blocks.upsample_cat_conv_block(self.block, x, skip)

    x, skip = torch.randn(1, 24, 8, 8), torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        joined = block(blocks.upsample_and_cat(x, skip)).numpy()
    graph, exported = export_and_run(Decoder(), (x, skip))
    resized = {name for node in graph.node if node.op_type == "Resize" for name in node.output}
    assert resized, "the upsampling is a resize in the graph"
    joins = [node.name for node in graph.node if node.op_type == "Concat" and resized & set(node.input)]
    assert not joins, f"the decoder's join is made: {joins}"
    assert within_float_rounding(exported, joined)


def test_an_exported_depthwise_upsample_block_has_no_transposed_conv():
    """Exported, a separable transposed conv block (THA3's eyebrow and face networks) runs its
    depthwise transposed conv as four phase convs, interleaved: ONNX Runtime's depthwise
    ConvTranspose is several times slower. Its output is the block's within float rounding, on
    a size that is not square (rows and columns interleaved the right way round)."""
    import torch

    from tha_studio.neural import blocks

    torch.manual_seed(0)
    block = blocks.upsample_block(32, 16, blocks.relu, separable=True).eval()
    x = torch.randn(1, 32, 6, 9)
    with torch.no_grad():
        expected = block(x).numpy()
    graph, exported = export_and_run(block, (x,))
    assert not [node.name for node in graph.node if node.op_type == "ConvTranspose"]
    assert [node for node in graph.node if node.op_type == "Conv" and any(
        a.name == "group" and a.i == 32 for a in node.attribute)], "the phases are depthwise convs"
    assert exported.shape == expected.shape == (1, 16, 12, 18)
    assert within_float_rounding(exported, expected)


def test_an_exported_resize_conv_block_has_no_resize():
    """Exported, a separable resize-conv block (THA3's rotator) runs its nearest doubling and
    depthwise 3x3 conv by the phases of the transposed conv they make together, the pointwise
    conv on each phase: ONNX Runtime neither resizes nor reorders the doubled tensor."""
    import torch

    from tha_studio.neural import blocks

    torch.manual_seed(0)
    block = blocks.resize_conv_block(32, 16, blocks.leaky_relu, separable=True).eval()
    x = torch.randn(1, 32, 6, 9)
    with torch.no_grad():
        expected = block(x).numpy()  # NCHW: the resize, then the depthwise conv
    graph, exported = export_and_run(block, (x,))
    assert not [node.name for node in graph.node if node.op_type in ("Resize", "ConvTranspose")]
    assert exported.shape == expected.shape == (1, 16, 12, 18)
    assert within_float_rounding(exported, expected)


def test_an_exported_paste_joins_bands_instead_of_scattering():
    """Exported, pasting a part into a picture (THA3's face into the picture, the eyebrows into
    the face) joins the picture's bands around it: no ScatterND, the same values exactly, for a
    box that touches two edges too, given as open slices."""
    import numpy as np
    import torch

    from tha_studio.neural import blocks

    boxes = [(slice(2, 7), slice(3, 9)), (slice(None, 4), slice(5, None))]

    class Paste(torch.nn.Module):
        def forward(self, image, part, edge_part):
            return blocks.paste(blocks.paste(image, part, boxes[0]), edge_part, boxes[1])

    inputs = torch.randn(1, 4, 10, 12), torch.randn(2, 4, 5, 6), torch.randn(2, 4, 4, 7)
    expected = Paste()(*inputs).numpy()
    graph, exported = export_and_run(Paste(), inputs)
    assert not [node.name for node in graph.node if node.op_type in ("ScatterND", "ScatterElements")]
    assert np.array_equal(exported, expected)
