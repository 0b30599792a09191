"""Blender-side tests: every test runs with the installed extension, on an empty scene."""

import pytest


@pytest.fixture(autouse=True)
def blender_scene(empty_scene):
    yield
