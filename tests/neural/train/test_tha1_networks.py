"""THA1's rotator and combiner (on the trained rotator's outputs), chained through each run's weights,
and the perceptual loss from an L1 snapshot with VGG16 weights from a file."""

import csv
import math

import pytest
import torch
from safetensors.torch import load_file

from tha_studio.neural.train.losses import LossError, PerceptualLoss, vgg16_features
from tha_studio.neural.train.trainer import TrainError, TrainOptions, train

from train_datasets import HOLD_OUT
from worker_threads import THREADS

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def options(dataset, out, **changes):
    base = dict(dataset=str(dataset), out=str(out), image_size=32, hold_out=HOLD_OUT, batch_size=2, steps=4,
                validation_limit=2, threads=THREADS, show_progress=False)
    return TrainOptions(**{**base, **changes})


def losses_of(run):
    with open(run / "log.csv", newline="", encoding="utf-8") as handle:
        return [float(r["train_loss"]) for r in csv.DictReader(handle) if r["train_loss"]]


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """A file shaped like torchvision's vgg16 state_dict (random weights: no real ones may be fetched)."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in vgg16_features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(8, 8)  # the rest of the file is ignored
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(state, path)
    return path


def test_rotator_then_combiner_on_its_outputs_then_perceptual_from_the_l1_snapshot(tha1_dataset, tmp_path, vgg16_file):
    rotator = train(options(tha1_dataset, tmp_path / "rot", network="two_algo_face_rotator", checkpoint_every=2))
    assert all(math.isfinite(v) for v in losses_of(tmp_path / "rot"))
    rotator_weights = load_file(rotator.weights)

    combiner = train(options(tha1_dataset, tmp_path / "comb", network="combiner", base_weights=str(rotator.weights)))
    combined = load_file(combiner.weights)
    # The combiner's file keeps the trained rotator (it ran frozen) and adds the trained combiner.
    for key, tensor in rotator_weights.items():
        if key.startswith("two_algo_face_rotator."):
            assert torch.equal(combined[key], tensor), key
    assert not torch.equal(combined["combiner.main_body.downward_modules.0.0.weight"],
                           rotator_weights["combiner.main_body.downward_modules.0.0.weight"])
    assert combiner.last_validation["val_rmse"] > 0

    snapshot = tmp_path / "rot" / "checkpoints" / "step-000000002.json"
    perceptual = train(options(tha1_dataset, tmp_path / "rot-p", network="two_algo_face_rotator", loss="perceptual",
                               vgg16_weights=str(vgg16_file), init_from=str(snapshot), steps=2))
    l1_only = losses_of(tmp_path / "rot")
    with_perceptual = losses_of(tmp_path / "rot-p")
    assert all(math.isfinite(v) for v in with_perceptual)
    assert with_perceptual[0] > l1_only[2]  # the L1 snapshot of step 2 continues, with the feature term added
    assert perceptual.steps == 2


def test_perceptual_loss_is_zero_for_equal_pictures_and_counts_alpha(vgg16_file):
    loss = PerceptualLoss(vgg16_file)
    image = torch.rand(1, 4, 32, 32) * 2 - 1
    assert float(loss([image], image)) == 0.0
    other = image.clone()
    other[:, 3] = -other[:, 3]  # only the alpha differs
    assert float(loss([other], image)) > 0


def test_perceptual_loss_needs_a_vgg16_file_and_an_l1_snapshot(tha1_dataset, tmp_path):
    with pytest.raises(TrainError, match="needs --vgg16-weights FILE"):
        train(options(tha1_dataset, tmp_path / "a", loss="perceptual"))
    with pytest.raises(TrainError, match="from an L1 snapshot"):
        train(options(tha1_dataset, tmp_path / "b", loss="perceptual", vgg16_weights="vgg16.pth"))
    not_vgg = tmp_path / "not_vgg.pth"
    torch.save({"weight": torch.zeros(3)}, not_vgg)
    with pytest.raises(LossError, match=rf"{not_vgg}: not a VGG16 state_dict \(no features.0.weight\)"):
        PerceptualLoss(not_vgg)
    with pytest.raises(LossError, match="no such VGG16 weights file"):
        PerceptualLoss(tmp_path / "missing.pth")


def test_bfloat16_autocast_trains_and_keeps_float32_weights(tha1_dataset, tmp_path):
    from tha_studio.neural.weights import open_weights

    summary = train(options(tha1_dataset, tmp_path / "bf16", precision="bfloat16", steps=2))
    assert all(math.isfinite(v) for v in losses_of(tmp_path / "bf16"))
    weights = open_weights(summary.weights, family="tha1")  # float32, the only THA1 variant
    assert weights.state_dicts["face_morpher"]["alpha_mask.0.weight"].dtype == torch.float32
    with pytest.raises(TrainError, match="float16 autocast needs a CUDA device"):
        train(options(tha1_dataset, tmp_path / "fp16", precision="float16"))


@pytest.mark.parametrize("change, message", [
    (dict(lr=math.nan), r"--lr nan: the learning rate must be a positive number"),  # was Adam's traceback
    (dict(lr=0.0), r"--lr 0: the learning rate"),
    (dict(jitter=math.nan), r"--jitter nan: the most RGB gain and offset change"),  # NaN pictures to learn from
    (dict(jitter=5.0), r"--jitter 5: .*from 0 to under 1"),  # gains below 0 invert colours
    (dict(perceptual_weight=math.inf), r"--perceptual-weight inf: must be 0 or a positive number"),
    (dict(validation_limit=-1), r"--validation-limit -1: must be 0 or more"),  # sliced off the last example
    (dict(workers=-1), r"--workers -1: must be 0 or more"),  # was the DataLoader's traceback
    (dict(threads=-1), r"--threads -1: must be 0 or more"),  # was torch's traceback
    (dict(workers=999), r"--workers 999: this machine lets this process use \d+ CPU"),  # 999 loader processes
    (dict(image_size=100), r"--image-size 100: must be a multiple of 8"),  # a shape mismatch deep in the network
])
def test_options_no_run_can_use_are_refused_before_any_work(tha1_dataset, tmp_path, change, message):
    with pytest.raises(TrainError, match=message):
        train(options(tha1_dataset, tmp_path / "run", **change))
    assert not (tmp_path / "run").exists()
