"""Dataset subcommands: annotate, render-dataset, merge-shards, review-sheet (see the root commands.py)."""

import argparse
import math
import sys
from pathlib import Path

from ..commands import CommandError


def add_subcommands(subparsers):
    _annotate_parser(subparsers)
    _render_parser(subparsers)
    _merge_parser(subparsers)
    _review_parser(subparsers)


# --- annotate


def _annotate_parser(subparsers):
    parser = subparsers.add_parser(
        "annotate",
        help="find each model's head band and eye/mouth/bone roles; write its sidecar JSON",
        description="Annotate MMD models (.pmx, .pmd), VRM/glTF avatars (.vrm, .glb, .gltf) and characters "
        "saved by Blender (.blend, read where Blender's bpy module is installed) for dataset rendering: the head's "
        "top and bottom "
        "(chin to skull, upward hair left out), the morphs playing the THA roles (winks, mouth shapes, "
        "eyebrows...) and the neck/head/upper-body bones. Writes <model>.tha.json beside each model, or "
        "into --annotations (where the models in .zip archives go: nothing is written into an archive). "
        "Entries a person set (in Blender's annotation panel) are kept. No Blender needed but for .blend files.",
    )
    parser.add_argument("models", nargs="+", type=Path, help="model files or folders (searched recursively)")
    parser.add_argument("--annotations", type=Path, help="write sidecars into this folder (by path relative to the "
                        "folder given) instead of beside the models")
    parser.add_argument("--fresh", action="store_true", help="ignore existing sidecars (drop a person's edits)")
    parser.add_argument("--quiet", action="store_true", help="print only problems and the final count")
    parser.set_defaults(func=run_annotate)


def _model_files(inputs):
    """[(the folder given, model file)] for the files and folders given, all found before any is
    annotated: CommandError for one that is not there, or a folder with no model under it (a
    mistyped folder said "annotated 0 model(s)" and succeeded)."""
    from .dataset.plan import SOURCE_SUFFIXES, find_model_files, no_models_problem

    found = []
    for item in inputs:
        if item.is_dir():
            files = list(find_model_files(item, SOURCE_SUFFIXES))
            if not files:
                raise CommandError(no_models_problem(item))
            found += [(item, path) for path in files]
        elif item.exists():
            found.append((item.parent, item))
        else:
            raise CommandError(f"{item}: no such file or folder")
    return found


def _models_to_annotate(inputs, annotations):
    """(model id, model file, problem) for each model given or found: a model in a zip archive
    comes from a copy of its archive extracted for the while (the archive is one id's folder, and
    its sidecars go into `annotations`, as nothing can be written beside it); problem: what says
    why a file or archive cannot be annotated (None: it can)."""
    import tempfile

    from .dataset.archives import ARCHIVE_SUFFIXES, OTHER_ARCHIVE_SUFFIXES, ArchiveError, extract, model_members
    from .dataset.plan import MODEL_SUFFIXES, model_file_problem

    for root, path in _model_files(inputs):
        model_id = path.relative_to(root).as_posix()
        suffix = path.suffix.lower()
        if problem := model_file_problem(path):  # (a named pipe is never opened: its read would not end)
            yield model_id, path, problem
        elif suffix in OTHER_ARCHIVE_SUFFIXES:
            yield model_id, path, f"{path}: an archive THA Studio cannot open: extract it, or repack it as .zip"
        elif suffix not in ARCHIVE_SUFFIXES:
            yield model_id, path, None
        elif annotations is None:
            yield model_id, path, (f"{path}: the models in an archive are annotated into a folder of sidecars: give "
                                   "--annotations DIR (and the same to render-dataset)")
        else:
            try:
                members = model_members(path, MODEL_SUFFIXES)
                with tempfile.TemporaryDirectory(prefix="tha_studio_archive_") as folder:
                    extract(path, folder)
                    for member in members:
                        yield f"{model_id}/{member}", Path(folder, *member.split("/")), None
            except ArchiveError as error:
                yield model_id, path, str(error)


def run_annotate(args):
    from ..errors import UserError
    from .dataset.annotation import annotate_file

    if args.annotations is not None and args.annotations.exists() and not args.annotations.is_dir():
        # (else every model failed on its own, each naming the file that is in the way)
        raise CommandError(f"--annotations {args.annotations}: not a folder")
    done, problems = 0, 0
    for model_id, path, problem in _models_to_annotate(args.models, args.annotations):
        try:
            if problem:
                raise UserError(problem)
            annotation, sidecar = annotate_file(path, args.annotations, model_id if args.annotations else None,
                                                keep_person_edits=not args.fresh, read_model=_blend_reader(path))
        except (UserError, OSError) as error:  # an unreadable model, avatar or .blend: named, and the next one
            message = str(error)  # most name the file already
            print(message if str(path) in message else f"{path}: {message}", file=sys.stderr)
            problems += 1
            continue
        done += 1
        flagged = annotation.review.get("flagged")
        if flagged or not args.quiet:
            head = annotation.head
            band = f"head {head['bottom']:.2f}..{head['top']:.2f}" if head else "head ?"
            roles = ", ".join(
                f"{role}={annotation.morphs_for(role)[0][0] if annotation.morphs_for(role) else '-'}"
                for role in ("eye_wink_left", "eye_wink_right", "mouth_aaa")
            )
            mark = "FLAGGED " + "; ".join(annotation.review.get("reasons", [])) if flagged else "ok"
            print(f"{model_id}: {band}; {roles}; {len(annotation.morph_roles)} morph roles; {mark} -> {sidecar}")
    print(f"annotated {done} model(s)" + (f", {problems} could not be read" if problems else ""))
    return 1 if problems and not done else 0


def _blend_reader(path):
    """The reader of a .blend (Blender's, where the bpy module is installed), else None."""
    if path.suffix.lower() != ".blend":
        return None
    try:
        from .blender.blend_model import read_blend_model
    except ImportError:
        return None  # (the annotation then says a .blend is read in Blender)
    return read_blend_model


# --- render-dataset


def _render_parser(subparsers):
    from .dataset.settings import ANTIALIAS, ENGINES

    parser = subparsers.add_parser(
        "render-dataset",
        help="render THA training triplets for a folder tree of models (resumable, sharded)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""Render THA training data from a folder tree of MMD models, VRM/glTF avatars and .blend
characters: per model a rest image, then per sampled pose an expression-only image and an
expression+rotation image, with a manifest.

Splits come from top-level folders named train/, validation/ (or val/) and test/, from
--split-file (lines "FOLDER SPLIT"), or --default-split. Rerun the same command to resume: finished
images are skipped, and models left part-made are finished. Models that fail (unreadable, missing
roles, sizes no real model has, past --model-timeout or --model-memory) are listed with the reason
and the others go on. A full or read-only disk stops the run with a message and no model blamed:
free space and rerun. The same options give the same dataset, byte for byte.

Cluster job arrays: give every task the same OUT and its own --shard K/N (SLURM arrays and
Kubernetes indexed jobs are read from the environment if --shard is left out: SLURM_ARRAY_TASK_ID /
SLURM_ARRAY_TASK_COUNT, or JOB_COMPLETION_INDEX with THA_SHARD_COUNT), then run merge-shards OUT.""",
    )
    parser.add_argument("models", type=Path, help="folder of models (searched recursively for .pmx, .pmd, .vrm, .glb, "
                        ".gltf and .blend, also inside .zip archives as downloaded)")
    parser.add_argument("out", type=Path, help="dataset folder (created; reused to resume)")
    parser.add_argument("--schema", default="tha1", choices=("tha1", "tha2", "tha3"), help="pose schema (default tha1)")
    parser.add_argument("--poses-per-model", type=int, default=16, help="sampled poses per model (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--engine", default="workbench", choices=ENGINES,
                        help="workbench (shaded), flat (unlit Workbench), cycles, or toon: MikuMikuDance's own look "
                        "(toon ramps, sphere maps, outlines; Cycles on the CPU) (default workbench)")
    parser.add_argument("--samples", type=int, default=16, help="Cycles and toon samples per pixel (default 16)")
    parser.add_argument("--antialias", default="5", choices=ANTIALIAS, help="Workbench anti-aliasing samples (default 5)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering at once on this machine, at most its CPUs (default 1)")
    parser.add_argument("--shard", help="K/N: render only the K-th of N shares of the models")
    parser.add_argument("--split-file", type=Path, help='lines "FOLDER SPLIT" assigning models to train/validation/test')
    parser.add_argument("--default-split", default="train", choices=("train", "validation", "test"),
                        help="split of models no rule places (default train)")
    parser.add_argument("--annotations", type=Path, help="folder of sidecars made by 'annotate --annotations'")
    parser.add_argument("--retry-failed", action="store_true", help="try again the models an earlier run recorded as failed")
    parser.add_argument("--limit-models", type=int, help="render at most this many models of the shard (for a trial)")
    parser.add_argument("--model-timeout", type=float, default=300.0, metavar="SECONDS",
                        help="seconds one model may take before it is stopped and listed as failed (default 300; "
                        "0: no limit)")
    parser.add_argument("--model-memory", type=float, default=8.0, metavar="GB",
                        help="memory a worker may hold for one model before it is stopped and the model listed as "
                        "failed (default 8; 0: no limit)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_render_dataset)


def run_render_dataset(args):
    from .dataset.plan import DatasetConfig, parse_shard, read_split_file, shard_from_environment
    from .blender.dataset_run import DatasetRun, ModelBudget
    from .dataset.settings import RenderSettings

    for option, value in (("--model-timeout", args.model_timeout), ("--model-memory", args.model_memory)):
        if not (math.isfinite(value) and value >= 0):  # (nan and inf were tracebacks, or no limit unsaid)
            raise CommandError(f"{option} {value:g}: must be 0 (no limit) or a positive number")
    budget = ModelBudget(seconds=args.model_timeout or None,
                         memory=int(args.model_memory * 1024**3) if args.model_memory else None)
    shard = parse_shard(args.shard) if args.shard else (shard_from_environment() or (1, 1))
    rules = read_split_file(args.split_file) if args.split_file else ()
    try:
        config = DatasetConfig(schema=args.schema, seed=args.seed, poses_per_model=args.poses_per_model,
                               render=RenderSettings(args.engine, args.samples, args.antialias))
    except ValueError as error:
        raise CommandError(str(error)) from None
    run = DatasetRun(args.models, args.out, config, shard=shard, workers=args.workers, split_rules=rules,
                     default_split=args.default_split, annotations_dir=args.annotations,
                     retry_failed=args.retry_failed, show_progress=not args.no_progress,
                     limit_models=args.limit_models, budget=budget,
                     isolate=True)  # models render in a worker process, which can be stopped past its budget
    summary = run.run()
    rate = summary.images / summary.seconds if summary.seconds else 0.0
    print(f"shard {shard[0]}/{shard[1]}: {summary.models} model(s), {summary.images} image(s) rendered "
          f"({summary.examples} example(s)) in {summary.seconds:.1f} s, {rate:.2f} images/s")
    for model_id, reason in sorted(summary.failures.items()):
        print(f"  skipped {model_id}: {reason}")
    if summary.unopened:
        print(f"warning: {len(summary.unopened)} archive(s) left out, which THA Studio cannot open "
              f"({', '.join(summary.unopened[:3])}{', ...' if len(summary.unopened) > 3 else ''}): extract them "
              "into the models folder, or repack them as .zip", file=sys.stderr)
    if shard[1] > 1:
        print(f"when every shard is done: merge-shards {args.out}")
    return 0


# --- merge-shards


def _merge_parser(subparsers):
    parser = subparsers.add_parser(
        "merge-shards",
        help="merge the shard journals of a dataset folder into manifest.jsonl and failures.jsonl",
        description="Merge parts/shard-K-of-N.jsonl of a dataset folder into one manifest.jsonl (sorted by split, "
        "model and example) and failures.jsonl. Safe to run again; shards that disagree are reported.",
    )
    parser.add_argument("out", type=Path, help="the dataset folder every shard wrote into")
    parser.set_defaults(func=run_merge_shards)


def run_merge_shards(args):
    from .dataset.plan import merge_dataset

    progress = merge_dataset(args.out)
    # Counted, not turned back into records: a million-line dataset would need gigabytes again.
    models, examples, failures = (progress.count(kind) for kind in ("model", "example", "failure"))
    print(f"{args.out}: {models} model(s), {examples} example(s), {failures} failure(s) -> manifest.jsonl")
    return 0


# --- review-sheet


def _review_parser(subparsers):
    parser = subparsers.add_parser(
        "review-sheet",
        help="tile a dataset's rest renders with head bands, roles and flags into pages to check by eye",
        description="Make a review sheet of a dataset folder: every model's rest image with the head box's rows "
        "in red, its folder and file name, the confidence of its wink and mouth roles and its flags (failed, "
        "missing textures, low-confidence roles); flagged and failed models framed in red. Writes pages of "
        "--per-page models (SHEET-p001.png, ...), an index page SHEET (PNG: each page's tiles and the tiles to "
        "look at) and SHEET.json (tile numbers). With --flag N..., marks those tiles' models as flagged in their "
        "sidecars (under the dataset's annotations/) and redraws the sheet.",
    )
    parser.add_argument("dataset", type=Path, help="a dataset folder made by render-dataset")
    parser.add_argument("--out", type=Path, help="index page PNG (default DATASET/review_sheet.png)")
    parser.add_argument("--flag", type=int, nargs="+", metavar="N", help="tile numbers to flag (from the last sheet's index)")
    parser.add_argument("--reason", default="flagged on the review sheet", help="the reason written with --flag")
    parser.add_argument("--columns", type=int, default=10, help="tiles per row (default 10)")
    parser.add_argument("--per-page", type=int, default=100, help="models per page (default 100)")
    parser.add_argument("--tile", type=int, default=160, help="tile size in pixels (default 160)")
    parser.set_defaults(func=run_review_sheet)


def run_review_sheet(args):
    from ..pose.schema import get_schema
    from .dataset.plan import CONFIG_NAME, read_config_file
    from .dataset.review_sheet import MAX_PAGE_PIXELS, dataset_entries, flag_tiles, label_font, page_pixels, save_sheets

    config_path = args.dataset / CONFIG_NAME
    if not config_path.exists():
        raise CommandError(f"{args.dataset}: not a dataset folder (no {CONFIG_NAME})")
    if args.per_page < 1 or args.columns < 1 or args.tile < 32:
        raise CommandError("--per-page and --columns must be 1 or more, --tile 32 or more")
    pixels = page_pixels(args.tile, args.per_page)
    if pixels > MAX_PAGE_PIXELS:  # (--tile 20000 held 14 GB for one model)
        raise CommandError(f"--per-page {args.per_page} tiles of {args.tile} pixels make pages of up to "
                           f"{pixels / 1e6:,.0f} megapixels, over the "
                           f"{MAX_PAGE_PIXELS / 1e6:.0f} a page may take; lower --tile or --per-page")
    schema = get_schema(read_config_file(config_path).schema)
    out = args.out or args.dataset / "review_sheet.png"
    try:
        if args.flag:
            index = out.with_name(out.name + ".json")
            if not index.exists():
                raise CommandError(f"{index}: no sheet index to find tile numbers in; make the sheet first")
            for model_id in flag_tiles(args.dataset, index, args.flag, args.reason):
                print(f"flagged {model_id}")
        entries = dataset_entries(args.dataset, schema.head_box)
    except ValueError as error:  # review_sheet's words: no models, no such tile
        raise CommandError(error.args[0]) from None
    font, warning = label_font()
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    written = save_sheets(entries, out, tile=args.tile, columns=args.columns, per_page=args.per_page, font=font)
    flagged = sum(e.flagged for e in entries)
    print(f"{out}: {len(entries)} model(s), {flagged} flagged, on {len(written) - 1} page(s) "
          f"({written[1].name}{' ... ' + written[-1].name if len(written) > 2 else ''})")
    return 0
