"""Rhubarb's cue files read and written back byte for byte, tolerant reading, line-numbered errors."""

import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_assets import SHARED
from tha_studio.lipsync import formats
from tha_studio.lipsync.cues import Cue, CueTrack
from tha_studio.lipsync.formats import CueFileError

RHUBARB = SHARED / "assets" / "lipsync" / "rhubarb"
# Rhubarb runs several threads on long files, so the kittens' files come from runs that differ.
SAME_RUN_RECORDINGS = [
    "en_male_electricity.ogg", "en_male_watchingtv.ogg", "s1_plosives.wav", "s2_rounded.wav",
    "s3_pauses.wav", "s4_bilabials.wav", "s5_fricatives.wav",
]


def output_files():
    if not RHUBARB.is_dir():
        return []
    return sorted(p for p in RHUBARB.glob("*/*") if not p.name.endswith(".stderr.txt"))


def dat_options(path):
    """The --datFrameRate and --datUsePrestonBlair each DAT fixture was made with."""
    return (30 if "dat30" in path.name else 24), "prestonblair" in path.name


@pytest.mark.parametrize("path", output_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rhubarb_output_reads_and_writes_back_byte_identical(shared, path):
    frame_rate, preston_blair = dat_options(path)
    track = formats.read_cues(path, frame_rate=frame_rate)
    assert len(track) > 0 and track.duration > 0
    written = formats.format_cues(track, formats.format_of_path(path), frame_rate, preston_blair)
    assert written.encode("utf-8") == path.read_bytes()


def test_all_output_kinds_are_covered(shared):
    names = {p.name for p in output_files()}
    for kind in ("ps_tsv.tsv", "ps_json.json", "ps_xml.xml", "ps_dat24.dat", "ps_dat30.dat",
                 "ps_dat24_prestonblair.dat", "ps_basicshapes_tsv.tsv", "ps_dialog_json.json"):
        assert kind in names
    assert len(output_files()) >= 8 * 10


@pytest.mark.parametrize("recording", SAME_RUN_RECORDINGS)
@pytest.mark.parametrize(
    "target", ["ps_tsv.tsv", "ps_xml.xml", "ps_dat24.dat", "ps_dat30.dat", "ps_dat24_prestonblair.dat"]
)
def test_json_written_in_another_format_matches_rhubarbs_own(shared, recording, target):
    folder = shared / "assets" / "lipsync" / "rhubarb" / recording
    track = formats.read_cues(folder / "ps_json.json")
    frame_rate, preston_blair = dat_options(Path(target))
    written = formats.format_cues(track, formats.format_of_path(target), frame_rate, preston_blair)
    assert written == (folder / target).read_text()


def test_the_same_track_from_every_format(shared):
    folder = shared / "assets" / "lipsync" / "rhubarb" / "s3_pauses.wav"
    from_json = formats.read_cues(folder / "ps_json.json")
    for name in ("ps_tsv.tsv", "ps_xml.xml"):
        other = formats.read_cues(folder / name)
        assert [(c.start, c.end, c.shape) for c in other] == [(c.start, c.end, c.shape) for c in from_json]
        assert other.duration == from_json.duration
    dat = formats.read_cues(folder / "ps_dat24_prestonblair.dat")
    # DAT keeps frames only: each cue starts at its frame's time, within 1/24 s of the original.
    assert set(dat.shapes_used) <= set(from_json.shapes_used)
    assert abs(dat.duration - from_json.duration) <= 1 / 24 + 1e-9
    assert formats.read_cues(folder / "ps_tsv.tsv").closed_shape == "X"
    assert formats.read_cues(folder / "ps_basicshapes_tsv.tsv").closing_shape() == "A"


@pytest.mark.parametrize("name", ["ps_tsv.tsv", "ps_json.json", "ps_xml.xml", "ps_dat24.dat"])
def test_a_cue_file_windows_powershell_redirected_reads_as_rhubarbs_own(shared, tmp_path, name):
    """`rhubarb ... > cues.tsv` in Windows PowerShell 5 writes the output as UTF-16 with its
    byte-order mark and Windows line ends; such a file was refused as "not UTF-8 text"."""
    original = shared / "assets" / "lipsync" / "rhubarb" / "s3_pauses.wav" / name
    redirected = tmp_path / name
    redirected.write_bytes(original.read_text().replace("\n", "\r\n").encode("utf-16"))
    assert redirected.read_bytes()[:2] == b"\xff\xfe"
    frame_rate, _ = dat_options(original)
    track = formats.read_cues(redirected, frame_rate=frame_rate)
    expected = formats.read_cues(original, frame_rate=frame_rate)
    assert [(c.start, c.end, c.shape) for c in track] == [(c.start, c.end, c.shape) for c in expected]
    assert track.duration == expected.duration and len(track) > 10


def test_papagayos_moho_switch_file_reads_with_its_wq_mouth(tmp_path):
    # Papagayo (and Papagayo-NG) export the same MohoSwitch1 files with Preston Blair names, and
    # one name Rhubarb never writes: WQ, the rounded lips of "w" and "oo" (Rhubarb's F).
    exported = tmp_path / "line.dat"
    exported.write_text("MohoSwitch1\r\n1 rest\r\n4 WQ\r\n7 AI\r\n10 MBP\r\n13 etc\r\n16 O\r\n19 rest\r\n")
    track = formats.read_cues(exported)
    assert [c.shape for c in track] == ["X", "F", "D", "A", "B", "E"] and track.duration == pytest.approx(18 / 24)
    assert track.cues[1].start == pytest.approx(3 / 24)
    # Written back as Rhubarb would: F is U in its Preston Blair names.
    assert "\n4 U\n" in formats.format_cues(track, "dat", 24, preston_blair=True)


def test_ng_addon_json_with_numbers_as_strings(shared):
    track = formats.read_cues(shared / "assets" / "lipsync" / "audio" / "en_male_electricity-expected.json")
    assert track.sound_file == "en_male_electricity.ogg"
    assert track.duration == pytest.approx(1.06)
    assert [(c.start, c.end, c.shape) for c in track] == [
        (0.00, 0.10, "X"), (0.10, 0.15, "B"), (0.15, 0.19, "H"), (0.19, 0.26, "C"),
        (0.26, 0.54, "B"), (0.54, 0.61, "C"), (0.61, 0.96, "B"), (0.96, 1.06, "X"),
    ]
    # Written back, it is Rhubarb's own layout with real numbers.
    assert '{ "start": 0.54, "end": 0.61, "value": "C" },' in formats.write_json(track)


def test_dat_frames_use_rhubarbs_double_arithmetic():
    # 1.16 s x 25 fps is 28.999999999999996 in doubles, so Rhubarb writes frame 29, not 30.
    track = CueTrack((Cue(0.0, 1.16, "X"), Cue(1.16, 2.0, "D")), duration=2.0)
    assert formats.write_dat(track, 25) == "MohoSwitch1\n1 X\n29 D\n51 X\n"
    # A DAT file read at one rate and written at the same rate keeps its frames.
    text = "MohoSwitch1\n1 X\n29 D\n51 X\n"
    assert formats.write_dat(formats.read_dat(text, frame_rate=25), 25) == text
    for rate in (24, 25, 29.97, 30, 48, 60, 100):
        text = "MohoSwitch1\n" + "".join(f"{f} {'DX'[i % 2]}\n" for i, f in enumerate(range(1, 400, 7)))
        assert formats.write_dat(formats.read_dat(text, frame_rate=rate), rate) == text


def test_dat_frame_rate_limits_as_rhubarbs():
    track = CueTrack((Cue(0.0, 1.0, "D"),))
    with pytest.raises(ValueError, match="Frame rate must be between 24 and 100 fps"):
        formats.write_dat(track, 12)


def test_empty_track_gets_rhubarbs_dummy_cue():
    empty = CueTrack((), duration=0.0)
    assert '{ "start": 0.00, "end": 0.00, "value": "X" }' in formats.write_json(empty)
    assert '<mouthCue start="0.00" end="0.00">X</mouthCue>' in formats.write_xml(empty)
    assert formats.read_json(formats.write_json(empty)).duration == 0.0
    assert formats.write_tsv(empty) == "0.00\tX\n"
    assert formats.write_dat(empty) == "MohoSwitch1\n1 X\n"


def test_escaping_of_the_sound_file():
    track = CueTrack((Cue(0.0, 0.5, "B"),), sound_file='C:\\voices\\"Ünïcode" <&> 😀.wav')
    text = formats.write_json(track)
    assert '"soundFile": "C:\\\\voices\\\\\\"\\u00dcn\\u00efcode\\" <&> \\ud83d\\ude00.wav"' in text
    assert formats.read_json(text).sound_file == track.sound_file
    xml_text = formats.write_xml(track)
    assert "&quot;Ünïcode&quot; &lt;&amp;&gt;" in xml_text
    assert formats.read_xml(xml_text).sound_file == track.sound_file


def test_save_is_atomic_and_picks_the_format_from_the_extension(tmp_path, shared):
    track = formats.read_cues(shared / "assets" / "lipsync" / "rhubarb" / "s2_rounded.wav" / "ps_json.json")
    for extension in (".tsv", ".json", ".xml", ".dat"):
        target = tmp_path / f"cues{extension}"
        target.write_text("old content")
        formats.save_cues(track, target)
        again = formats.read_cues(target)
        assert [c.shape for c in again.joined()] == [c.shape for c in track.joined()] or extension == ".dat"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cues.dat", "cues.json", "cues.tsv", "cues.xml"]


MALFORMED = [
    ("tsv", "0.00\tX\n0.10\tB\n0.05\tC\n0.30\tX\n", 3, "earlier than the line before"),
    ("tsv", "0.00\tX\n0.10\tQ\n0.30\tX\n", 2, "'Q' is not a mouth shape"),
    ("tsv", "0.00\tX\nabc\tB\n", 2, "must be a number of seconds"),
    ("tsv", "0.00\tX\n0.10 B extra\n", 2, "expected '<seconds> <shape>'"),
    ("tsv", "0.00\tX\n-1.0\tB\n", 2, "must not be negative"),
    ("tsv", "\n\n", 1, "no cues"),
    ("json", '{\n  "mouthCues": [\n    { "start": 0.00, "end": 0.10, "value": "X" },\n'
             '    { "start": 0.10, "end": "soon", "value": "B" }\n  ]\n}\n', 4, "\"end\" must be a number"),
    ("json", '{\n  "mouthCues": [\n    { "start": 0.00, "end": 0.10, "value": "X" },\n'
             '    { "start": 0.10, "value": "B" }\n  ]\n}\n', 4, "has no \"end\""),
    ("json", '{\n  "mouthCues": [\n    { "start": 0.00, "end": 0.10, "value": "Z" }\n  ]\n}\n', 3, "'Z' is not a mouth shape"),
    ("json", '{\n  "mouthCues": [\n    { "start": 0.00, "end": 0.10, "value": "X" }\n    { "start": 0.1 }\n', 4,
     "not valid JSON"),
    ("json", '{\n  "mouthCues": [\n    { "start": 0.20, "end": 0.10, "value": "X" }\n  ]\n}\n', 3, "before it starts"),
    ("json", '{\n  "mouthCues": [\n    { "start": 0.00, "end": 0.30, "value": "X" },\n'
             '    { "start": 0.20, "end": 0.40, "value": "B" }\n  ]\n}\n', 4, "before the previous cue ends"),
    ("json", '{\n  "metadata": {\n    "duration": -2\n  },\n  "mouthCues": []\n}\n', 2, "must not be negative"),
    ("json", '[1, 2]\n', 1, "expected a JSON object"),
    ("xml", '<?xml version="1.0"?>\n<rhubarbResult>\n  <mouthCues>\n    <mouthCue start="0.00" end="0.10">X</mouthCue>\n'
            '    <mouthCue start="0.10">B</mouthCue>\n  </mouthCues>\n</rhubarbResult>\n', 5, "no 'end' attribute"),
    ("xml", '<?xml version="1.0"?>\n<rhubarbResult>\n  <mouthCues>\n    <mouthCue start="0.00" end="0.10">X</mouthCues>\n',
     4, "not valid XML: mismatched tag"),
    ("xml", '<?xml version="1.0"?>\n<result/>\n', 2, "expected a <rhubarbResult> element"),
    ("dat", "MohoSwitch1\n1 X\n5 B\n3 C\n", 4, "frame 3 does not come after frame 5"),
    ("dat", "MohoSwitch1\n1 X\n0 B\n", 3, "expected '<frame number from 1> <shape>'"),
    ("dat", "MohoSwitch1\n1 rest\n5 XYZ\n9 rest\n", 3, "not a Preston Blair mouth name"),
    ("dat", "Switch\n1 X\n", 1, "expected the header 'MohoSwitch1'"),
]


@pytest.mark.parametrize("format, text, line, problem", MALFORMED)
def test_malformed_files_name_the_line(tmp_path, format, text, line, problem):
    path = tmp_path / f"bad.{format}"
    path.write_text(text)
    with pytest.raises(CueFileError) as caught:
        formats.read_cues(path)
    assert caught.value.line == line
    assert problem in str(caught.value)
    prefix = f"{path}, line {line}: " if line else f"{path}: "
    assert str(caught.value).startswith(prefix)


def test_unreadable_files_are_named(tmp_path):
    with pytest.raises(CueFileError, match="missing.tsv: no such file"):
        formats.read_cues(tmp_path / "missing.tsv")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{\n"a": "\xff\xfe"}')
    with pytest.raises(CueFileError, match=r"binary.json, line 2: not UTF-8"):
        formats.read_cues(binary)
    with pytest.raises(CueFileError, match="cannot tell the cue format"):
        formats.save_cues(CueTrack(()), tmp_path / "cues.wav")


def _fixture_texts():
    texts = []
    for recording in ("en_male_electricity.ogg", "s3_pauses.wav"):
        folder = RHUBARB / recording
        for name in ("ps_tsv.tsv", "ps_json.json", "ps_xml.xml", "ps_dat24_prestonblair.dat"):
            if (folder / name).is_file():
                texts.append((formats.format_of_path(name), (folder / name).read_text()))
    return texts or [("tsv", "0.00\tX\n0.10\tB\n0.20\tX\n")]


FIXTURE_TEXTS = _fixture_texts()


# Pieces that broke readers before: huge and odd numbers, entities, deep nesting.
HOSTILE_PIECES = [
    "9" * 5000, "1e308", "1e400", "1e12", "NaN", "Infinity", "١٢", "1_0", "&#32;" * 1000, "&a;",
    '<!DOCTYPE r [<!ENTITY a "ha">]>', '<!DOCTYPE r SYSTEM "x.dtd">', "[" * 3000, "{" * 3000, '"x":' * 100,
]


@st.composite
def mutated_cue_files(draw):
    format, text = draw(st.sampled_from(FIXTURE_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(
            st.text(alphabet=st.sampled_from(list('0123456789.-eE\t \n"{}[]<>/=,:ABCDXZ\\\x00é²')), max_size=6)
            | st.sampled_from(HOSTILE_PIECES)
        )
        if action == "insert":
            text = text[:position] + piece + text[position:]
        elif action == "delete":
            text = text[:position] + text[position + len(piece) + 1 :]
        else:
            text = text[:position] + piece + text[position + len(piece) :]
    return format, text


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_cue_files())
def test_fuzzed_files_give_a_track_or_a_cue_file_error(case):
    format, text = case
    started = time.perf_counter()
    try:
        track = formats.parse_cues(text, format, source="fuzz")
    except CueFileError as error:
        assert str(error).startswith(f"fuzz, line {error.line}: ") and error.line >= 1
        assert len(str(error)) < 300
        return
    finally:
        assert time.perf_counter() - started < 1.0  # no hang, whatever the input
    # Whatever reads must also write, in every format.
    for other in formats.FORMATS:
        formats.format_cues(track, other)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(formats.FORMATS), st.text(max_size=200))
def test_random_text_gives_a_track_or_a_cue_file_error(format, text):
    try:
        formats.parse_cues(text, format, source="fuzz")
    except CueFileError as error:
        assert str(error).startswith(f"fuzz, line {error.line}: ") and error.line >= 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.sampled_from("ABCDEFGHX")), min_size=1, max_size=30))
def test_generated_tracks_round_trip_through_every_text_format(steps):
    time, cues = 0, []
    for length, shape in steps:
        if length and (not cues or cues[-1].shape != shape):
            cues.append(Cue(time / 100, (time + length) / 100, shape))
            time += length
    track = CueTrack(tuple(cues), duration=time / 100 + 0.05)
    for format in ("tsv", "json", "xml"):
        text = formats.format_cues(track, format)
        again = formats.parse_cues(text, format)
        assert formats.format_cues(again, format) == text
        assert again.frame_shapes() == track.frame_shapes()
        assert again.duration == pytest.approx(track.duration)


# --------------------------------------------------------------------------------------------
# hostile files, each made from a real one: refused quickly, with the file and line named


def _real(name, recording="s3_pauses.wav"):
    path = RHUBARB / recording / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path.read_text()


def _refused(text, format, within=2.0):
    """The CueFileError that reading `text` raises, in under `within` seconds."""
    started = time.perf_counter()
    with pytest.raises(CueFileError) as caught:
        formats.parse_cues(text, format, source="bad." + format)
    assert time.perf_counter() - started < within
    assert str(caught.value).startswith("bad." + format)
    return caught.value


def test_xml_billion_laughs_is_refused_at_the_first_entity(shared):
    # 10 levels of 10 references each: 10^9 "ha"s from a file under 2 KB.
    laughs = '<!DOCTYPE rhubarbResult [\n  <!ENTITY a "ha">\n' + "".join(
        f'  <!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n' for i in range(9)
    ) + "]>\n"
    text = _real("ps_xml.xml").replace("<rhubarbResult>", laughs + "<rhubarbResult>", 1)
    text = text.replace(">X</mouthCue>", ">&j;</mouthCue>", 1)
    error = _refused(text, "xml")
    assert error.line == 3 and "entity declarations are not allowed" in error.problem


def test_xml_external_entities_are_refused(shared):
    real = _real("ps_xml.xml")
    text = real.replace("<rhubarbResult>", '<!DOCTYPE r [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n<rhubarbResult>', 1)
    assert "entity declarations are not allowed" in _refused(text.replace(">X<", ">&e;<", 1), "xml").problem
    text = real.replace("<rhubarbResult>", '<!DOCTYPE r SYSTEM "file:///etc/passwd">\n<rhubarbResult>', 1)
    assert _refused(text, "xml").line == 2


def test_a_name_quoted_from_a_bad_xml_file_is_shortened(shared):
    # Found by the fuzzer: a 5,000-character encoding name made a 5,000-character message.
    text = _real("ps_xml.xml").replace('encoding="utf-8"', f'encoding="u{"9" * 5000}tf-8"', 1)
    error = _refused(text, "xml")
    assert "unknown encoding: u999" in error.problem and error.problem.endswith("9tf-8 (5,023 characters)")
    assert len(str(error)) < 200


def test_xml_with_half_a_million_character_references_reads_in_linear_time(shared):
    # Each reference is its own piece of text: joined once, not added one by one.
    real = _real("ps_xml.xml")
    text = real.replace(">X</mouthCue>", ">" + "&#32;" * 500_000 + "X</mouthCue>", 1)
    started = time.perf_counter()
    track = formats.read_xml(text)
    assert time.perf_counter() - started < 2.0
    assert track.cues == formats.read_xml(real).cues
    text = real.replace("<soundFile>", "<soundFile>" + "&#65;" * 500_000, 1)
    assert formats.read_xml(text).sound_file.startswith("A" * 500_000)


def test_53_minute_json_reads_in_linear_time(shared):
    # Rhubarb's own cues, repeated end to end to 53 minutes (about 40,000 cues).
    track = formats.read_cues(RHUBARB / "s3_pauses.wav" / "ps_json.json")
    cues, offset = [], 0.0
    while offset < 53 * 60:
        cues += [Cue(offset + c.start, offset + c.end, c.shape) for c in track.contiguous()]
        offset += track.duration
    long = CueTrack(tuple(cues), duration=offset)
    for format in ("json", "xml", "tsv"):
        text = formats.format_cues(long, format)
        started = time.perf_counter()
        again = formats.parse_cues(text, format)
        assert time.perf_counter() - started < 5.0, format
        assert len(again.contiguous()) == len(long.contiguous())


def _with_number(format, number):
    """A real file of the format with its second cue's start (DAT: frame) replaced by `number`."""
    name = {"tsv": "ps_tsv.tsv", "json": "ps_json.json", "xml": "ps_xml.xml", "dat": "ps_dat24.dat"}[format]
    lines = _real(name).splitlines(keepends=True)
    index = {"tsv": 1, "json": 7, "xml": 8, "dat": 2}[format]
    line = lines[index]
    if format == "json":
        line = line.replace('"start": ' + line.split('"start": ')[1].split(",")[0], '"start": ' + number, 1)
    elif format == "xml":
        line = line.replace('start="' + line.split('start="')[1].split('"')[0], f'start="{number}', 1)
    else:
        line = number + line[line.index(line.split()[0]) + len(line.split()[0]):]
    lines[index] = line
    return "".join(lines), index + 1


HOSTILE_NUMBERS = [
    "1" * 400, "9" * 5000, "1e308", "1e400", "1e6", "1e12", "NaN", "-Infinity", "nan", "inf", "1_000", "²", "١٢",
    "0x10", "43201" + "0" * 4,
]


@pytest.mark.parametrize("format", ["tsv", "json", "xml", "dat"])
@pytest.mark.parametrize("number", HOSTILE_NUMBERS)
def test_huge_and_odd_numbers_are_refused_with_the_line(shared, format, number):
    text, line = _with_number(format, number)
    error = _refused(text, format)
    assert error.line == line, str(error)
    assert len(str(error)) < 200


@pytest.mark.parametrize("format, huge", [("tsv", "1e6"), ("tsv", "1e12"), ("json", "1e308"), ("xml", "1e308")])
def test_an_end_past_the_limit_is_refused(shared, format, huge):
    # The last TSV line (the end of the recording), JSON's and XML's duration.
    name = {"tsv": "ps_tsv.tsv", "json": "ps_json.json", "xml": "ps_xml.xml"}[format]
    text = _real(name)
    if format == "tsv":
        lines = text.splitlines(keepends=True)
        lines[-1] = huge + "\tX\n"
        text, line = "".join(lines), len(lines)
    else:
        text = re.sub(r"(duration.{1,3})[0-9.]+", lambda m: m.group(1) + huge, text, count=1)
        # JSON names the metadata object's line, XML the <duration> element's.
        line = 2 if format == "json" else 1 + text[: text.index("<duration>")].count("\n")
    error = _refused(text, format)
    assert error.line == line and "at most 43200 seconds (12 hours)" in error.problem


def test_a_seventeen_byte_file_cannot_claim_a_million_seconds():
    error = _refused("0.00\tX\n1e6\tX\n", "tsv")
    assert str(error) == "bad.tsv, line 2: time must be at most 43200 seconds (12 hours), got 1e6"


@pytest.mark.parametrize("depth", [200, 5000, 100_000])
def test_deeply_nested_json_is_refused_with_a_line(depth):
    text = '{\n"mouthCues": [\n' + "[" * depth + "]" * depth + "]}"
    error = _refused(text, "json")
    if depth > 1000:  # past Python's recursion limit: the line where it goes past 100 levels
        assert error.line == 3 and "nested too deeply" in error.problem
    else:
        assert error.line == 1 and "each mouth cue must be an object, got a list" in error.problem


def test_non_string_shapes_and_long_tokens_make_short_messages():
    text = '{"mouthCues": [{"start": 0, "end": 1, "value": [' + "1," * 10000 + '1]}]}'
    assert "a mouth shape is a letter, got a list" in str(_refused(text, "json"))
    assert len(str(_refused("0.00\t" + "Q" * 100000 + "\n1.00\tX\n", "tsv"))) < 200
    assert len(str(_refused("MohoSwitch1\n1 " + "Q" * 100000 + "\n", "dat"))) < 200
