"""The animation flow: a character picture on a sprite plane, posed by THA, keyed on the timeline.

- `animation/core/`: pure (no bpy, no torch): pose keys and bake cache keys, the motion
  generators' maths (blinks, idle sway, breathing, eye movement), expression presets, face-capture
  tracks. Tested in plain Python.
- `animation/blender/`: the Blender side: the sprite object and its pose sliders, live preview,
  the bake to an image sequence, lip sync and generators written as keyframes. Imports bpy;
  torch only inside functions that pose (a render node without torch renders baked frames).

The UI (`addon/`) calls these; nothing here registers operators or panels.
"""
