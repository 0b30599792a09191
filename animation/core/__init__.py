"""The animation flow's pure parts: pose and cache keys, motion generators, presets. No bpy, no torch."""
