#!/usr/bin/env python3
"""THA Studio's command line.

Works both ways:
    blender -b --python cli.py -- <subcommand> [options]
    python cli.py <subcommand> [options]          (plain Python; `bpy` from PyPI where needed)

Run with --help, or <subcommand> --help, to see what there is.
"""

import importlib.util
import sys
from pathlib import Path

PACKAGE = "tha_studio"


def load_package(root=None):
    """Import the repository root as the package `tha_studio` and return it.

    Inside Blender the extension is `bl_ext.<repo>.tha_studio`; outside it the folder may have
    any name (a clone, a CI checkout), so it is loaded from its path under the extension's id.
    """
    if PACKAGE in sys.modules:
        return sys.modules[PACKAGE]
    root = Path(root or Path(__file__).resolve().parent)
    spec = importlib.util.spec_from_file_location(
        PACKAGE, root / "__init__.py", submodule_search_locations=[str(root)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE] = module
    spec.loader.exec_module(module)
    return module


def _argv():
    # Blender passes its own options first; ours follow "--".
    if "--" in sys.argv:
        return sys.argv[sys.argv.index("--") + 1 :]
    return sys.argv[1:]


if __name__ == "__main__":
    load_package()
    from tha_studio.commands import main

    code = main(_argv())
    sys.stdout.flush()
    if code:
        sys.exit(code)
