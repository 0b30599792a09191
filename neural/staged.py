"""The torch side of neural/ort/stages.py: a family Pipeline made of named stage methods.

A family's Pipeline lists its STAGES and has one method per stage, taking the stage's inputs by
name and returning a dict holding at least its outputs. The same methods run here, under torch,
and become the ONNX graphs (neural/onnx_export.py), so both backends do the same arithmetic
in the same order and cache the same work.
"""

import warnings
from collections import OrderedDict

import torch

from .ort.stages import StagedRun


class StagedPipeline:
    STAGES = ()

    def __init__(self):
        self.run = StagedRun(self.STAGES, self.run_stage, torch.cat, lambda array, rows: array[rows],
                             lambda array: array.detach().float().cpu().numpy())
        self.graphs = None  # a StageGraphs where the Poser replays stages as CUDA graphs

    def run_stage(self, stage, inputs):
        if self.graphs is not None and self.graphs.takes(inputs):
            return self.graphs.run(stage, inputs)
        return self.run_eagerly(stage, inputs)

    def run_eagerly(self, stage, inputs):
        return getattr(self, stage.name)(**inputs)

    def prepare(self, image):
        return self.run.prepare(image)

    def pose(self, cache, pose):
        outputs = self.run.pose(cache, pose)
        return {"image": outputs["final_image"], **outputs}


class StageGraphs:
    """A pipeline's one-frame stages captured once as CUDA graphs and replayed.

    A THA3 frame is some 400 small kernels; at one frame a GPU spends more time being told what
    to run than running it (an H200 took 15 ms for 33 GFLOP). A graph replays a stage's kernels
    with one launch: the same kernels, in the same order, on the same inputs, so the same
    pictures bit for bit (tests/neural/test_gpu.py). Only stages of one frame are captured
    (live previews and frame-by-frame bakes): a batch already keeps the GPU busy, and each
    distinct batch shape would cost a capture and its memory.

    Each captured stage keeps its own inputs, outputs and memory pool: the inputs are copied in
    before a replay and the outputs copied out after it, as the pipeline's caches keep outputs
    across frames and the next replay writes over the graph's own.
    """

    LIMIT = 16  # captured (stage, input shapes) kept; a THA3 poser uses 4

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.captured = OrderedDict()
        self.failed = False

    def takes(self, inputs):
        tensors = list(inputs.values())
        return (not self.failed and not torch.is_grad_enabled()
                and all(isinstance(t, torch.Tensor) and t.is_cuda and t.shape[0] == 1 for t in tensors)
                and not torch.cuda.is_current_stream_capturing())

    def run(self, stage, inputs):
        key = (stage.name, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.deterministic,
               tuple((name, tuple(t.shape), t.stride(), t.dtype, t.device) for name, t in inputs.items()))
        entry = self.captured.get(key)
        if entry is None:
            try:
                entry = self.captured[key] = self.capture(stage, inputs)
            except RuntimeError as error:
                # An op that cannot be captured (a new kernel of a later torch, say): the stages
                # run as they would without graphs, from now on, and say so once.
                self.failed = True
                self.captured.clear()
                warnings.warn(f"CUDA graph capture of stage {stage.name!r} failed ({error}); posing without graphs")
                return self.pipeline.run_eagerly(stage, inputs)
            while len(self.captured) > self.LIMIT:
                self.captured.popitem(last=False)
        self.captured.move_to_end(key)
        graph, static_inputs, static_outputs = entry
        for name, tensor in inputs.items():
            static_inputs[name].copy_(tensor)
        graph.replay()
        return {name: value.clone() for name, value in static_outputs.items()}

    def capture(self, stage, inputs):
        static_inputs = {name: tensor.clone() for name, tensor in inputs.items()}
        # Run once on a side stream first, as capture needs: cuDNN and cuBLAS make their
        # workspaces and choices on a first call, which must not happen inside the capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.pipeline.run_eagerly(stage, static_inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # "thread_local": other threads may use the GPU meanwhile (a live preview's poser beside
        # a bake's, Cycles rendering); under the default, "global", CUDA refuses their calls that
        # are unsafe during a capture.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_outputs = self.pipeline.run_eagerly(stage, static_inputs)
        return graph, static_inputs, static_outputs
