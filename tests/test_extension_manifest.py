"""The manifest says what the issue and Blender's platform require (parsed, not grepped)."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from shared_assets import ROOT  # the repository root


def manifest():
    return tomllib.loads((ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))


def test_identity_and_licence():
    m = manifest()
    assert m["id"] == "tha_studio"
    assert m["name"] == "THA Studio"
    assert m["type"] == "add-on"
    assert m["blender_version_min"] == "4.2.0"
    assert m["license"] == ["SPDX:GPL-3.0-or-later"]
    assert len(m["tagline"]) <= 64 and m["tagline"][-1].isalnum()


def test_files_permission_with_reason():
    permissions = manifest()["permissions"]
    assert set(permissions) == {"files"}, "no network, clipboard, camera or microphone use"
    reason = permissions["files"]
    assert 0 < len(reason) <= 64 and reason[-1].isalnum()


def test_build_excludes_development_files():
    excluded = manifest()["build"]["paths_exclude_pattern"]
    for pattern in ("__pycache__/", ".*", "/tests/", "/bench/", "/scripts/"):
        assert pattern in excluded


def test_tags_are_blenders():
    import importlib.util

    spec = importlib.util.find_spec("bpy")  # located, not imported: this test needs no Blender
    tags_file = Path(spec.submodule_search_locations[0]) / "5.0/scripts/modules/_bpy_internal/extensions/tags.py"
    tree = ast.parse(tags_file.read_text(encoding="utf-8"))
    known = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert set(manifest()["tags"]) <= known


def test_package_imports_without_bpy_or_torch():
    # The pure layers must import in a plain interpreter (render farms have no torch, trainers no Blender).
    code = (
        "import sys, cli; cli.load_package(); "
        "import tha_studio.commands, tha_studio.render.formats, tha_studio.render.dataset, tha_studio.pose.schema, tha_studio.lipsync; "
        "bad = [m for m in ('bpy', 'torch') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_subcommand_has_help():
    result = subprocess.run([sys.executable, "cli.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)
    from tha_studio.commands import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    assert sub.choices, "no subcommands"
    for name in sub.choices:
        result = subprocess.run(
            [sys.executable, "cli.py", name, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and "usage:" in result.stdout, (name, result.stderr)
