"""The extension builds with Blender's tools, installs from its zip and registers."""

import zipfile

import bpy


def test_zip_leaves_out_development_files(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    for dev in ("tests/", "bench/", "scripts/", ".ci/", ".venv/", ".git/"):
        assert not any(name.startswith(dev) for name in names), dev


def test_installed_and_enabled(ext):
    prefs = bpy.context.preferences.addons[ext.__name__].preferences
    assert prefs.device == "AUTO"


def test_user_data_folder_is_outside_the_extension(ext_module):
    from pathlib import Path

    folder = Path(ext_module("addon.preferences").user_data_dir("weights"))
    package_dir = Path(ext_module("addon").__file__).parents[1]
    assert folder.is_dir()
    assert package_dir not in folder.parents
