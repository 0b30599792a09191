"""The dataset reader on a folder the builder rendered: examples, schema check, bad images, augmentation."""

import json
import shutil
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from tha_studio.neural.train.data import (Augmentation, BadImageError, DatasetFolderError, TripletDataset,
                                          collate_batch, mirror_permutation)
from tha_studio.pose.character_image import to_network
from tha_studio.pose.schema import get_schema

from train_datasets import HOLD_OUT, THA1_POSES

pytestmark = [pytest.mark.slow, pytest.mark.shared]


def manifest_examples(folder):
    lines = (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == "example"]


def test_items_are_the_manifests_examples_as_network_images(tha1_dataset):
    data = TripletDataset(tha1_dataset, "tha1")
    records = manifest_examples(tha1_dataset)
    assert len(data) == len(records) == 2 * THA1_POSES
    item = data[3]
    assert item["pose"].tolist() == pytest.approx(records[3]["pose"])
    expected = to_network(np.asarray(Image.open(tha1_dataset / records[3]["expression"]).convert("RGBA")))
    assert torch.equal(item["expression"], torch.from_numpy(expected))
    assert item["rest"].shape == item["posed"].shape == (4, 256, 256)
    assert data.config.schema == "tha1"
    small = TripletDataset(tha1_dataset, "tha1", roles=("rest", "expression"), image_size=64)[3]
    assert set(small) == {"rest", "expression", "pose", "index"} and small["rest"].shape == (4, 64, 64)


def test_held_out_poses_are_the_validation_examples(tha1_dataset):
    train = TripletDataset(tha1_dataset, "tha1", "train", hold_out=HOLD_OUT)
    validation = TripletDataset(tha1_dataset, "tha1", "validation", hold_out=HOLD_OUT)
    assert len(train) == 2 * (THA1_POSES - HOLD_OUT) and len(validation) == 2 * HOLD_OUT
    train_keys = {(e.model, e.index) for e in train.examples}
    assert not train_keys & {(e.model, e.index) for e in validation.examples}
    with pytest.raises(DatasetFolderError, match="no validation examples"):
        TripletDataset(tha1_dataset, "tha1", "validation")  # both models are in train/


def test_a_dataset_made_for_another_schema_is_refused_naming_the_folder(tha1_dataset):
    with pytest.raises(DatasetFolderError, match=rf"{tha1_dataset}: this dataset was made for THA1 .*mouth=1.*"
                                                 r"not for THA3 \(neutral\)"):
        TripletDataset(tha1_dataset, "tha3")
    with pytest.raises(DatasetFolderError, match="not a THA Studio dataset folder"):
        TripletDataset(tha1_dataset / "images", "tha1")


@pytest.fixture
def damaged(tha1_dataset, tmp_path):
    """A copy of the dataset with one expression image missing and one posed image corrupt."""
    copy = tmp_path / "damaged"
    shutil.copytree(tha1_dataset, copy, symlinks=True)
    records = manifest_examples(copy)
    (copy / records[1]["expression"]).unlink()
    corrupt = copy / records[2]["posed"]
    corrupt.write_bytes(corrupt.read_bytes()[:-40] + bytes(40))
    return copy, records


def test_a_missing_or_corrupt_image_is_named_and_fatal_or_skipped(damaged, capsys):
    copy, records = damaged
    fatal = TripletDataset(copy, "tha1")
    with pytest.raises(BadImageError, match=rf"{copy / records[1]['expression']}: missing"):
        fatal[1]
    with pytest.raises(BadImageError, match=rf"{copy / records[2]['posed']}: corrupt"):
        fatal[2]
    skipping = TripletDataset(copy, "tha1", on_bad="skip")
    batch = collate_batch([skipping[i] for i in range(4)])
    assert batch["index"].tolist() == [0, 3]
    assert str(copy / records[1]["expression"]) in capsys.readouterr().err
    assert collate_batch([skipping[1]]) is None


def test_an_image_declaring_billions_of_pixels_is_named_not_decoded(tha1_dataset, tmp_path):
    """Without the manifest's digests (verify=False) a decompression bomb reaches the decoder."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    copy = tmp_path / "bombed"
    shutil.copytree(tha1_dataset, copy, symlinks=True)
    posed = copy / manifest_examples(copy)[0]["posed"]
    posed.unlink()  # (the copy's images may be links into the shared dataset)
    posed.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 6, 0, 0, 0))
                      + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    with pytest.raises(BadImageError, match=rf"{posed}: not a readable PNG .*exceeds limit"):
        TripletDataset(copy, "tha1", verify=False)[0]


@pytest.mark.parametrize("change, problem", [
    (lambda r: r["pose"].__setitem__(0, float("nan")), r"the pose holds a value that is not a finite number"),
    (lambda r: r.__setitem__("pose", r["pose"][:2]), r"the pose has 2 values; THA1 poses have 6"),
    (lambda r: r["pose"].__setitem__(0, 50.0), r"the pose has head_x=50, outside THA1's ranges"),
    (lambda r: r.__setitem__("posed", "../../../etc/passwd"), r"image path '../../../etc/passwd' leaves the dataset folder"),
    (lambda r: r.pop("expression"), r"no 'expression'"),
])
def test_a_damaged_manifest_line_is_named_before_training_on_it(tha1_dataset, tmp_path, change, problem):
    """Hand-edited or damaged lines trained on NaN (weights gone NaN), on poses no renderer made, or
    read files outside the dataset; a short pose ended in a traceback from the network."""
    copy = tmp_path / "edited"
    shutil.copytree(tha1_dataset, copy, symlinks=True)
    manifest = copy / "manifest.jsonl"
    manifest.unlink()  # (the copy's files may be links into the shared dataset)
    lines = (tha1_dataset / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    number = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "example")
    record = json.loads(lines[number])
    change(record)
    lines[number] = json.dumps(record)
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DatasetFolderError, match=rf"{manifest}: line {number + 1}: {problem}"):
        TripletDataset(copy, "tha1")


def test_workers_load_the_same_batches(tha1_dataset):
    data = TripletDataset(tha1_dataset, "tha1", image_size=32)
    batches = [list(torch.utils.data.DataLoader(data, batch_size=8, num_workers=w, collate_fn=collate_batch))
               for w in (0, 2)]
    for one, other in zip(*batches):
        assert all(torch.equal(one[k], other[k]) for k in ("rest", "expression", "posed", "pose"))


def test_augmentation_is_off_by_default_and_keeps_the_conventions(tha1_dataset):
    plain = TripletDataset(tha1_dataset, "tha1")
    flipped = TripletDataset(tha1_dataset, "tha1", augmentation=Augmentation(flip=True))
    jittered = TripletDataset(tha1_dataset, "tha1", augmentation=Augmentation(jitter=0.1))
    schema = get_schema("tha1")
    flips = 0
    for index in range(8):
        base, mirrored = plain[index], flipped[index]
        if torch.equal(base["posed"], mirrored["posed"]):
            assert torch.equal(base["pose"], mirrored["pose"])
            continue
        flips += 1
        for role in ("rest", "expression", "posed"):
            assert torch.equal(mirrored[role], base[role].flip(-1))
        pose, mirrored_pose = schema.as_dict(base["pose"].numpy()), schema.as_dict(mirrored["pose"].numpy())
        assert mirrored_pose["left_eye"] == pose["right_eye"] and mirrored_pose["right_eye"] == pose["left_eye"]
        assert mirrored_pose["head_y"] == -pose["head_y"] and mirrored_pose["neck_z"] == -pose["neck_z"]
        assert mirrored_pose["head_x"] == pose["head_x"] and mirrored_pose["mouth"] == pose["mouth"]
    assert 0 < flips < 8
    for index in range(3):
        base, changed = plain[index], jittered[index]
        for role in ("rest", "expression", "posed"):
            assert torch.equal(changed[role][3], base[role][3])  # alpha untouched
            transparent = base[role][3] == -1
            assert (changed[role][:3, transparent] == -1).all()  # RGB stays zero where alpha is zero
            assert not torch.equal(changed[role][:3], base[role][:3])
    assert torch.equal(jittered[0]["rest"], jittered[0]["rest"])  # the same example, the same jitter


def test_mirror_permutation_of_tha3_swaps_pairs():
    schema = get_schema("tha3")
    order, signs = mirror_permutation(schema)
    names = schema.names
    assert names[order[schema.index("eye_wink_left")]] == "eye_wink_right"
    assert names[order[schema.index("mouth_raised_corner_right")]] == "mouth_raised_corner_left"
    assert signs[schema.index("body_y")] == -1 and signs[schema.index("iris_rotation_x")] == 1
    assert sorted(order) == list(range(schema.size))
