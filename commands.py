"""Assembles the command line from the subcommands each package offers.

A module listed in COMMAND_MODULES offers subcommands through `add_subcommands(subparsers)`,
which adds parsers whose default `func(args) -> int` does the work. Heavy imports
(bpy, torch) belong inside `func`, so `--help` is instant and a machine without Blender can
still run the subcommands that do not need it.
"""

import argparse
import importlib
import sys

# Modules that add subcommands, in the order --help lists them.
COMMAND_MODULES = (
    "render.commands",
    "render.dataset_commands",
    "neural.commands",
    "lipsync.commands",
)


class CommandError(Exception):
    """A failure to report on one line, without a traceback (bad input, missing file)."""


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
    except CommandError as error:
        print(f"tha_studio {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tha_studio {args.command}: interrupted", file=sys.stderr)
        return 130
