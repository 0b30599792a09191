"""Losses and scores: L1, the perceptual loss of the THA1 write-up §6.2.1, RMSE and SSIM (§7).

Perceptual loss: VGG16's relu1_2, relu2_2 and relu3_3 features of the two 3-channel halves of
a 4-channel image (its RGB, and its alpha copied to three channels), compared by L1. The
write-up scales each layer's term to the size of the picture (a mean over the feature map, as
the L1 pixel term is a mean over the picture) and multiplies the sum by a constant it picked
(its value is lost from our copy): `weight`. VGG16 weights come only from a file the user names
(torchvision's vgg16 state_dict, keys `features.N.weight`), loaded with weights_only=True:
nothing is ever downloaded.

Scores are over pictures mapped to [0, 1] (all four channels, straight alpha); SSIM is
pytorch-msssim's (pinned in requirements.txt).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as msssim_ssim
from torch import nn

from ...errors import UserError
from ..weights import load_pt

# VGG16's layers up to relu3_3: channels of each conv, "M" a 2x2 max pool.
VGG16_UPTO_RELU3_3 = (64, 64, "M", 128, 128, "M", 256, 256, 256)
FEATURE_LAYERS = {3: "relu1_2", 8: "relu2_2", 15: "relu3_3"}  # indices in vgg16.features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class LossError(UserError, ValueError):
    """A loss that cannot be set up (a VGG16 weights file that is missing or not VGG16)."""


def l1_loss(outputs, target):
    """The sum over the network's output pictures of the mean absolute difference with the target."""
    return sum(F.l1_loss(output, target) for output in outputs)


def to_unit(image):
    """Network images ([-1, 1]) as [0, 1]."""
    return ((image.float() + 1) / 2).clamp(0, 1)


def rmse(output, target):
    """Per-picture root mean square error in [0, 1] units, (B,)."""
    return (to_unit(output) - to_unit(target)).pow(2).flatten(1).mean(1).sqrt()


def ssim(output, target):
    """Per-picture SSIM of the four channels in [0, 1] units, (B,) (11x11 Gaussian window)."""
    return msssim_ssim(to_unit(output), to_unit(target), data_range=1.0, size_average=False)


def vgg16_features():
    """VGG16's `features` up to relu3_3, with torchvision's module indices (so its keys load)."""
    layers, channels = [], 3
    for spec in VGG16_UPTO_RELU3_3:
        if spec == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, spec, 3, padding=1), nn.ReLU(inplace=False)]
            channels = spec
    return nn.Sequential(*layers)


def load_vgg16_features(path):
    """VGG16's features up to relu3_3 from a state_dict file (torchvision's, or its `features.*` part)."""
    path = Path(path)
    if not path.is_file():
        raise LossError(f"{path}: no such VGG16 weights file")
    state = load_pt(path)  # weights_only; a pickle that would run code is refused, naming the file
    if not isinstance(state, dict):
        raise LossError(f"{path}: expected a VGG16 state_dict, found {type(state).__name__}")
    features = vgg16_features()
    wanted = features.state_dict()
    found = {key: state.get(f"features.{key}", state.get(key)) for key in wanted}
    missing = [key for key, tensor in found.items() if not isinstance(tensor, torch.Tensor)]
    if missing:
        raise LossError(f"{path}: not a VGG16 state_dict (no features.{missing[0]})")
    for key, tensor in found.items():
        if tensor.shape != wanted[key].shape:
            raise LossError(f"{path}: features.{key} has shape {tuple(tensor.shape)}, VGG16 has {tuple(wanted[key].shape)}")
    features.load_state_dict({key: tensor.float() for key, tensor in found.items()})
    return features.eval().requires_grad_(False)


class PerceptualLoss(nn.Module):
    """L1 of VGG16 relu1_2/2_2/3_3 features of the RGB and the AAA halves, times `weight`."""

    def __init__(self, vgg16_path, weight=1.0):
        super().__init__()
        self.features = load_vgg16_features(vgg16_path)
        self.weight = weight
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def feature_maps(self, image):
        x = (image - self.mean) / self.std
        maps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in FEATURE_LAYERS:
                maps.append(x)
        return maps

    def halves(self, image):
        unit = to_unit(image)
        return [unit[:, :3], unit[:, 3:4].expand(-1, 3, -1, -1)]

    def forward(self, outputs, target):
        total = 0.0
        target_maps = [[m.detach() for m in self.feature_maps(half)] for half in self.halves(target)]
        for output in outputs:
            for half, wanted in zip(self.halves(output), target_maps):
                total = total + sum(F.l1_loss(made, goal) for made, goal in zip(self.feature_maps(half), wanted))
        return self.weight * total
