"""Rendering a dataset in Blender: one model per job, in this process or in forked workers.

The plan (which models, which images are still to make, where they go) is pure and lives in
`render.dataset.plan`; this module renders it. A model is annotated from its sidecar (or
automatically, the result saved under `annotations/` in the dataset), imported, then its rest
image and each pending example rendered. Jobs run in this process or in `--workers N` forked
processes (fork: blender.md §0.10); only this process writes the journal. A model that fails to
read, lacks a needed role or breaks while rendering is recorded as a failure with its reason,
and the others go on.
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
from ..dataset import manifest
from ..dataset.plan import (
    DatasetError,
    discover_models,
    ensure_config,
    journal_name,
    load_or_make_annotation,
    plan_jobs,
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


def render_model_job(job, config, out_dir, emit, annotations_dir=None, temp_tag=None):
    """Render one model's pending images, calling emit(record) as each unit is finished.

    Any failure becomes a failure record naming the reason; nothing is raised.
    """
    from ...pose.schema import get_schema
    from ..dataset.sampling import sample_pose

    entry = job.entry
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
            if job.rest:
                data = renderer.render_rest(out_dir / entry.rest_path())
                emit({"type": "model", "model": entry.model_id, "split": entry.split, "rest": entry.rest_path(),
                      "sha256": {"rest": hashlib.sha256(data).hexdigest()}, "available": available})
            for index in job.indices:
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
    jobs: int = 0  # models with work left at the start
    images: int = 0  # images rendered in this run
    examples: int = 0
    failures: dict = field(default_factory=dict)  # model id -> reason (this run and earlier ones)
    seconds: float = 0.0


class DatasetRun:
    """One run over a shard of a models folder into a dataset folder (see the module docstring)."""

    def __init__(self, models_root, out_dir, config, shard=(1, 1), workers=1, split_rules=(),
                 default_split="train", annotations_dir=None, retry_failed=False, show_progress=True,
                 limit_models=None):
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
        self.workers = workers
        self.split_rules = split_rules
        self.default_split = default_split
        self.annotations_dir = Path(annotations_dir) if annotations_dir else None
        self.retry_failed = retry_failed
        self.show_progress = show_progress
        self.limit_models = limit_models
        self.journal = self.out_dir / journal_name(self.shard, self.shards)

    def plan(self):
        entries = discover_models(self.models_root, self.split_rules, self.default_split)
        mine = shard_models(entries, self.shard, self.shards)
        if self.limit_models is not None:
            mine = mine[: self.limit_models]
        progress = manifest.read_progress([self.journal])
        jobs, skipped = plan_jobs(mine, progress, self.config, self.out_dir, self.retry_failed)
        return mine, jobs, skipped

    def run(self):
        started = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ensure_config(self.out_dir, self.config)
        remove_stale_temps(self.out_dir, temp_tag_prefix(self.shard, self.shards))
        entries, jobs, skipped = self.plan()
        summary = RunSummary(models=len(entries), jobs=len(jobs), failures=dict(skipped))
        bar = self._progress_bar(sum(job.images for job in jobs))

        def record(item):
            manifest.append_record(self.journal, item)
            if item["type"] == "failure":
                summary.failures[item["model"]] = item["reason"]
                bar.write(f"skipped {item['model']}: {item['reason']}")
            else:
                rendered = 1 if item["type"] == "model" else 2
                summary.images += rendered
                summary.examples += item["type"] == "example"
                bar.update(rendered)

        try:
            if self.workers == 1 or len(jobs) <= 1:
                tag = f"{temp_tag_prefix(self.shard, self.shards)}{os.getpid()}"
                for job in jobs:
                    render_model_job(job, self.config, self.out_dir, record, self.annotations_dir, tag)
            else:
                run_in_workers(jobs, self, record)
        finally:
            bar.close()
        if self.shards == 1:
            manifest.merge(self.out_dir)
        summary.seconds = time.perf_counter() - started
        return summary

    def _progress_bar(self, total):
        from tqdm import tqdm

        return tqdm(total=total, unit="img", desc=f"shard {self.shard}/{self.shards}", disable=not self.show_progress,
                    dynamic_ncols=True, file=sys.stderr, smoothing=0.1)


def _worker_main(jobs, results, run, worker_number):
    tag = f"{temp_tag_prefix(run.shard, run.shards)}{os.getpid()}"
    while True:
        job = jobs.get()
        if job is None:
            break
        results.put(("start", worker_number, job.entry.model_id, job.entry.split))
        render_model_job(job, run.config, run.out_dir, lambda item: results.put(("record", item)), run.annotations_dir, tag)
        results.put(("done", worker_number, job.entry.model_id, job.entry.split))
    results.put(("exit", worker_number, None, None))


def run_in_workers(jobs, run, record):
    """Render jobs in `run.workers` forked processes; this process writes every journal line.

    A worker that dies (Blender can crash on a broken model) has its model recorded as a
    failure, and a new worker takes its place.
    """
    import multiprocessing
    import queue

    context = multiprocessing.get_context("fork")
    job_queue, results = context.Queue(), context.Queue()
    for job in jobs:
        job_queue.put(job)
    count = min(run.workers, len(jobs))
    for _ in range(count):
        job_queue.put(None)
    processes, current = {}, {}

    def start(number):
        process = context.Process(target=_worker_main, args=(job_queue, results, run, number), daemon=True)
        process.start()
        processes[number] = process

    for number in range(count):
        start(number)
    finished = set()
    try:
        while len(finished) < len(processes):
            try:
                kind, number, model_id, split = _unpack(results.get(timeout=1.0))
            except queue.Empty:
                for number, process in list(processes.items()):
                    if number not in finished and not process.is_alive():
                        crashed = current.pop(number, None)
                        if crashed:
                            record({"type": "failure", "model": crashed[0], "split": crashed[1],
                                    "reason": f"the worker rendering it died (exit code {process.exitcode})"})
                            job_queue.put(None)
                            start(number)
                        else:
                            finished.add(number)
                continue
            if kind == "record":
                record(model_id)
            elif kind == "start":
                current[number] = (model_id, split)
            elif kind == "done":
                current.pop(number, None)
            elif kind == "exit":
                finished.add(number)
    finally:
        for process in processes.values():
            if process.is_alive():
                process.terminate()
            process.join()


def _unpack(message):
    if message[0] == "record":
        return "record", None, message[1], None
    return message
