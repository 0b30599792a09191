"""The rest image follows the target schema's input convention: THA1's has the eyes and the mouth
wide open (write-up §3), THA2-THA4's is the neutral face; dataset.json records which."""

import numpy as np
import pytest
from PIL import Image

GENE = ("assets", "mmd", "gene_light", "Gene_light.pmx")


def read(path):
    return np.array(Image.open(path)).astype(int)


def changed_pixels(a, b):
    return np.abs(a - b).max(axis=2) > 24


def test_each_schema_names_its_input_pose(ext_module):
    get_schema = ext_module("pose.schema").get_schema
    tha1 = get_schema("tha1")
    assert tha1.rest_pose().tolist() == tha1.vector(mouth=1.0).tolist()  # eyes open (0), mouth open (1)
    assert tha1.rest_convention == "mouth=1"
    for name in ("tha2", "tha3", "tha4"):
        assert get_schema(name).rest_pose().tolist() == get_schema(name).neutral().tolist()
        assert get_schema(name).rest_convention == "neutral"


def test_dataset_json_records_the_convention_and_an_old_tha1_folder_is_refused(ext_module):
    plan = ext_module("render.dataset.plan")
    data = plan.DatasetConfig(schema="tha1").to_json()
    assert data["rest_convention"] == "mouth=1"
    assert plan.DatasetConfig.from_json(data, "d/dataset.json") == plan.DatasetConfig(schema="tha1")
    assert plan.DatasetConfig(schema="tha3").to_json()["rest_convention"] == "neutral"
    del data["rest_convention"]  # a THA1 folder rendered before: rest images with the mouth closed
    with pytest.raises(plan.DatasetError, match=r"d/dataset.json: its rest images were rendered in the pose "
                                                r"'neutral', but THA1 takes 'mouth=1'"):
        plan.DatasetConfig.from_json(data, "d/dataset.json")


@pytest.mark.slow
def test_tha1_rest_image_of_gene_has_the_mouth_open(shared, ext_module, tmp_path):
    from tha_studio.render.formats.mmd import read_model

    path = shared.joinpath(*GENE)
    annotation = ext_module("render.dataset.annotation").annotate_model(read_model(path), path.name)
    imported = ext_module("render.blender.model_import").import_model(path)
    schema = ext_module("pose.schema").get_schema("tha1")
    renderer = ext_module("render.blender.triplets").TripletRenderer(imported, annotation, schema)

    rest_bytes = renderer.render_rest(tmp_path / "rest.png")
    renderer.render(schema.neutral(), tmp_path / "own_rest.png")
    open_mouth_bytes = renderer.render(schema.vector(mouth=1.0), tmp_path / "mouth_open.png")
    assert rest_bytes == open_mouth_bytes  # the rest image is the pose mouth=1, eyes open
    rest, own_rest = read(tmp_path / "rest.png"), read(tmp_path / "own_rest.png")
    mouth = changed_pixels(rest, own_rest)
    rows, columns = np.nonzero(mouth)
    # The model's own rest has the mouth closed: the two differ at the mouth only (below the
    # eyes, in the lower half of the head box, centred), and by a visible patch.
    assert mouth.sum() > 40, "the rest image's mouth is not open"
    assert rows.min() > 140 and rows.max() < 200
    assert abs(columns.mean() - 128) < 12
    # The eyes stay open: an eye closed would change pixels at eye height (rows 120-155).
    assert not mouth[100:140].any()
