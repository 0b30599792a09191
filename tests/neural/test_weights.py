"""Weight sources: the tha3 package, official folders, our safetensors; refusals with clear messages."""

import pickle
import re
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from tha_studio.neural import tha3
from tha_studio.neural.synthetic import norm_parameter_names, synthetic_state_dict
from tha_studio.neural.weights import (
    WeightsError,
    WeightSet,
    check_state_dict,
    identify_variants,
    load_pt,
    open_weights,
    save_safetensors,
    tha3_package_data,
)


def test_package_data_is_found_without_importing_the_package(tha3_data):
    import sys

    assert tha3_package_data() == tha3_data
    assert "tha3" not in sys.modules


def test_package_weights_open_as_separable_float(tha3_data):
    weights = open_weights("tha3")
    assert (weights.family, weights.variant) == ("tha3", "separable_float")
    assert set(weights.state_dicts) == set(tha3.NETWORKS)
    assert weights.sources["editor"] == tha3_data / "models/separable_float/editor.pt"
    # The package's data folder itself and its variant folder work too.
    assert open_weights(tha3_data).variant == "separable_float"
    assert open_weights(tha3_data / "models/separable_float").family == "tha3"


class CreatesAFile:
    """A pickle payload: unpickling it would create a file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "editor.pt"
    torch.save({"body.weight": CreatesAFile(marker)}, evil)
    with pytest.raises(WeightsError, match=r"editor\.pt: refused: .*could run code") as error:
        load_pt(evil)
    assert not marker.exists()
    # What was refused, without PyTorch's advice to load the file unsafely.
    assert "GLOBAL io.open was not an allowed global" in str(error.value)
    assert "weights_only` set to `False`" not in str(error.value)
    # A plain pickle file (not torch's zip format) with the same payload is refused too.
    plain = tmp_path / "face_morpher.pt"
    plain.write_bytes(pickle.dumps(CreatesAFile(marker)))
    with pytest.raises(WeightsError, match="face_morpher.pt"):
        load_pt(plain)
    assert not marker.exists()


class StridedView:
    """A pickle payload: a tensor rebuilt with any offset, shape and strides over a storage."""

    def __init__(self, storage, offset, shape, stride):
        self.args = (storage, offset, shape, stride)

    def __reduce__(self):
        from collections import OrderedDict

        import torch._utils

        return (torch._utils._rebuild_tensor_v2, (*self.args, False, OrderedDict()))


@pytest.mark.parametrize("offset, shape, stride, problem", [
    (-4, (16,), (1,), "a tensor with offset -4, shape (16,) and strides (1,), which is no view of a storage"),
    (15, (16,), (-1,), "which is no view of a storage"),  # read memory before the storage
    (0, (1 << 34,), (0,), r"a tensor of shape (17179869184,) reaches past its storage"),  # a 64 GB copy
])
def test_a_tensor_that_is_no_view_inside_its_storage_is_refused_without_torch(tmp_path, offset, shape, stride, problem):
    from tha_studio.neural.ort.pt_reader import PtFileError, read_state_dict

    path = tmp_path / "editor.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (TypedStorage is deprecated)
        storage = torch.arange(16, dtype=torch.float32).storage()
    torch.save({"w": StridedView(storage, offset, shape, stride)}, path)
    with pytest.raises(PtFileError) as raised:
        read_state_dict(path)
    assert str(raised.value).startswith(f"{path}: ") and problem in str(raised.value)
    torch.save({"w": StridedView(storage, 4, (2, 3), (3, 1))}, path)  # a plain view is read
    assert read_state_dict(path)["w"].tolist() == [[4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]


def pickle_in_archive(path, data_pkl):
    """A torch.save archive of an empty state_dict whose data.pkl is replaced by these bytes."""
    import zipfile

    torch.save({}, path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data_pkl if name.endswith("/data.pkl") else data)


# Pickles a damaged data.pkl can become (each found by flipping bytes of the official files).
DAMAGED_PICKLES = {
    "an append to what is not a list": b"\x80\x02X\x01\x00\x00\x00aX\x01\x00\x00\x00ba.",
    "a length past memory": b"\x80\x02X" + (2**32 - 16).to_bytes(4, "little") + b"a.",
    "an unknown opcode": b"\x80\x02\xff.",
}


@pytest.mark.parametrize("reader", ["torch", "without torch"])
@pytest.mark.parametrize("damage", DAMAGED_PICKLES)
def test_a_damaged_pickle_is_named_by_either_reader(tmp_path, reader, damage):
    from tha_studio.neural.ort.poser import read_pt

    path = tmp_path / "editor.pt"
    pickle_in_archive(path, DAMAGED_PICKLES[damage])
    with pytest.raises(WeightsError, match=rf"^{re.escape(str(path))}: not a readable PyTorch weights file \(.+\)$"):
        (load_pt if reader == "torch" else read_pt)(path)


def test_not_a_weights_file_is_named(tmp_path):
    junk = tmp_path / "eyebrow_decomposer.pt"
    junk.write_text("hello")
    with pytest.raises(WeightsError, match=r"eyebrow_decomposer.pt: not a PyTorch weights file \(it starts with b'hello'\)"):
        load_pt(junk)
    junk.write_bytes(b"")
    with pytest.raises(WeightsError, match=r"eyebrow_decomposer.pt: not a PyTorch weights file \(it is empty\)"):
        load_pt(junk)
    with pytest.raises(WeightsError, match="no such weights file"):
        load_pt(tmp_path / "missing.pt")


def copy_of_package_file(tha3_data, tmp_path, network):
    copy = tmp_path / f"{network}.pt"
    shutil.copy(tha3_data / "models/separable_float" / f"{network}.pt", copy)
    return copy


@pytest.mark.parametrize("reader", ["torch", "without torch"])
def test_damaged_weight_files_are_named_not_posed_with(reader, tha3_data, tmp_path):
    """A copy cut short, a flipped byte (which torch.load does not notice: zip checksums are not
    checked) and NaN values (which load fine and blank every frame) are all refused by name."""
    import zipfile

    from tha_studio.neural.ort.poser import read_pt

    read = load_pt if reader == "torch" else read_pt
    editor = copy_of_package_file(tha3_data, tmp_path, "editor")
    data = bytearray(editor.read_bytes())
    editor.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"editor\.pt: cut short or damaged"):
        read(editor)
    with zipfile.ZipFile(tha3_data / "models/separable_float/editor.pt") as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    data[member.header_offset + 30 + len(member.filename) + member.file_size // 2 + 64] ^= 0x01  # one bit
    editor.write_bytes(data)
    with pytest.raises(WeightsError, match=rf"editor\.pt: damaged: the bytes of {member.filename} do not match"):
        read(editor)

    # As a zip bomb's: the archive's directory declares 3 GiB for a member. A real bomb holds them,
    # compressed, and both readers unpacked them (for the checksums, then the tensors); refused
    # now from the directory, before anything is unpacked.
    bomb = copy_of_package_file(tha3_data, tmp_path, "editor")
    data = bytearray(bomb.read_bytes())
    with zipfile.ZipFile(bomb) as archive:
        record = archive.start_dir
        for info in archive.infolist():  # central directory records, in order
            if info.filename == member.filename:
                data[record + 24 : record + 28] = (3 * 2**30).to_bytes(4, "little")  # its unpacked size
            record += 46 + len(info.filename.encode()) + len(info.extra) + len(info.comment)
    bomb.write_bytes(data)
    with pytest.raises(WeightsError, match=r"editor\.pt: its archive unpacks to 3\.0 GiB, more than the 2 GiB"):
        read(bomb)

    state = read(copy_of_package_file(tha3_data, tmp_path, "editor"))
    key = next(iter(state))
    state[key][(0,) * state[key].ndim] = float("nan")
    with pytest.raises(WeightsError, match=rf"x\.pt: editor key '{key}' holds NaN or infinite values"):
        check_state_dict(state, "tha3", "editor", "separable_float", "x.pt")


@pytest.mark.parametrize("reader", ["torch", "without torch"])
@pytest.mark.parametrize("damage, problem", [
    ("version", r"zip file version 25\.5"),  # a version zipfile lacks: NotImplementedError
    ("encrypted", r"is encrypted"),  # a member's encryption flag set: RuntimeError
])
def test_a_damaged_archive_directory_is_named(reader, tha3_data, tmp_path, damage, problem):
    """Bytes flipped in the zip directory of a weights file went through as tracebacks."""
    from tha_studio.neural.ort.poser import read_pt

    path = copy_of_package_file(tha3_data, tmp_path, "eyebrow_decomposer")
    data = bytearray(path.read_bytes())
    record = data.index(b"PK\x01\x02")  # the first member's central directory record
    if damage == "version":
        data[record + 6] = 255
    else:
        data[record + 8] |= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=rf"eyebrow_decomposer\.pt: damaged: its zip archive cannot be read \(.*{problem}"):
        (load_pt if reader == "torch" else read_pt)(path)


def test_wrong_variant_is_named():
    standard = tha3.build_network("eyebrow_decomposer", "standard_float").state_dict()
    assert identify_variants("tha3", "eyebrow_decomposer", standard) == ["standard_float"]
    with pytest.raises(WeightsError, match="x.pt: this is a THA3 standard_float eyebrow_decomposer file, but separable_float was expected"):
        check_state_dict(standard, "tha3", "eyebrow_decomposer", "separable_float", "x.pt")
    half = {k: v.half() for k, v in tha3.build_network("editor", "separable_float").state_dict().items()}
    with pytest.raises(WeightsError, match="separable_half editor file, but separable_float"):
        check_state_dict(half, "tha3", "editor", "separable_float", "x.pt")


def test_a_shape_mismatch_names_file_key_and_both_shapes():
    state = tha3.build_network("editor", "separable_float").state_dict()
    state["alpha_creator.0.weight"] = torch.zeros(1, 32, 3, 3)
    with pytest.raises(WeightsError, match=r"e.pt: editor key 'alpha_creator.0.weight' has shape \(1, 32, 3, 3\), THA3 separable_float expects \(4, 32, 3, 3\)"):
        check_state_dict(state, "tha3", "editor", "separable_float", "e.pt")
    del state["grid_change_creator.weight"]
    with pytest.raises(WeightsError, match="missing keys 'grid_change_creator.weight'"):
        check_state_dict(state, "tha3", "editor", "separable_float", "e.pt")


def test_folder_of_the_wrong_variant_is_named(tmp_path, tha3_data):
    folder = tmp_path / "separable"
    shutil.copytree(tha3_data / "models/separable_float", folder)
    assert open_weights(folder).variant == "separable_float"
    with pytest.raises(WeightsError, match="separable_float .* file, but standard_float was expected"):
        open_weights(folder, variant="standard_float")
    (folder / "editor.pt").unlink()
    with pytest.raises(WeightsError, match="not a folder of THA weights: editor.pt is missing for THA3 "):
        open_weights(folder)
    (folder / "face_morpher.pt").unlink()
    with pytest.raises(WeightsError, match="face_morpher.pt, editor.pt are missing for THA3 "):
        open_weights(folder)


def test_safetensors_round_trip_keeps_family_variant_and_values(tmp_path, tha3_data):
    weights = open_weights("tha3")
    path = save_safetensors(tmp_path / "tha3.safetensors", weights)
    assert not list(tmp_path.glob(".*tmp"))
    again = open_weights(path)
    assert (again.family, again.variant) == ("tha3", "separable_float")
    for name in tha3.NETWORKS:
        for key, tensor in weights.state_dicts[name].items():
            assert torch.equal(again.state_dicts[name][key], tensor), f"{name}.{key}"
    with pytest.raises(WeightsError, match="holds THA3 separable_float weights, not standard_half"):
        open_weights(path, variant="standard_half")
    # Metadata naming a variant THA3 does not have (a hand-edited file) was a KeyError from the ONNX
    # Runtime backend's opener and an error without the file's name from torch's.
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), "pt") as opened:
        metadata = dict(opened.metadata(), variant="separable_weird")
    odd = tmp_path / "odd.safetensors"
    save_file(load_file(str(path)), str(odd), metadata=metadata)
    with pytest.raises(WeightsError, match=r"odd.safetensors: holds THA3 weights of variant 'separable_weird', which "
                                           r"is not one of THA3's \(separable_float, separable_half, "):
        open_weights(odd)
    # Tensors of a network the family lacks were ignored: the file is loaded strictly.
    extra = tmp_path / "extra.safetensors"
    save_file({**load_file(str(path)), "refiner.weight": torch.zeros(2)}, str(extra),
              metadata=dict(metadata, variant="separable_float"))
    with pytest.raises(WeightsError, match=r"extra.safetensors: holds tensors of network\(s\) THA3 does not have "
                                           r"\(refiner\); convert the weights again"):
        open_weights(extra)


def test_safetensors_of_another_program_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(WeightsError, match="other.safetensors: not a THA Studio weights file"):
        open_weights(path)


def test_bfloat16_safetensors_are_named_by_the_reader_without_torch(tmp_path):
    # numpy has no bfloat16: the reader for ONNX Runtime stopped on safetensors' TypeError.
    from safetensors.torch import save_file

    from tha_studio.neural.ort.weight_sources import read_safetensors

    path = tmp_path / "bf16.safetensors"
    save_file({"editor.w": torch.zeros(2, dtype=torch.bfloat16)}, str(path))
    with pytest.raises(WeightsError, match=r"bf16\.safetensors: not a readable safetensors file \(.*bfloat16"):
        read_safetensors(path)


def test_synthetic_rule_matches_the_protocol_check_values(shared):
    import json

    protocol = json.loads((shared / "assets/golden/weights_protocol.json").read_text())
    network = protocol["networks"]["tha3_separable_float/editor"]
    state = synthetic_state_dict(tha3.build_network("editor", "separable_float"), "tha3_separable_float/editor", 0.05)
    checks = network["weight_check_sum_first_at_unit_scale"]
    assert set(checks) == set(state)
    assert {k for k, v in norm_parameter_names(tha3.build_network("editor", "separable_float")).items() if v == "norm_weight"} == set(network["norm_weight_keys"])
    for key, (total, first) in checks.items():
        tensor = state[key].double()
        assert abs(tensor.sum().item() - total) <= 1e-9 * max(1.0, abs(total)), key
        assert tensor.flatten()[0].item() == first, key


def test_a_weights_source_to_save_does_not_depend_on_the_working_folder(tmp_path, monkeypatch):
    from tha_studio.neural.ort.weight_sources import lasting_source

    monkeypatch.chdir(tmp_path)
    assert lasting_source(None) == lasting_source("tha3") == "tha3"
    assert lasting_source("w") == str(tmp_path / "w")
    assert lasting_source(tmp_path / "x.safetensors") == str(tmp_path / "x.safetensors")
