"""A network family's pipeline as named stages, and the one driver that runs them with caching.

A stage is one graph's worth of work: named tensors in, named tensors out. Stages that do not
read the pose run once per picture (`per_pose=False`); the rest run for every batch of poses.
A per-pose stage with a `cache_slice` depends on that part of the pose only (THA3's eyebrows;
its morphed face), so its outputs are kept per distinct value of that slice: animation changes
the eyebrows far less often than the mouth, and the face often holds while the head moves.

The names "image" (the (1, 4, H, W) network picture) and "pose" (the (B, P) pose batch) are the
driver's; every other input is an output of an earlier stage. Each family module (neural/tha*.py)
declares its STAGES and the Pipeline methods of the same names; neural/onnx_export.py turns each
into a graph, and neural/ort/poser.py runs the graphs with `StagedRun`.
"""

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple
    outputs: tuple
    per_pose: bool = True
    cache_slice: tuple = None  # (start, stop) of the pose part its outputs depend on, or None

    def to_json(self):
        return {"name": self.name, "inputs": list(self.inputs), "outputs": list(self.outputs),
                "per_pose": self.per_pose, "cache_slice": list(self.cache_slice) if self.cache_slice else None}

    @classmethod
    def from_json(cls, data):
        cache = data.get("cache_slice")
        return cls(data["name"], tuple(data["inputs"]), tuple(data["outputs"]), bool(data["per_pose"]),
                   tuple(cache) if cache else None)


class StagedRun:
    """Runs a family's stages on one picture at a time.

    `run_stage(stage, inputs) -> {output name: array}` does the work (an ONNX Runtime session,
    or torch modules); `concat(arrays)` joins arrays along the batch axis; `rows(array, indices)`
    takes rows; `to_numpy(array)` gives the pose as a numpy array for the cache keys.
    """

    CACHE_SIZE = 16  # distinct cached-slice values kept per stage (THA3: eyebrow poses, face poses)

    def __init__(self, stages, run_stage, concat, rows, to_numpy=np.asarray):
        self.stages = tuple(stages)
        self.run_stage, self.concat, self.rows, self.to_numpy = run_stage, concat, rows, to_numpy
        check_stages(self.stages)

    def prepare(self, image):
        """The pose-independent work on a picture: a dict to hand to `pose`."""
        values = {"image": image}
        for stage in self.stages:
            if not stage.per_pose:
                values.update(self._run(stage, values))
        return {"values": values, "caches": {s.name: OrderedDict() for s in self.stages if s.cache_slice}}

    def pose(self, prepared, pose):
        """{output name: array} of every per-pose stage for a (B, P) pose batch."""
        values = dict(prepared["values"], pose=pose)
        outputs = {}
        for stage in self.stages:
            if not stage.per_pose:
                continue
            if stage.cache_slice:
                produced = self._run_cached(stage, values, prepared["caches"][stage.name])
            else:
                produced = self._run(stage, values)
            values.update(produced)
            outputs.update(produced)
        return outputs

    def _run(self, stage, values):
        produced = self.run_stage(stage, {name: values[name] for name in stage.inputs})
        missing = [name for name in stage.outputs if name not in produced]
        if missing:
            raise RuntimeError(f"stage {stage.name!r} gave no {', '.join(missing)}")
        return produced

    def _run_cached(self, stage, values, store):
        start, stop = stage.cache_slice
        pose = values["pose"]
        keys = [row.tobytes() for row in np.asarray(self.to_numpy(pose[:, start:stop]), dtype=np.float32)]
        missing = list(dict.fromkeys(key for key in keys if key not in store))
        if missing:
            first_rows = [keys.index(key) for key in missing]
            sub_values = dict(values, pose=self.rows(pose, first_rows))
            produced = self._run(stage, sub_values)
            for i, key in enumerate(missing):
                store[key] = {name: self.rows(produced[name], [i]) for name in stage.outputs}
        for key in keys:
            store.move_to_end(key)
        result = {name: self.concat([store[key][name] for key in keys]) for name in stage.outputs}
        while len(store) > max(self.CACHE_SIZE, len(set(keys))):
            store.popitem(last=False)
        return result


def check_stages(stages):
    """Every stage input is "image", "pose" (per-pose stages only) or an earlier stage's output."""
    known = {"image"}
    for stage in stages:
        allowed = known | ({"pose"} if stage.per_pose else set())
        unknown = [name for name in stage.inputs if name not in allowed]
        if unknown:
            raise ValueError(f"stage {stage.name!r} reads {', '.join(unknown)}, which no earlier stage makes")
        known |= set(stage.outputs)
    if "final_image" not in known:
        raise ValueError("no stage makes the final_image")
