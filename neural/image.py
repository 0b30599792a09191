"""The torch side of the character-image convention (a thin wrapper over pose/character_image.py).

Network images are float tensors (B, 4, H, W): straight alpha, linear RGB, all in [-1, 1].
"""

import numpy as np
import torch
from PIL import Image

from ..atomic_files import write_atomically
from ..pose import character_image
from ..pose.character_image import CharacterImageError, prepare_character_image  # noqa: F401 (re-exported)


def rgba_to_tensor(rgba, device="cpu", dtype=torch.float32):
    """RGBA uint8 (H, W, 4) -> (1, 4, H, W) network image, contiguous (NCHW) on `device`."""
    array = character_image.to_network(rgba)
    return torch.from_numpy(array).unsqueeze(0).to(device=device, dtype=dtype).contiguous()


def tensor_to_rgba(images):
    """(B, 4, H, W) or (4, H, W) network images -> RGBA uint8 (B, H, W, 4) or (H, W, 4) numpy."""
    array = images.detach().to("cpu", torch.float32).numpy()
    return character_image.from_network(array)


def load_character(path_or_array, schema, device="cpu", dtype=torch.float32):
    """A user's picture, checked and prepared for `schema`, as a (1, 4, H, W) network image."""
    return rgba_to_tensor(prepare_character_image(path_or_array, schema), device, dtype)


def save_rgba_png(rgba, path):
    """Write RGBA uint8 (H, W, 4) as a PNG atomically (temp file in the same folder, then replace)."""
    picture = Image.fromarray(np.asarray(rgba, dtype=np.uint8), "RGBA")
    return write_atomically(path, lambda temporary: picture.save(temporary, format="PNG"))
