"""Pure file formats of the dataset flow: MMD (PMX/PMD), VRM expressions, PNG, texture paths. No bpy, no torch."""
