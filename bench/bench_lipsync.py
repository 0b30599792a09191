#!/usr/bin/env python3
"""Lip sync benchmark: THA Studio's analyser against Rhubarb Lip Sync's own output.

For each recording in ../shared/assets/lipsync/audio it prints the share of 10 ms frames where the
analyser shows the same mouth shape as Rhubarb 1.14, and the same shape group (closed A/X,
narrow B/C/G, open D/H, round E/F), and the analyser's speed as a multiple of real time (audio
length / wall time, with the recognizer's models already loaded, as when a session analyses
several clips; the one-time load is printed apart). On a machine shared with other work the
wall-clock figure drops; the CPU-time figure (audio length / this process's CPU time) does not.

    python bench/bench_lipsync.py [--recognizer words|phonetic|both] [--plot /tmp/curves.png] [--profile] [--quieter DB]
                                  [--noise DB] [--subtype PCM_16|PCM_U8|ULAW]
    python bench/bench_lipsync.py --sweep [--recognizer ...] [--lengths 30,120,300,600]

`--profile` also prints where the time went (cProfile, by function's own time): for "words",
`WordRecognizer.words` is the language-model pass and `WordRecognizer.phones` the two alignment
passes (pocketsphinx's C code counts as the Python method that called it).

References: `ps_threads1_json.json` (Rhubarb's pocketSphinx recognizer, repeatable) for "words",
`phonetic_json.json` for "phonetic"; s1 is also run with its dialog text against
`ps_dialog_json.json`.

`--quieter 30` plays each recording 30 dB quieter (a 16-bit WAV), as a phone held away records:
the figures then say how much of the mouth's motion survives a quiet take.
`--noise 40` adds white noise 40 dB below each recording's loudest speech (a hiss or a room under
the voice), `--subtype PCM_U8` or `ULAW` writes it as 8-bit audio (an old game's voice files, a
phone line); they combine with `--quieter`, and are compared with Rhubarb's output for the clean
recording, so the figures say how much of the mouth's motion survives the worse take.

`--sweep` measures how speed and memory grow with the length of a recording: the shared
recordings joined (half a second apart, over and over) to each length, each length analysed in a
fresh process, printing x real time (wall and CPU) and the process's peak memory (resident set),
with how much of it the analysis added to the process holding the loaded model.
"""

import argparse
import cProfile
import json
import pstats
import resource
import subprocess
import sys
import tempfile
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


def degraded_copy(path, folder, quieter=0.0, noise=None, subtype="PCM_16"):
    """The recording as a take that arrives worse, written as a WAV of `subtype` ("PCM_16", or
    "PCM_U8" and "ULAW" for 8-bit audio): played `quieter` decibels quieter (a phone held away),
    and with white noise `noise` decibels below its loudest speech (its 99.5th-percentile 10 ms
    level: a hiss or a room's hum under the voice). The noise is seeded: each run hears the same."""
    import numpy as np
    import soundfile

    samples, rate = soundfile.read(path, always_2d=True, dtype="float32")
    samples = samples * 10 ** (-quieter / 20)
    if noise is not None:
        frame = rate // 100
        mono = samples.mean(axis=1)[: len(samples) // frame * frame].reshape(-1, frame)
        loudest = float(np.percentile(np.sqrt(np.mean(mono * mono, axis=1)), 99.5))
        hiss = np.random.default_rng(0).standard_normal(samples.shape).astype(np.float32)
        samples = samples + hiss * loudest * 10 ** (-noise / 20)
    copy = Path(folder) / f"{path.name}.wav"
    soundfile.write(copy, np.clip(samples, -1.0, 1.0), rate, subtype=subtype)
    return copy


def run(recognizer_name, rows, quieter=0.0, noise=None, subtype=None):
    started = time.perf_counter()
    recognizer = analyser.make_recognizer(recognizer_name)
    load = time.perf_counter() - started
    cases = [(path, None, REFERENCE[recognizer_name]) for path in recordings()]
    if recognizer_name == "words":
        dialog = (LIPSYNC / "audio" / "s1_plosives.dialog.txt").read_text()
        cases.append((LIPSYNC / "audio" / "s1_plosives.wav", dialog, "ps_dialog_json.json"))
    folder = tempfile.TemporaryDirectory(prefix="tha_lipsync_quieter_")
    for path, dialog, reference_name in cases:
        reference = formats.read_cues(LIPSYNC / "rhubarb" / path.name / reference_name)
        job_recognizer = analyser.make_recognizer(recognizer_name, dialog) if dialog else recognizer
        degraded = quieter or noise is not None or subtype
        analysed = degraded_copy(path, folder.name, quieter, noise, subtype or "PCM_16") if degraded else path
        started, cpu_started = time.perf_counter(), time.process_time()
        result = analyser.Analysis(analysed, recognizer_object=job_recognizer, dialog=dialog).run()
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        same, same_group = agreement(result.track, reference)
        name = path.name + (" +dialog" if dialog else "")
        duration = result.track.duration
        rows.append((recognizer_name, name, duration, same, same_group, duration / seconds, duration / cpu_seconds))
    folder.cleanup()
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


def joined_recording(seconds, path):
    """The shared recordings one after another (half a second apart), over and over, cut to
    `seconds`, written to `path` (16 kHz wav)."""
    import numpy as np
    import soundfile

    parts = [analyser.read_audio(p)[0] for p in recordings()]
    gap = np.zeros(analyser.SAMPLE_RATE // 2, dtype=np.float32)
    pieces, total = [], 0
    while total < seconds * analyser.SAMPLE_RATE:
        for part in parts:
            pieces += [part, gap]
            total += len(part) + len(gap)
    soundfile.write(path, np.concatenate(pieces)[: int(seconds * analyser.SAMPLE_RATE)], analyser.SAMPLE_RATE)


def resident_mib():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def measure_one(path, recognizer_name):
    """Analyse one recording in this process; print its figures as JSON (for `--sweep`)."""
    recognizer = analyser.make_recognizer(recognizer_name)
    before = resident_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    track = analyser.Analysis(path, recognizer_object=recognizer).run().track
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps(dict(duration=track.duration, seconds=seconds, cpu_seconds=cpu_seconds,
                          peak_mib=peak, added_mib=peak - before, cues=len(track.cues))))


def sweep(recognizer_names, lengths):
    print(f"{'recognizer':<10} {'length s':>8} {'cues':>6} {'wall s':>7} {'x real time':>11} {'(CPU time)':>10} "
          f"{'peak MiB':>8} {'added MiB':>9}")
    with tempfile.TemporaryDirectory(prefix="tha_lipsync_sweep_") as folder:
        for seconds in lengths:
            path = Path(folder) / f"joined_{seconds}s.wav"
            joined_recording(seconds, path)
            for name in recognizer_names:
                # A fresh process per run, so each peak is that run's alone.
                output = subprocess.run([sys.executable, __file__, "--measure-one", str(path), "--recognizer", name],
                                        check=True, capture_output=True, text=True).stdout
                row = json.loads(output.strip().splitlines()[-1])
                print(f"{name:<10} {seconds:8d} {row['cues']:6d} {row['seconds']:7.1f} "
                      f"{row['duration'] / row['seconds']:11.1f} {row['duration'] / row['cpu_seconds']:10.1f} "
                      f"{row['peak_mib']:8.0f} {row['added_mib']:9.0f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recognizer", choices=("words", "phonetic", "both"), default="both")
    parser.add_argument("--plot", type=Path, help="also draw the THA mouth curves of a recording to this PNG")
    parser.add_argument("--plot-recording", default="en_male_watchingtv.ogg")
    parser.add_argument("--profile", action="store_true", help="also print where the time went (cProfile)")
    parser.add_argument("--sweep", action="store_true", help="speed and peak memory against recording length")
    parser.add_argument("--lengths", default="30,120,300,600", help="the sweep's lengths in seconds")
    parser.add_argument("--quieter", type=float, default=0.0, metavar="DB",
                        help="analyse each recording played DB decibels quieter, as 16-bit WAV (against the same "
                        "references: Rhubarb's output for the recording as it is)")
    parser.add_argument("--noise", type=float, default=None, metavar="DB",
                        help="add white noise DB decibels below each recording's loudest speech (same references)")
    parser.add_argument("--subtype", choices=("PCM_16", "PCM_U8", "ULAW"), default=None,
                        help="analyse each recording as a WAV of this sample format (8-bit: PCM_U8, ULAW)")
    parser.add_argument("--measure-one", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_one:
        return measure_one(args.measure_one, args.recognizer)
    if not LIPSYNC.is_dir():
        sys.exit(f"../shared is absent ({SHARED}); the benchmark needs its recordings")
    if args.sweep:
        names = ("words", "phonetic") if args.recognizer == "both" else (args.recognizer,)
        return sweep(names, [int(s) for s in args.lengths.split(",")])
    rows, loads, profiles = [], {}, {}
    for name in ("words", "phonetic") if args.recognizer == "both" else (args.recognizer,):
        profiler = cProfile.Profile() if args.profile else None
        if profiler:
            profiler.enable()
        loads[name] = run(name, rows, args.quieter, args.noise, args.subtype)
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
