"""Datasets the builder renders (with Blender, in a subprocess) for the training tests: rendered once
per test run and shared by its workers, small (2 models, few poses), since rendering is the slow part.

tha1_dataset: train/gene (Gene_light) and train/character (the project's procedural sample
character), 40 poses each; the tests validate on each model's last 8 poses (--hold-out 8),
since the builder keeps copies of one model in one split.
tha3_dataset: Gene_light at 512x512 for THA3, 12 poses.
"""

import pytest

from made_once import made_once
from train_datasets import THA1_POSES, THA3_POSES, cli, models_folder


@pytest.fixture(scope="session")
def tha1_dataset(shared, tmp_path_factory):
    def render(root):
        models = models_folder(root / "models", shared)
        cli("render-dataset", models, root / "dataset", "--poses-per-model", THA1_POSES, "--no-progress")

    return made_once(tmp_path_factory, "tha1_data", render) / "dataset"


@pytest.fixture(scope="session")
def tha3_dataset(shared, tmp_path_factory):
    def render(root):
        models = models_folder(root / "models", shared, character=False)
        cli("render-dataset", models, root / "dataset", "--schema", "tha3", "--poses-per-model", THA3_POSES,
            "--no-progress")

    return made_once(tmp_path_factory, "tha3_data", render) / "dataset"
