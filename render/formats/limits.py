"""Sizes no real model has, for every importer (MMD, glTF/VRM): refused before Blender builds
anything. Pure: no bpy.

Real MMD models have tens to a few hundred materials, a few hundred to about 1,500 bones (long
hair and skirts with physics) and up to about 1,000 morphs; Gene_light (the shared sample) has 13
materials, 224 bones, 184 morphs (177 of them vertex morphs) on 28,646 vertices. VRoid avatars
have a few hundred nodes, a few dozen primitives and under a hundred morph targets. A crafted
file far past that costs Blender minutes (40,000 materials or bones took about 2 minutes to
build) or gigabytes: Blender keeps every shape key as a full copy of the mesh (12 bytes a
vertex), so 20,000 one-vertex morphs took 4.6 GB, and a 950 KB glb declaring 3,000 empty morph
targets on 60,000 vertices 4.9 GB. The limits are several times the largest real figures.
"""

import os

from ...input_files import kind_of

MAX_MATERIALS = 2_000  # also a glTF file's primitives (each a material slot of its mesh)
MAX_BONES = 8_000
MAX_NODES = 20_000  # a glTF file's nodes: its bones, meshes and empties
MAX_MORPHS = 5_000  # also a glTF file's morph targets, over its meshes
MAX_TEXTURES = 2_000
MAX_VERTICES = 20_000_000  # a glTF accessor's elements: a damaged count is refused before it is allocated
# shape keys x vertices: 150 million vertex positions (1.8 GB of shape keys), e.g. 1,000 vertex
# morphs on a 150,000-vertex model; Gene_light needs 5 million.
MAX_SHAPE_KEY_VERTICES = 150_000_000
# A model, motion or glTF buffer file is read whole. The largest real ones, VRM avatars holding
# their textures, are a few hundred MB; a damaged or crafted file of many GB (a sparse one takes no
# disk) would take as much memory, or the process with it, and a resumed batch would meet it again.
MAX_FILE_BYTES = 2 * 1024**3


def whole_file_problem(path, what):
    """Words for what keeps `what` ("a model file", say) at `path` from being read whole, said
    before it is read: no regular file (a folder; a named pipe or a device, whose read never ends),
    or past MAX_FILE_BYTES. None otherwise, or where it cannot be stat'ed: the read then names that."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # (ValueError: a NUL in the name)
        return None
    if kind := kind_of(info.st_mode):
        return f"is {kind}, not {what}"
    size = info.st_size
    if size <= MAX_FILE_BYTES:
        return None
    return (f"is {size / 2**30:,.1f} GiB, more than the {MAX_FILE_BYTES // 2**30} GiB this importer reads "
            "(real models are far smaller; a file so large is damaged or made to attack)")


def size_problem(counts, shape_key_vertices, described):
    """Words for the first of `counts` ((what, count, limit), ...) past its limit, or for
    `shape_key_vertices` (shape keys x their mesh's vertices) past MAX_SHAPE_KEY_VERTICES, whose
    shape keys `described` says ("1,000 vertex morphs on 200,000 vertices"); None when within."""
    for what, count, limit in counts:
        if count > limit:
            return (f"{count:,} {what}, more than the {limit:,} this importer takes "
                    f"(real models have far fewer; a file with so many is damaged or made to attack)")
    if shape_key_vertices > MAX_SHAPE_KEY_VERTICES:
        return (f"{described} would need {shape_key_vertices * 12 / 1e9:.1f} GB of shape keys (Blender stores each as "
                f"a full copy of the mesh), more than the {MAX_SHAPE_KEY_VERTICES * 12 / 1e9:.1f} GB this importer allows")
    return None
