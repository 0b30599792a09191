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

from shared_assets import ROOT  # the repository root

pytestmark = pytest.mark.slow


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def start_cli(*args):
    return subprocess.Popen([sys.executable, str(ROOT / "cli.py"), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


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


def children(pid):
    """Live process ids whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


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
    assert wait_for(lambda: any(r["type"] == "example" for r in journal(out)), process=run), run.communicate()
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
