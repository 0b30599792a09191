"""Data migrations when a .blend file loads: older THA Studio data brought to the current form.

A `@persistent` load_post handler (persistent: Blender drops the others when a file opens) runs
`model_import.migrate_saved_models`, which updates the model JSON on imported models' root
objects to the current `MODEL_INFO_VERSION`, as mmd_tools migrates its own data on load.
"""

import sys
import traceback

import bpy
from bpy.app.handlers import persistent

from ..render.blender import model_import


@persistent
def migrate_after_load(*_args):
    # A handler that raises would print its traceback on every file load and fix nothing: say
    # what failed once per load and leave the file as it was.
    try:
        model_import.migrate_saved_models()
    except Exception:  # noqa: BLE001 - never break loading a file
        print("THA Studio: migrating this file's model data failed:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)


def register():
    if migrate_after_load not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(migrate_after_load)


def unregister():
    if migrate_after_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(migrate_after_load)
