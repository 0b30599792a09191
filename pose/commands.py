"""Subcommands of this package (see the root commands.py): `fit-picture`; and the head-fitting
options that `talk`, `sprite` and `pose` share with it."""

from ..commands import CommandError

FIT_HELP = (
    "scale and move the picture so the head fills THA's head box (the top of the head and the chin "
    "are found from the silhouette where --head does not give them)"
)


def add_fit_arguments(parser, always=False):
    """--fit (unless `always`), --head TOP,CHIN and --head-centre COLUMN."""
    if not always:
        parser.add_argument("--fit", action="store_true", help=FIT_HELP + "; --head or --head-centre imply it")
    parser.add_argument("--head", metavar="TOP,CHIN", default=None,
                        help="the rows of the top of the head (hair included) and of the chin, in the picture's own "
                        "pixels (row 0 at the top)")
    parser.add_argument("--head-centre", metavar="COLUMN", type=float, default=None,
                        help="the column of the head's centre, in the picture's own pixels")


def fit_request(args):
    """None (use the picture as it is) or {top, chin, centre} for fit_character_image."""
    if not (getattr(args, "fit", True) or args.head is not None or args.head_centre is not None):
        return None
    top = chin = None
    if args.head is not None:
        try:
            top, chin = (float(value) for value in args.head.split(","))
        except ValueError:
            raise CommandError(f"--head {args.head!r}: give two rows, the top of the head and the chin, e.g. --head 120,380") from None
    return {"top": top, "chin": chin, "centre": args.head_centre}


def add_subcommands(subparsers):
    fit = subparsers.add_parser(
        "fit-picture",
        help="make a copy of a character picture with the head where THA wants it",
        description=(
            "Write a copy of a character picture (RGBA, transparent background) scaled and moved so the head "
            "fills THA's head box: the top of the head on the box's top row, the chin on its bottom row, the head "
            "centred (THA3: a 512x512 picture, head in rows 64-192, columns 192-320). The head's top and chin are "
            "found from the silhouette; where hair or a collar hides the neck, give them with --head."
        ),
    )
    fit.add_argument("image", help="the character picture")
    fit.add_argument("--out", required=True, help="the PNG to write")
    fit.add_argument("--schema", default="tha3", choices=("tha1", "tha2", "tha3", "tha4"),
                     help="the THA version the picture is for (default tha3; tha4 is placed as tha3)")
    add_fit_arguments(fit, always=True)
    fit.set_defaults(func=run_fit_picture)


def run_fit_picture(args):
    from pathlib import Path

    from ..atomic_files import write_bytes_atomic
    from ..render.formats.png import encode_png
    from .character_image import fit_character_image
    from .schema import get_schema

    schema = get_schema(args.schema)
    rgba, head = fit_character_image(Path(args.image), schema, **fit_request(args))
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, encode_png(rgba))
    print(f"{path}: {args.image} with its {head.describe()} scaled {head.scale_into(schema):.3g}x into the {schema.image_size}x"
          f"{schema.image_size} picture's head box; check it by eye, and give --head TOP,CHIN if the box is off")
    return 0
