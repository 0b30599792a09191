"""render-dataset from the command line: good models render, broken ones are listed with reasons,
a killed run resumes to the same bytes, two shards merge into the same dataset as one run."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from processes import alive, children
from shared_assets import ROOT  # the repository root
POSES = "2"


def cli(*args, check=True):
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def start_cli(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def models(shared, tmp_path_factory):
    """train/: Gene_light; validation/: four broken files; test/: the procedural character."""
    from tha_studio.render.formats.mmd import write_character

    root = tmp_path_factory.mktemp("models")
    (root / "train").mkdir()
    (root / "train" / "gene").symlink_to(shared / "assets" / "mmd" / "gene_light", target_is_directory=True)
    write_character(root / "test" / "character")
    broken = root / "validation" / "broken"
    broken.mkdir(parents=True)
    (broken / "text.pmx").write_text("not a model")
    (broken / "empty.pmx").write_bytes(b"")
    (broken / "cut.pmx").write_bytes((shared / "assets/mmd/gene_light/Gene_light.pmx").read_bytes()[:50000])
    (broken / "no_face.pmx").write_bytes((shared / "assets/mmd/edge_cases/bone_flag_test.pmx").read_bytes())
    return root


def dataset_files(folder):
    """{relative path: sha256} of what a dataset holds (the journals' line order aside)."""
    files = {}
    for path in sorted(Path(folder).rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if path.is_file() and not relative.startswith("parts/"):
            files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


@pytest.fixture(scope="module")
def one_run(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("one_run")
    result = cli("render-dataset", models, out, "--poses-per-model", POSES, "--no-progress")
    return out, result


@pytest.mark.slow
def test_good_models_render_and_broken_ones_are_listed_with_reasons(one_run):
    out, result = one_run
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    failures = {r["model"]: r["reason"] for r in map(json.loads, (out / "failures.jsonl").read_text().splitlines())}
    models = [r["model"] for r in manifest if r["type"] == "model"]
    assert models == ["train/gene/Gene_light.pmx", "test/character/tha_studio_character.pmx"]
    assert sum(r["type"] == "example" for r in manifest) == 4
    assert set(failures) == {f"validation/broken/{n}.pmx" for n in ("text", "empty", "cut", "no_face")}
    assert "not an MMD model" in failures["validation/broken/text.pmx"]
    assert "empty" in failures["validation/broken/empty.pmx"]
    assert "remain" in failures["validation/broken/cut.pmx"]
    assert "lacks eye_wink_left" in failures["validation/broken/no_face.pmx"]
    for model_id in failures:
        assert f"skipped {model_id}: " in result.stdout
    for record in manifest:  # every listed image exists with its checksum
        for key in ("rest", "expression", "posed"):
            if key in record:
                data = (out / record[key]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == record["sha256"][key]
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_killed_and_rerun_equals_an_uninterrupted_run(models, one_run, tmp_path):
    out = tmp_path / "resumed"
    journal = out / "parts" / "shard-1-of-1.jsonl"
    process = start_cli("render-dataset", models, out, "--poses-per-model", POSES, "--no-progress")
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if journal.exists() and len(journal.read_bytes().splitlines()) >= 2:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    lines = journal.read_bytes().splitlines()
    assert 2 <= len(lines) < 10, "the run was not stopped part-way"
    for line in lines:  # what the journal lists is whole
        record = json.loads(line)
        for key in ("rest", "expression", "posed"):
            if key in record:
                assert hashlib.sha256((out / record[key]).read_bytes()).hexdigest() == record["sha256"][key]
    cli("render-dataset", models, out, "--poses-per-model", POSES, "--no-progress")
    assert dataset_files(out) == dataset_files(one_run[0])


@pytest.mark.slow
def test_two_shards_merged_equal_one_run_and_other_options_are_refused(models, one_run, tmp_path):
    out = tmp_path / "sharded"
    first = cli("render-dataset", models, out, "--poses-per-model", POSES, "--no-progress", "--shard", "1/2")
    assert "merge-shards" in first.stdout
    env_shard = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "render-dataset", str(models), str(out), "--poses-per-model", POSES,
         "--no-progress"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1"},
    )
    assert env_shard.returncode == 0 and "shard 2/2" in env_shard.stdout, env_shard.stderr
    merged = cli("merge-shards", out)
    assert "2 model(s), 4 example(s), 4 failure(s)" in merged.stdout
    assert dataset_files(out) == dataset_files(one_run[0])

    refused = cli("render-dataset", models, out, "--poses-per-model", POSES, "--seed", "5", check=False)
    assert refused.returncode == 1 and "seed 0 (now 5)" in refused.stderr


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="finds the workers through /proc (Linux)")
def test_workers_end_when_the_main_process_is_killed(tmp_path):
    from tha_studio.render.formats.mmd import write_character

    for number in range(30):  # more work than the workers could finish in the seconds allowed below
        write_character(tmp_path / "models" / f"character_{number}")
    run = start_cli("render-dataset", tmp_path / "models", tmp_path / "out", "--poses-per-model", "4",
                    "--workers", "2", "--no-progress")
    workers, deadline = [], time.monotonic() + 120
    while len(workers) < 2 and time.monotonic() < deadline and run.poll() is None:
        workers = children(run.pid)
        time.sleep(0.1)
    assert len(workers) >= 2, "the run did not start its workers"
    run.kill()  # as kill -9 or the OOM killer would
    run.wait()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)], "workers outlived the run that records their work"
