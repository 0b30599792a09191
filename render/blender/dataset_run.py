"""Rendering a dataset in Blender: each model's planned work, in this process or in forked workers.

The plan (which models, which images are still to make, where they go) is pure and lives in
`render.dataset.plan`; this module renders it. A model is annotated from its sidecar (or
automatically, the result saved under `annotations/` in the dataset), imported, then its rest
image and each pending example rendered. The models render in this process, one a step of the
`DatasetRun` job (jobs.py), or in forked worker processes (fork: blender.md §0.10; the command
line always uses at least one, `--workers N` more) whose messages each step reads; only this
process writes the journal. A model that fails to read, lacks a needed role, breaks while
rendering, or runs past its time or memory budget is recorded as a failure with its reason, and
the others go on; a model left part-made is finished by the next plain run.

What is not a model's fault is never recorded as one: a folder that cannot be written (no
space, read-only, no permission) stops the run with manifest.OutputError, free space is checked
before the run and before each model, and a second run of the same shard on one folder is
refused (a lock per shard journal).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from ...atomic_files import remove_stale_temps
from ...jobs import Job, Progress, usable_cpus
from ...progress import progress_bar
from ..dataset import manifest
from ..dataset.archives import ArchiveError, extract, extracted_size
from ..dataset.plan import (
    EXTRACTING_FOLDER,
    DatasetError,
    discover,
    ensure_config,
    journal_name,
    load_or_make_annotation,
    model_file_problem,
    no_models_problem,
    plan_work,
    shard_models,
    temp_tag_prefix,
    unmatched_split_rules,
)


def render_model(work, config, out_dir, emit, annotations_dir=None, temp_tag=None, budget=None):
    """Render one model's pending images (a plan.ModelWork), calling emit(record) as each unit
    is finished.

    A failure of the model becomes a failure record naming the reason; nothing is raised, but
    for a folder that cannot be written (no space, no permission): that is the machine's fault,
    not the model's, so it raises manifest.OutputError and records nothing. `budget` (a
    ModelBudget) is checked between images (in this process; workers are watched from outside).
    """
    from ...pose.schema import get_schema
    from ..dataset.sampling import sample_pose
    from .blend_model import model_reader
    from .scene import quiet_output

    entry = work.entry
    out_dir = Path(out_dir)
    schema = get_schema(config.schema)
    budget = (budget or ModelBudget()).started()
    extracted = None
    try:
        problem = model_file_problem(entry.archive or entry.path)
        if problem:
            raise DatasetError(problem)
        if entry.archive is not None:
            extracted = extraction_folder(out_dir, temp_tag, entry)
            entry = replace(entry, path=extracted_model(entry, out_dir, extracted))
            budget.check()
        annotation = load_or_make_annotation(entry, out_dir, annotations_dir, model_reader(entry.path))
        missing = annotation.missing_roles(schema)
        if missing:
            raise DatasetError(f"lacks {', '.join(missing)}")
        available = annotation.available_parameters(schema)
        renderer, import_warnings = _open_model(entry, annotation, schema, config, temp_tag)
        budget.check()
        with quiet_output():
            if work.rest:
                data = renderer.render_rest(out_dir / entry.rest_path())
                emit({"type": "model", "model": entry.model_id, "split": entry.split, "rest": entry.rest_path(),
                      "sha256": {"rest": hashlib.sha256(data).hexdigest()}, "available": available,
                      "texture_warnings": texture_warnings(import_warnings, entry.path.parent)})
                budget.check()
            for index in work.indices:
                pose = sample_pose(schema, config.seed, entry.model_id, index, available)
                expression_path, posed_path = entry.example_paths(index)
                expression, posed = renderer.render_example(pose, out_dir / expression_path, out_dir / posed_path)
                emit({"type": "example", "model": entry.model_id, "split": entry.split, "index": index,
                      "pose": [float(v) for v in pose], "expression": expression_path, "posed": posed_path,
                      "sha256": {"expression": hashlib.sha256(expression).hexdigest(),
                                 "posed": hashlib.sha256(posed).hexdigest()}})
                budget.check()
    except manifest.OutputError:
        raise
    except Exception as error:  # noqa: BLE001 - one model's failure must not stop the others
        problem = output_folder_problem(error, out_dir)
        if problem:
            raise manifest.OutputError(f"{out_dir}: {problem} while rendering {entry.model_id}; nothing was "
                                       "recorded against the model: free space or fix the folder, then rerun "
                                       "the same command") from None
        reason = _reason(error)
        if extracted is not None:  # named by the archive, as the user knows it, not our copy of it
            reason = reason.replace(str(extracted), str(entry.archive))
        emit({"type": "failure", "model": entry.model_id, "split": entry.split, "reason": reason})
        if os.environ.get("THA_STUDIO_DEBUG"):
            traceback.print_exc()
    finally:
        if extracted is not None and _kept_extraction.get("folder") != extracted:  # (a failed extraction)
            shutil.rmtree(extracted, ignore_errors=True)


# Archived models are extracted under EXTRACTING_FOLDER for their render, a folder per run and
# archive. Each process keeps its last extraction for the models after it: the variants of one
# download (sorted together) are extracted once, not once each. The run removes what is left.
EXTRACT_MARGIN_BYTES = 1 << 30  # left free beside an extracted archive, for the images
_kept_extraction = {}  # "key": the archive as extracted (folder, path, size, mtime), "folder"


def extraction_folder(out_dir, temp_tag, entry):
    digest = hashlib.sha1(str(entry.archive).encode("utf-8", "surrogateescape")).hexdigest()[:12]
    return Path(out_dir) / EXTRACTING_FOLDER / (temp_tag or f"run-{os.getpid()}") / digest


def extracted_model(entry, out_dir, folder):
    """The model file of `entry` extracted into `folder`: the archive extracted there for an
    earlier model when it is unchanged, else extracted now (`extract_model`), the process's
    earlier extraction removed first."""
    try:
        stat = entry.archive.stat()
    except OSError as error:
        raise ArchiveError(f"{entry.archive}: cannot be read ({error.strerror or error})") from None
    key = (str(folder), str(entry.archive), stat.st_size, stat.st_mtime_ns)
    path = folder.joinpath(*PurePosixPath(entry.member).parts)
    if _kept_extraction.get("key") == key and entry.member and path.is_file():
        return path
    kept = _kept_extraction.pop("folder", None)
    _kept_extraction.clear()
    if kept is not None:
        shutil.rmtree(kept, ignore_errors=True)
    path = extract_model(entry, out_dir, folder)
    _kept_extraction.update(key=key, folder=folder)
    return path


def extract_model(entry, out_dir, folder):
    """Extract the archive of `entry` into `folder` (emptied first); returns the model file's
    path there. An archive that cannot be read is the model's failure (ArchiveError); no room to
    extract it is the machine's (manifest.OutputError, which stops the run)."""
    shutil.rmtree(folder, ignore_errors=True)
    needed = extracted_size(entry.archive)  # (ArchiveError, naming why, for one still unreadable)
    if not entry.member:  # (listing it failed when the run was planned; now it reads)
        raise ArchiveError(f"{entry.archive}: could not be listed when the run started; run it again")
    free = shutil.disk_usage(out_dir).free
    if needed + EXTRACT_MARGIN_BYTES > free:
        raise manifest.OutputError(f"{out_dir}: {needed / 1e9:.1f} GB are needed to extract {entry.archive} and "
                                   f"{free / 1e9:.1f} GB are free; free space, then rerun the same command")
    try:
        extract(entry.archive, folder)
    except OSError as error:
        if manifest.output_problem(error):
            raise manifest.output_error(out_dir, error, f"extracting {entry.archive}") from None
        raise
    return folder.joinpath(*PurePosixPath(entry.member).parts)


def remove_extractions(out_dir, tag_prefix):
    """Remove the extraction folders of the runs whose tags start with `tag_prefix` (a run's
    own at its end; at its start, those its shard's killed runs left), and the folder holding
    them once it is empty; returns how many."""
    folder = Path(out_dir) / EXTRACTING_FOLDER
    removed = 0
    if folder.is_dir():
        for run in folder.iterdir():
            if run.name.startswith(tag_prefix):
                shutil.rmtree(run, ignore_errors=True)
                removed += 1
        try:
            folder.rmdir()
        except OSError:
            pass  # another shard's run is extracting there
    return removed


def _open_model(entry, annotation, schema, config, temp_tag):
    import bpy

    from .blend_model import BLEND_SUFFIX, append_blend
    from .model_import import import_model
    from .scene import quiet_output
    from .triplets import TripletRenderer

    bpy.ops.wm.read_homefile(use_empty=True)
    with quiet_output():
        if entry.path.suffix.lower() == BLEND_SUFFIX:
            imported = append_blend(entry.path)
        else:
            imported = import_model(entry.path, shape_keys_for=role_morphs(annotation, schema))
    return TripletRenderer(imported, annotation, schema, config.render, temp_tag=temp_tag), imported.warnings


def role_morphs(annotation, schema):
    """The morphs a render moves: those the annotation gives the schema's roles. Only these get
    shape keys (each a full copy of the mesh in Blender), so a model with thousands of morphs
    costs the memory of the dozen it uses."""
    from ..dataset.annotation import morph_roles_for_schema

    return {morph for role in set(morph_roles_for_schema(schema).values())
            for morph, _, _ in annotation.morphs_for(role)}


def texture_warnings(warnings, model_folder):
    """The import's warnings about textures (missing, unreadable, a path the system refuses), for
    the manifest: a model whose textures are missing renders white-grey, and the review sheet
    flags it from these. Paths are made relative to the model's folder, so the manifest reads the
    same wherever the models folder is."""
    folder = str(model_folder)
    return [warning.replace(f" under {folder}", " beside the model").replace(folder + os.sep, "")
            for warning in warnings if warning.startswith("texture ")]


def _reason(error):
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


# ----------------------------------------------------------------------------------------------
# The output folder: space and writability (a full or read-only disk is never a model's fault)

# What one 256x256 image takes on disk: THA1-size renders (RGBA PNG) measure 20-50 KB; a build of
# 2 million images took about 98 GB (49 KB each). Rounded up, so the check errs on the safe side;
# 512x512 images (THA3) count four times as much.
BYTES_PER_IMAGE = 64 * 1024
# Kept free beyond the images: journals, Blender's temporary Targa (256 KB), annotations, merge.
SPARE_BYTES = 32 * 1024 * 1024
_PROBE_BYTES = 1024 * 1024


def bytes_per_image(image_size=256):
    return int(BYTES_PER_IMAGE * (image_size / 256) ** 2)


def bytes_needed(images, image_size=256):
    return images * bytes_per_image(image_size) + SPARE_BYTES


def free_bytes(folder):
    import shutil

    return shutil.disk_usage(folder).free


def _size(count):
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024


def check_free_space(folder, images, image_size=256):
    """Raise OutputError if `folder`'s disk cannot take `images` more images, naming the figures."""
    if images == 0:
        return  # nothing to render (a finished dataset on a full disk can still be merged)
    needed, free = bytes_needed(images, image_size), free_bytes(folder)
    if free < needed:
        raise manifest.OutputError(
            f"{folder}: {images} image(s) still to render need about {_size(needed)} "
            f"({_size(bytes_per_image(image_size))} an image and {_size(SPARE_BYTES)} spare), "
            f"but only {_size(free)} is free; "
            "free space (or render part of the models with --limit-models or --shard) and rerun the same command")


def output_folder_problem(error, out_dir):
    """Why `out_dir` cannot be written, if that is what broke (else None).

    Blender words a failed image write its own way ("Render error (Success)"), so besides an
    OSError that says so, the folder is asked directly: is there room, can a file be written?
    """
    problem = manifest.output_problem(error)
    if problem:
        return problem
    try:
        if free_bytes(out_dir) < SPARE_BYTES:
            return f"the disk is full ({_size(free_bytes(out_dir))} free)"
        probe = Path(out_dir) / f".space-probe.{os.getpid()}.tmp"
        try:
            with open(probe, "wb") as handle:
                handle.write(b"\0" * _PROBE_BYTES)
                handle.flush()
                os.fsync(handle.fileno())
        finally:
            probe.unlink(missing_ok=True)
    except OSError as probe_error:
        return manifest.output_problem(probe_error)
    return None


# ----------------------------------------------------------------------------------------------
# A model's time and memory budget


def resident_bytes(pid=None):
    """Resident memory of a process (this one by default), or None where /proc cannot tell."""
    try:
        pages = int(Path(f"/proc/{pid or 'self'}/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ModelBudget:
    """How long one model may take (seconds) and how much memory its process may hold (bytes);
    None for no limit. A model past either is recorded as a failure with that reason."""

    seconds: float | None = None
    memory: int | None = None
    since: float = 0.0

    def started(self):
        return ModelBudget(self.seconds, self.memory, time.monotonic())

    def overrun(self, pid=None):
        """The reason this model (begun at `since`, rendering in process `pid`) is past its budget, or None."""
        if self.seconds is not None and time.monotonic() - self.since > self.seconds:
            return f"took longer than the {self.seconds:g} s allowed a model (--model-timeout)"
        if self.memory is not None:
            used = resident_bytes(pid)
            if used is not None and used > self.memory:
                return (f"used {_size(used)} of memory, more than the {_size(self.memory)} allowed a model "
                        "(--model-memory)")
        return None

    def check(self):
        reason = self.overrun()
        if reason:
            raise ModelOverBudget(reason)


class ModelOverBudget(DatasetError):
    """A model past its time or memory budget (the reason says which)."""


# ----------------------------------------------------------------------------------------------
# Running


@dataclass
class RunSummary:
    models: int = 0  # in this shard
    models_to_render: int = 0  # models with work left at the start
    images: int = 0  # images rendered in this run
    examples: int = 0
    failures: dict = field(default_factory=dict)  # model id -> reason (this run and earlier ones)
    seconds: float = 0.0
    unopened: list = field(default_factory=list)  # ids of archives not opened (.rar, .7z, .lzh)
    unmatched_rules: list = field(default_factory=list)  # split rules no model falls under


# The default time a model may take in render-dataset: a real model (Gene_light, 20 MB of
# textures) imports in a few seconds and renders 16 poses in under a minute on a CPU; a model
# still rendering after 5 minutes is stuck (or so slow that it would hold up a batch of thousands).
DEFAULT_MODEL_SECONDS = 300.0


def lock_journal(journal):
    """Hold a lock on a shard's journal for this run, or raise DatasetError naming it.

    Two runs of the same shard on one folder would render the same images and interleave their
    journal lines; the lock is per shard journal, so shards of one dataset still run side by
    side. The lock is the operating system's (filelock: flock on Unix, msvcrt on Windows), so
    a killed run leaves none behind.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(str(journal.with_suffix(".lock")), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise DatasetError(f"{journal.parent.parent}: another render-dataset run is writing this shard "
                           f"({journal.name}, locked by {journal.with_suffix('.lock').name}); wait for it to end, "
                           "or give this run another output folder or --shard") from None
    except OSError as error:
        if manifest.output_problem(error):
            raise
        # A network file system without locks (ENOLCK): shards of a cluster job still work,
        # as they did before the lock; only the guard against a second run is lost.
        print(f"warning: {journal.with_suffix('.lock')}: cannot lock ({error.strerror or error}); "
              "make sure no other run writes this shard", file=sys.stderr)
        return None
    return lock


class DatasetRun(Job):
    """One run over a shard of a models folder into a dataset folder, as a job: `start()` checks
    the folder and plans, each `step()` renders one model (or, with workers, reads what they
    finished); `result` is the RunSummary. `run()` does it all, with a progress bar on stderr.
    Cancelling stops the workers; every image in the journal is whole, so a rerun resumes.

    Workers (`workers > 1`, or `isolate`: one worker, so that a model past its time or memory
    budget can be stopped whatever Blender is doing) are forked: start them from a process that
    has not rendered yet (the command line), as a fork of one that has can hang on Blender's
    render locks. In this process the budget is checked between images only.

    A folder that cannot be written (disk full, read-only, no permission) stops the run with
    manifest.OutputError: nothing is recorded against a model, so a rerun after it is fixed
    finishes the job."""

    def __init__(self, models_root, out_dir, config, shard=(1, 1), workers=1, split_rules=(),
                 default_split="train", annotations_dir=None, retry_failed=False, show_progress=True,
                 limit_models=None, budget=None, isolate=False):
        super().__init__()
        if workers < 1:
            raise DatasetError("workers must be 1 or more")
        cpus = usable_cpus()
        if workers > cpus:  # (a typo of 800 for 8 would fork 800 Blenders, each holding a model)
            raise DatasetError(f"--workers {workers}: this machine lets this process use {cpus} CPU(s); "
                               "each worker is a Blender rendering on at least one, so more only slow each other down")
        if limit_models is not None and limit_models < 0:  # (-1 sliced off the shard's last model)
            raise DatasetError(f"--limit-models {limit_models}: must be 0 or more")
        from ...pose.schema import get_schema

        self.image_size = get_schema(config.schema).image_size  # for the free space a run needs
        self.models_root = Path(models_root)
        self.out_dir = Path(out_dir)
        self.config = config
        self.shard, self.shards = shard
        self.title = f"Dataset shard {self.shard}/{self.shards}"
        self.workers = workers
        self.split_rules = split_rules
        self.default_split = default_split
        self.annotations_dir = Path(annotations_dir) if annotations_dir else None
        self.retry_failed = retry_failed
        self.show_progress = show_progress
        self.limit_models = limit_models
        self.budget = budget or ModelBudget()
        self.isolate = isolate
        self.journal = self.out_dir / journal_name(self.shard, self.shards)
        self.summary = None
        self.unopened = []
        self.unmatched_rules = []  # split rules no model falls under (plan)
        self._bar = None
        self._pool = None
        self._lock = None

    def plan(self):
        """(this shard's models, their ModelWork still to do, earlier failures that are skipped)."""
        entries, self.unopened = discover(self.models_root, self.split_rules, self.default_split)
        if not entries:
            archives = (f"; it holds {len(self.unopened)} archive(s) THA Studio cannot open ({self.unopened[0]}, ...): "
                        "extract them, or repack them as .zip" if self.unopened else "")
            raise DatasetError(no_models_problem(Path(os.path.abspath(self.models_root))) + archives)
        self.unmatched_rules = unmatched_split_rules(self.split_rules, entries)
        mine = shard_models(entries, self.shard, self.shards)
        if self.limit_models is not None:
            mine = mine[: self.limit_models]
        progress = manifest.read_progress([self.journal])
        work, skipped = plan_work(mine, progress, self.config, self.out_dir, self.retry_failed)
        return mine, work, skipped

    def _start(self):
        self._started_at = time.perf_counter()
        try:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            self._lock = lock_journal(self.journal)
            ensure_config(self.out_dir, self.config)
            remove_stale_temps(self.out_dir, temp_tag_prefix(self.shard, self.shards))
            remove_extractions(self.out_dir, temp_tag_prefix(self.shard, self.shards))
        except OSError as error:
            if manifest.output_problem(error):
                self._close()
                raise manifest.output_error(self.out_dir, error, "the dataset folder") from None
            raise
        except BaseException:
            self._close()
            raise
        entries, work, skipped = self.plan()
        self.summary = RunSummary(models=len(entries), models_to_render=len(work), failures=dict(skipped),
                                  unopened=list(self.unopened), unmatched_rules=list(self.unmatched_rules))
        if self.unmatched_rules:  # said before hours of rendering, not after
            shown = ", ".join(self.unmatched_rules[:3]) + (", ..." if len(self.unmatched_rules) > 3 else "")
            print(f"warning: {len(self.unmatched_rules)} split rule(s) name a folder no model is under ({shown}); "
                  f"check the split file's spelling: models no rule places go to {self.default_split}",
                  file=sys.stderr)
        self._pending = list(work)
        self._planned = {item.entry.model_id: item.images for item in work}
        self._rendered = {}  # model id -> images rendered in this run
        self._total = sum(self._planned.values())
        try:
            check_free_space(self.out_dir, self._total, self.image_size)
        except manifest.OutputError:
            self._close()
            raise
        self._accounted = 0  # images rendered, or given up with their model's failure
        self._tag = f"{temp_tag_prefix(self.shard, self.shards)}{os.getpid()}"
        self._bar = self._progress_bar(self._total)
        if work and (self.isolate or (self.workers > 1 and len(work) > 1)):
            self._pool = WorkerPool(work, self, self._record)
            self._pending = []
        self.progress = self._progress()

    def _step(self):
        if self._pool is not None:
            self._pool.poll(timeout=0.1)
            if not self._pool.finished:
                return self._progress()
        elif self._pending:
            work = self._pending.pop(0)
            check_free_space(self.out_dir, work.images, self.image_size)
            render_model(work, self.config, self.out_dir, self._record, self.annotations_dir, self._tag, self.budget)
            return self._progress()
        self._close()
        if self.shards == 1:
            manifest.merge(self.out_dir)
        self.summary.seconds = time.perf_counter() - self._started_at
        return self.finish(self.summary)

    def _stop(self):
        self._close()

    def _close(self):
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._lock is not None:  # (its workers have stopped, and no other run has this shard)
            remove_extractions(self.out_dir, temp_tag_prefix(self.shard, self.shards))
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _record(self, item):
        """Journal one finished unit (this process alone writes the journal) and count it."""
        manifest.append_record(self.journal, item)
        model = item["model"]
        if item["type"] == "failure":
            self.summary.failures[model] = item["reason"]
            given_up = self._planned.get(model, 0) - self._rendered.get(model, 0)
            self._accounted += given_up
            self._bar.total -= given_up  # (the bar counts images; a run with failures still ends at 100%)
            self._bar.write(f"skipped {model}: {item['reason']}")
        else:
            rendered = 1 if item["type"] == "model" else 2
            self.summary.images += rendered
            self.summary.examples += item["type"] == "example"
            self._rendered[model] = self._rendered.get(model, 0) + rendered
            self._accounted += rendered
            self._bar.update(rendered)

    def _progress(self):
        fraction = self._accounted / self._total if self._total else 0.0
        return Progress(min(fraction, 1.0), f"{self.summary.images} of {self._total} image(s), "
                                            f"{len(self.summary.failures)} model(s) skipped")

    def _progress_bar(self, total):
        return progress_bar(total=total, unit="img", desc=f"shard {self.shard}/{self.shards}",
                            disable=not self.show_progress, smoothing=0.1)


def _die_with_parent(parent_pid):
    """A worker must not outlive the run that records its work (`kill -9` or the OOM killer on
    the main process): on Linux the kernel ends it then (parent-death signal); elsewhere the
    worker notices between models. Returns a function that tells whether the parent is gone."""
    try:
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the check below is the only guard
    orphaned = lambda: os.getppid() != parent_pid  # noqa: E731
    if orphaned():  # the parent died before the signal was asked for
        os._exit(1)
    return orphaned


def _worker_main(connection, run, parent_pid):
    """A worker: ask for a model, render it (records go back as they finish), ask again; None ends it."""
    orphaned = _die_with_parent(parent_pid)
    tag = f"{temp_tag_prefix(run.shard, run.shards)}{os.getpid()}"
    send = lambda item: connection.send(("record", item))  # noqa: E731
    while True:
        connection.send(("ready", None))
        while not connection.poll(1.0):
            if orphaned():
                os._exit(1)  # nobody would record what this worker makes
        work = connection.recv()
        if work is None:
            break
        try:
            render_model(work, run.config, run.out_dir, send, run.annotations_dir, tag)
        except manifest.OutputError as error:
            connection.send(("stop", str(error)))
            break
    connection.close()


WORK_LOOKAHEAD = 64  # pending models take_next_work looks at


def take_next_work(pending, busy, finished):
    """Take (pop) from `pending` the model for a worker that is ready, having rendered
    `finished` (or nothing yet), while other workers render `busy`; None when none is left.

    Each process keeps its last archive's extraction (_kept_extraction): the worker goes on
    with the variants of the archive it just rendered, and a worker starts on an archive no
    busy worker holds, so that an archive's variants are extracted once, not once in each
    worker that happened to take one of them. Otherwise, plan order. Plan order keeps an
    archive's variants together, so only the next WORK_LOOKAHEAD models are looked at (a scan of
    a million pending models per hand-out would cost more than it saves).
    """
    if not pending:
        return None
    ahead = list(itertools.islice(enumerate(pending), WORK_LOOKAHEAD))
    if finished is not None and finished.entry.archive is not None:
        for position, work in ahead:
            if work.entry.archive == finished.entry.archive:
                return pending.pop(position)
    held = {work.entry.archive for work in busy}
    for position, work in ahead:
        if work.entry.archive is None or work.entry.archive not in held:
            return pending.pop(position)
    return pending.pop(0)


class WorkerPool:
    """Models rendered in `run.workers` forked processes; `poll` hands their records to `record`
    (this process writes every journal line).

    Each worker has its own pipe, on which it asks for a model and sends back what it renders
    (no lock shared between workers, so one killed half way through a message cannot block the
    others). A worker that dies (Blender can crash on a broken model, the OOM killer) or that
    this process stops because its model ran past its time or memory budget has that model
    recorded as a failure, and a new worker takes its place.
    """

    def __init__(self, work, run, record):
        import multiprocessing

        self.run, self.record = run, record
        self.budget = run.budget
        self.context = multiprocessing.get_context("fork")
        self.pending = list(work)
        self.workers = {}  # number -> (process, connection)
        self.current = {}  # number -> (ModelWork, ModelBudget started for it)
        self.received = {}  # number -> images of its current model recorded (None once it failed)
        for number in range(min(run.workers, len(work))):
            self._start_worker(number)

    @property
    def finished(self):
        return not self.workers

    def _start_worker(self, number):
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=_worker_main, daemon=True, args=(theirs, self.run, os.getpid()))
        process.start()
        theirs.close()
        self.workers[number] = (process, ours)

    def poll(self, timeout):
        """Handle the workers' messages for up to `timeout` seconds, and stop any model past its budget."""
        from multiprocessing.connection import wait

        deadline = time.monotonic() + timeout
        while self.workers:
            self._enforce_budgets()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            by_connection = {connection: number for number, (_, connection) in self.workers.items()}
            for connection in wait(list(by_connection), timeout=min(left, 0.5)):
                number = by_connection[connection]
                try:
                    message = connection.recv()
                except (EOFError, OSError):
                    self._worker_ended(number)
                    continue
                self._handle(number, message)

    def _handle(self, number, message):
        kind, payload = message
        if kind == "record":
            self.record(payload)
            self._count(number, payload)
        elif kind == "ready":
            finished = self.current.pop(number, None)
            work = take_next_work(self.pending, [work for work, _ in self.current.values()],
                                  finished[0] if finished else None)
            if work is not None:
                check_free_space(self.run.out_dir, work.images, self.run.image_size)
                self.current[number] = (work, self.budget.started())
                self.received[number] = 0
            self.workers[number][1].send(work)
        elif kind == "stop":
            raise manifest.OutputError(payload)

    def _worker_ended(self, number):
        """A worker's pipe closed: it finished, or it died with a model (recorded as failed)."""
        process, connection = self.workers.pop(number)
        connection.close()
        process.join()
        crashed = self.current.pop(number, None)
        if crashed:
            self._fail(number, crashed[0], f"the worker rendering it died (exit code {process.exitcode})")
            self._start_worker(number)

    def _enforce_budgets(self):
        for number, (work, budget) in list(self.current.items()):
            process = self.workers[number][0]
            reason = budget.overrun(process.pid)
            if reason:
                process.kill()
                process.join()
                self._drain(number)  # records it sent before it was stopped are whole images
                process, connection = self.workers.pop(number)
                connection.close()
                self.current.pop(number, None)
                self._fail(number, work, reason)
                self._start_worker(number)

    def _drain(self, number):
        connection = self.workers[number][1]
        try:
            while connection.poll(0):
                kind, payload = connection.recv()
                if kind == "record":
                    self.record(payload)
                    self._count(number, payload)
        except (EOFError, OSError):
            pass

    def _count(self, number, record):
        if self.received.get(number) is not None:
            images = {"model": 1, "example": 2}.get(record["type"])
            self.received[number] = None if images is None else self.received[number] + images

    def _fail(self, number, work, reason):
        """Record the worker's model as failed, unless everything it had to make (or its own
        failure) was recorded before the worker ended: then the model is not at fault."""
        received = self.received.pop(number, None)
        if received is not None and received < work.images:
            self.record({"type": "failure", "model": work.entry.model_id, "split": work.entry.split,
                         "reason": reason})

    def close(self):
        for process, connection in self.workers.values():
            if process.is_alive():
                process.terminate()
            process.join()
            connection.close()
        self.workers = {}
