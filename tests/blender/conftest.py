"""Blender tests: the extension built with Blender's own builder and installed from the zip.

This is what a user does (Edit > Preferences > Get Extensions > Install from Disk), so
registration, preferences and the user extension path behave as they do for them. The
installed package is `bl_ext.user_default.tha_studio`; tests reach its modules through the
`ext` fixture.
"""

import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REPO = "user_default"
EXTENSION_ID = "tha_studio"
PACKAGE = f"bl_ext.{REPO}.{EXTENSION_ID}"

import bpy  # noqa: E402  (after tests/conftest.py set BLENDER_USER_RESOURCES)
import addon_utils  # noqa: E402


def blender_ext_tool():
    """Blender's extension command line tool, shipped inside the bpy wheel."""
    scripts = Path(bpy.utils.system_resource("SCRIPTS"))
    tool = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    tags = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    assert tool.is_file(), tool
    return tool, tags


def build_extension(out_dir):
    """Validate and build the extension zip with Blender's own tool; return the zip's path."""
    tool, tags = blender_ext_tool()
    for command in (
        ["validate", str(ROOT), "--valid-tags", str(tags)],
        ["build", "--source-dir", str(ROOT), "--output-dir", str(out_dir), "--valid-tags", str(tags)],
    ):
        result = subprocess.run([sys.executable, str(tool), *command], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    (zip_path,) = Path(out_dir).glob(f"{EXTENSION_ID}-*.zip")
    return zip_path


@pytest.fixture(scope="session")
def extension_zip():
    return build_extension(tempfile.mkdtemp(prefix="tha_studio_build_"))


@pytest.fixture(scope="session")
def ext(extension_zip):
    """The installed and enabled extension package (bl_ext.user_default.tha_studio)."""
    if PACKAGE not in sys.modules:
        result = bpy.ops.extensions.package_install_files(
            filepath=str(extension_zip), repo=REPO, enable_on_install=True
        )
        assert result == {"FINISHED"}, result
    module = importlib.import_module(PACKAGE)
    assert PACKAGE in bpy.context.preferences.addons, "the extension did not enable"
    yield module


@pytest.fixture
def ext_module(ext):
    """ext_module("render.blender_import") -> the installed extension's module."""
    return lambda name: importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture(autouse=True)
def empty_scene(ext):
    # Not read_factory_settings: it disables extension add-ons (reference/blender.md §0.4).
    bpy.ops.wm.read_homefile(use_empty=True)
    yield


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/blender/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.blender)
