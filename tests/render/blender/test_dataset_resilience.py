"""render-dataset against what a long build meets besides bad models: a worker killed half way
through a model, a full or read-only disk, a second run on the same folder, a model past its time
or memory budget. Each test runs the real command line and shows a clear message, the other
models finishing, and a plain rerun finishing the job."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processes import children
from shared_assets import ROOT  # the repository root

pytestmark = pytest.mark.slow


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          errors="surrogateescape", timeout=timeout)  # a model's name need not be UTF-8


def start_cli(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="surrogateescape")


def characters(root, count):
    from tha_studio.render.formats.mmd import write_character

    for number in range(count):
        write_character(Path(root) / f"character_{number}")
    return Path(root)


def records(path):
    path = Path(path)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []


def examples_by_model(out):
    counts = {}
    for record in records(Path(out) / "manifest.jsonl"):
        if record["type"] == "example":
            counts[record["model"]] = counts.get(record["model"], 0) + 1
    return counts


def journal(out):
    return records(Path(out) / "parts" / "shard-1-of-1.jsonl")


def wait_for(condition, seconds=120, process=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.05)
    return False


# ----------------------------------------------------------------------------------------------
# 1. A worker that dies half way through a model


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the workers through /proc (Linux)")
def test_a_model_left_part_made_by_a_killed_worker_is_finished_by_a_plain_rerun(tmp_path):
    models, out = characters(tmp_path / "models", 3), tmp_path / "out"
    poses = 20  # 41 images a model: seconds, so both workers are in the middle of their first model
    run = start_cli("render-dataset", models, out, "--poses-per-model", poses, "--workers", "2", "--no-progress")
    # Until both workers have images of their models: a worker killed before its model's first
    # image leaves a model that failed, not a part-made one, and a plain rerun rightly skips that.
    def both_under_way():
        return len({r["model"] for r in journal(out) if r["type"] == "example"}) >= 2

    assert wait_for(both_under_way, process=run), run.communicate()
    worker = children(run.pid)[0]
    os.kill(worker, signal.SIGKILL)  # as the OOM killer would
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stderr

    failed = [r for r in journal(out) if r["type"] == "failure"]
    assert len(failed) == 1 and "the worker rendering it died (exit code -9)" in failed[0]["reason"]
    broken = failed[0]["model"]
    counts = examples_by_model(out)
    assert counts.get(broken, 0) < poses  # part-made: some images, not all
    assert all(counts[model] == poses for model in counts if model != broken)  # the others finished
    assert [r["model"] for r in records(out / "failures.jsonl")] == [broken]  # listed, not hidden

    again = cli("render-dataset", models, out, "--poses-per-model", poses, "--no-progress")
    assert again.returncode == 0, again.stderr
    assert "skipped" not in again.stdout, again.stdout
    assert examples_by_model(out) == {f"character_{n}/tha_studio_character.pmx": poses for n in range(3)}
    assert records(out / "failures.jsonl") == []


# ----------------------------------------------------------------------------------------------
# 2. A full disk, a read-only folder


class SmallDisk(type(Path())):
    """A folder on a tmpfs of its own; `remount("size=128m")`, `remount("ro")` change it."""

    def remount(self, options):
        subprocess.run(["mount", "-o", f"remount,{options}", str(self)], check=True)


@pytest.fixture
def small_disk(tmp_path):
    """A small tmpfs of its own: a real ENOSPC and EROFS (a root test run cannot be refused by chmod)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = SmallDisk(tmp_path / "disk")
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=36m", "tmpfs", str(disk)]).returncode:
        pytest.skip("this machine does not let us mount a tmpfs")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def no_failures_recorded(out):
    return [r for r in journal(out) if r["type"] == "failure"] == []


ALL_THREE = {f"character_{n}/tha_studio_character.pmx": 20 for n in range(3)}


def test_a_disk_too_small_for_the_images_left_is_refused_before_rendering_naming_the_figure(small_disk, tmp_path):
    models, out = characters(tmp_path / "models", 3), small_disk / "out"
    refused = cli("render-dataset", models, out, "--poses-per-model", 20, "--no-progress")
    assert refused.returncode == 1
    assert "123 image(s) still to render need about 39.7 MB" in refused.stderr and "free" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert journal(out) == []

    small_disk.remount("size=128m")  # space freed
    again = cli("render-dataset", models, out, "--poses-per-model", 20, "--no-progress")
    assert again.returncode == 0, again.stderr
    assert examples_by_model(out) == ALL_THREE


def fill(disk):
    """Write a file until the disk is full; returns it."""
    filler = disk / "filler.bin"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 20))
                handle.flush()
        except OSError:
            pass
    return filler


def test_a_disk_that_fills_during_the_run_stops_it_with_no_model_blamed_and_a_rerun_finishes(small_disk, tmp_path):
    small_disk.remount("size=128m")
    models, out = characters(tmp_path / "models", 3), small_disk / "out"
    run = start_cli("render-dataset", models, out, "--poses-per-model", 20, "--no-progress")
    assert wait_for(lambda: any(r["type"] == "example" for r in journal(out)), process=run), run.communicate()
    filler = fill(small_disk)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 1, stdout + stderr
    assert "No space left on device" in stderr or "the disk is full" in stderr, stderr
    assert "Traceback" not in stderr and "nothing was recorded against" in stderr
    assert no_failures_recorded(out)  # the models were fine: nothing says otherwise

    filler.unlink()
    again = cli("render-dataset", models, out, "--poses-per-model", 20, "--no-progress")
    assert again.returncode == 0, again.stderr
    assert examples_by_model(out) == ALL_THREE and records(out / "failures.jsonl") == []


def test_a_read_only_dataset_folder_stops_the_run_with_a_clear_message_and_a_rerun_finishes(small_disk, tmp_path):
    small_disk.remount("size=128m")
    models, out = characters(tmp_path / "models", 2), small_disk / "out"
    assert cli("render-dataset", models, out, "--poses-per-model", 20, "--no-progress").returncode == 0
    from tha_studio.render.formats.mmd import write_character

    write_character(models / "character_2")  # a model added: work to do
    small_disk.remount("ro")
    refused = cli("render-dataset", models, out, "--poses-per-model", 20, "--no-progress")
    assert refused.returncode == 1
    assert "Read-only file system" in refused.stderr and str(out) in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr

    small_disk.remount("rw")
    again = cli("render-dataset", models, out, "--poses-per-model", 20, "--no-progress")
    assert again.returncode == 0, again.stderr
    assert examples_by_model(out) == ALL_THREE and no_failures_recorded(out)


# ----------------------------------------------------------------------------------------------
# 3. Two runs on one folder


def test_a_second_run_of_the_same_shard_is_refused_while_other_shards_run_beside_it(tmp_path):
    models, out = characters(tmp_path / "models", 4), tmp_path / "out"
    common = ("--poses-per-model", 20, "--no-progress")
    first = start_cli("render-dataset", models, out, "--shard", "1/2", *common)
    assert wait_for(lambda: (out / "parts" / "shard-1-of-2.jsonl").exists(), process=first), first.communicate()
    second = cli("render-dataset", models, out, "--shard", "1/2", *common)
    assert second.returncode == 1
    assert "another render-dataset run is writing this shard (shard-1-of-2.jsonl" in second.stderr, second.stderr
    other_shard = cli("render-dataset", models, out, "--shard", "2/2", *common)
    assert other_shard.returncode == 0, other_shard.stderr
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr

    assert cli("merge-shards", out).returncode == 0
    assert examples_by_model(out) == {f"character_{n}/tha_studio_character.pmx": 20 for n in range(4)}
    again = cli("render-dataset", models, out, "--shard", "1/2", *common)  # the lock went with the run
    assert again.returncode == 0 and "0 image(s) rendered" in again.stdout, again.stdout + again.stderr


# ----------------------------------------------------------------------------------------------
# 4. A model's time and memory budget


def test_models_past_the_time_limit_are_failed_with_that_reason_and_a_rerun_without_it_finishes(tmp_path):
    models, out = characters(tmp_path / "models", 2), tmp_path / "out"
    slow = cli("render-dataset", models, out, "--poses-per-model", 40, "--model-timeout", 2, "--no-progress")
    assert slow.returncode == 0, slow.stderr
    reasons = {r["model"]: r["reason"] for r in records(out / "failures.jsonl")}
    assert len(reasons) == 2  # the first model past its time did not stop the second
    assert all(reason == "took longer than the 2 s allowed a model (--model-timeout)" for reason in reasons.values())

    # Without the limit, and with --retry-failed: a model stopped before its first image is a
    # failed model, which a plain rerun passes over by design (on a loaded machine the first
    # model's 2 s can go on the worker's start; CI once met that), one stopped later part-made.
    again = cli("render-dataset", models, out, "--poses-per-model", 40, "--model-timeout", 0, "--retry-failed",
                "--no-progress")
    assert again.returncode == 0, again.stderr
    assert examples_by_model(out) == {f"character_{n}/tha_studio_character.pmx": 40 for n in range(2)}


def test_models_past_the_memory_limit_are_failed_with_that_reason_with_workers(tmp_path):
    models, out = characters(tmp_path / "models", 3), tmp_path / "out"
    greedy = cli("render-dataset", models, out, "--poses-per-model", 2, "--model-memory", 0.05, "--workers", 2,
                 "--no-progress")
    assert greedy.returncode == 0, greedy.stderr
    reasons = [r["reason"] for r in records(out / "failures.jsonl")]
    assert len(reasons) == 3 and all("more than the 51.2 MB allowed a model (--model-memory)" in r for r in reasons)
    again = cli("render-dataset", models, out, "--poses-per-model", 2, "--retry-failed", "--no-progress")
    assert again.returncode == 0, again.stderr
    assert examples_by_model(out) == {f"character_{n}/tha_studio_character.pmx": 2 for n in range(3)}


def test_in_process_runs_check_the_time_limit_between_images(ext_module, tmp_path):
    models, out = characters(tmp_path / "models", 2), tmp_path / "out"
    dataset_run = ext_module("render.blender.dataset_run")
    config = ext_module("render.dataset.plan").DatasetConfig(poses_per_model=3)
    summary = dataset_run.DatasetRun(models, out, config, show_progress=False,
                                     budget=dataset_run.ModelBudget(seconds=0.001)).run()
    assert set(summary.failures.values()) == {"took longer than the 0.001 s allowed a model (--model-timeout)"}
    assert len(summary.failures) == 2


# ----------------------------------------------------------------------------------------------
# 5. Sizes no real model has


def test_a_model_with_more_morphs_than_any_real_one_is_failed_naming_file_and_limit_and_the_batch_goes_on(tmp_path):
    import numpy as np

    from tha_studio.render.formats.mmd import make_character, pmx
    from tha_studio.render.formats.mmd.model import Morph

    models, out = characters(tmp_path / "models", 2), tmp_path / "out"
    crafted = make_character()
    crafted.morphs += [Morph(name=f"extra {i}", vertex_indices=np.array([i % len(crafted.positions)]),
                             vertex_offsets=np.ones((1, 3), np.float32)) for i in range(20_000)]
    path = pmx.write(crafted, models / "crafted" / "morphs.pmx")
    result = cli("render-dataset", models, out, "--poses-per-model", 2, "--no-progress")
    assert result.returncode == 0, result.stderr
    reasons = {r["model"]: r["reason"] for r in records(out / "failures.jsonl")}
    assert list(reasons) == ["crafted/morphs.pmx"]
    assert str(path) in reasons["crafted/morphs.pmx"] and "morphs, more than the 5,000" in reasons["crafted/morphs.pmx"]
    assert examples_by_model(out) == {f"character_{n}/tha_studio_character.pmx": 2 for n in range(2)}


# ----------------------------------------------------------------------------------------------
# 6. Missing textures, recorded per model


def test_missing_textures_are_recorded_per_model_in_the_manifest(tmp_path):
    models, out = characters(tmp_path / "models", 2), tmp_path / "out"
    texture = next((models / "character_1").glob("*.png"))
    texture.unlink()
    assert cli("render-dataset", models, out, "--poses-per-model", 1, "--no-progress").returncode == 0
    warnings = {r["model"]: r["texture_warnings"] for r in records(out / "manifest.jsonl") if r["type"] == "model"}
    assert warnings["character_0/tha_studio_character.pmx"] == []
    missing = warnings["character_1/tha_studio_character.pmx"]
    assert missing == [f"texture {texture.name!r} of material '服' not found beside the model"]


def test_a_cp932_file_name_and_broken_name_bytes_render_with_warnings(tmp_path):
    from tha_studio.render.formats.mmd import make_character, pmx

    models, out = characters(tmp_path / "models", 1), tmp_path / "out"
    model = make_character()
    model.materials[0].name += "\udc00"  # half a UTF-16 character
    pmx.write(model, models / os.fsdecode("キャラ".encode("cp932")) / os.fsdecode("モデル.pmx".encode("cp932")))
    result = cli("render-dataset", models, out, "--poses-per-model", 1, "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "skipped" not in result.stdout, result.stdout
    assert len(examples_by_model(out)) == 2 and records(out / "failures.jsonl") == []


def test_blenders_own_words_for_a_failed_write_are_recognised_as_the_folders_fault(small_disk, ext_module):
    # Blender reports a Targa it could not write as "Render error (Success)": the folder is asked.
    dataset_run = ext_module("render.blender.dataset_run")
    opaque = RuntimeError("Error: Render error (Success) cannot save")
    assert dataset_run.output_folder_problem(opaque, small_disk) is None  # writable: the model's fault
    small_disk.remount("ro")
    assert dataset_run.output_folder_problem(opaque, small_disk) == "Read-only file system"
    small_disk.remount("rw")
    fill(small_disk)
    assert dataset_run.output_folder_problem(opaque, small_disk).startswith("the disk is full")
