"""The dataset run as a job, stepped by hand as a modal operator would: one model a step, progress,
cancel keeping what is finished, and a rerun resuming from there."""

import json
import subprocess
import sys

import pytest

from shared_assets import ROOT  # the repository root


@pytest.fixture
def models(ext_module, tmp_path):
    """Two copies of the procedural character and one broken file, in sorted model-id order."""
    write_character = ext_module("render.formats.mmd").write_character
    root = tmp_path / "models"
    write_character(root / "a")
    write_character(root / "b")
    (root / "c").mkdir()
    (root / "c" / "broken.pmx").write_text("not a model")
    return root


def journal_models(out):
    lines = (out / "parts" / "shard-1-of-1.jsonl").read_text(encoding="utf-8").splitlines()
    return [(record["type"], record["model"]) for record in map(json.loads, lines)]


def new_run(ext_module, models, out):
    config = ext_module("render.dataset.plan").DatasetConfig(poses_per_model=1)
    return ext_module("render.blender.dataset_run").DatasetRun(models, out, config, show_progress=False)


@pytest.mark.slow
def test_each_step_renders_one_model(ext_module, models, tmp_path):
    out = tmp_path / "dataset"
    run = new_run(ext_module, models, out).start()
    assert run.summary.models == run.summary.models_to_render == 3
    assert run.progress.fraction == 0.0
    fractions, rendered_models = [], []
    while not run.done:
        fractions.append(run.step().fraction)
        if not run.done:
            rendered_models.append(len({model for _, model in journal_models(out)}))
    assert rendered_models == [1, 2, 3]  # one model a step (the broken one as a failure)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 < fractions[0] < 1
    summary = run.result
    assert (summary.images, summary.examples) == (6, 2)
    assert list(summary.failures) == ["c/broken.pmx"] and "not an MMD model" in summary.failures["c/broken.pmx"]
    assert (out / "manifest.jsonl").exists()  # merged at the end


@pytest.mark.slow
def test_cancel_keeps_finished_models_and_a_rerun_resumes(ext_module, models, tmp_path):
    out = tmp_path / "dataset"
    run = new_run(ext_module, models, out)
    run.step()  # starts
    run.step()  # renders the first model
    run.cancel()
    with pytest.raises(ext_module("jobs").JobCancelled, match="Dataset shard 1/1: cancelled"):
        run.step()
    assert {model for _, model in journal_models(out)} == {"a/tha_studio_character.pmx"}

    again = new_run(ext_module, models, out).run()
    assert again.models_to_render == 2 and again.images == 3
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["model"] for r in records if r["type"] == "model"] == ["a/tha_studio_character.pmx",
                                                                     "b/tha_studio_character.pmx"]



def dataset_files(folder):
    """{relative path: bytes} of a dataset, the journals (written in finishing order) aside."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and path.parent.name != "parts"}


@pytest.mark.slow
def test_workers_make_the_same_dataset(models, tmp_path):
    # In fresh processes: a fork of a process that has already rendered (this one) can hang in
    # Blender's render locks, which is why --workers is a command-line option.
    for out, extra in (("one", []), ("two", ["--workers", "2", "--no-progress"])):
        result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "render-dataset", str(models),
                                 str(tmp_path / out), "--poses-per-model", "1", *extra],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert "3 model(s), 6 image(s) rendered" in result.stdout, result.stdout
        if out == "one":  # its progress, captured as a farm's log is: whole lines, no "\r" redraws
            bar = [line for line in result.stderr.splitlines() if line.startswith("shard 1/1:")]
            assert bar[0].startswith("shard 1/1:   0%|") and bar[-1].startswith("shard 1/1: 100%|"), result.stderr
            assert "\r" not in result.stderr
    assert dataset_files(tmp_path / "two") == dataset_files(tmp_path / "one")


def test_a_folder_without_models_is_named_with_the_archives_it_holds(ext_module, tmp_path):
    empty = tmp_path / "downloads"
    (empty / "notes").mkdir(parents=True)
    (empty / "notes" / "readme.txt").write_text("models go here")
    error = ext_module("render.dataset.plan").DatasetError
    with pytest.raises(error, match=r"downloads: no models under it \(looked for \.pmx, \.pmd, .*\.blend, \.zip\)$"):
        new_run(ext_module, empty, tmp_path / "out").run()
    (empty / "miku.rar").write_bytes(b"Rar!\x1a\x07\x00")
    with pytest.raises(error, match=r"it holds 1 archive\(s\) THA Studio cannot open \(miku.rar, \.\.\.\): extract "
                                    r"them, or repack them as \.zip"):
        new_run(ext_module, empty, tmp_path / "out").run()


def test_a_killed_runs_extracted_archive_is_removed_by_the_next_run(ext_module, models, tmp_path):
    out = tmp_path / "dataset"
    left = out / ".extracting" / "s1of1-999999" / "0123456789ab" / "model"
    left.mkdir(parents=True)
    (left / "big.png").write_bytes(bytes(1000))
    other_shard = out / ".extracting" / "s2of2-999999"
    other_shard.mkdir()
    run = new_run(ext_module, models, out)
    run.step()  # starts
    assert not (out / ".extracting" / "s1of1-999999").exists() and other_shard.is_dir()
    run.cancel()


def test_a_split_rule_no_model_falls_under_is_warned_of_before_the_render(ext_module, tmp_path, capsys):
    # A misspelt folder in the split file sends its models to the default split without a word:
    # test models trained on. The run says so when it starts, not hours later.
    root = tmp_path / "models"
    (root / "vtubers").mkdir(parents=True)
    (root / "vtubers" / "broken.pmx").write_text("not a model")  # (fails at once: nothing to render)
    config = ext_module("render.dataset.plan").DatasetConfig(poses_per_model=1)
    run = ext_module("render.blender.dataset_run").DatasetRun(
        root, tmp_path / "out", config, show_progress=False,
        split_rules=[("vtubers", "test"), ("vtuber/extra", "validation")]).start()
    assert "warning: 1 split rule(s) name a folder no model is under (vtuber/extra); check the split file's " \
           "spelling: models no rule places go to train" in capsys.readouterr().err
    assert run.summary.unmatched_rules == ["vtuber/extra"]
    run.cancel()
