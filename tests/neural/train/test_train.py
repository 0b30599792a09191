"""Training THA1's face morpher on a dataset the builder rendered from Gene_light and the sample
character: it learns, its weights pose a picture through `cli.py pose`, a run killed with SIGKILL
resumes to the same weights, and bad checkpoints and datasets are refused clearly."""

import csv
import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from shared_assets import ROOT
from train_datasets import HOLD_OUT, cli
from worker_threads import THREADS

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def train_args(dataset, out, *extra, size=64):
    return ["train", dataset, out, "--image-size", size, "--hold-out", HOLD_OUT, "--threads", THREADS, "--no-progress",
            *extra]


def read_log(run):
    with open(run / "log.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_face_morpher_learns_and_its_weights_pose_a_picture(tha1_dataset, tmp_path):
    run = tmp_path / "run"
    result = cli(*train_args(tha1_dataset, run, "--steps", "120", "--batch-size", "4", "--validate-every", "60"))
    rows = read_log(run)
    validations = [r for r in rows if r["val_rmse"]]
    assert [int(r["step"]) for r in validations] == [0, 60, 120]
    untrained, trained = float(validations[0]["val_rmse"]), float(validations[-1]["val_rmse"])
    identity = float(validations[0]["identity_rmse"])
    losses = [float(r["train_loss"]) for r in rows if r["train_loss"]]
    assert len(losses) == 120
    assert np.mean(losses[-20:]) < 0.2 * np.mean(losses[:20])  # the training loss falls
    print(f"THA1 face morpher, 120 steps at 64x64: validation RMSE untrained {untrained:.5f}, identity "
          f"{identity:.5f}, trained {trained:.5f}; loss {np.mean(losses[:20]):.4f} -> {np.mean(losses[-20:]):.4f}")
    assert trained < identity < untrained  # better than returning the input, and than no training
    assert float(validations[-1]["val_ssim"]) > float(validations[-1]["identity_ssim"])
    assert f"validation RMSE {trained:.5f}" in result.stdout
    for step in (0, 60, 120):  # inputs, outputs and targets of the first validation examples
        grid = np.asarray(Image.open(run / "grids" / f"step-{step:09d}.png"))
        assert grid.shape == (3 * 128, 4 * 128, 4)  # 64-pixel pictures enlarged to be seen
    assert all(float(r["examples_per_s"]) > 0 for r in rows if r["train_loss"])

    # The weights hold every THA1 network (the trained face morpher among them) and pose a picture.
    picture = next((tha1_dataset / "images" / "train").glob("Gene_light-*/rest.png"))
    posed = tmp_path / "posed.png"
    cli("pose", "--weights", run / "weights.safetensors", "--image", picture, "--out", posed, "--device", "cpu",
        "mouth=0", "left_eye=1")
    image = np.asarray(Image.open(posed))
    assert image.shape == (256, 256, 4) and image[..., 3].any()


def start_train(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_run_killed_mid_epoch_resumes_to_the_weights_of_an_uninterrupted_run(tha1_dataset, tmp_path):
    # 64 training examples at batch 2: 32 steps an epoch; killed after the checkpoint of step 8. At
    # 32x32: what is resumed is the same at any size, and a step takes a quarter of the time.
    args = ("--steps", "40", "--batch-size", "2", "--checkpoint-every", "8", "--validation-limit", "2",
            "--deterministic", "--seed", "3")
    whole = tmp_path / "whole"
    cli(*train_args(tha1_dataset, whole, *args, size=32))

    killed = tmp_path / "killed"
    process = start_train(*train_args(tha1_dataset, killed, *args, size=32))
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if (killed / "checkpoints" / "step-000000008.json").exists():
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "weights.safetensors").exists(), "the run ended before it was killed"
    steps = sorted(p.name for p in (killed / "checkpoints").glob("*.json"))
    assert steps and steps[-1] < "step-000000032.json"  # within the first epoch

    cli(*train_args(tha1_dataset, killed, *args, size=32))
    assert_same_weights(killed / "weights.safetensors", whole / "weights.safetensors")
    losses = {r["step"]: r["train_loss"] for r in read_log(whole) if r["train_loss"]}
    resumed = {r["step"]: r["train_loss"] for r in read_log(killed) if r["train_loss"]}
    resumed_steps = [r["step"] for r in read_log(killed) if r["train_loss"]]
    assert resumed_steps == [str(step) for step in range(1, 41)]  # each step logged once
    assert resumed == losses  # the same losses step by step


def assert_same_weights(path, other):
    """Every tensor bit for bit (the files' bytes may differ: safetensors writes its metadata in any order)."""
    from safetensors.torch import load_file

    one, two = load_file(path), load_file(other)
    assert one.keys() == two.keys()
    for key in one:
        assert one[key].dtype == two[key].dtype and one[key].view(-1).view(torch.int32).equal(
            two[key].view(-1).view(torch.int32)), key


def train_error(*args):
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stderr


def test_bad_runs_are_refused_clearly(tha1_dataset, tmp_path):
    run = tmp_path / "run"
    cli(*train_args(tha1_dataset, run, "--steps", "2", "--batch-size", "2", "--validation-limit", "2"))
    # A checkpoint of another network in the run folder.
    error = train_error(*train_args(tha1_dataset, run, "--steps", "4", "--batch-size", "2", "--network",
                                    "two_algo_face_rotator"))
    assert f"{run / 'checkpoints' / 'step-000000002.json'}: a checkpoint of tha1.face_morpher, not of " \
           "tha1.two_algo_face_rotator" in error
    # Other options than the run was started with.
    error = train_error(*train_args(tha1_dataset, run, "--steps", "4", "--batch-size", "4"))
    assert "this run was started with other options: batch_size 2 (now 4)" in error
    # A dataset made for THA1 given to a THA3 trainer.
    error = train_error("train", tha1_dataset, tmp_path / "t3", "--family", "tha3", "--base-weights", "tha3")
    assert f"{tha1_dataset}: this dataset was made for THA1" in error
    # A network THA1 does not have; the combiner without a trained rotator.
    assert "cannot train THA1 'editor'" in train_error(*train_args(tha1_dataset, tmp_path / "e", "--network", "editor"))
    error = train_error(*train_args(tha1_dataset, tmp_path / "c", "--network", "combiner"))
    assert "training tha1.combiner needs a trained two_algo_face_rotator: give --base-weights" in error
    # A hand-edited checkpoint record: named, with how to resume from the one before.
    record = run / "checkpoints" / "step-000000002.json"
    record.write_text(record.read_text(encoding="utf-8").replace('"step": 2', '"step": "2"'), encoding="utf-8")
    error = train_error(*train_args(tha1_dataset, run, "--steps", "4", "--batch-size", "2", "--validation-limit", "2"))
    assert f"{record}: a damaged checkpoint (step '2' is not a step number); to resume from the checkpoint before " \
           "it, delete step-000000002.json and its .safetensors" in error


def test_a_resumed_run_trims_a_log_damaged_past_its_text(tmp_path):
    # A resume keeps the log's lines up to its checkpoint's step; a log with bytes that are not
    # UTF-8 stopped it on a UnicodeDecodeError. The damaged line is dropped.
    from tha_studio.neural.train.trainer import keep_lines_up_to

    log = tmp_path / "train_log.csv"
    log.write_bytes(b"step,loss\n1,0.5\n2,0.4\n\xff\xfe,0.3\n3,0.3\n4,0.2\n")
    keep_lines_up_to(log, 2)
    assert log.read_bytes() == b"step,loss\n1,0.5\n2,0.4\n"


@pytest.mark.parametrize("damage", [b"\xff\xfe{\0\"\0", b"[]", b"{"])
def test_a_damaged_checkpoint_record_is_named(tmp_path, damage):
    from tha_studio.neural.train import checkpoint

    record = tmp_path / "step-000000002.json"
    record.write_bytes(damage)  # binary bytes were a UnicodeDecodeError traceback
    with pytest.raises(checkpoint.CheckpointError, match="step-000000002.json: not a (readable|THA Studio)"):
        checkpoint.read(record)


@pytest.mark.parametrize("damage, problem", [
    (lambda r: r.pop("tensors"), "a damaged checkpoint (no tensors file and sha256)"),
    (lambda r: r["tensors"].update(file="../../elsewhere.safetensors"), "tensors file '../../elsewhere.safetensors' is not"),
    (lambda r: r.update(rng={"numpy": [1, 2]}), "a damaged checkpoint (no random number generator states)"),
    (lambda r: r.update(optimizer_param_groups="x"), "a damaged checkpoint (no optimizer parameter groups)"),
    (lambda r: r.update(optimizer_param_groups=[]), "its optimizer, scheduler or random states cannot be restored "
                                                    "(ValueError: loaded state dict has a different number"),
    (lambda r: r["rng"].update(python=["x", [1, 2], None]), "its optimizer, scheduler or random states cannot be"),
])
def test_a_hand_edited_checkpoint_is_named_not_a_traceback(tmp_path, damage, problem):
    import torch

    from tha_studio.neural.train import checkpoint

    def model_and_optimizer():
        model = torch.nn.Linear(3, 2)
        return model, torch.optim.Adam(model.parameters(), 1e-3)

    model, optimizer = model_and_optimizer()
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    path = checkpoint.save(tmp_path, 2, 0, "test.linear", {"resume": {}}, model, optimizer)
    record = json.loads(path.read_text(encoding="utf-8"))
    damage(record)
    path.write_text(json.dumps(record), encoding="utf-8")
    model, optimizer = model_and_optimizer()
    with pytest.raises(checkpoint.CheckpointError) as raised:
        checkpoint.restore(*checkpoint.read(path, "test.linear"), model, optimizer, source=str(path))
    assert str(raised.value).startswith(f"{path}: ") and problem in str(raised.value)
