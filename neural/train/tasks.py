"""What training one network means: its inputs from a batch of triplets, its outputs, its target.

THA1 (write-up §6): the face morpher turns the rest image (eyes and mouth open) into the
expression image; the two-algorithm face rotator turns the expression image into the posed one
by both of its paths (each compared with the target); the combiner takes the two images the
trained rotator makes (run on the fly, frozen: the write-up generated them the same way) and
makes the posed image.

THA3 fine-tuning from the official weights: the face morpher on the 192x192 face crop (its
input is the rest crop with the eyebrows the frozen eyebrow networks morph pasted in, as the
pipeline does); the two-algorithm face/body rotator on the pictures halved to 256 (both paths).
The other networks stay frozen.

Each task also gives the identity baseline's input: the picture the network starts from, which
a network that learnt nothing would return.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import tha3 as tha3_networks
from ...pose.schema import get_schema


class Task:
    family = ""
    network = ""
    roles = ()  # the images it needs
    frozen = ()  # other networks it runs without training them
    fixed_image_size = None  # the only size it can train at, if any

    def __init__(self, frozen_networks=None):
        self.frozen_networks = frozen_networks or {}
        self.schema = get_schema(self.family)
        self.pose_slice = self.schema.slice_for(self.network)

    @property
    def name(self):
        return f"{self.family}.{self.network}"

    def source_and_target(self, batch):
        """(the network's input picture, the picture it should make): the identity baseline's pair."""
        raise NotImplementedError

    def outputs(self, model, batch):
        """The pictures the loss compares with the target; the first one is what validation scores."""
        raise NotImplementedError


class Tha1FaceMorpher(Task):
    family, network, roles = "tha1", "face_morpher", ("rest", "expression")

    def source_and_target(self, batch):
        return batch["rest"], batch["expression"]

    def outputs(self, model, batch):
        return [model(batch["rest"], batch["pose"][:, self.pose_slice])[0]]


class Tha1FaceRotator(Task):
    family, network, roles = "tha1", "two_algo_face_rotator", ("expression", "posed")

    def source_and_target(self, batch):
        return batch["expression"], batch["posed"]

    def outputs(self, model, batch):
        # [0] Pumarola's colour change, [1] Zhou's appearance flow: both are trained (write-up §6.2.1).
        color_changed, resampled = model(batch["expression"], batch["pose"][:, self.pose_slice])[:2]
        return [resampled, color_changed]


class Tha1Combiner(Task):
    family, network, roles = "tha1", "combiner", ("expression", "posed")
    frozen = ("two_algo_face_rotator",)

    def source_and_target(self, batch):
        return batch["expression"], batch["posed"]

    def outputs(self, model, batch):
        pose = batch["pose"][:, self.pose_slice]
        with torch.no_grad():
            color_changed, resampled = self.frozen_networks["two_algo_face_rotator"](batch["expression"], pose)[:2]
        return [model(color_changed, resampled, pose)[0]]


class Tha3FaceMorpher(Task):
    family, network, roles = "tha3", "face_morpher", ("rest", "expression")
    frozen = ("eyebrow_decomposer", "eyebrow_morphing_combiner")
    fixed_image_size = 512

    def face_crop(self, image):
        rows, columns = tha3_networks.FACE_BOX
        return image[:, :, rows, columns]

    def faces_with_eyebrows(self, rest, eyebrow_pose):
        """The rest face crops with the frozen networks' morphed eyebrows pasted in (the pipeline's input)."""
        decomposer = self.frozen_networks["eyebrow_decomposer"]
        combiner = self.frozen_networks["eyebrow_morphing_combiner"]
        with torch.no_grad():
            rows, columns = tha3_networks.EYEBROW_BOX
            layers = tha3_networks.named(decomposer(rest[:, :, rows, columns]), decomposer.OUTPUTS)
            morphed = tha3_networks.named(combiner(layers["background_layer"], layers["eyebrow_layer"], eyebrow_pose),
                                          combiner.OUTPUTS)["eyebrow_image_no_combine_alpha"]
            face = self.face_crop(rest).clone()
            rows, columns = tha3_networks.EYEBROW_IN_FACE
            face[:, :, rows, columns] = morphed
        return face

    def source_and_target(self, batch):
        return self.face_crop(batch["rest"]), self.face_crop(batch["expression"])

    def outputs(self, model, batch):
        pose = batch["pose"]
        face = self.faces_with_eyebrows(batch["rest"], pose[:, tha3_networks.EYEBROW_POSE])
        return [model(face, pose[:, self.pose_slice])[0]]


class Tha3FaceBodyRotator(Task):
    family, network, roles = "tha3", "two_algo_face_body_rotator", ("expression", "posed")
    fixed_image_size = 512

    @staticmethod
    def half(image):
        return F.interpolate(image, size=(256, 256), mode="bilinear", align_corners=False)

    def source_and_target(self, batch):
        return self.half(batch["expression"]), self.half(batch["posed"])

    def outputs(self, model, batch):
        direct, warped = model(self.half(batch["expression"]), batch["pose"][:, self.pose_slice])[:2]
        return [warped, direct]


TASKS = {task.family + "." + task.network: task for task in
         (Tha1FaceMorpher, Tha1FaceRotator, Tha1Combiner, Tha3FaceMorpher, Tha3FaceBodyRotator)}


def task_class(family, network):
    key = f"{family}.{network}"
    if key not in TASKS:
        trainable = ", ".join(sorted(TASKS))
        raise KeyError(f"cannot train {family.upper()} {network!r}; trainable networks: {trainable}")
    return TASKS[key]
