"""The pure dataset side: annotation, pose sampling, framing, manifest, the batch plan, settings, review sheet.

No bpy, no torch: a training machine or a review script uses it without Blender.
"""
