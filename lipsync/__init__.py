"""Lip sync: Rhubarb Lip Sync's mouth cues, read, written, made from audio, and turned into THA curves.

Pure Python (numpy; pocketsphinx and soundfile for the analyser), no bpy, no torch.

- cues.py: the cue track (start s, end s, mouth shape A-H/X) and time <-> frame helpers;
- formats.py: Rhubarb's TSV, JSON, XML and DAT files, byte for byte as Rhubarb writes them;
- rhubarb.py: running Rhubarb when it is installed, as a job to step and cancel;
- analyser.py: THA Studio's own analyser (PocketSphinx phones or words + alignment, VAD);
- shapes.py: Rhubarb's phone -> shape rules and timing steps;
- curves.py: cue track -> THA mouth-parameter keyframes and per-frame values;
- plot.py: a PNG of the curves; commands.py: the `lipsync` subcommand.
"""
