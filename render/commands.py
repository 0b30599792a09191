"""Subcommands of the render package (see the root commands.py): `import` and `demo`.

Both work from plain Python with the `bpy` module (`python cli.py demo`) and inside Blender
(`blender -b --python cli.py -- demo`). bpy is imported only when a subcommand runs, so
`--help` stays instant and machines without Blender can still list the commands.
"""

import math
import tempfile
from pathlib import Path

from ..commands import CommandError

DEFAULT_DEMO_IMAGE = Path("out") / "demo.png"


def add_subcommands(subparsers):
    parser = subparsers.add_parser(
        "import",
        help="import an MMD model (.pmx/.pmd) or VRM/glb avatar and save it as a .blend",
        description="Import a model into an empty scene, as File > Import does, save the scene as a "
        ".blend and print a summary: counts, morphs, missing textures, time taken. The morphs "
        "(with bone and material morphs' data) are stored on the model's root object, so later "
        "steps re-read them from the .blend.",
    )
    parser.add_argument("model", type=Path, help="the .pmx, .pmd, .vrm, .glb or .gltf file")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="the .blend to write (default: out/<model name>.blend)")
    parser.add_argument("--scale", type=float, default=0.08,
                        help="Blender units per MMD unit (default: 0.08; VRM/glb keep their own size)")
    parser.set_defaults(func=run_import)

    parser = subparsers.add_parser(
        "demo",
        help="render THA Studio's sample character to a PNG (checks the whole import and render path)",
        description="Write THA Studio's built-in procedural MMD character to a temporary folder, "
        "import it like any .pmx, render it from the front with Workbench (transparent "
        "background) and print where the picture is.",
    )
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_DEMO_IMAGE,
                        help=f"the PNG to write (default: {DEFAULT_DEMO_IMAGE})")
    parser.add_argument("--size", type=int, default=256, help="width and height in pixels (default: 256)")
    parser.add_argument("--model-dir", type=Path, default=None,
                        help="keep the sample .pmx and its texture in this folder (default: a "
                        "temporary folder, removed afterwards)")
    parser.set_defaults(func=run_demo)


def empty_scene():
    import bpy

    bpy.ops.wm.read_homefile(use_empty=True)


def run_import(args):
    from .blender import model_import, scene
    from .formats.mmd.import_plan import MAX_SCALE

    if not (math.isfinite(args.scale) and 0 < args.scale <= MAX_SCALE):  # (nan saved a model of NaN vertices)
        raise CommandError(f"--scale must be a positive number up to {MAX_SCALE:g}, not {args.scale:g}")
    output = args.output or Path("out") / (args.model.stem + ".blend")
    if output.suffix.lower() != ".blend":
        raise CommandError(f"{output}: the output must be a .blend file")
    empty_scene()
    imported = model_import.import_model(args.model, scale=args.scale)
    saved = scene.save_blend(output)
    print(model_import.summary(imported))
    print(f"saved {saved}")
    return 0


def run_demo(args):
    from .formats.mmd import write_character

    if not 16 <= args.size <= 4096:
        raise CommandError(f"--size must be between 16 and 4096, not {args.size}")
    if args.output.suffix.lower() != ".png":
        raise CommandError(f"{args.output}: the output must be a .png file")
    if args.model_dir is not None:
        return render_demo(write_character(args.model_dir), args.output, args.size)
    with tempfile.TemporaryDirectory(prefix="tha_studio_demo_") as folder:
        return render_demo(write_character(folder), args.output, args.size)


def render_demo(model_path, output, size):
    from .blender import model_import, scene

    empty_scene()
    imported = model_import.import_model(model_path)
    scene.setup_render(engine="WORKBENCH", resolution=(size, size))
    low, high = scene.world_bounds(imported.meshes)
    scene.aim_orthographic_camera(low, high, margin=0.05)
    path = scene.render_to_png(output)
    print(model_import.summary(imported))
    print(f"wrote {path}")
    return 0
