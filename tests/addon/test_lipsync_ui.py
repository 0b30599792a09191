"""The lip-sync sub-panel's operators through the installed extension: a line from Rhubarb's own cue
file stepped by hand on the job operator (the bpy module never calls modal), Esc, bad input
reported by the call, generators, expression presets, the mouth mapping editor and face capture."""

from types import SimpleNamespace

import bpy
import pytest

from shared_assets import shared_path

TIMER = SimpleNamespace(type="TIMER", value="NOTHING")
ESC = SimpleNamespace(type="ESC", value="PRESS")
CUES = ("assets", "lipsync", "rhubarb", "en_male_watchingtv.ogg", "ps_xml.xml")
AUDIO = ("assets", "lipsync", "audio", "en_male_watchingtv.ogg")


@pytest.fixture
def sprite(ext_module, tha3_data):
    live = ext_module("animation.blender.live")
    with live.suspended():  # no test here needs a posed picture
        obj = ext_module("animation.blender.sprite").create_sprite(
            bpy.context.scene, tha3_data / "images" / "crypko_00.png",
            ext_module("animation.core.sprite_settings").SpriteSettings(), name="Anna")
        bpy.context.view_layer.objects.active = obj
        yield obj


def finish(operator_class):
    op = operator_class.last
    for _ in range(1000):
        outcome = op.modal(bpy.context, TIMER)
        if outcome != {"RUNNING_MODAL"}:
            return op, outcome
    raise AssertionError("the job never finished")


def test_the_panel_is_a_sub_panel_of_the_sprite_panel(ext_module, sprite):
    panel = bpy.types.THA_PT_talking_head_timeline
    assert panel.bl_parent_id == "THA_PT_talking_head" and panel.poll(bpy.context)


def test_lip_sync_from_a_cue_file_runs_as_a_job_and_places_the_line(ext_module, sprite):
    bpy.context.scene.frame_current = 15
    result = bpy.ops.tha_studio.lip_sync(filepath=str(shared_path(*CUES)), audio_path=str(shared_path(*AUDIO)),
                                         line_name="hello")
    assert result == {"RUNNING_MODAL"}
    op, outcome = finish(ext_module("addon.lipsync").THA_OT_lip_sync)
    assert outcome == {"FINISHED"} and op.outcome == "finished"
    strip = sprite.data.shape_keys.animation_data.nla_tracks["THA lip sync"].strips["hello"]
    assert strip.frame_start == 15
    assert bpy.context.scene.sequence_editor.strips["Anna: hello"].frame_start == 15


def test_the_selected_sound_strips_become_lines(ext_module, sprite):
    operator = ext_module("addon.lipsync").THA_OT_lip_sync_strips
    assert not bpy.ops.tha_studio.lip_sync_strips.poll()  # nothing selected in the Sequencer
    editor = bpy.context.scene.sequence_editor_create()
    strip = editor.strips.new_sound("take 2", str(shared_path(*AUDIO)), 1, 40)
    other = editor.strips.new_sound("music", str(shared_path(*AUDIO)), 2, 200)
    strip.select, other.select = True, False
    assert bpy.ops.tha_studio.lip_sync_strips.poll()
    assert bpy.ops.tha_studio.lip_sync_strips(recognizer="PHONETIC") == {"RUNNING_MODAL"}
    op, outcome = finish(operator)
    assert outcome == {"FINISHED"} and op.outcome == "finished"
    assert ext_module("animation.blender.timeline").line_names(sprite) == ["take 2"]
    line = sprite.data.shape_keys.animation_data.nla_tracks["THA lip sync"].strips["take 2"]
    assert line.frame_start == 40 and sorted(s.name for s in editor.strips) == ["music", "take 2"]


def test_esc_cancels_an_analysis_and_places_nothing(ext_module, sprite):
    assert bpy.ops.tha_studio.lip_sync(filepath=str(shared_path(*AUDIO))) == {"RUNNING_MODAL"}
    op = ext_module("addon.lipsync").THA_OT_lip_sync.last
    assert op.modal(bpy.context, ESC) == {"CANCELLED"}
    assert op.outcome.endswith("cancelled") and op._job.cancelled
    assert not ext_module("animation.blender.timeline").line_names(sprite)


@pytest.mark.parametrize("arguments, message", [
    (dict(filepath=("assets", "lipsync", "bad_inputs", "text_renamed.wav")), "cannot read this file as audio"),
    (dict(filepath=CUES, start_frame=5000, use_current_frame=False, extend_scene=False), "past the scene's end"),
])
def test_bad_input_is_reported_by_the_call_and_changes_nothing(ext_module, sprite, arguments, message):
    arguments = {k: str(shared_path(*v)) if isinstance(v, tuple) else v for k, v in arguments.items()}
    with pytest.raises(RuntimeError, match=message):
        bpy.ops.tha_studio.lip_sync(**arguments)
    assert not ext_module("animation.blender.timeline").timeline_strips(sprite)


def test_a_missing_rhubarb_in_the_preferences_is_reported(ext_module, sprite, tmp_path):
    prefs = ext_module("addon.preferences").preferences()
    prefs.rhubarb_path = str(tmp_path / "rhubarb")
    try:
        with pytest.raises(RuntimeError, match="no runnable Rhubarb Lip Sync executable"):
            bpy.ops.tha_studio.lip_sync(filepath=str(shared_path(*AUDIO)))
    finally:
        prefs.rhubarb_path = ""
    assert not ext_module("animation.blender.timeline").timeline_strips(sprite)


def test_generators_presets_and_the_mapping_editor(ext_module, sprite):
    timeline = ext_module("animation.blender.timeline")
    assert bpy.ops.tha_studio.generate(generator="blinks", seed=4) == {"FINISHED"}
    assert bpy.ops.tha_studio.generate(generator="gaze", seed=4, rate=2.0) == {"FINISHED"}
    assert {r["generator"] for _, _, r in timeline.timeline_strips(sprite, "generator")} == {"blinks", "gaze"}
    assert bpy.ops.tha_studio.remove_generated(generator="gaze") == {"FINISHED"}
    with pytest.raises(RuntimeError, match="BreathingSettings: amplitude must be a number in"):
        bpy.ops.tha_studio.generate(generator="breathing", amplitude=5.0)  # a breath peaks at 1 at most

    assert bpy.ops.tha_studio.apply_expression(preset="surprised") == {"FINISHED"}
    assert sprite.data.shape_keys.key_blocks["eyebrow_raised_left"].value == pytest.approx(1.0)
    assert bpy.ops.tha_studio.apply_expression(preset="sad", key=True) == {"FINISHED"}
    assert timeline.timeline_strips(sprite, "expressions")
    assert bpy.ops.tha_studio.save_expression(preset="mine") == {"FINISHED"}
    assert "mine" in ext_module("animation.blender.expressions").presets_for(sprite)
    with pytest.raises(RuntimeError, match="no expression preset called 'nope'"):
        bpy.ops.tha_studio.apply_expression(preset="nope")

    editor = bpy.context.window_manager.tha_mouth_mapping_editor
    editor.shape = "D"
    assert editor.mouth_aaa == pytest.approx(1.0)
    editor.mouth_aaa = 0.7
    editor.mouth_delta = 0.2
    assert timeline.mouth_mapping(sprite).values["D"] == {"mouth_aaa": 0.7, "mouth_delta": 0.2}
    assert bpy.ops.tha_studio.mouth_mapping_preset(preset="THA1_SINGLE") == {"FINISHED"}
    assert timeline.mouth_mapping(sprite).parameters == ("mouth_aaa",)


def test_face_capture_import_and_a_mapping_edited_as_text(ext_module, sprite, tmp_path):
    face = ext_module("animation.core.face_capture")
    take = tmp_path / "take.csv"
    rows = [",".join(face.LIVE_LINK_COLUMNS)]
    for frame in range(60):
        values = ["0.5" if name == "JawOpen" else "0" for name in face.CHANNELS]
        rows.append(",".join([f"10:00:00:{frame:02d}.000", "61", *values]))
    take.write_text("\n".join(rows) + "\n")
    bpy.context.scene.frame_current = 3
    assert bpy.ops.tha_studio.import_face_capture(filepath=str(take)) == {"FINISHED"}
    strip = sprite.data.shape_keys.animation_data.nla_tracks["THA face capture"].strips["take"]
    assert strip.frame_start == 3
    assert bpy.ops.tha_studio.edit_arkit_mapping() == {"FINISHED"}
    text = bpy.data.texts["Anna ARKit mapping.json"]
    text.from_string(text.as_string().replace('"format"', '"nonsense": 1, "format"', 1)[:-3])  # broken JSON
    with pytest.raises(RuntimeError, match="Anna ARKit mapping.json.*line"):
        bpy.ops.tha_studio.use_arkit_mapping()


def test_an_mmd_motion_imports_at_the_current_frame_and_a_bad_one_is_reported(ext_module, sprite, tmp_path):
    vmd = ext_module("render.formats.mmd.vmd")
    motion = vmd.Motion(morphs={"あ": [vmd.MorphKey(0, 0.0), vmd.MorphKey(30, 1.0)], "照れ": [vmd.MorphKey(0, 1.0)]})
    path = vmd.write(motion, tmp_path / "line.vmd")
    bpy.context.scene.frame_current = 7
    assert bpy.ops.tha_studio.import_mmd_motion(filepath=str(path)) == {"FINISHED"}
    strip = sprite.data.shape_keys.animation_data.nla_tracks["THA face capture"].strips["line"]
    assert strip.frame_start == 7
    (tmp_path / "text.vmd").write_text("not a motion")
    with pytest.raises(RuntimeError, match=r"text.vmd: header at byte 0: not an MMD motion"):
        bpy.ops.tha_studio.import_mmd_motion(filepath=str(tmp_path / "text.vmd"))


def test_a_take_can_start_at_a_frame_given_instead_of_the_current_one(ext_module, sprite, tmp_path):
    vmd = ext_module("render.formats.mmd.vmd")
    path = vmd.write(vmd.Motion(morphs={"あ": [vmd.MorphKey(0, 1.0)]}), tmp_path / "given.vmd")
    bpy.context.scene.frame_current = 7
    assert bpy.ops.tha_studio.import_mmd_motion(filepath=str(path), use_current_frame=False, start_frame=40) == {"FINISHED"}
    assert sprite.data.shape_keys.animation_data.nla_tracks["THA face capture"].strips["given"].frame_start == 40


def test_mappings_and_the_lines_rate_a_script_left_of_the_wrong_kind_are_named_and_mended(ext_module, sprite):
    # A script's value where THA Studio keeps JSON text (or the lines' frame rate) failed with
    # Python's words: the mouth mapping stopped the panel on every redraw and every lip sync; a
    # broken ARKit mapping could be neither used nor opened to mend; the rate stopped the handler
    # that keeps sounds with their lines on every update.
    timeline = ext_module("animation.blender.timeline")
    expressions = ext_module("animation.blender.expressions")
    sprite[timeline.MAPPING_PROPERTY] = 5
    with pytest.raises(timeline.MappingError, match="Anna's mouth mapping holds a number, not a mapping's text: "
                                                    "choose a mouth mapping preset"):
        timeline.mouth_mapping(sprite)
    with pytest.raises(RuntimeError, match="Anna's mouth mapping holds a number"):
        bpy.ops.tha_studio.lip_sync(filepath=str(shared_path(*CUES)))
    assert bpy.ops.tha_studio.mouth_mapping_preset(preset="DEFAULT") == {"FINISHED"}  # the panel's presets mend it
    assert timeline.mouth_mapping(sprite).values == timeline.MouthMapping.default("tha3").values

    sprite[expressions.ARKIT_MAPPING_PROPERTY] = [1, 2]
    with pytest.raises(expressions.FaceCaptureError, match="Anna's ARKit mapping holds a list of values, not a "
                                                           "mapping's text: Edit ARKit Mapping starts again"):
        expressions.arkit_mapping(sprite)
    assert bpy.ops.tha_studio.edit_arkit_mapping() == {"FINISHED"}  # opened from the default
    text = bpy.data.texts["Anna ARKit mapping.json"]
    assert text.as_string() == expressions.ArkitMapping.default("tha3").to_json()
    broken = text.as_string()[:-3]
    sprite[expressions.ARKIT_MAPPING_PROPERTY] = broken
    assert bpy.ops.tha_studio.edit_arkit_mapping() == {"FINISHED"}  # opened as stored, to mend
    assert text.as_string() == broken
    text.from_string(expressions.ArkitMapping.default("tha3").to_json())
    assert bpy.ops.tha_studio.use_arkit_mapping() == {"FINISHED"}
    assert expressions.arkit_mapping(sprite).to_json() == text.as_string()

    scene = bpy.context.scene
    line, sound = timeline.place_line(scene, sprite, ext_module("lipsync.formats").read_cues(shared_path(*CUES)),
                                      "tv", 1, shared_path(*AUDIO))
    for left in ("24", True, 0.0):  # (a boolean or no rate at all is as unknown as text)
        scene[timeline.LINES_FPS_PROPERTY] = left
        assert timeline.keep_sounds_with_lines(scene) == []
        assert scene[timeline.LINES_FPS_PROPERTY] == 24.0  # known again
    line.frame_start_ui = 30
    bpy.context.view_layer.update()
    assert (line.frame_start, sound.frame_start) == (30, 30)
