"""The dataset flow's Blender side: model import, scene, posing, triplet renders, the dataset run,
the annotation session. Imports bpy; never torch at module level."""
