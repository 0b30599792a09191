"""Subcommands of this package (see the root commands.py)."""


def add_subcommands(subparsers):
    pass
