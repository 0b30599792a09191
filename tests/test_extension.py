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


# What lip sync from audio needs inside each platform's wheels: libsndfile for soundfile, the
# compiled cffi backend and pocketsphinx decoder, and pocketsphinx's US English model.
LIP_SYNC_NATIVE = {
    "linux-x64": ("_soundfile_data/libsndfile_x86_64.so", "_cffi_backend.cpython-311-x86_64-linux-gnu.so",
                  "pocketsphinx/_pocketsphinx.cpython-311-x86_64-linux-gnu.so"),
    "windows-x64": ("_soundfile_data/libsndfile_x64.dll", "_cffi_backend.cp311-win_amd64.pyd",
                    "pocketsphinx/_pocketsphinx.cp311-win_amd64.pyd"),
    "macos-arm64": ("_soundfile_data/libsndfile_arm64.dylib", "_cffi_backend.cpython-311-darwin.so",
                    "pocketsphinx/_pocketsphinx.cpython-311-darwin.so"),
}
ENGLISH_MODEL = ("pocketsphinx/model/en-us/en-us/mdef", "pocketsphinx/model/en-us/en-us.lm.bin",
                 "pocketsphinx/model/en-us/en-us-phone.lm.bin", "pocketsphinx/model/en-us/cmudict-en-us.dict")


def test_each_zip_carries_lip_syncs_native_code_and_model_for_its_platform(extension_zips):
    assert set(LIP_SYNC_NATIVE) == PLATFORMS
    for platform, path in extension_zips.items():
        with zipfile.ZipFile(path) as archive:
            files = set()
            for member in archive.namelist():
                if member.endswith(".whl"):
                    with zipfile.ZipFile(archive.open(member)) as wheel:
                        files.update(wheel.namelist())
        for name in LIP_SYNC_NATIVE[platform] + ENGLISH_MODEL + ("soundfile.py", "typing_extensions.py",
                                                                  "pycparser/__init__.py"):
            assert name in files, (platform, name)
        others = {n for p, names in LIP_SYNC_NATIVE.items() if p != platform for n in names}
        assert not files & others, (platform, sorted(files & others))


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
    for package in ("onnxruntime", "PIL", "safetensors", "defusedxml", "flatbuffers", "packaging", "google/protobuf",
                    "pocketsphinx", "cffi", "pycparser", "_soundfile_data"):
        assert (site / package / "__init__.py").is_file(), package
    for module in ("soundfile.py", "_soundfile.py", "typing_extensions.py"):  # single-module distributions
        assert (site / module).is_file(), module
    assert list(site.glob("_cffi_backend.*")), "cffi's compiled backend (soundfile imports it)"
    assert (site / "pocketsphinx" / "model" / "en-us" / "en-us" / "mdef").is_file()
    assert str(site) in sys.path


def test_user_data_folder_is_outside_the_extension(ext_module):
    from pathlib import Path

    folder = Path(ext_module("addon.preferences").user_data_dir("weights"))
    package_dir = Path(ext_module("addon").__file__).parents[1]
    assert folder.is_dir()
    assert package_dir not in folder.parents
