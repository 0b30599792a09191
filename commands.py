"""Assembles the command line from the subcommands each package offers.

A module listed in COMMAND_MODULES offers subcommands through `add_subcommands(subparsers)`,
which adds parsers whose default `func(args) -> int` does the work. A subcommand raises a UserError
(errors.py) for anything the user can fix; `main` prints it on one line. Heavy imports
(bpy, torch) belong inside `func`, so `--help` is instant and a machine without Blender can
still run the subcommands that do not need it.
"""

import argparse
import importlib
import sys

from .errors import UserError

# Modules that add subcommands, in the order --help lists them.
COMMAND_MODULES = (
    "animation.talk_commands",  # the main job first
    "render.commands",
    "render.dataset_commands",
    "pose.commands",
    "neural.commands",
    "neural.train.commands",
    "lipsync.commands",
    "animation.commands",
)


class CommandError(UserError):
    """A bad option or argument, found by a subcommand itself (a UserError like any other)."""


def make_output_folder(path, option, folder=False):
    """Make the folder a result will be written into, before the work that makes the result: an
    analysis of a long recording or a bake must not end on a folder that cannot be made
    (`lipsync -o /missing/place/cues.tsv` said so only after analysing). `path`: the file to
    write, or with `folder` the folder itself; CommandError names the option and the folder."""
    from pathlib import Path

    path = Path(path).expanduser()
    made = path if folder else path.parent
    try:
        made.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        where = "" if folder else f" the folder {made}"
        # (A file in the way of the folder, or of a folder above it: mkdir says only "File exists".)
        blocked = next((part for part in (made, *made.parents) if part.exists() and not part.is_dir()), None)
        why = f"{blocked} is a file" if blocked else error.strerror or error
        raise CommandError(f"{option} {path}:{where} cannot be made ({why})") from None
    return made


def build_parser():
    parser = argparse.ArgumentParser(
        prog="tha_studio",
        description="THA Studio: MMD datasets for Talking Head Anime, and THA-posed characters.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="SUBCOMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        module.add_subcommands(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except (UserError, OSError) as error:
        # The one place user errors end: one line, no traceback. An OSError is the machine's
        # answer about a file (missing folder, no permission, disk full), not a bug. Anything
        # else is a bug and keeps its traceback.
        print(f"tha_studio {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tha_studio {args.command}: interrupted", file=sys.stderr)
        return 130
