"""The dataset batch plan: a folder tree of models in, the work that makes THA triplets and a manifest out.

The plan is pure: models are found under a root (.pmx, .pmd, .vrm, .glb, .gltf, .blend, and those in
.zip archives as downloaded, see archives.py; linked folders followed once per real folder), given
a split (THA1 write-up §5.4: by top-level folder, or by a split file; copies of one model, the
same bytes under other names, share one split), ordered by id and dealt to shards (`--shard K/N`:
by a stable hash of the model id, so the nodes of a cluster job
array share one output folder without coordination, and a model added later lands in one shard
without moving the others). A shard's journal (`parts/shard-K-of-N.jsonl`, see
render.dataset.manifest) lists what is finished; a rerun skips it, so a killed run resumes where it
stopped, and `merge` writes the one sorted manifest.

The rendering is Blender side (`render.blender.dataset_run`).

Every pose comes from (seed, model id, example index) and every image is written whole with
fixed PNG bytes, so the same options give the same dataset byte for byte, however it was split
across workers, shards and reruns.

Layout of a dataset folder:

    dataset.json                       the options it was made with (a rerun must match)
    parts/shard-K-of-N.jsonl           journals
    manifest.jsonl, failures.jsonl     merged, sorted
    annotations/<model id>.tha.json    the annotation each model was rendered with
    images/<split>/<model folder>/rest.png, 000000_expression.png, 000000_posed.png, ...
    .extracting/                       archived models' files while they render (removed after)
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from . import manifest
from .archives import ARCHIVE_SUFFIXES, OTHER_ARCHIVE_SUFFIXES, ArchiveError, member_sha256, model_member_sizes
from .settings import RenderSettings
from ..formats.avatar_model import AVATAR_SUFFIXES
from ..formats.mmd import MMD_SUFFIXES
from ...atomic_files import sha256_file, write_text_atomic
from ...errors import UserError
from ...input_files import kind_of, read_text
from ... import json_text

# MMD models, VRM and glTF avatars, characters saved by Blender (read by render/blender/blend_model.py)
MODEL_SUFFIXES = MMD_SUFFIXES + AVATAR_SUFFIXES + (".blend",)
# What a models folder is searched for: model files, and the archives models come in.
SOURCE_SUFFIXES = MODEL_SUFFIXES + ARCHIVE_SUFFIXES + OTHER_ARCHIVE_SUFFIXES
SPLITS = ("train", "validation", "test")
# Archived models are extracted under a dataset folder's .extracting/ for their render (never
# taken for models, should a dataset folder lie inside the models folder).
EXTRACTING_FOLDER = ".extracting"
SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation",
                 "valid": "validation", "test": "test", "testing": "test"}
DATASET_FORMAT = "tha_studio.dataset"
DATASET_VERSION = 1
CONFIG_NAME = "dataset.json"
ANNOTATIONS_FOLDER = "annotations"
IMAGES_FOLDER = "images"
MAX_POSES_PER_MODEL = 1_000_000


class DatasetError(UserError, ValueError):
    """A dataset run that cannot start: bad options, a folder made with other options."""


@dataclass(frozen=True)
class DatasetConfig:
    """The options that decide a dataset's content (stored in dataset.json)."""

    schema: str = "tha1"
    seed: int = 0
    poses_per_model: int = 16
    render: RenderSettings = RenderSettings()

    def __post_init__(self):
        # (dataset.json is read back through here: a hand-edited one is named, not a traceback)
        for name, value, low, high in (("seed", self.seed, -2**63, 2**63 - 1),
                                       ("poses per model", self.poses_per_model, 0, MAX_POSES_PER_MODEL)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} {value!r}: expected a whole number from {low:,} to {high:,}")

    def to_json(self):
        """Flat: dataset.json lists the render settings beside the other options, and the schema's
        rest convention (the pose of the rest image), so a trainer can refuse data made for another."""
        options = asdict(self)
        return {"format": DATASET_FORMAT, "version": DATASET_VERSION, **options.pop("render"), **options,
                "rest_convention": _rest_convention(self.schema)}

    @classmethod
    def from_json(cls, data, source):
        if data.get("format") != DATASET_FORMAT or data.get("version") != DATASET_VERSION:
            raise DatasetError(f"{source}: not a THA Studio dataset description (version {DATASET_VERSION})")
        try:
            render = RenderSettings(**{k: data[k] for k in RenderSettings.__dataclass_fields__})
            config = cls(render=render, **{k: data[k] for k in cls.__dataclass_fields__ if k != "render"})
        except KeyError as error:
            raise DatasetError(f"{source}: malformed dataset description: it has no {error.args[0]!r}") from None
        except (TypeError, ValueError) as error:
            raise DatasetError(f"{source}: malformed dataset description ({error})") from None
        # Before the rest convention was recorded, every rest image was the model's own rest
        # ("neutral"), which is THA1's wrong input (its mouth must be open).
        try:
            expected = _rest_convention(config.schema)
        except DatasetError as error:
            raise DatasetError(f"{source}: {error}") from None
        recorded = data.get("rest_convention", "neutral")
        if recorded != expected:
            raise DatasetError(
                f"{source}: its rest images were rendered in the pose {recorded!r}, but {config.schema.upper()} takes "
                f"{expected!r} as its input; render the dataset again into a new folder")
        return config


def _rest_convention(schema_name):
    from ...pose.schema import get_schema

    try:
        return get_schema(schema_name).rest_convention
    except KeyError as error:
        raise DatasetError(str(error.args[0])) from None


@dataclass(frozen=True)
class ModelEntry:
    model_id: str  # path relative to the models root, with forward slashes
    path: Path  # for a model in an archive, the archive's path / member until it is extracted
    split: str
    same_as: str = ""  # the id of the first file under the root with the same bytes, if another
    archive: Path | None = None  # the zip archive holding the model, if one does
    member: str = ""  # the model's path in that archive ("": the archive could not be listed)
    size: int | None = None  # the member's size extracted, as the archive's listing gave it

    @property
    def folder(self):
        """images/<split>/<readable stem>-<hash of the id>: unique, ASCII, stable."""
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.model_id).stem).strip("._") or "model"
        # surrogateescape: a name that is not UTF-8 hashes as its real bytes (UTF-8 ids are unchanged)
        digest = hashlib.sha1(self.model_id.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        return f"{IMAGES_FOLDER}/{self.split}/{stem[:40]}-{digest}"

    def rest_path(self):
        return f"{self.folder}/rest.png"

    def example_paths(self, index):
        return f"{self.folder}/{index:06d}_expression.png", f"{self.folder}/{index:06d}_posed.png"


# ----------------------------------------------------------------------------------------------
# Planning (pure)


def read_split_file(path):
    """Lines "PREFIX SPLIT" (a folder or file path relative to the models root, "/" or "\\"
    between folders), each optionally followed by a "# comment"; a line starting with "#" is a
    comment. (Folder names hold "#" too: "ミク #2 test" is the folder "ミク #2".) One folder given
    two splits is refused, naming both lines."""
    rules = []
    path = Path(path)
    try:
        lines = read_text(path).splitlines()
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the split file ({error.strerror})") from None
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: the split file is not UTF-8 text (byte 0x{error.object[error.start]:02x} at "
                           f"position {error.start}); save it as UTF-8") from None
    given = {}  # prefix -> (line number, split)
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = _split_rule_parts(line)
        if parts is None:
            raise DatasetError(f"{path}: line {number}: expected 'FOLDER SPLIT' with SPLIT one of {', '.join(SPLITS)}")
        prefix, split = split_rule_prefix(parts[0]), SPLIT_ALIASES[parts[1].lower()]
        if prefix in given and given[prefix][1] != split:
            earlier, earlier_split = given[prefix]
            raise DatasetError(f"{path}: line {number}: {prefix} is given to {split}, and to {earlier_split} on line "
                               f"{earlier}; give each folder one split")
        given.setdefault(prefix, (number, split))
        rules.append((prefix, split))
    return rules


def _split_rule_parts(line):
    """(folder, split word) of a split file's line: the split is the last word naming a split
    with nothing after it but a "#" comment; None where there is none."""
    words = list(re.finditer(r"\S+", line))
    for at in range(len(words) - 1, 0, -1):
        rest = line[words[at].end():].strip()
        if words[at].group().lower() in SPLIT_ALIASES and (not rest or rest.startswith("#")):
            return line[: words[at].start()].strip(), words[at].group()
    return None


def split_rule_prefix(text):
    """A split file's folder as model ids spell it: "/" between folders, no "./" or trailing "/"."""
    parts = [part for part in text.strip().replace("\\", "/").split("/") if part not in ("", ".")]
    return "/".join(parts)


def unmatched_split_rules(rules, entries):
    """The prefixes of `rules` that no model of `entries` falls under: a misspelt folder, whose
    models would go to the default split without a word (test models trained on)."""
    ids = sorted(entry.model_id for entry in entries)  # (those under a folder follow "folder/" in order)

    def matches(prefix):
        at = bisect.bisect_left(ids, prefix)
        if at < len(ids) and ids[at] == prefix:
            return True
        at = bisect.bisect_left(ids, prefix + "/")
        return at < len(ids) and ids[at].startswith(prefix + "/")

    return [prefix for prefix in dict.fromkeys(prefix for prefix, _ in rules) if not matches(prefix)]


def split_for(model_id, rules, default_split):
    """The split of a model: the longest matching prefix rule, its top-level folder's name, or the default."""
    best = None
    for prefix, split in rules:
        if model_id == prefix or model_id.startswith(prefix + "/"):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, split)
    if best:
        return best[1]
    top = model_id.split("/", 1)[0] if "/" in model_id else ""
    return SPLIT_ALIASES.get(top.lower(), default_split)


def discover_models(root, split_rules=(), default_split="train"):
    """The models under `root`, sorted by id, each with its split (copies of one model share one)."""
    return discover(root, split_rules, default_split)[0]


def discover(root, split_rules=(), default_split="train"):
    """(discover_models's entries, the ids of the archives under `root` that cannot be opened
    here: .rar, .7z, .lzh). Each model file in a zip archive is an entry of its own, with the id
    `<archive id>/<member>`; an archive that cannot be listed is one entry, whose render fails
    naming the problem."""
    # Absolute, so that failure reasons naming a model's path read the same however the root
    # was typed ("models", "./models/", "/data/models"), and a rerun's records agree.
    root = Path(os.path.abspath(root))
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder of models")
    entries, unopened = [], []
    for path in find_model_files(root, SOURCE_SUFFIXES):
        model_id = path.relative_to(root).as_posix()
        suffix = path.suffix.lower()
        if model_file_problem(path):  # (never opened: its render fails naming the problem)
            entries.append(ModelEntry(model_id, path, split_for(model_id, split_rules, default_split)))
        elif suffix in OTHER_ARCHIVE_SUFFIXES:
            unopened.append(model_id)
        elif suffix in ARCHIVE_SUFFIXES:
            entries += archive_entries(path, model_id, split_rules, default_split)
        else:
            entries.append(ModelEntry(model_id, path, split_for(model_id, split_rules, default_split)))
    entries.sort(key=lambda e: e.model_id)
    return keep_copies_in_one_split(entries), unopened


def archive_entries(archive, archive_id, split_rules=(), default_split="train"):
    """The entries of the model files in a zip archive (none for an archive of textures alone)."""
    try:
        members = model_member_sizes(archive, MODEL_SUFFIXES)
    except ArchiveError:
        return [ModelEntry(archive_id, archive, split_for(archive_id, split_rules, default_split), archive=archive)]
    return [ModelEntry(f"{archive_id}/{member}", archive / member, split_for(f"{archive_id}/{member}", split_rules,
                                                                           default_split),
                       archive=archive, member=member, size=size)
            for member, size in members.items()]


def no_models_problem(folder):
    """Words for a models folder with no model under it (render-dataset and annotate alike)."""
    return f"{folder}: no models under it (looked for {', '.join(MODEL_SUFFIXES + ARCHIVE_SUFFIXES)})"


def find_model_files(root, suffixes=MODEL_SUFFIXES):
    """Model files under `root`, sorted. Linked folders are followed (datasets are often assembled
    from links), but each real folder is entered once: a link back up the tree (`..`) or two links
    to one folder would otherwise list its models again and again, or never end. The tree itself
    is walked first, then the links it holds (in sorted order), so a folder reached both ways is
    listed under its own path. A name with a model's suffix that is no file (a link to a file that
    is gone, a named pipe) is listed too, for model_file_problem to name: left out without a
    word, a model the user linked in would be missing from the dataset with no failure saying so."""
    found, entered = [], set()
    to_walk = [str(root)]
    while to_walk:
        for folder, subfolders, files in os.walk(to_walk.pop(0)):  # links are listed, not entered
            here = _real_folder(folder)
            if here is None or here in entered:
                subfolders.clear()
                continue
            entered.add(here)
            # Sorted, so which path to a folder is kept does not depend on listing order.
            subfolders[:] = sorted(name for name in subfolders if name != EXTRACTING_FOLDER)
            to_walk += [os.path.join(folder, name) for name in subfolders if os.path.islink(os.path.join(folder, name))]
            found += [Path(folder) / name for name in files if Path(name).suffix.lower() in suffixes]
    return sorted(path for path in found if not path.is_dir())


def model_file_problem(path):
    """What keeps `path` (named as a model) from being read as a file, or None: a link to a file
    that is not there, or something that is no file at all. Checked before a model is opened: a
    named pipe would block its reader for ever."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"{path}: a link to {os.readlink(path)}, which is not there"
        return f"{path}: no such file"
    except OSError as error:  # a link loop, a name too long, no permission
        return f"{path}: cannot be read ({error.strerror or error})"
    kind = kind_of(mode)
    return f"{path}: {kind}, not a model file" if kind else None


def _real_folder(path):
    """(device, inode) of a folder, the same through any link to it; None if it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


# A model held out for evaluation stays held out: when copies of one model sit in different
# splits, all go to the most held-out one (the training set loses a duplicate, the test set
# keeps the model a person put there).
SPLIT_PRECEDENCE = {"test": 0, "validation": 1, "train": 2}


def keep_copies_in_one_split(entries):
    """The entries with copies of one model (the same file bytes under other names, common in
    download folders) moved into one split, each marked with the id of its first copy
    (`same_as`): otherwise one model's images could be in train and in test.

    Each copy is still rendered, under its own id: a PMX names its textures relative to its own
    folder, so the same bytes beside another texture set (a recolour pack) is another look of
    the character, and whether two copies render alike is known only after rendering; one split
    is what keeps the evaluation honest. Files are compared by size first, so only files whose
    size another file shares are read and hashed.
    """
    by_size = {}
    for index, entry in enumerate(entries):
        try:
            info = None if entry.archive else entry.path.stat()
        except OSError:
            continue  # unreadable: left as it is; its render fails with the reason
        if info is not None and not stat.S_ISREG(info.st_mode):
            continue  # (a named pipe would never end its hash) its render fails naming what it is
        size = entry.size if info is None else info.st_size
        if size is not None:  # (None: an archive that could not be listed)
            by_size.setdefault(size, []).append(index)
    groups = {}
    for same_size in by_size.values():
        if len(same_size) < 2:
            continue
        for index in same_size:
            entry = entries[index]
            try:
                digest = member_sha256(entry.archive, entry.member) if entry.archive else sha256_file(entry.path)
            except (OSError, ArchiveError):
                continue
            groups.setdefault(digest, []).append(index)
    entries = list(entries)
    for copies in groups.values():
        if len(copies) < 2:
            continue
        copies.sort(key=lambda i: entries[i].model_id)
        split = min((entries[i].split for i in copies), key=lambda s: SPLIT_PRECEDENCE.get(s, len(SPLIT_PRECEDENCE)))
        first = entries[copies[0]].model_id
        for i in copies:
            entries[i] = replace(entries[i], split=split, same_as=first if i != copies[0] else "")
    return entries


def parse_shard(text):
    """"K/N" -> (K, N) with 1 <= K <= N."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise DatasetError(f"shard {text!r}: expected K/N with 1 <= K <= N, e.g. 2/8")
    return int(match.group(1)), int(match.group(2))


def shard_of(model_id, shards):
    """The shard (1..shards) a model belongs to: a stable hash of its id, not its place in the
    sorted list, so adding or removing a model moves no other model to another shard (a finished
    dataset gets one more model, not a re-render of every shard)."""
    digest = hashlib.sha256(model_id.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % shards + 1


def shard_models(entries, shard, shards):
    return [entry for entry in entries if shard_of(entry.model_id, shards) == shard]


def shard_from_environment():
    """K/N from a SLURM array or a Kubernetes indexed job, or None."""
    if "SLURM_ARRAY_TASK_ID" in os.environ and "SLURM_ARRAY_TASK_COUNT" in os.environ:
        first = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
        return int(os.environ["SLURM_ARRAY_TASK_ID"]) - first + 1, int(os.environ["SLURM_ARRAY_TASK_COUNT"])
    if "JOB_COMPLETION_INDEX" in os.environ and "THA_SHARD_COUNT" in os.environ:
        return int(os.environ["JOB_COMPLETION_INDEX"]) + 1, int(os.environ["THA_SHARD_COUNT"])
    return None


def journal_name(shard, shards):
    return f"{manifest.PARTS_FOLDER}/shard-{shard}-of-{shards}.jsonl"


def temp_tag_prefix(shard, shards):
    return f"s{shard}of{shards}-"


def read_config_file(path):
    """The DatasetConfig of a dataset.json; DatasetError names the file when it is unreadable,
    not JSON (a damaged file, binary bytes) or not a THA Studio dataset description."""
    path = Path(path)
    try:
        data = json_text.loads(read_text(path))
    except OSError as error:
        raise DatasetError(f"{path}: cannot read ({error.strerror or error})") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise DatasetError(f"{path}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: not a THA Studio dataset description (version {DATASET_VERSION})")
    return DatasetConfig.from_json(data, path)


def ensure_config(out_dir, config):
    """Write dataset.json, or check that the folder's matches these options."""
    path = Path(out_dir) / CONFIG_NAME
    if path.exists():
        existing = read_config_file(path)
        if existing != config:
            old, new = existing.to_json(), config.to_json()
            differences = ", ".join(f"{name} {old[name]!r} (now {new[name]!r})" for name in new if old[name] != new[name])
            raise DatasetError(f"{path.parent} was made with other options: {differences}; use the same options or another folder")
        return
    write_text_atomic(path, json.dumps(config.to_json(), indent=1, sort_keys=True) + "\n")


@dataclass
class ModelWork:
    """One model's entry in the plan: whether its rest image is still needed and which examples."""

    entry: ModelEntry
    rest: bool
    indices: list = field(default_factory=list)

    @property
    def images(self):
        return int(self.rest) + 2 * len(self.indices)


def plan_work(entries, progress, config, out_dir, retry_failed=False):
    """The ModelWork left to do, and the failures already recorded (model id -> reason) that are skipped."""
    out_dir = Path(out_dir)
    work, skipped = [], {}
    for entry in entries:
        rest = not (progress.has_model(entry.model_id) and (out_dir / entry.rest_path()).exists())
        indices = [
            i for i in range(config.poses_per_model)
            if not (progress.has_example(entry.model_id, i) and all((out_dir / p).exists() for p in entry.example_paths(i)))
        ]
        reason = progress.failure(entry.model_id)
        # A failure after some of the model's images (a worker killed or crashed half way, a
        # time limit) leaves it part-made: a plain rerun finishes it rather than skip it for good.
        started = progress.has_model(entry.model_id) or len(indices) < config.poses_per_model
        if reason and not retry_failed and not started:
            skipped[entry.model_id] = reason
            continue
        if rest or indices:
            work.append(ModelWork(entry, rest, indices))
    return work, skipped


def load_or_make_annotation(entry, out_dir, annotations_dir=None, read_model=None):
    """The model's annotation: a sidecar (given folder, beside the model, or the dataset's), else automatic
    (`read_model`: what reads the model file, where the pure readers cannot: a .blend)."""
    from . import annotation as annotations

    places = []
    if annotations_dir is not None:
        places.append(annotations.sidecar_path(entry.path, annotations_dir, entry.model_id))
    places.append(annotations.sidecar_path(entry.path))
    dataset_copy = annotations.sidecar_path(entry.path, Path(out_dir) / ANNOTATIONS_FOLDER, entry.model_id)
    annotation, found = annotations.load_or_annotate(entry.path, [*places, dataset_copy], read_model)
    # The dataset keeps the annotation each model was rendered with.
    if found != dataset_copy:
        annotations.save_sidecar(annotation, dataset_copy)
    return annotation


def merge_dataset(out_dir):
    """Merge every shard's journal in a dataset folder; returns the Progress."""
    out_dir = Path(out_dir)
    if not (out_dir / CONFIG_NAME).exists():
        raise DatasetError(f"{out_dir}: not a dataset folder (no {CONFIG_NAME})")
    if not manifest.journal_paths(out_dir):
        raise DatasetError(f"{out_dir}: no shard journals under {manifest.PARTS_FOLDER}/ to merge")
    return manifest.merge(out_dir)
