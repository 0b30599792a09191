"""UI layer: preferences, operators, panels and properties (imports bpy).

Each module listed in MODULES has `register()` and `unregister()`; they are called in order
and undone in reverse, so a module may rely on the ones before it.
"""

import importlib

MODULES = (
    "preferences",
    "migrations",
    "import_model",
    "annotate",
    "handlers",
    "sprite",
    "lipsync",
)


def _modules():
    return [importlib.import_module(f".{name}", __name__) for name in MODULES]


def register():
    done = []
    try:
        for module in _modules():
            module.register()
            done.append(module)
    except Exception:
        # Leave Blender as it was: a half-registered add-on cannot be disabled cleanly.
        for module in reversed(done):
            module.unregister()
        raise


def unregister():
    for module in reversed(_modules()):
        module.unregister()
