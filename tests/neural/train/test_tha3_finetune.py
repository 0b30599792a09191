"""Fine-tuning THA3 separable_float from the official weights on Gene_light renders: the face morpher's
validation RMSE on held-out poses goes down from the official weights' own figure, the other
networks stay as they were, and the result poses a picture through `cli.py pose`."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tha_studio.neural.train.trainer import TrainOptions, train
from tha_studio.neural.weights import open_weights

from train_datasets import cli
from worker_threads import THREADS

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def options(dataset, out, **changes):
    base = dict(dataset=str(dataset), out=str(out), family="tha3", base_weights="tha3", hold_out=4, batch_size=2,
                threads=THREADS, show_progress=False)
    return TrainOptions(**{**base, **changes})


def test_face_morpher_fine_tuning_lowers_held_out_rmse_from_the_official_figure(tha3_data, tha3_dataset, tmp_path):
    summary = train(options(tha3_dataset, tmp_path / "fm", network="face_morpher", steps=30))
    official, tuned = summary.first_validation["val_rmse"], summary.last_validation["val_rmse"]
    assert summary.first_validation["val_examples"] == 4
    print(f"THA3 face morpher, 30 steps: held-out RMSE official {official:.5f} -> fine-tuned {tuned:.5f}")
    assert tuned < 0.95 * official, (official, tuned)
    assert summary.last_validation["val_ssim"] > summary.first_validation["val_ssim"]
    with open(summary.log, newline="", encoding="utf-8") as handle:
        assert [r["step"] for r in csv.DictReader(handle) if r["val_rmse"]] == ["0", "30"]

    tuned_set = open_weights(summary.weights, family="tha3")
    official_set = open_weights("tha3")
    assert tuned_set.variant == "separable_float"
    for network, state in official_set.state_dicts.items():
        same = all(torch.equal(state[k], tuned_set.state_dicts[network][k]) for k in state)
        assert same == (network != "face_morpher"), network  # only the face morpher moved

    picture = next((tha3_dataset / "images" / "train").glob("Gene_light-*/rest.png"))
    posed = tmp_path / "posed.png"
    cli("pose", "--weights", summary.weights, "--image", picture, "--out", posed, "--device", "cpu",
        "mouth_aaa=1", "eye_wink_left=1")
    assert np.asarray(Image.open(posed)).shape == (512, 512, 4)


def test_face_body_rotator_fine_tunes_alone(tha3_data, tha3_dataset, tmp_path):
    summary = train(options(tha3_dataset, tmp_path / "rot", network="two_algo_face_body_rotator", steps=2,
                            validation_limit=2))
    tuned, official = load_file(summary.weights), open_weights("tha3").state_dicts
    changed = {key.split(".", 1)[0] for key, tensor in tuned.items()
               if not torch.equal(tensor, official[key.split(".", 1)[0]][key.split(".", 1)[1]])}
    assert changed == {"two_algo_face_body_rotator"}
    assert np.isfinite(summary.last_validation["val_rmse"])
