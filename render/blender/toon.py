"""The toon render style: MikuMikuDance's own look in Cycles on the CPU (imports bpy).

`apply_toon_style` turns an imported model's materials into MMD's shading
(render.formats.mmd.shading says the formula) and gives it MMD's outlines; `setup_toon_render`
sets Cycles up for it. Why it is built this way:

- The shading is all emission: the light term N.L of MMD's fixed light is computed in the shader
  (no lights, no bounces), so a handful of Cycles samples (for anti-aliasing) is a clean image
  and no GPU is needed. EEVEE would be the usual choice but compiles shaders for about a minute
  headless on the CPU (reference/blender.md).
- MMD does its arithmetic on the 8-bit sRGB values as they are. So the model's images are read
  as Non-Color and the view transform is Raw: the shader's numbers are the PNG's numbers, and a
  product or a sum (an additive sphere map) comes out as MMD's does.
- Outlines are an inverted hull: a Solidify modifier (after the armature, so it follows the pose
  and the morphs) grows a shell with flipped normals, a vertex group making it as thick as each
  vertex's material edge size (times MMD's per-vertex edge scale) and zero elsewhere; the shell's
  faces seen from behind are transparent (Cycles ignores backface culling), so only the rim
  outside the silhouette shows, in the material's edge colour. Its width is EDGE_PIXELS output
  pixels per unit of edge size, whatever the framing.
"""

from __future__ import annotations

import json

import bpy
import numpy as np
from mathutils import Vector

from ..formats.mmd.shading import LIGHT_COLOR, base_color, light_towards, shared_toon_pixels
from .model_import import EDGE_SCALE_ATTRIBUTE, MMD_SHADING_PROPERTY
from .scene import node_material, with_nodes

EDGE_PIXELS = 1.0  # outline width in output pixels for MMD edge size 1
OUTLINE_MODIFIER = "THA outline"
OUTLINE_GROUP = "THA outline"
TOON_PROPERTY = "tha_studio_toon"  # set on a material once it is a toon material
# Materials that are not MMD's (a VRM or glb avatar): ambient as a share of the diffuse colour,
# as MMD model editors default it.
AVATAR_AMBIENT = 0.5
DEFAULT_MATERIAL = "THA toon default"  # for meshes without a material


def setup_toon_render(scene, samples):
    """Cycles on the CPU for emission-only materials: no light bounces, Raw colours (see module),
    persistent render data."""
    cycles = scene.cycles
    cycles.samples = samples
    for bounces in ("max_bounces", "diffuse_bounces", "glossy_bounces", "transmission_bounces",
                    "volume_bounces"):
        setattr(cycles, bounces, 0)
    cycles.transparent_max_bounces = 16  # hair over hair over the outline shell
    cycles.use_adaptive_sampling = False
    scene.view_settings.view_transform = "Raw"
    # Keep Cycles' scene (textures, shaders, the unchanged meshes) from one image to the next: on
    # Gene_light at 256² an image takes half the time, with the same bytes.
    scene.render.use_persistent_data = True


def apply_toon_style(imported, pixel_size, camera=None):
    """Make every material of the imported model a toon material and add outlines `pixel_size`
    world units per output pixel wide; `camera` (the scene's by default) sets the view for
    specular highlights. Returns the number of materials made toon."""
    camera = camera or bpy.context.scene.camera
    toward_viewer = tuple((camera.matrix_world.to_3x3() @ Vector((0.0, 0.0, 1.0))).normalized())
    made = 0
    for obj in imported.meshes:
        if obj.modifiers.get(OUTLINE_MODIFIER) is not None:
            continue  # made toon already
        _fill_empty_slots(obj)
        materials = [slot.material for slot in obj.material_slots]
        for material in {m.as_pointer(): m for m in materials}.values():
            if not material.get(TOON_PROPERTY):
                make_toon_material(material, toward_viewer)
                made += 1
        add_outline(obj, materials, pixel_size)
    return made


def _fill_empty_slots(obj):
    """A plain grey material where a mesh has none (a glb without materials): with no lights,
    Cycles' default surface would render black."""
    if not obj.material_slots:
        obj.data.materials.append(None)
    for slot in obj.material_slots:
        if slot.material is None:
            slot.material = bpy.data.materials.get(DEFAULT_MATERIAL) or node_material(DEFAULT_MATERIAL)


# ----------------------------------------------------------------------------------------------
# Materials


class _Nodes:
    """Adds shader nodes left to right; each input (by index) is linked from a socket or set to a constant."""

    def __init__(self, material):
        self.tree = material.node_tree
        self.x = 0

    def add(self, kind, *inputs, **settings):
        node = self.tree.nodes.new(kind)
        node.location = (self.x, 0)
        self.x += 200
        for name, value in settings.items():
            setattr(node, name, value)
        for index, value in enumerate(inputs):
            if value is None:
                continue
            if isinstance(value, bpy.types.NodeSocket):
                self.tree.links.new(value, node.inputs[index])
            else:
                node.inputs[index].default_value = value
        return node

    def math(self, operation, a, b=None, c=None):
        return self.add("ShaderNodeMath", a, b, c, operation=operation).outputs[0]

    def vector(self, operation, a, b=None, c=None):
        return self.add("ShaderNodeVectorMath", a, b, c, operation=operation).outputs[0]

    def image(self, image, vector=None, extension="REPEAT"):
        return self.add("ShaderNodeTexImage", vector, image=image, extension=extension, interpolation="Linear")


def make_toon_material(material, toward_viewer):
    """Rebuild `material`'s nodes as MMD's shading (render.formats.mmd.shading), as emission."""
    shading = mmd_shading(material)
    texture, diffuse = _current_texture_and_diffuse(material)
    if shading is None:  # an avatar's material
        shading = {"ambient": [v * AVATAR_AMBIENT for v in diffuse[:3]], "specular": [0, 0, 0],
                   "specular_power": 0.0, "sphere": None, "sphere_mode": 0, "toon": None, "shared_toon": None}
    with_nodes(material).node_tree.nodes.clear()
    n = _Nodes(material)
    geometry = n.add("ShaderNodeNewGeometry")
    normal = geometry.outputs["Normal"]

    color, alpha = base_color(diffuse, shading["ambient"]), diffuse[3]
    if texture is not None:
        _read_raw(texture)
        sampled = n.image(texture)
        color = n.vector("MULTIPLY", sampled.outputs["Color"], color)
        alpha = n.math("MULTIPLY", sampled.outputs["Alpha"], alpha)

    sphere = _load_image(shading["sphere"])
    if sphere is not None and shading["sphere_mode"] in (1, 2):
        view_normal = n.add("ShaderNodeVectorTransform", normal, vector_type="NORMAL", convert_from="WORLD",
                            convert_to="CAMERA").outputs[0]
        sphere_uv = n.vector("MULTIPLY_ADD", view_normal, (0.5, 0.5, 0.0), (0.5, 0.5, 0.0))
        sampled = n.image(sphere, sphere_uv).outputs["Color"]
        color = n.vector("MULTIPLY" if shading["sphere_mode"] == 1 else "ADD", color, sampled)

    # The toon ramp at v = 0.5 + N.L / 2 in Blender's upward v (the bitmap's top row faces the light).
    facing = n.vector("DOT_PRODUCT", normal, light_towards()).node.outputs["Value"]
    ramp_v = n.math("MULTIPLY_ADD", facing, 0.5, 0.5)
    ramp_uv = n.add("ShaderNodeCombineXYZ", 0.0, ramp_v, 0.0).outputs[0]
    ramp = _load_image(shading["toon"]) or shared_toon_image(shading["shared_toon"])
    color = n.vector("MULTIPLY", color, n.image(ramp, ramp_uv, extension="EXTEND").outputs["Color"])

    specular = [v * LIGHT_COLOR for v in shading["specular"]]
    if any(specular):
        half = tuple(Vector(light_towards()) + Vector(toward_viewer))
        half = tuple(Vector(half).normalized())
        highlight = n.math("POWER", n.math("MAXIMUM", n.vector("DOT_PRODUCT", normal, half).node.outputs["Value"], 0.0),
                           shading["specular_power"])
        color = n.vector("MULTIPLY_ADD", specular, highlight, color)

    color = n.vector("MINIMUM", n.vector("MAXIMUM", color, (0.0, 0.0, 0.0)), (1.0, 1.0, 1.0))
    if material.use_backface_culling:  # MMD draws this material's back faces not at all
        facing_viewer = n.math("SUBTRACT", 1.0, geometry.outputs["Backfacing"])
        alpha = n.math("MULTIPLY", alpha, facing_viewer)
    _finish(n, color, alpha)
    material[TOON_PROPERTY] = True


def mmd_shading(material):
    """The MMDShading the importer stored on an MMD material (as a dict), or None for any other."""
    text = material.get(MMD_SHADING_PROPERTY) if material is not None else None
    return json.loads(text) if text else None


def _finish(n, color, alpha):
    """Emission of `color` over transparency by `alpha` into a new material output."""
    emission = n.add("ShaderNodeEmission", color, 1.0)
    transparent = n.add("ShaderNodeBsdfTransparent", (1.0, 1.0, 1.0, 1.0))
    mix = n.add("ShaderNodeMixShader", alpha, transparent.outputs[0], emission.outputs[0])
    n.add("ShaderNodeOutputMaterial", mix.outputs[0], target="ALL")


def _current_texture_and_diffuse(material):
    """The main image the importer linked (or None) and the diffuse RGBA it set."""
    images = [node.image for node in material.node_tree.nodes
              if node.bl_idname == "ShaderNodeTexImage" and node.image is not None] if material.node_tree else []
    bsdf = next((node for node in material.node_tree.nodes if node.bl_idname == "ShaderNodeBsdfPrincipled"),
                None) if material.node_tree else None
    if bsdf is not None and MMD_SHADING_PROPERTY not in material:
        diffuse = (*bsdf.inputs["Base Color"].default_value[:3], bsdf.inputs["Alpha"].default_value)
    else:
        diffuse = tuple(material.diffuse_color)
    return (images[0] if images else None), diffuse


def _read_raw(image):
    """Sample the image's stored numbers, as MMD does (see the module docstring)."""
    if image.colorspace_settings.name != "Non-Color":
        image.colorspace_settings.name = "Non-Color"


def _load_image(path):
    """A sphere or toon image by path (read raw), or None when there is none or Blender cannot read it."""
    if not path:
        return None
    try:
        image = bpy.data.images.load(path, check_existing=True)
    except RuntimeError:  # the import already warned about textures it could not find or read
        return None
    _read_raw(image)
    return image


def shared_toon_image(number, size=32):
    """MMD's shared toon `number` (0-9; None: the plain white ramp) as an image made once a file."""
    name = f"THA shared toon{'' if number is None else f'{number + 1:02d}'}"
    image = bpy.data.images.get(name)
    if image is None:
        image = bpy.data.images.new(name, size, size, alpha=True)
        image.colorspace_settings.name = "Non-Color"
        pixels = shared_toon_pixels(number, size)[::-1]  # Blender's row 0 is the bottom
        image.pixels.foreach_set(np.ascontiguousarray(pixels).ravel())
        image.pack()
    return image


# ----------------------------------------------------------------------------------------------
# Outlines


def add_outline(obj, materials, pixel_size):
    """An inverted-hull outline for the materials that draw edges (see the module docstring);
    returns the Solidify modifier, or None when no material of `obj` draws one."""
    widths = outline_widths(obj, materials)
    widest = float(widths.max()) if len(widths) else 0.0
    if widest <= 0.0:
        return None
    group = obj.vertex_groups.get(OUTLINE_GROUP) or obj.vertex_groups.new(name=OUTLINE_GROUP)
    weights = np.round(widths / widest * 255) / 255
    for weight in np.unique(weights[weights > 0]):
        group.add(np.flatnonzero(weights == weight).tolist(), float(weight), "REPLACE")

    slots = len(materials)
    for material in materials:  # the shell's faces take slot index + `slots`
        obj.data.materials.append(outline_material(material))
    modifier = obj.modifiers.new(OUTLINE_MODIFIER, "SOLIDIFY")
    modifier.thickness = widest * EDGE_PIXELS * pixel_size
    modifier.offset = 1.0  # grow outwards, along the normals
    modifier.use_flip_normals = True
    modifier.use_rim = False
    modifier.use_even_offset = False
    modifier.vertex_group = OUTLINE_GROUP
    modifier.thickness_vertex_group = 0.0  # vertices outside the group: no shell width
    modifier.material_offset = slots
    # The shell of materials without edges has no width; left in place it would lie on their faces
    # and, being transparent, let rays through them (Gene's eyes vanished), so it is deleted.
    drop = obj.modifiers.new(OUTLINE_MODIFIER + " trim", "NODES")
    drop.node_group = _drop_faces_group(_empty_outline_material())
    return modifier


def _drop_faces_group(material):
    """A geometry-nodes group that deletes the faces using `material` (made once a file)."""
    name = f"THA delete {material.name}"
    group = bpy.data.node_groups.get(name)
    if group is not None:
        return group
    group = bpy.data.node_groups.new(name, "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    given, result = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    selection = nodes.new("GeometryNodeMaterialSelection")
    selection.inputs["Material"].default_value = material
    delete = nodes.new("GeometryNodeDeleteGeometry")
    delete.domain = "FACE"
    links.new(given.outputs[0], delete.inputs["Geometry"])
    links.new(selection.outputs[0], delete.inputs["Selection"])
    links.new(delete.outputs[0], result.inputs[0])
    return group


def outline_widths(obj, materials):
    """Per vertex: the widest edge size of the edge-drawing materials its faces use, times MMD's
    per-vertex edge scale; 0 for vertices of materials without the draw-edge flag."""
    mesh = obj.data
    sizes = np.zeros(max(len(materials), 1), np.float32)
    for index, material in enumerate(materials):
        shading = mmd_shading(material)
        if shading and shading["draw_edge"] and shading["edge_color"][3] > 0:
            sizes[index] = max(shading["edge_size"], 0.0)
    face_materials = np.zeros(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("material_index", face_materials)
    loop_totals = np.zeros(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("loop_total", loop_totals)
    loop_vertices = np.zeros(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", loop_vertices)
    widths = np.zeros(len(mesh.vertices), np.float32)
    np.maximum.at(widths, loop_vertices, np.repeat(sizes[np.clip(face_materials, 0, len(sizes) - 1)], loop_totals))
    scale = mesh.attributes.get(EDGE_SCALE_ATTRIBUTE)
    if scale is not None:
        values = np.ones(len(mesh.vertices), np.float32)
        scale.data.foreach_get("value", values)
        widths *= values
    return widths


def outline_material(material):
    """The shell material for faces of `material`: its edge colour where it draws edges, else
    nothing; one material per colour (or the one empty material), shared by the file."""
    shading = mmd_shading(material)
    if not (shading and shading["draw_edge"]):
        return _empty_outline_material()
    red, green, blue, alpha = shading["edge_color"]
    name = f"THA outline {red:.3f} {green:.3f} {blue:.3f} {alpha:.3f}"
    edge = bpy.data.materials.get(name)
    if edge is None:
        edge = node_material(name)
        n = _Nodes(edge)
        edge.node_tree.nodes.clear()
        geometry = n.add("ShaderNodeNewGeometry")
        # Solidify's flipped shell is seen from its back where it lies behind the model, i.e. only
        # at the rim outside the silhouette; its faces towards the viewer are let through.
        shown = n.math("MULTIPLY", n.math("SUBTRACT", 1.0, geometry.outputs["Backfacing"]), alpha)
        _finish(n, (red, green, blue, 1.0), shown)
        edge[TOON_PROPERTY] = True
    return edge


def _empty_outline_material():
    empty = bpy.data.materials.get("THA outline none")
    if empty is None:
        empty = node_material("THA outline none")
        n = _Nodes(empty)
        empty.node_tree.nodes.clear()
        _finish(n, (0.0, 0.0, 0.0, 1.0), 0.0)
        empty[TOON_PROPERTY] = True
    return empty
