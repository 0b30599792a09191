"""Subcommands of this package (see the root commands.py): `lipsync`."""

import argparse
import math
import sys

from ..atomic_files import write_text_atomic
from ..commands import CommandError, make_output_folder
from ..progress import run_with_bar
from .audio_formats import AUDIO_EXTENSIONS, decoded_by_blender

CUE_FORMATS = ("tsv", "json", "xml", "dat")
VALUE_FORMATS = ("values-csv", "values-json")

DESCRIPTION = """\
Lip sync: a recording or a Rhubarb cue file in; a cue file, or THA mouth values per frame, out.

Audio (.wav .ogg .opus .flac .mp3 .aiff .caf .w64 .au; .m4a .aac .mp4 .mov .mkv .mka .webm .wma
.ac3 through Blender's FFmpeg, as a temporary WAV copy) is analysed by Rhubarb Lip Sync when it is installed (on
PATH, or --rhubarb PATH; it reads PCM or float .wav and Ogg Vorbis, so others go to it as a temporary WAV copy), else
by THA Studio's own analyser (PocketSphinx); the first line on standard error says which ran.
Cue files (.tsv .json .xml .dat, as Rhubarb writes them) are read as they are. The output
format follows -o's extension (.tsv .json .xml .dat for cues, .csv for per-frame values)
unless --format says otherwise.
"""

EXAMPLES = """\
examples:
  lipsync voice.ogg -o voice.tsv                      cues, like `rhubarb -f tsv voice.ogg`
  lipsync voice.wav --dialog text.txt -o cues.json    words guided by the script
  lipsync cues.json -o cues.dat --dat-frame-rate 30 --dat-preston-blair
  lipsync cues.tsv -o mouth.csv --fps 30 --style linear --blend 0.08
  lipsync voice.ogg --format values-json --mapping my_mouth.json > mouth.json
"""


def add_subcommands(subparsers):
    parser = subparsers.add_parser(
        "lipsync",
        help="mouth cues from audio (Rhubarb or built-in analyser); cue files converted; THA mouth curves",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", help="recording (.wav .ogg .flac .mp3 .m4a ...) or cue file (.tsv .json .xml .dat)")
    parser.add_argument("-o", "--output", help="file to write (atomically); standard output if left out")
    parser.add_argument(
        "-f", "--format", choices=CUE_FORMATS + VALUE_FORMATS,
        help="output format (default: from -o's extension, .csv meaning values-csv; tsv on standard output)",
    )
    analysis = parser.add_argument_group("audio analysis")
    analysis.add_argument(
        "--engine", choices=("auto", "builtin", "rhubarb"), default="auto",
        help="who analyses audio: auto = Rhubarb if installed, else built-in (default: auto)",
    )
    analysis.add_argument("--rhubarb", metavar="PATH", help="Rhubarb Lip Sync executable (or its folder)")
    analysis.add_argument(
        "--recognizer", choices=("auto", "words", "phonetic"), default="auto",
        help="words: word recognition + alignment (Rhubarb's pocketSphinx); phonetic: phone recognition, "
        "faster, any language; auto: words with --dialog, else phonetic for the built-in analyser "
        "and words for Rhubarb (default: auto)",
    )
    analysis.add_argument("--dialog", metavar="FILE", help="the spoken text (UTF-8), to guide word recognition")
    analysis.add_argument(
        "--extended-shapes", default="GHX", metavar="SHAPES",
        help='extended mouth shapes to use besides A-F, as in Rhubarb (default: GHX; "" for A-F only)',
    )
    cues = parser.add_argument_group("cue files")
    cues.add_argument("--input-frame-rate", type=float, default=24.0, metavar="FPS",
                      help="frame rate of a .dat input (default: 24)")
    cues.add_argument("--dat-frame-rate", type=float, default=24.0, metavar="FPS",
                      help="frame rate of a .dat output, 24-100 (default: 24)")
    cues.add_argument("--dat-preston-blair", action="store_true",
                      help="write .dat shapes with Preston Blair names (MBP, etc, E, AI, O, U, FV, L, rest)")
    curves = parser.add_argument_group("THA mouth values (values-csv, values-json)")
    curves.add_argument("--schema", default="tha3", help="pose schema: tha1, tha2, tha3 or tha4 (default: tha3)")
    curves.add_argument("--mapping", metavar="FILE",
                        help='JSON {"A": {"mouth_aaa": 0.0}, ...} replacing the default mouth mapping per shape')
    curves.add_argument("--style", choices=("linear", "eased", "stepped"), default="eased",
                        help="transitions between shapes (default: eased)")
    curves.add_argument("--blend", type=float, default=0.06, metavar="SECONDS",
                        help="how long a transition takes (default: 0.06)")
    curves.add_argument("--fps", type=float, default=24.0, help="frame rate of the values (default: 24)")
    curves.add_argument("--start-frame", type=float, default=1.0, help="frame number at time 0 (default: 1)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on standard error")
    parser.set_defaults(func=run)


def run(args):
    from pathlib import Path

    from . import formats

    source = Path(args.input)
    output_format = _output_format(args)
    # Checked before the analysis, which takes a while on a long recording.
    value_settings = None if output_format in CUE_FORMATS else _value_settings(args)
    if source.suffix.lower() in AUDIO_EXTENSIONS:
        if args.output and source.is_file():  # (made before the analysis too)
            make_output_folder(args.output, "-o")
        track = _analyse(source, args)
    elif source.suffix.lower() in formats.EXTENSIONS:
        track = formats.read_cues(source, frame_rate=args.input_frame_rate)
    elif not source.exists():
        raise CommandError(f"{source}: no such file")
    else:
        raise CommandError(
            f"{source}: unsupported input '{source.suffix}'; give audio ({', '.join(AUDIO_EXTENSIONS)}) "
            f"or a cue file ({', '.join(formats.EXTENSIONS)})"
        )
    text = _render(track, output_format, args, value_settings)
    if args.output:
        write_text_atomic(args.output, text)
        if not args.quiet:
            print(f"{len(track)} cue{'' if len(track) == 1 else 's'}, {track.duration:.2f} s -> {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _output_format(args):
    from pathlib import Path

    if args.format:
        return args.format
    if not args.output:
        return "tsv"
    extension = Path(args.output).suffix.lower()
    known = {".tsv": "tsv", ".txt": "tsv", ".json": "json", ".xml": "xml", ".dat": "dat", ".csv": "values-csv"}
    if extension not in known:
        raise CommandError(f"{args.output}: cannot tell the output format from '{extension}'; give --format")
    return known[extension]


def _terminate_as_interrupt(signum, frame):
    raise KeyboardInterrupt  # so the job stops Rhubarb and removes its folder, as on Ctrl-C


def _analyse(source, args):
    if not decoded_by_blender(source):
        return _analyse_file(source, args)
    try:
        import bpy  # noqa: F401 (Blender's FFmpeg, `aud`, comes with it)
    except ImportError:
        raise CommandError(f"{source}: a '{source.suffix}' recording is decoded by Blender's FFmpeg, and Blender "
                           f"(the bpy module) is not installed here; convert it to WAV or FLAC first") from None
    from ..animation.blender.audio import DecodedRecording

    with DecodedRecording(source) as decoded:
        return decoded.naming_the_recording(_analyse_file(decoded.path, args, shown=source, via="Blender's FFmpeg"))


def _analyse_file(source, args, shown=None, via=None):
    """The cue track of a recording libsndfile reads; `shown`: the name to print (the original
    of a decoded copy), `via`: what decoded it."""
    from pathlib import Path

    from . import analyser, rhubarb

    shown = shown or source
    dialog = None
    if args.dialog:
        dialog = analyser.read_dialog(args.dialog)
    executable = None
    if args.engine != "builtin":
        executable = rhubarb.find_rhubarb(args.rhubarb)
        if executable is None and args.engine == "rhubarb":
            raise CommandError("Rhubarb Lip Sync is not installed (no 'rhubarb' on PATH); give --rhubarb PATH")
    if executable is not None:
        recognizer = "words" if args.recognizer == "auto" else args.recognizer
        job = rhubarb.RhubarbJob(source, executable, recognizer, dialog, args.extended_shapes)
        # Rhubarb opens .wav and .ogg; the job converts anything else (.flac, .mp3) to a temporary WAV.
        engine = f"Rhubarb Lip Sync ({executable})" + ("" if rhubarb.can_read(source) and not via else ", from a WAV copy")
    else:
        job = analyser.Analysis(source, args.recognizer, dialog, args.extended_shapes)
        engine = "the built-in analyser" + (", from a WAV copy" if via else "")
    if not args.quiet:
        print(f"{Path(shown).name}: analysed by {engine}" + (f" ({via} decoded it)" if via else ""), file=sys.stderr)
    # SIGTERM (a killed script, a stopped service) cleans up as Ctrl-C does; main thread only.
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        result = job.run() if args.quiet else run_with_bar(job, "lip sync")  # (the bar ends its line, raised or not)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    for note in job.notes:  # a recording cut short or damaged: said even with --quiet
        print(f"warning: {Path(shown).name}: {note}", file=sys.stderr)
    if executable is not None:
        return result
    if result.unknown_words and not args.quiet:
        print(f"words not in the dictionary, left out: {' '.join(result.unknown_words)}", file=sys.stderr)
    return result.track


def _render(track, output_format, args, value_settings):
    from . import formats

    if output_format in CUE_FORMATS:
        return formats.format_cues(track, output_format, args.dat_frame_rate, args.dat_preston_blair)
    return _render_values(track, output_format, *value_settings)


def _value_settings(args):
    """(mouth mapping, CurveSettings) of the per-frame value options, or a CommandError naming the bad one."""
    from ..input_files import read_text
    from ..pose.schema import get_schema
    from .curves import CurveSettings, MouthMapping

    try:
        get_schema(args.schema)
    except KeyError as error:
        raise CommandError(f"--schema: {error.args[0]}") from None
    if args.mapping:
        try:
            text = read_text(args.mapping)
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or error
            raise CommandError(f"{args.mapping}: cannot read the mouth mapping: {reason}") from None
        mapping = MouthMapping.from_json(text, args.schema, args.mapping)
    else:
        mapping = MouthMapping.default(args.schema)
    try:
        settings = CurveSettings(args.style, args.blend, args.fps, args.start_frame)
    except ValueError as error:  # curves' words on --style, --blend or --fps
        raise CommandError(error.args[0]) from None
    return mapping, settings


def _render_values(track, output_format, mapping, settings):
    import io
    import json

    from .curves import MAX_FRAME, mouth_curves

    curves = mouth_curves(track, settings, mapping)
    if curves.last_frame > MAX_FRAME:
        raise CommandError(f"the line runs to frame {math.ceil(curves.last_frame):,}, past Blender's last frame "
                           f"({MAX_FRAME:,}): start it earlier (--start-frame) or lower --fps")
    frames, values = curves.per_frame()
    if output_format == "values-json":
        document = {
            "schema": curves.schema_name,
            "frame_rate": settings.frame_rate,
            "start_frame": settings.start_frame,
            "style": settings.style,
            "blend": settings.blend,
            "parameters": list(curves.parameters),
            "frames": [int(f) for f in frames],
            "values": [[round(float(v), 6) for v in row] for row in values],
            "keyframes": {
                name: [[k.frame, k.value, k.interpolation] for k in keys] for name, keys in curves.keyframes.items()
            },
        }
        return json.dumps(document, indent=1) + "\n"
    out = io.StringIO()
    out.write(",".join(["frame"] + list(curves.parameters)) + "\n")
    for frame, row in zip(frames, values):
        out.write(",".join([str(int(frame))] + [f"{v:.6f}" for v in row]) + "\n")
    return out.getvalue()
