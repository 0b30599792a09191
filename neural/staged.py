"""The torch side of neural/ort/stages.py: a family Pipeline made of named stage methods.

A family's Pipeline lists its STAGES and has one method per stage, taking the stage's inputs by
name and returning a dict holding at least its outputs. The same methods run here, under torch,
and become the ONNX graphs (neural/onnx_export.py), so both backends do the same arithmetic
in the same order and cache the same work.
"""

import torch

from .ort.stages import StagedRun


class StagedPipeline:
    STAGES = ()

    def __init__(self):
        self.run = StagedRun(self.STAGES, self.run_stage, torch.cat, lambda array, rows: array[rows],
                             lambda array: array.detach().float().cpu().numpy())

    def run_stage(self, stage, inputs):
        return getattr(self, stage.name)(**inputs)

    def prepare(self, image):
        return self.run.prepare(image)

    def pose(self, cache, pose):
        outputs = self.run.pose(cache, pose)
        return {"image": outputs["final_image"], **outputs}
