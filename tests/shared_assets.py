"""Where ../shared is, for tests (import this module; a test module must not import conftest,
which under pytest-xdist may resolve to another folder's conftest)."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("THA_STUDIO_SHARED", ROOT.parent / "shared"))


def shared_path(*parts):
    """A path under ../shared, or a skip naming what is missing (only where ../shared is absent)."""
    path = SHARED.joinpath(*parts)
    if not SHARED.is_dir():
        pytest.skip(f"../shared is absent ({SHARED}); this test needs {'/'.join(parts)}")
    assert path.exists(), f"{path} is missing from ../shared"
    return path
