"""The animation flow's Blender side: sprite, pose sliders, live preview, bake, keys on the timeline.

Imports bpy; never torch at module level (the poser is imported where a frame is posed)."""
