"""An operator's unexpected failure is a report, not a traceback handed to the user."""

import bpy
import pytest


@pytest.fixture
def failing_operator(ext_module):
    reports_errors = ext_module("addon.reporting").reports_errors

    class THA_OT_test_failure(bpy.types.Operator):
        bl_idname = "tha_studio.test_failure"
        bl_label = "Failing Test Operator"

        @reports_errors
        def execute(self, context):
            return {"FINISHED"} if 1 / 0 else {"CANCELLED"}

    bpy.utils.register_class(THA_OT_test_failure)
    yield bpy.ops.tha_studio.test_failure
    bpy.utils.unregister_class(THA_OT_test_failure)


def test_a_bug_is_reported_and_cancels(failing_operator, capfd):
    # Called from Python, Blender turns an ERROR report into RuntimeError carrying the report's
    # text; without the guard that text would be the whole Python traceback.
    with pytest.raises(RuntimeError) as raised:
        failing_operator()
    message = str(raised.value)
    assert "Failing Test Operator failed: division by zero (ZeroDivisionError" in message
    assert "Traceback" not in message and len(message.splitlines()) == 1
    assert "Traceback" in capfd.readouterr().err  # kept for a bug report, on the console


def test_annotation_cycle_without_candidates_reports(ext_module, tmp_path):
    # A model with no morphs: cycling a role has nothing to show, and says so in one line.
    procedural = ext_module("render.formats.mmd.procedural")
    pmx = ext_module("render.formats.mmd.pmx")
    model = procedural.make_character()
    model.morphs = []
    model.display_frames = [frame for frame in model.display_frames if all(kind == 0 for kind, _ in frame.items)]
    pmx.write(model, tmp_path / "no_morphs.pmx")
    imported = ext_module("render.blender.model_import").import_model(tmp_path / "no_morphs.pmx")
    bpy.context.view_layer.objects.active = imported.root
    bpy.ops.tha_studio.annotation_start()
    with pytest.raises(RuntimeError, match="no morph was found for eye_wink_left"):
        bpy.ops.tha_studio.annotation_cycle(step=1)
