"""Frame rates as a Blender scene holds them: a whole `fps` divided by `fps_base`.

Dialogue is often cut to video at an NTSC rate, 24, 30 or 60 frames over 1.001 seconds, written
23.976 (or 23.98), 29.97 and 59.94; Blender's own presets hold these as fps 24, 30 or 60 over
fps_base 1.001. Any other rate is held as the next whole number over the base that divides it
down to the rate.
"""

import math

from ...lipsync.cues import MAX_FRAME_RATE

MIN_FRAME_RATE = 1e-6  # one frame over Blender's largest fps_base, 1,000,000 s
NTSC_BASE = 1.001
# How far a written rate may be from an NTSC one and still mean it: 23.98 is 0.0042 from 24/1.001.
NTSC_ROUNDING = 0.006


def scene_frame_rate(rate):
    """(fps, fps_base) of a scene playing `rate` frames a second (MIN_FRAME_RATE to MAX_FRAME_RATE)."""
    rate = float(rate)
    if not MIN_FRAME_RATE <= rate <= MAX_FRAME_RATE:  # (NaN fails too)
        raise ValueError(f"{rate} frames per second: a scene plays {MIN_FRAME_RATE:g} to {MAX_FRAME_RATE:g}")
    if rate == round(rate):
        return int(rate), 1.0
    whole = round(rate * NTSC_BASE)
    if 1 <= whole <= MAX_FRAME_RATE and abs(rate - whole / NTSC_BASE) <= NTSC_ROUNDING:
        return whole, NTSC_BASE
    whole = min(math.ceil(rate), int(MAX_FRAME_RATE))
    return whole, whole / rate
