"""Every reader of a JSON file a user hands us names a document nested too deep as bad JSON, with
its file and line: Python's decoder raised RecursionError, a traceback, past its recursion limit."""

import json

import pytest

from tha_studio import json_text
from tha_studio.animation.core.bake_cache import BakeCacheError, BakeIndex
from tha_studio.animation.core.face_capture import ArkitMapping, FaceCaptureError
from tha_studio.animation.core.presets import PresetError, presets_from_json
from tha_studio.lipsync.curves import MappingError, MouthMapping
from tha_studio.neural.train import checkpoint
from tha_studio.render.dataset.annotation import AnnotationError, load_sidecar
from tha_studio.render.dataset.plan import DatasetError, read_config_file
from tha_studio.render.formats.avatar_expressions import AvatarFormatError, read_gltf_json

DEEP = '{"a": 1,\n "b": ' + "[" * 100_000 + "]" * 100_000 + "}"


def test_a_document_nested_past_the_recursion_limit_is_invalid_json_where_it_nests_too_deep():
    with pytest.raises(json.JSONDecodeError, match=r"nested more than 100 levels deep: line 2 column 106"):
        json_text.loads(DEEP)
    assert json_text.loads('{"a": [[1]]}') == {"a": [[1]]}
    assert json_text.too_deep('["[[[[", [1]]', depth=2) == len('["[[[[", [1]]')  # brackets in strings do not count


@pytest.mark.parametrize("read, error", [
    (lambda: MouthMapping.from_json(DEEP, "tha3", "mouth.json"), MappingError),
    (lambda: presets_from_json(DEEP, "presets.json"), PresetError),
    (lambda: ArkitMapping.from_json(DEEP, "arkit.json"), FaceCaptureError),
    (lambda: BakeIndex.from_json(DEEP, "index.json"), BakeCacheError),
])
def test_texts_nested_too_deep_are_named(read, error):
    with pytest.raises(error, match=r"\.json.*line 2"):
        read()


def test_files_nested_too_deep_are_named(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text(DEEP)
    for read, error in ((load_sidecar, AnnotationError), (read_config_file, DatasetError),
                        (checkpoint.read, checkpoint.CheckpointError)):
        with pytest.raises(error, match=r"deep\.json: .*nested more than 100 levels deep"):
            read(path)
    avatar = tmp_path / "deep.gltf"  # a model in a dataset folder of thousands
    avatar.write_text(DEEP)
    with pytest.raises(AvatarFormatError, match=r"deep\.gltf: .*nested more than 100 levels deep"):
        read_gltf_json(avatar)
