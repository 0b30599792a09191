"""The layer rules of ../shared/ARCHITECTURE.md, checked on every module's imports.

A pytest checker rather than import-linter: one rule ("the Blender side never imports torch at
module level") is about *when* an import runs, which import-linter's graph (every import statement
anywhere in a module) cannot express. Imports are read from the source (ast), never executed.

- pure never imports bpy or torch, anywhere, nor a module of another layer;
- neural never imports bpy, nor the Blender side or the UI;
- neural/ort (the ONNX Runtime backend) never imports torch or bpy, anywhere, nor the torch
  modules of neural/ (a Blender without torch poses sprites with it);
- the Blender side never imports torch at module level, directly or through a module it imports
  at module level (a render node without torch still renders baked frames);
- command modules and the package root import neither bpy nor torch at module level (`--help` stays
  instant; plain Python without Blender runs the commands that need none);
- `addon/` is the only UI: no operator, panel, property group, preferences class, handler or timer
  is defined or registered outside it, and nothing but the package root imports it. (A handler
  held for the length of one call, appended and removed in the same function, as the video
  render's frame counter, is that call's, not the UI's.)
"""

import ast
from pathlib import Path

import pytest

from shared_assets import ROOT

PACKAGE = "tha_studio"
BPY = {"bpy", "bpy_extras", "mathutils", "bmesh", "gpu", "aud", "addon_utils"}
TORCH = {"torch", "torchvision", "safetensors.torch"}

# Layer of each module, by the longest matching prefix of its dotted name.
LAYERS = {
    "pose": "pure",
    "lipsync": "pure",
    "render.formats": "pure",
    "render.dataset": "pure",
    "animation.core": "pure",
    "atomic_files": "pure",
    "input_files": "pure",
    "errors": "pure",
    "jobs": "pure",
    "json_text": "pure",
    "progress": "pure",
    "neural": "neural",
    "neural.ort": "runtime",
    "render.blender": "blender",
    "animation.blender": "blender",
    "addon": "ui",
    "": "root",  # the package root, cli glue and each package's __init__
}
COMMAND_MODULES = {"commands", "render.commands", "render.dataset_commands", "pose.commands", "neural.commands", "neural.train.commands", "lipsync.commands",
                   "animation.commands", "animation.talk_commands"}
UI_BASES = {"Operator", "Panel", "Menu", "UIList", "Header", "AddonPreferences", "PropertyGroup", "Gizmo",
            "GizmoGroup", "FileHandler"}
SKIP = {".venv", ".git", "tests", "bench", "scripts", "build", "dist", "out", "__pycache__"}


def layer_of(module):
    if module in COMMAND_MODULES:
        return "command"
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".") or not prefix),
               key=len)
    return LAYERS[best]


def package_modules(root=ROOT):
    """{dotted module name relative to the package: (path, is_package)} for every product module."""
    modules = {}
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if SKIP & set(relative.parts) or relative.name == "cli.py":
            continue
        parts = list(relative.with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = (path, is_package)
    return modules


class Import:
    def __init__(self, target, line, module_level, external, missing=None):
        self.target, self.line, self.module_level, self.external = target, line, module_level, external
        self.missing = missing  # a package module named by the import that does not exist


def imports_of(module, path, is_package, modules):
    """Every import in a module: its target (a package module or an external top-level name)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []

    def visit(node, module_level):
        for child in ast.iter_child_nodes(node):
            inner = module_level and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(_resolve_absolute(alias.name, child.lineno, module_level, modules))
            elif isinstance(child, ast.ImportFrom):
                found.extend(_resolve_from(module, is_package, child, module_level, modules))
            visit(child, inner)

    visit(tree, True)
    return found


def _resolve_absolute(name, line, module_level, modules):
    if name == PACKAGE or name.startswith(PACKAGE + "."):
        relative = name[len(PACKAGE) + 1:]
        return Import(_nearest_module(relative, modules), line, module_level, False,
                      None if relative in modules else relative)
    return Import(name, line, module_level, True)


def _resolve_from(module, is_package, node, module_level, modules):
    if node.level == 0:
        base = node.module or ""
        if not (base == PACKAGE or base.startswith(PACKAGE + ".")):
            return [Import(base, node.lineno, module_level, True)]
        base = base[len(PACKAGE) + 1:]
    else:
        parts = module.split(".") if module else []
        if not is_package:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
        base = ".".join(parts + ([node.module] if node.module else []))
    targets = []
    for alias in node.names:
        candidate = f"{base}.{alias.name}" if base else alias.name
        target = candidate if candidate in modules else _nearest_module(base, modules)
        targets.append(Import(target, node.lineno, module_level, False, None if base in modules else base))
    return targets


def _nearest_module(name, modules):
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name


def is_bpy(imp):
    return imp.external and imp.target.split(".")[0] in BPY


def is_torch(imp):
    return imp.external and (imp.target.split(".")[0] == "torch" or imp.target in TORCH)


class Graph:
    """The package's import graph, read from source."""

    def __init__(self, root=ROOT):
        self.modules = package_modules(root)
        self.imports = {name: imports_of(name, path, is_package, self.modules)
                        for name, (path, is_package) in self.modules.items()}

    def module_level_reach(self, start):
        """Modules and external names imported when `start` is imported (its module-level closure),
        with the chain that leads to each."""
        chains, todo = {start: [start]}, [start]
        while todo:
            current = todo.pop()
            for imp in self.imports.get(current, ()):
                if not imp.module_level:
                    continue
                key = ("ext", imp.target) if imp.external else imp.target
                # Importing a.b.c runs a/__init__ and a/b/__init__ too.
                if not imp.external:
                    parents = [".".join(imp.target.split(".")[:n]) for n in range(1, imp.target.count(".") + 1)]
                    for parent in parents:
                        if parent not in chains:
                            chains[parent] = chains[current] + [parent]
                            todo.append(parent)
                if key not in chains:
                    chains[key] = chains[current] + [imp.target]
                    if not imp.external:
                        todo.append(imp.target)
        return chains


def violations(root=ROOT):
    graph = Graph(root)
    problems = []
    for module, imports in sorted(graph.imports.items()):
        layer = layer_of(module)
        where = f"{graph.modules[module][0].relative_to(root)}"
        for imp in imports:
            if imp.missing is not None:
                problems.append(f"{where}:{imp.line}: imports {imp.missing}, which does not exist")
            other = None if imp.external else layer_of(imp.target)
            if layer == "pure" and (is_bpy(imp) or is_torch(imp)):
                problems.append(f"{where}:{imp.line}: pure module imports {imp.target}")
            if layer == "pure" and other in ("neural", "blender", "ui", "command"):
                problems.append(f"{where}:{imp.line}: pure module imports {imp.target} ({other} layer)")
            if layer == "neural" and (is_bpy(imp) or other in ("blender", "ui")):
                problems.append(f"{where}:{imp.line}: neural module imports {imp.target}")
            if layer == "runtime" and (is_bpy(imp) or is_torch(imp) or other in ("neural", "blender", "ui", "command")):
                problems.append(f"{where}:{imp.line}: ONNX Runtime module imports {imp.target}")
            if other == "ui" and layer not in ("ui", "root"):
                problems.append(f"{where}:{imp.line}: only the UI layer (addon/) and the package root import addon/")
        if layer in ("blender", "command", "root"):
            for key, chain in graph.module_level_reach(module).items():
                if isinstance(key, tuple) and (is_torch(Import(key[1], 0, True, True))
                                               or (layer != "blender" and is_bpy(Import(key[1], 0, True, True)))):
                    problems.append(f"{where}: imports {key[1]} at module level (through {' -> '.join(chain)})")
        if layer != "ui":
            problems.extend(f"{where}:{line}: {what} outside addon/ (the UI layer)"
                            for line, what in ui_definitions(graph.modules[module][0]))
    return problems


def ui_definitions(path):
    """Operators, panels, property groups, registrations, handlers and timers defined in a module
    (not a handler a function appends and removes again itself: it lasts that call)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    held = set()  # (line of an append) whose function also removes that handler from that list
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            calls = [n for n in ast.walk(function) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                     and ast.unparse(n.func.value).startswith("bpy.app.handlers.")]
            removed = {(ast.unparse(c.func.value), ast.unparse(c.args[0])) for c in calls
                       if c.func.attr == "remove" and c.args}
            held |= {c.lineno for c in calls if c.func.attr == "append" and c.args
                     and (ast.unparse(c.func.value), ast.unparse(c.args[0])) in removed}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Attribute) and base.attr in UI_BASES:
                    yield node.lineno, f"class {node.name}({base.attr})"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            dotted = ast.unparse(node.func)
            if dotted in ("bpy.utils.register_class", "bpy.app.timers.register") or (
                    dotted.startswith("bpy.app.handlers.") and node.func.attr == "append" and node.lineno not in held):
                yield node.lineno, dotted


def test_every_module_keeps_its_layer():
    problems = violations()
    assert not problems, "layer rules broken:\n" + "\n".join(problems)


def test_the_checker_sees_the_layers_it_guards():
    """The rules are only as good as the map: every product module is in a layer, and the
    layers hold what they should (a renamed folder would otherwise silently escape its rules)."""
    graph = Graph()
    layers = {name: layer_of(name) for name in graph.modules}
    assert layers["render.formats.mmd.pmx"] == "pure"
    assert layers["render.blender.model_import"] == "blender"
    assert layers["neural.poser"] == "neural"
    assert layers["neural.ort.poser"] == "runtime"
    assert layers["addon.import_model"] == "ui"
    assert layers["render.commands"] == "command"
    orphans = [name for name, layer in layers.items() if layer == "root" and name and graph.modules[name][1] is False
               and name not in ("atomic_files",)]
    assert not orphans, f"modules in no layer: {orphans}"


@pytest.mark.parametrize("source, rule", [
    ("import torch\n", "pure module imports torch"),
    ("def f():\n    import bpy\n", "pure module imports bpy"),
    ("from ..blender import model_import\n", "(blender layer)"),
    ("def f():\n    from .settingz import RenderSettings\n", "imports render.dataset.settingz, which does not exist"),
])
def test_a_broken_rule_is_reported(tmp_path, source, rule):
    """A copy of the package with one deliberate violation in a pure module fails the check."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*SKIP, "*.pyc"))
    (copy / "render" / "dataset" / "bad.py").write_text(source)
    problems = violations(copy)
    assert any("render/dataset/bad.py" in p and rule in p for p in problems), problems


def test_a_handler_outside_the_ui_is_reported_unless_one_call_holds_it(tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*SKIP, "*.pyc"))
    (copy / "render" / "blender" / "bad.py").write_text(
        "import bpy\n\n\ndef kept(h):\n    bpy.app.handlers.frame_change_post.append(h)\n\n\n"
        "def held(h):\n    bpy.app.handlers.render_post.append(h)\n    try:\n        pass\n"
        "    finally:\n        bpy.app.handlers.render_post.remove(h)\n\n\n"
        "def elsewhere(h):\n    bpy.app.handlers.render_post.append(h)\n    bpy.app.handlers.render_pre.remove(h)\n")
    problems = [p for p in violations(copy) if "render/blender/bad.py" in p]
    assert sorted(problems) == [
        "render/blender/bad.py:17: bpy.app.handlers.render_post.append outside addon/ (the UI layer)",
        "render/blender/bad.py:5: bpy.app.handlers.frame_change_post.append outside addon/ (the UI layer)",
    ], problems


def test_torch_reached_at_module_level_through_another_module_is_reported(tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*SKIP, "*.pyc"))
    (copy / "render" / "blender" / "bad.py").write_text("from ...neural import poser\n\n\ndef later():\n    import torch\n")
    problems = violations(copy)
    assert any("render/blender/bad.py: imports torch at module level (through render.blender.bad -> neural.poser"
               in p for p in problems), problems


def test_torch_anywhere_in_the_onnx_runtime_backend_is_reported(tmp_path):
    """Even a lazy import: the backend is what runs where torch is absent."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*SKIP, "*.pyc"))
    (copy / "neural" / "ort" / "bad.py").write_text("def later():\n    import torch\n    from .. import poser\n")
    problems = violations(copy)
    assert any("neural/ort/bad.py:2: ONNX Runtime module imports torch" in p for p in problems), problems
    assert any("neural/ort/bad.py:3: ONNX Runtime module imports neural.poser" in p for p in problems), problems
