"""Rendering a dataset in Blender: each model's planned work, in this process or in forked workers.

The plan (which models, which images are still to make, where they go) is pure and lives in
`render.dataset.plan`; this module renders it. A model is annotated from its sidecar (or
automatically, the result saved under `annotations/` in the dataset), imported, then its rest
image and each pending example rendered. The models render in this process, one a step of the
`DatasetRun` job (jobs.py), or in `--workers N` forked processes (fork: blender.md §0.10) whose
messages each step reads; only this process writes the journal. A model that fails to read,
lacks a needed role or breaks while rendering is recorded as a failure with its reason, and the
others go on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ...atomic_files import remove_stale_temps
from ...jobs import Job, Progress
from ..dataset import manifest
from ..dataset.plan import (
    DatasetError,
    discover_models,
    ensure_config,
    journal_name,
    load_or_make_annotation,
    plan_work,
    shard_models,
    temp_tag_prefix,
)


@contextlib.contextmanager
def quiet_output():
    """Send Blender's per-render "Saved: ..." lines (C-level stdout) to /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def render_model(work, config, out_dir, emit, annotations_dir=None, temp_tag=None):
    """Render one model's pending images (a plan.ModelWork), calling emit(record) as each unit
    is finished.

    Any failure becomes a failure record naming the reason; nothing is raised.
    """
    from ...pose.schema import get_schema
    from ..dataset.sampling import sample_pose

    entry = work.entry
    out_dir = Path(out_dir)
    schema = get_schema(config.schema)
    try:
        annotation = load_or_make_annotation(entry, out_dir, annotations_dir)
        missing = annotation.missing_roles(schema)
        if missing:
            raise DatasetError(f"lacks {', '.join(missing)}")
        available = annotation.available_parameters(schema)
        renderer = _open_model(entry, annotation, schema, config, temp_tag)
        with quiet_output():
            if work.rest:
                data = renderer.render_rest(out_dir / entry.rest_path())
                emit({"type": "model", "model": entry.model_id, "split": entry.split, "rest": entry.rest_path(),
                      "sha256": {"rest": hashlib.sha256(data).hexdigest()}, "available": available})
            for index in work.indices:
                pose = sample_pose(schema, config.seed, entry.model_id, index, available)
                expression_path, posed_path = entry.example_paths(index)
                expression, posed = renderer.render_example(pose, out_dir / expression_path, out_dir / posed_path)
                emit({"type": "example", "model": entry.model_id, "split": entry.split, "index": index,
                      "pose": [float(v) for v in pose], "expression": expression_path, "posed": posed_path,
                      "sha256": {"expression": hashlib.sha256(expression).hexdigest(),
                                 "posed": hashlib.sha256(posed).hexdigest()}})
    except Exception as error:  # noqa: BLE001 - one model's failure must not stop the others
        emit({"type": "failure", "model": entry.model_id, "split": entry.split, "reason": _reason(error)})
        if os.environ.get("THA_STUDIO_DEBUG"):
            traceback.print_exc()


def _open_model(entry, annotation, schema, config, temp_tag):
    import bpy

    from .model_import import import_model
    from .triplets import TripletRenderer

    bpy.ops.wm.read_homefile(use_empty=True)
    with quiet_output():
        imported = import_model(entry.path)
    return TripletRenderer(imported, annotation, schema, config.render, temp_tag=temp_tag)


def _reason(error):
    text = str(error).strip() or type(error).__name__
    return " ".join(text.split())


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


class DatasetRun(Job):
    """One run over a shard of a models folder into a dataset folder, as a job: `start()` checks
    the folder and plans, each `step()` renders one model (or, with workers, reads what they
    finished); `result` is the RunSummary. `run()` does it all, with a progress bar on stderr.
    Cancelling stops the workers; every image in the journal is whole, so a rerun resumes.

    Workers (`workers > 1`) are forked: start them from a process that has not rendered yet (the
    command line), as a fork of one that has can hang on Blender's render locks."""

    def __init__(self, models_root, out_dir, config, shard=(1, 1), workers=1, split_rules=(),
                 default_split="train", annotations_dir=None, retry_failed=False, show_progress=True,
                 limit_models=None):
        super().__init__()
        if config.poses_per_model < 0:
            raise DatasetError("poses per model must be 0 or more")
        if workers < 1:
            raise DatasetError("workers must be 1 or more")
        from ...pose.schema import get_schema

        get_schema(config.schema)
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
        self.journal = self.out_dir / journal_name(self.shard, self.shards)
        self.summary = None
        self._bar = None
        self._pool = None

    def plan(self):
        """(this shard's models, their ModelWork still to do, earlier failures that are skipped)."""
        entries = discover_models(self.models_root, self.split_rules, self.default_split)
        mine = shard_models(entries, self.shard, self.shards)
        if self.limit_models is not None:
            mine = mine[: self.limit_models]
        progress = manifest.read_progress([self.journal])
        work, skipped = plan_work(mine, progress, self.config, self.out_dir, self.retry_failed)
        return mine, work, skipped

    def _start(self):
        self._started_at = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ensure_config(self.out_dir, self.config)
        remove_stale_temps(self.out_dir, temp_tag_prefix(self.shard, self.shards))
        entries, work, skipped = self.plan()
        self.summary = RunSummary(models=len(entries), models_to_render=len(work), failures=dict(skipped))
        self._pending = list(work)
        self._planned = {item.entry.model_id: item.images for item in work}
        self._rendered = {}  # model id -> images rendered in this run
        self._total = sum(self._planned.values())
        self._accounted = 0  # images rendered, or given up with their model's failure
        self._tag = f"{temp_tag_prefix(self.shard, self.shards)}{os.getpid()}"
        self._bar = self._progress_bar(self._total)
        if self.workers > 1 and len(work) > 1:
            self._pool = WorkerPool(work, self, self._record)
            self._pending = []
        self.progress = self._progress()

    def _step(self):
        if self._pool is not None:
            self._pool.poll(timeout=0.1)
            if not self._pool.finished:
                return self._progress()
        elif self._pending:
            render_model(self._pending.pop(0), self.config, self.out_dir, self._record, self.annotations_dir,
                         self._tag)
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

    def _record(self, item):
        """Journal one finished unit (this process alone writes the journal) and count it."""
        manifest.append_record(self.journal, item)
        model = item["model"]
        if item["type"] == "failure":
            self.summary.failures[model] = item["reason"]
            self._accounted += self._planned.get(model, 0) - self._rendered.get(model, 0)
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
        from tqdm import tqdm

        return tqdm(total=total, unit="img", desc=f"shard {self.shard}/{self.shards}", disable=not self.show_progress,
                    dynamic_ncols=True, file=sys.stderr, smoothing=0.1)


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


def _worker_main(work_queue, results, run, worker_number, parent_pid):
    import queue

    orphaned = _die_with_parent(parent_pid)
    tag = f"{temp_tag_prefix(run.shard, run.shards)}{os.getpid()}"
    while True:
        try:
            work = work_queue.get(timeout=1.0)
        except queue.Empty:
            if orphaned():
                os._exit(1)  # nobody would record what this worker makes
            continue
        if work is None:
            break
        results.put(("start", worker_number, work.entry.model_id, work.entry.split))
        render_model(work, run.config, run.out_dir, lambda item: results.put(("record", item)), run.annotations_dir, tag)
        results.put(("done", worker_number, work.entry.model_id, work.entry.split))
    results.put(("exit", worker_number, None, None))


class WorkerPool:
    """Models rendered in `run.workers` forked processes; `poll` hands their records to `record`
    (this process writes every journal line).

    A worker that dies (Blender can crash on a broken model) has its model recorded as a
    failure, and a new worker takes its place.
    """

    def __init__(self, work, run, record):
        import multiprocessing

        self.run, self.record = run, record
        self.context = multiprocessing.get_context("fork")
        self.work_queue, self.results = self.context.Queue(), self.context.Queue()
        for item in work:
            self.work_queue.put(item)
        count = min(run.workers, len(work))
        for _ in range(count):
            self.work_queue.put(None)
        self.processes, self.current, self.exited = {}, {}, set()
        for number in range(count):
            self._start_worker(number)

    @property
    def finished(self):
        return len(self.exited) >= len(self.processes)

    def _start_worker(self, number):
        process = self.context.Process(target=_worker_main, daemon=True,
                                       args=(self.work_queue, self.results, self.run, number, os.getpid()))
        process.start()
        self.processes[number] = process

    def poll(self, timeout):
        """Handle the workers' messages for up to `timeout` seconds (less once all have exited)."""
        import queue

        deadline = time.monotonic() + timeout
        while not self.finished:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                self._handle(self.results.get(timeout=left))
            except queue.Empty:
                self._replace_dead_workers()

    def _handle(self, message):
        if message[0] == "record":
            self.record(message[1])
            return
        kind, number, model_id, split = message
        if kind == "start":
            self.current[number] = (model_id, split)
        elif kind == "done":
            self.current.pop(number, None)
        elif kind == "exit":
            self.exited.add(number)

    def _replace_dead_workers(self):
        import queue

        dead = [number for number, process in self.processes.items()
                if number not in self.exited and not process.is_alive()]
        if not dead:
            return
        # A worker flushes what it sent before it exits: read that first, so one that finished
        # just after the wait ended is not taken for one that crashed.
        while True:
            try:
                self._handle(self.results.get(timeout=0.05))
            except queue.Empty:
                break
        for number in dead:
            if number in self.exited:
                continue
            crashed = self.current.pop(number, None)
            if crashed:
                self.record({"type": "failure", "model": crashed[0], "split": crashed[1],
                             "reason": f"the worker rendering it died (exit code {self.processes[number].exitcode})"})
                self.work_queue.put(None)
                self._start_worker(number)
            else:
                self.exited.add(number)

    def close(self):
        for process in self.processes.values():
            if process.is_alive():
                process.terminate()
            process.join()
