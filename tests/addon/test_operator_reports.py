"""An operator's failure is a one-line report, never a traceback handed to the user: a user error
(or a file the machine refuses) in its own words, a bug with its traceback kept on the console."""

import bpy
import pytest


@pytest.fixture
def failing_operator(ext_module):
    reports_errors = ext_module("addon.reporting").reports_errors
    UserError = ext_module("errors").UserError

    class THA_OT_test_failure(bpy.types.Operator):
        bl_idname = "tha_studio.test_failure"
        bl_label = "Failing Test Operator"

        failure: bpy.props.StringProperty(default="bug")

        @reports_errors
        def execute(self, context):
            if self.failure == "user":
                raise UserError("model.pmx: not an MMD model")
            if self.failure == "file":
                raise PermissionError(13, "Permission denied", "/render/out.png")
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


@pytest.mark.parametrize("failure, text", [
    ("user", "model.pmx: not an MMD model"),
    ("file", "[Errno 13] Permission denied: '/render/out.png'"),
])
def test_a_user_error_is_reported_in_its_own_words(failing_operator, capfd, failure, text):
    with pytest.raises(RuntimeError) as raised:
        failing_operator(failure=failure)
    message = str(raised.value)
    assert text in message and "failed" not in message and len(message.splitlines()) == 1
    assert "Traceback" not in capfd.readouterr().err  # not a bug: nothing for a bug report


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
