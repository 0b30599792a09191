"""Handlers and the timer that keep live sprites posed (the bodies are in animation/blender/live.py).

- frame change (scrubbing, playback, `frame_set`, each frame of a render): pose live sprites;
- depsgraph update (a slider moved, a driver changed): the same, cheap when nothing changed; and a
  line's sound strip moved with its NLA strip (or the strip with its sound);
- render start/end: pose in line while rendering, so each rendered frame shows its own pose;
- file load: forget the previous file's sprites;
- a main-thread timer puts pictures the worker thread finished on their planes (interactive only:
  the `bpy` module has no event loop, there frames are posed in line).
"""

import bpy
from bpy.app.handlers import persistent

from ..animation.blender import live, timeline

TIMER_SECONDS = 0.05


@persistent
def on_frame_change(scene, depsgraph=None):
    live.update_scene(scene)


@persistent
def on_depsgraph_update(scene, depsgraph=None):
    try:
        timeline.keep_sounds_with_lines(scene)
    except Exception as error:  # noqa: BLE001 - a handler must not break editing
        print(f"THA Studio: keeping the lines' sounds with their strips: {error}")
    live.update_scene(scene)


@persistent
def on_render_start(scene, depsgraph=None):
    live.set_rendering(True)


@persistent
def on_render_end(scene, depsgraph=None):
    live.set_rendering(False)


@persistent
def on_load(filepath=None, *args):
    live.forget()


def apply_finished_frames():
    live.apply_finished()
    return TIMER_SECONDS


HANDLERS = (
    ("frame_change_post", on_frame_change),
    ("depsgraph_update_post", on_depsgraph_update),
    ("render_init", on_render_start),
    ("render_complete", on_render_end),
    ("render_cancel", on_render_end),
    ("load_post", on_load),
)


def register():
    for name, handler in HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if handler not in handlers:
            handlers.append(handler)
    if not bpy.app.background and not bpy.app.timers.is_registered(apply_finished_frames):
        bpy.app.timers.register(apply_finished_frames, first_interval=TIMER_SECONDS, persistent=True)


def unregister():
    if bpy.app.timers.is_registered(apply_finished_frames):
        bpy.app.timers.unregister(apply_finished_frames)
    for name, handler in HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        while handler in handlers:
            handlers.remove(handler)
    live.forget()
