"""The extension builds with Blender's tools, one zip per platform, each with its own platform's
wheels; this platform's zip installs, unpacks its wheels and registers."""

import hashlib
import sys
import tomllib
import zipfile
from pathlib import Path

import bpy

from test_extension_manifest import PLATFORMS, fetch_wheels, manifest, wheel_platforms


def test_zip_leaves_out_development_files(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    assert "blender_manifest.toml" in names and "__init__.py" in names
    for dev in ("tests/", "bench/", "scripts/", ".ci/", ".venv/", ".git/"):
        assert not any(name.startswith(dev) for name in names), dev


def test_one_zip_per_platform_named_by_blenders_tool(extension_zips):
    assert set(extension_zips) == PLATFORMS
    for platform, path in extension_zips.items():
        assert path.name == f"tha_studio-{manifest()['version']}-{platform.replace('-', '_')}.zip"


def test_each_zip_holds_exactly_its_platforms_pinned_wheels(extension_zips):
    pinned = fetch_wheels().WHEELS
    for platform, path in extension_zips.items():
        with zipfile.ZipFile(path) as archive:
            wheels = {Path(n).name: n for n in archive.namelist() if n.endswith(".whl")}
            assert set(wheels) == {name for name in pinned if platform in wheel_platforms(name)}, platform
            assert all(n == f"wheels/{name}" for name, n in wheels.items())
            for name, member in wheels.items():
                assert hashlib.sha256(archive.read(member)).hexdigest() == pinned[name], (platform, name)
            generated = tomllib.loads(archive.read("blender_manifest.toml").decode())["build"]["generated"]
        assert generated["platforms"] == [platform]
        assert sorted(generated["wheels"]) == sorted(f"./{n}" for n in wheels.values())


def test_the_ort_graph_templates_ship(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()
    shipped = {Path(n).name for n in names if n.startswith("neural/ort/graphs/")}
    in_tree = {p.name for p in (Path(__file__).parents[1] / "neural" / "ort" / "graphs").iterdir() if p.is_file()}
    assert shipped == in_tree and any(n.endswith(".onnx") for n in shipped)


def test_installed_and_enabled(ext):
    prefs = bpy.context.preferences.addons[ext.__name__].preferences
    assert prefs.device == "AUTO"


def test_install_unpacks_the_wheels_into_blenders_extension_site_packages(ext):
    site = (Path(bpy.utils.user_resource("EXTENSIONS")) / ".local" / "lib"
            / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages")
    for package in ("onnxruntime", "PIL", "safetensors", "defusedxml", "flatbuffers", "packaging", "google/protobuf"):
        assert (site / package / "__init__.py").is_file(), package
    assert str(site) in sys.path


def test_user_data_folder_is_outside_the_extension(ext_module):
    from pathlib import Path

    folder = Path(ext_module("addon.preferences").user_data_dir("weights"))
    package_dir = Path(ext_module("addon").__file__).parents[1]
    assert folder.is_dir()
    assert package_dir not in folder.parents
