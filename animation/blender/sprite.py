"""The talking-head sprite: a plane that shows a posed character picture, with THA's pose
parameters as shape-key sliders.

Why shape keys, not a registered property group (the design decision of the sprites issue):
a sprite's sliders must behave like a 3D character's face shapes, and shape keys are what Blender
and its animators already use for that. They are keyed with I over the slider, listed in the
Dope Sheet's Shape Key Editor, Graph Editor and NLA (as the mesh's Key datablock), take drivers
(so a face-capture add-on or a control bone drives them), are found by name by the tools that
target shape keys (lip-sync add-ons' shape-key actions, face-capture retargeters), and, being
Blender's own data, keep their values and animation in a .blend opened where THA Studio is not
installed. A registered property group would lose all of that there (its F-curves would point
at a property nobody defines). The keys carry values only: every key's coordinates equal the
basis, so they never move the plane. Their slider ranges are the schema's ranges; a reset puts
the schema's defaults back.

The sprite's settings (schema, weights, picture, cache folder, mode) are a plain ID property on
the object (animation/core/sprite_settings.py), for the same reason.

The material shows either the live image (posed by THA as frames change: animation/blender/live.py)
or, after a bake, the baked image sequence (animation/blender/bake.py), with its transparency in
EEVEE, Cycles and Workbench.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ...atomic_files import portable_name
from ...errors import UserError
from ...pose.character_image import CharacterImageError, fit_character_image, prepare_character_image, turned_by_exif
from ...pose.colour_space import linear_to_srgb
from ...pose.schema import get_schema
from ...render.blender import scene as scenes
from ..core.bake_cache import frame_number, picture_digest
from ..core.sprite_settings import PROPERTY, SpriteSettings

DEFAULT_SIZE = 1.0  # metres: the picture's height; THA's head box is a quarter of it


class SpriteError(UserError):
    """An object that is not a usable sprite, or a sprite whose data was damaged."""


def is_sprite(obj):
    return obj is not None and obj.type == "MESH" and PROPERTY in obj.keys()


def settings_of(obj):
    if not is_sprite(obj):
        raise SpriteError(f"{getattr(obj, 'name', obj)!r} is not a THA talking-head sprite")
    return SpriteSettings.from_dict(obj[PROPERTY], obj.name)


def readable_settings(obj):
    """settings_of(obj), or None where they cannot be read: a damaged .blend, or one a newer THA
    Studio saved with a setting this one does not know. For walks over every sprite, which one
    such sprite must not stop."""
    try:
        return settings_of(obj)
    except UserError:
        return None


def store_settings(obj, settings):
    obj[PROPERTY] = settings.to_dict()


def sprites_in(scene):
    return [obj for obj in scene.objects if is_sprite(obj)]


# --- creating ------------------------------------------------------------------------------


def create_sprite(scene, picture_path, settings=None, name=None, size=DEFAULT_SIZE, pack=True, location=(0.0, 0.0, 0.0),
                  fit=None, check_picture=None):
    """A new sprite in `scene` from a character picture; returns the object.

    The picture is checked and prepared for the schema first (CharacterImageError names the file
    and what is wrong: no alpha, opaque background, head outside the box, ...), so nothing is
    created for a picture the networks cannot use. `pack`: keep the picture inside the .blend
    (else the .blend refers to the file; a picture its EXIF orientation turns is packed upright
    whatever `pack` says, since Blender would load it on its side, and so is one Blender does not
    read as THA Studio does: AVIF, say, or a TIFF with premultiplied alpha). `fit`: None, or
    {top, chin, centre} (each None to find it) to scale and move the picture so its head fills
    the head box (fit_character_image); the fitted copy is the sprite's picture, packed, and its
    custom property "tha_fit" says where the head was found. `check_picture(rgba, path)`, when
    given, sees the prepared picture before anything is made and raises for one the weights
    cannot pose (live.picture_check).
    """
    settings = settings or SpriteSettings()
    schema = get_schema(settings.schema)
    picture_path = Path(picture_path)
    name = name or picture_path.stem
    picture, rgba = _load_picture(picture_path, schema, f"{name} picture", pack, fit, check_picture)

    mesh = _plane_mesh(f"{name} plane", size)
    obj = bpy.data.objects.new(name, mesh)
    obj.location = location
    scene.collection.objects.link(obj)
    _add_sliders(obj, schema)

    live = bpy.data.images.new(f"{name} posed", schema.image_size, schema.image_size, alpha=True)
    live.use_fake_user = True
    show_rgba(live, rgba)
    material = _sprite_material(f"{name} material", live)
    mesh.materials.append(material)

    settings.picture = picture.name
    settings.picture_digest = picture_digest(rgba)
    settings.mode = "LIVE"
    store_settings(obj, settings)
    return obj


def _load_picture(picture_path, schema, image_name, pack, fit, check_picture=None):
    """(Blender image, prepared RGBA) of a character picture, checked first (CharacterImageError,
    then `check_picture(rgba, path)`)."""
    if not picture_path.exists():  # (a folder or a named pipe: named by prepare_character_image)
        raise CharacterImageError(picture_path, "no such file")
    if fit is None:
        rgba = prepare_character_image(picture_path, schema)
    else:
        rgba, head = fit_character_image(picture_path, schema, **fit)
    if check_picture is not None:
        check_picture(rgba, picture_path)
    picture = None
    if fit is None and not turned_by_exif(picture_path):
        picture = _picture_file(picture_path, image_name, pack, schema, rgba)
    if picture is None:
        # The prepared copy, packed: of a picture Blender would load on its side (as stored,
        # where its EXIF orientation turns it) or not at all, or the fitted copy (no file of its own).
        picture = bpy.data.images.new(image_name, schema.image_size, schema.image_size, alpha=True)
        show_rgba(picture, rgba)
        picture.pack()
        if fit is not None:
            picture["tha_fit"] = f"{picture_path.name}: {head.describe()}"
    picture.use_fake_user = True  # the source of every frame: never garbage-collected
    return picture, rgba


def _picture_file(picture_path, image_name, pack, schema, rgba):
    """The picture file as a Blender image (packed where `pack`), or None where Blender does not
    read it as THA Studio does (`rgba`, prepared for `schema`)."""
    picture = bpy.data.images.load(str(picture_path.resolve()), check_existing=False)
    if not (picture.size[0] and picture.size[1] and _reads_as(picture, schema, rgba)):
        # Blender cannot read it (AVIF, QOI, ICO) or reads it otherwise: a 16-bit PNG or TIFF as
        # float pixels, a TIFF's associated (premultiplied) alpha as straight. Poses are named by
        # the picture THA Studio read: its copy is packed instead.
        bpy.data.images.remove(picture)
        return None
    picture.name = image_name
    if pack:
        picture.pack()
    return picture


def _reads_as(picture, schema, rgba):
    try:
        return np.array_equal(prepare_character_image(image_rgba(picture), schema), rgba)
    except CharacterImageError:
        return False


def replace_picture(obj, picture_path, pack=True, fit=None, check_picture=None):
    """Put another character picture on a sprite, keeping its sliders, keys, lines and motion
    (an updated drawing, or the same performance for another character). Checked as
    create_sprite checks it (nothing changes for a picture the networks cannot use). The baked
    frames are of the old picture: the sprite goes live, and the next bake poses the new one (its
    poses are named by the picture, so none of the old ones is taken for it). The old picture
    leaves the .blend unless another sprite shows it. Returns the new Blender image."""
    settings = settings_of(obj)
    schema = get_schema(settings.schema)
    old = bpy.data.images.get(settings.picture)
    picture, rgba = _load_picture(Path(picture_path), schema, f"{obj.name} picture", pack, fit, check_picture)
    if old is not None and old is not picture and not any(
            other is not obj and is_sprite(other) and getattr(readable_settings(other), "picture", None) == old.name
            for other in bpy.data.objects):
        bpy.data.images.remove(old)
        picture.name = f"{obj.name} picture"  # (it took ".001" while the old one had the name)
    settings.picture = picture.name
    settings.picture_digest = picture_digest(rgba)
    store_settings(obj, settings)
    use_live(obj)
    return picture


def _plane_mesh(name, size):
    """A plane standing on the origin in the XZ plane, facing the front view (-Y), UVs 0..1."""
    half = size / 2.0
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata([(-half, 0.0, 0.0), (half, 0.0, 0.0), (half, 0.0, size), (-half, 0.0, size)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    uv.data.foreach_set("uv", [0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0])
    mesh.update()
    return mesh


def _add_sliders(obj, schema):
    obj.shape_key_add(name="Basis", from_mix=False)
    rest = schema.as_dict(schema.rest_pose())
    for parameter in schema.parameters:
        key = obj.shape_key_add(name=parameter.name, from_mix=False)
        key.slider_min = parameter.minimum
        key.slider_max = parameter.maximum
        # The picture as drawn (THA1 draws the mouth open, the others a neutral face); not the
        # official demos' slider defaults, whose THA3 mouth_aaa starts at 1: the sprite would talk.
        key.value = rest[parameter.name]
    obj.data.shape_keys.name = f"{obj.name} pose"


def _sprite_material(name, image):
    """Unlit picture with its alpha: emission mixed with transparency, blended (not dithered)."""
    material = scenes.node_material(name)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    texture = nodes.new("ShaderNodeTexImage")
    texture.name = texture.label = "THA frame"
    texture.image = image
    texture.interpolation = "Linear"
    texture.extension = "CLIP"
    emission = nodes.new("ShaderNodeEmission")
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    mix = nodes.new("ShaderNodeMixShader")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    links.new(texture.outputs["Alpha"], mix.inputs["Fac"])
    links.new(transparent.outputs["BSDF"], mix.inputs[1])
    links.new(emission.outputs["Emission"], mix.inputs[2])
    links.new(mix.outputs["Shader"], output.inputs["Surface"])
    for node, x in ((texture, -600), (emission, -250), (transparent, -250), (mix, 0), (output, 250)):
        node.location = (x, 150 if node is transparent else 0)
    nodes.active = texture  # Workbench's texture colour shows the active image node
    if hasattr(material, "surface_render_method"):  # EEVEE (4.2+): true blending of the edges
        material.surface_render_method = "BLENDED"
    else:
        material.blend_method = "BLEND"
    material.use_backface_culling = False
    return material


def frame_node(obj):
    """The sprite material's image node (the one that shows the posed picture)."""
    for slot in obj.material_slots:
        material = slot.material
        if material and material.node_tree and "THA frame" in material.node_tree.nodes:
            return material.node_tree.nodes["THA frame"]
    raise SpriteError(f"{obj.name}: its THA material is missing (the 'THA frame' image node was removed)")


# --- pictures ------------------------------------------------------------------------------


def show_rgba(image, rgba):
    """Put an RGBA uint8 (H, W, 4) picture (top row first) into a Blender image."""
    height, width = rgba.shape[:2]
    if tuple(image.size) != (width, height):
        image.scale(width, height)
    pixels = np.ascontiguousarray(rgba[::-1], dtype=np.float32).reshape(-1) / 255.0
    image.pixels.foreach_set(pixels)
    image.update()


def image_rgba(image):
    """A Blender image's pixels as RGBA uint8 (H, W, 4), top row first (packed or on disk)."""
    width, height = image.size
    if width == 0 or height == 0:
        raise SpriteError(f"image {image.name!r} has no pixels (its file {image.filepath!r} is missing?)")
    pixels = np.empty(width * height * 4, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    if image.is_float:  # (a 16-bit or HDR picture: Blender holds it premultiplied, in scene linear)
        rgba = pixels.reshape(height, width, 4).astype(np.float64)
        alpha = rgba[..., 3:]
        rgba[..., :3] = linear_to_srgb(np.divide(rgba[..., :3], alpha, out=np.zeros_like(rgba[..., :3]),
                                                 where=alpha > 0))
        return np.rint(np.clip(rgba[::-1], 0.0, 1.0) * 255.0).astype(np.uint8)
    # In place: a large drawing's float pixels are 16 bytes each (2.3 GB at 12000x12000), and
    # every temporary the size of them counts.
    np.rint(np.multiply(pixels, 255.0, out=pixels), out=pixels)
    return pixels.reshape(height, width, 4)[::-1].astype(np.uint8)


def fit_description(obj):
    """Where the head of the sprite's picture was found when it was fitted ("" if it was not)."""
    image = bpy.data.images.get(settings_of(obj).picture)
    return str(image.get("tha_fit", "")) if image is not None else ""


def picture_of(obj):
    """The sprite's character picture, prepared for its schema (RGBA uint8)."""
    settings = settings_of(obj)
    image = bpy.data.images.get(settings.picture)
    if image is None:
        raise SpriteError(f"{obj.name}: its picture {settings.picture!r} is no longer in the .blend")
    return prepare_character_image(image_rgba(image), get_schema(settings.schema))


def live_image(obj):
    """The image the live preview paints into, "<sprite> posed" (created again if it was removed).

    A renamed sprite's plane still shows the image of its old name: that one is renamed with it,
    else the preview would paint an image nobody sees."""
    name = f"{obj.name} posed"
    image = bpy.data.images.get(name)
    if image is None:
        shown = frame_node(obj).image
        others = {f"{other.name} posed" for other in bpy.data.objects if other is not obj and is_sprite(other)}
        if shown is not None and shown.source == "GENERATED" and shown.name.endswith(" posed") \
                and shown.name not in others:
            shown.name = name
            return shown
        size = get_schema(settings_of(obj).schema).image_size
        image = bpy.data.images.new(name, size, size, alpha=True)
        image.use_fake_user = True
    return image


# --- copies --------------------------------------------------------------------------------


def _other_sprites(obj):
    """Sprites with a mesh of their own (a linked copy, Alt+D, shares the mesh and with it the
    sliders' animation, so it rightly shares what shows it)."""
    return [other for other in bpy.data.objects if other is not obj and is_sprite(other) and other.data is not obj.data]


def own_material(obj):
    """Give a copied sprite (Shift+D copies the mesh and its sliders, but by default not the
    material) a material of its own, so each plane shows its own frames. Returns True if it did."""
    node = frame_node(obj)
    material = node.id_data
    mine = [slot.material for slot in obj.material_slots if slot.material is not None
            and slot.material.node_tree is material]
    if all(own.users <= 1 for own in mine):
        return False  # (the common case, checked on every frame change without a look at the scene)
    if not any(slot.material is not None and slot.material.node_tree is material
               for other in _other_sprites(obj) for slot in other.material_slots):
        return False
    for slot in obj.material_slots:
        if slot.material is not None and slot.material.node_tree is material:
            copy = slot.material.copy()
            copy.name = f"{obj.name} material"
            slot.material = copy
    return True


def own_cache_dir(obj):
    """Give a copied sprite a bake folder of its own: its settings came with the copy, and two
    sprites baking into one folder overwrite each other's frame sequence. Of the sprites sharing
    the folder, the one whose bake made it its own keeps it (its name is the one the settings
    record, `baked_by`: a copy's is not, whatever it was renamed to); failing that (the
    original renamed since), the first by name among those whose name the folder bears (names
    that differ only in characters a folder name cannot hold, "Anna.001" and "Anna 001", bear
    the same), else the first by name. The others' folders are cleared (a bake then takes a
    default folder no other sprite uses). Returns True if it did."""
    settings = settings_of(obj)
    folder = cache_folder_of(obj)
    if folder is None:
        return False
    sharing = [other for other in _other_sprites(obj) if cache_folder_of(other) == folder]
    keeper = min([obj, *sharing], key=lambda o: (o.name != settings_of(o).baked_by,
                                                 folder_name(o.name) != folder.name, o.name))
    if keeper is obj:
        return False
    settings.cache_dir = ""
    store_settings(obj, settings)
    return True


def folder_name(name):
    """A sprite's name as its bake folder's name: what a folder name can hold, on every system."""
    return portable_name(bpy.path.clean_name(name))


def cache_folder_of(obj):
    """The sprite's bake folder as an absolute path, or None before its first bake."""
    cache_dir = settings_of(obj).cache_dir
    return Path(bpy.path.abspath(cache_dir)) if cache_dir else None


def folders_of_other_sprites(obj):
    """The bake folders the other sprites use (a linked copy's is its original's)."""
    return {folder for other in _other_sprites(obj) if (folder := cache_folder_of(other)) is not None}


# --- sliders -------------------------------------------------------------------------------


def sliders(obj):
    """{parameter name: shape key} of a sprite, in schema order."""
    schema = get_schema(settings_of(obj).schema)
    keys = obj.data.shape_keys.key_blocks if obj.data.shape_keys else {}
    missing = [name for name in schema.names if name not in keys]
    if missing:
        raise SpriteError(f"{obj.name}: its pose sliders {', '.join(missing[:4])} were removed")
    return {name: keys[name] for name in schema.names}


def sprite_pose(obj, frame=None):
    """The sprite's current pose vector (slider values as the scene evaluated them); `frame`, the
    frame they were evaluated at, for the error."""
    schema = get_schema(settings_of(obj).schema)
    values = np.asarray([key.value for key in sliders(obj).values()], dtype=np.float32)
    # Blender clamps a slider's value to its range and refuses a driver's NaN, but takes one from a
    # script (`key.value = x`, x computed). Posed, it gave a face no key set (the mouth
    # open, for a NaN mouth_aaa), without a word.
    if not np.isfinite(values).all():
        unset = [name for name, value in zip(schema.names, values) if not np.isfinite(value)]
        where = obj.name if frame is None else f"{obj.name}, frame {frame}"
        raise SpriteError(f"{where}: its pose slider{'s' if len(unset) > 1 else ''} {', '.join(unset[:4])} "
                          f"{'hold' if len(unset) > 1 else 'holds'} no number (NaN), set so by a script")
    return schema.clamp(values)


def set_pose(obj, values):
    """Set sliders from {name: value} (values clamped to each slider's range)."""
    keys = sliders(obj)
    for name, value in values.items():
        if name not in keys:
            raise SpriteError(f"{obj.name}: no pose slider named {name!r}")
        keys[name].value = float(value)


def reset_pose(obj):
    """Every slider back to the picture as drawn (the schema's rest pose)."""
    schema = get_schema(settings_of(obj).schema)
    set_pose(obj, schema.as_dict(schema.rest_pose()))


def key_pose(obj, values, frame):
    """Set and keyframe sliders at a frame (as pressing I over each of them would)."""
    set_pose(obj, values)
    keys = sliders(obj)
    for name in values:
        keys[name].keyframe_insert("value", frame=frame)


# --- what the material shows ---------------------------------------------------------------


def use_live(obj):
    """Show the live image (posed as frames change)."""
    own_material(obj)
    node = frame_node(obj)
    node.image = live_image(obj)
    settings = settings_of(obj)
    settings.mode = "LIVE"
    store_settings(obj, settings)


def use_sequence(obj, first_frame_path, frame_start, frame_count):
    """Show a baked image sequence: `first_frame_path` is the file of scene frame `frame_start`,
    each later frame's file numbered one more (the numbers: bake_cache.frame_number)."""
    own_material(obj)
    node = frame_node(obj)
    name = f"{obj.name} baked"
    image = bpy.data.images.get(name)
    first_number = frame_number(frame_start, frame_start)
    path = bpy.path.relpath(str(first_frame_path)) if bpy.data.filepath else str(first_frame_path)
    if image is None or image.filepath != path:
        if image is not None:
            bpy.data.images.remove(image)
        image = bpy.data.images.load(str(first_frame_path), check_existing=False)
        image.name = name
        image.filepath = path
    image.source = "SEQUENCE"
    image.reload()
    node.image = image
    user = node.image_user
    user.frame_start = frame_start
    user.frame_offset = first_number - 1  # Blender's file number: frame - frame_start + 1 + offset
    user.frame_duration = frame_count
    user.use_auto_refresh = True
    user.use_cyclic = False
    settings = settings_of(obj)
    settings.mode = "BAKED"
    store_settings(obj, settings)
