# SPDX-License-Identifier: GPL-3.0-or-later
"""THA Studio: Talking Head Anime in Blender.

The repository root is the extension. Importing this package must stay cheap and free of
bpy and torch: the pure packages (`pose`, `lipsync`, `render.formats`, ...) are also used from
plain Python, on training machines without Blender and render nodes without torch.
Only `register()` touches the UI layer, which imports bpy.
"""


def register():
    from . import addon

    addon.register()


def unregister():
    from . import addon

    addon.unregister()
