#!/usr/bin/env python3
"""Lip sync benchmark: THA Studio's analyser against Rhubarb Lip Sync's own output.

For each recording in ../shared/assets/lipsync/audio it prints the share of 10 ms frames where the
analyser shows the same mouth shape as Rhubarb 1.14, and the same shape group (closed A/X,
narrow B/C/G, open D/H, round E/F), and the analyser's speed as a multiple of real time (audio
length / wall time, with the recognizer's models already loaded, as when a session analyses
several clips; the one-time load is printed apart). On a machine shared with other work the
wall-clock figure drops; the CPU-time figure (audio length / this process's CPU time) does not.

    python bench/bench_lipsync.py [--recognizer words|phonetic|both] [--plot /tmp/curves.png] [--profile]

`--profile` also prints where the time went (cProfile, by function's own time): for "words",
`WordRecognizer.words` is the language-model pass and `WordRecognizer.phones` the two alignment
passes (pocketsphinx's C code counts as the Python method that called it).

References: `ps_threads1_json.json` (Rhubarb's pocketSphinx recognizer, repeatable) for "words",
`phonetic_json.json` for "phonetic"; s1 is also run with its dialog text against
`ps_dialog_json.json`.
"""

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402

cli.load_package(ROOT)

from tha_studio.lipsync import analyser, formats  # noqa: E402
from tha_studio.lipsync.cues import agreement  # noqa: E402

SHARED = ROOT.parent / "shared"
LIPSYNC = SHARED / "assets" / "lipsync"
REFERENCE = {"words": "ps_threads1_json.json", "phonetic": "phonetic_json.json"}


def recordings():
    audio = LIPSYNC / "audio"
    return sorted(p for p in audio.iterdir() if p.suffix in analyser.AUDIO_EXTENSIONS)


def run(recognizer_name, rows):
    started = time.perf_counter()
    recognizer = analyser.make_recognizer(recognizer_name)
    load = time.perf_counter() - started
    cases = [(path, None, REFERENCE[recognizer_name]) for path in recordings()]
    if recognizer_name == "words":
        dialog = (LIPSYNC / "audio" / "s1_plosives.dialog.txt").read_text()
        cases.append((LIPSYNC / "audio" / "s1_plosives.wav", dialog, "ps_dialog_json.json"))
    for path, dialog, reference_name in cases:
        reference = formats.read_cues(LIPSYNC / "rhubarb" / path.name / reference_name)
        job_recognizer = analyser.make_recognizer(recognizer_name, dialog) if dialog else recognizer
        started, cpu_started = time.perf_counter(), time.process_time()
        result = analyser.Analysis(path, recognizer_object=job_recognizer, dialog=dialog).run()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        same, same_group = agreement(result.track, reference)
        name = path.name + (" +dialog" if dialog else "")
        duration = result.track.duration
        rows.append((recognizer_name, name, duration, same, same_group, duration / seconds, duration / cpu_seconds))
    return load


def print_table(rows, loads):
    print(f"{'recognizer':<10} {'recording':<50} {'audio s':>8} {'same shape':>10} {'same group':>10} "
          f"{'x real time':>11} {'(CPU time)':>10}")
    for recognizer, name, duration, same, group, speed, cpu_speed in rows:
        print(f"{recognizer:<10} {name:<50} {duration:8.2f} {same:10.1%} {group:10.1%} {speed:11.1f} {cpu_speed:10.1f}")
    for recognizer in loads:
        picked = [r for r in rows if r[0] == recognizer]
        audio = sum(r[2] for r in picked)
        same = sum(r[2] * r[3] for r in picked) / audio
        group = sum(r[2] * r[4] for r in picked) / audio
        wall = sum(r[2] / r[5] for r in picked)
        cpu = sum(r[2] / r[6] for r in picked)
        print(f"{recognizer:<10} {'ALL (weighted by length)':<50} {audio:8.2f} {same:10.1%} {group:10.1%} "
              f"{audio / wall:11.1f} {audio / cpu:10.1f}")
        print(f"{recognizer:<10} model load once: {loads[recognizer]:.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recognizer", choices=("words", "phonetic", "both"), default="both")
    parser.add_argument("--plot", type=Path, help="also draw the THA mouth curves of a recording to this PNG")
    parser.add_argument("--plot-recording", default="en_male_watchingtv.ogg")
    parser.add_argument("--profile", action="store_true", help="also print where the time went (cProfile)")
    args = parser.parse_args()
    if not LIPSYNC.is_dir():
        sys.exit(f"../shared is absent ({SHARED}); the benchmark needs its recordings")
    rows, loads, profiles = [], {}, {}
    for name in ("words", "phonetic") if args.recognizer == "both" else (args.recognizer,):
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        loads[name] = run(name, rows)
        if profiler:
            profiler.disable()
            profiles[name] = profiler
    print_table(rows, loads)
    for name, profiler in profiles.items():
        print(f"\n{name}: where the time went (profiled run, so slower than the table)")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(8)
    if args.plot:
        from tha_studio.lipsync import curves, plot

        track = analyser.analyse(LIPSYNC / "audio" / args.plot_recording)
        result = curves.mouth_curves(track, curves.CurveSettings(frame_rate=30))
        plot.draw_curves(result, track, args.plot, title=f"{args.plot_recording}: THA mouth parameters at 30 fps")
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
