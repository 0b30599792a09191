"""The manifest says what the issue and Blender's platform require (parsed, not grepped)."""

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from shared_assets import ROOT  # the repository root


def manifest():
    return tomllib.loads((ROOT / "blender_manifest.toml").read_text(encoding="utf-8"))


def test_identity_and_licence():
    m = manifest()
    assert m["id"] == "tha_studio"
    assert m["name"] == "THA Studio"
    assert m["type"] == "add-on"
    assert m["blender_version_min"] == "4.2.0"
    assert m["license"] == ["SPDX:GPL-3.0-or-later"]
    assert len(m["tagline"]) <= 64 and m["tagline"][-1].isalnum()


def test_files_permission_with_reason():
    permissions = manifest()["permissions"]
    assert set(permissions) == {"files"}, "no network, clipboard, camera or microphone use"
    reason = permissions["files"]
    assert 0 < len(reason) <= 64 and reason[-1].isalnum()


def test_build_excludes_development_files():
    excluded = manifest()["build"]["paths_exclude_pattern"]
    for pattern in ("__pycache__/", ".*", "/tests/", "/bench/", "/scripts/"):
        assert pattern in excluded


def blender_scripts():
    """The bpy module's scripts folder (<version>/scripts), located, not imported: the tests that
    read Blender's own files need no Blender."""
    import importlib.util

    bpy_dir = Path(importlib.util.find_spec("bpy").submodule_search_locations[0])
    (scripts,) = bpy_dir.glob("[0-9]*.[0-9]*/scripts")
    return scripts


def test_tags_are_blenders():
    tags_file = blender_scripts() / "modules/_bpy_internal/extensions/tags.py"
    tree = ast.parse(tags_file.read_text(encoding="utf-8"))
    known = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert set(manifest()["tags"]) <= known


def test_package_imports_without_bpy_or_torch():
    # The pure layers must import in a plain interpreter (render farms have no torch, trainers no Blender).
    code = (
        "import sys, cli; cli.load_package(); "
        "import tha_studio.commands, tha_studio.render.formats, tha_studio.render.dataset, tha_studio.pose.schema, tha_studio.lipsync; "
        "bad = [m for m in ('bpy', 'torch') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_subcommand_has_help():
    result = subprocess.run([sys.executable, "cli.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)
    from tha_studio.commands import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    assert sub.choices, "no subcommands"
    for name in sub.choices:
        result = subprocess.run(
            [sys.executable, "cli.py", name, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0 and "usage:" in result.stdout, (name, result.stderr)


# --- the bundled wheels (scripts/fetch_wheels.py fetches them; Blender's build splits them per platform)

PLATFORMS = {"linux-x64", "windows-x64", "macos-arm64"}
BLENDER_BUNDLES = {"numpy"}  # of what the bundled packages require, what Blender's own Python has
# binary wheels: one for each platform (soundfile's carry libsndfile; pocketsphinx's its C decoder)
PER_PLATFORM = {"onnxruntime", "pillow", "safetensors", "soundfile", "cffi", "pocketsphinx"}
# What a bundled package declares but the add-on never reaches, left out of the zips on purpose.
LEFT_OUT = {
    # pocketsphinx's LiveSpeech (a microphone) imports it inside its constructor; the analyser
    # uses Decoder, Vad and ArpaBoLM, and tests/test_without_torch.py runs it without sounddevice.
    ("pocketsphinx", "sounddevice"),
}


def fetch_wheels():
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import fetch_wheels as module
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return module


def wheel_platforms(filename):
    """The Blender platforms a wheel file serves, from its platform tags."""
    tags = fetch_wheels().parse_name(filename)[4]
    if tags == ["any"]:
        return set(PLATFORMS)
    found = set()
    for tag in tags:
        if tag.startswith("manylinux") and tag.endswith("_x86_64"):
            found.add("linux-x64")
        elif tag == "win_amd64":
            found.add("windows-x64")
        elif tag.startswith("macosx_") and tag.endswith(("_arm64", "_universal2")):
            found.add("macos-arm64")
    return found


def test_platforms_are_the_three_the_wheels_are_fetched_for():
    assert set(manifest()["platforms"]) == PLATFORMS


def test_manifest_lists_exactly_the_pinned_wheels():
    listed = manifest()["wheels"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {f"./wheels/{name}" for name in fetch_wheels().WHEELS}
    assert "/wheels/" in manifest()["build"]["paths_exclude_pattern"], "only the listed wheels, via `wheels`"


def test_every_wheel_installs_on_blender_4_2_as_on_5_0():
    """Blender 4.2 to 4.5 install a platform's wheel only where its platform tag, taken whole, is
    the machine's, or on a Mac ends in the machine's architecture, or on Linux starts with
    manylinux and ends in it (bl_pkg's wheel filter of 4.2); 5.0 also takes a universal2 wheel on
    an arm64 Mac, 4.2 skips it (lip sync from audio went missing there)."""
    for name in fetch_wheels().WHEELS:
        tag = name[: -len(".whl")].split("-")[-1]
        served = wheel_platforms(name)
        if tag == "any":
            continue
        assert len(served) == 1, name
        platform = served.pop()
        if platform == "macos-arm64":
            assert tag.startswith("macosx_") and tag.endswith("_arm64"), name
        elif platform == "linux-x64":
            assert tag.startswith("manylinux") and tag.endswith("_x86_64"), name
        else:
            assert tag == "win_amd64", name


def test_every_pin_has_a_sha256():
    for name, digest in fetch_wheels().WHEELS.items():
        assert len(digest) == 64 and int(digest, 16) >= 0, name


def test_each_platform_gets_one_binary_wheel_of_each_package_for_cpython_311():
    module = fetch_wheels()
    for platform in PLATFORMS:
        serving = [module.parse_name(name) for name in module.WHEELS if platform in wheel_platforms(name)]
        binary = [parsed for parsed in serving if parsed[4] != ["any"]]
        assert sorted(d.lower() for d, *_ in binary) == sorted(PER_PLATFORM), platform
        for distribution, _, python_tag, abi_tag, _ in binary:
            # cp311 for Blender 4.2 to 5.0, the stable ABI of an older CPython 3, or no Python ABI at
            # all (soundfile: a py3 module loading its platform's libsndfile through cffi's ABI mode)
            assert ((python_tag, abi_tag) == ("cp311", "cp311")
                    or (abi_tag == "abi3" and int(python_tag[3:]) <= 311)
                    or (abi_tag == "none" and "py3" in python_tag.split("."))), distribution
    for name in module.WHEELS:
        assert wheel_platforms(name), f"{name} serves none of {sorted(PLATFORMS)}"


def test_the_bundle_runs_what_the_tests_run():
    """The bundled versions are the venv's (pinned in requirements.txt, or pulled in by them)."""
    from importlib import metadata

    pins = dict(
        line.split("#")[0].strip().split("==")
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if "==" in line.split("#")[0]
    )
    for name in fetch_wheels().WHEELS:
        distribution, version = fetch_wheels().parse_name(name)[:2]
        assert metadata.version(distribution) == version, name
        if distribution in pins:
            assert pins[distribution] == version, name


def normalized(distribution):
    return re.sub(r"[-_.]+", "-", distribution).lower()


def test_what_each_bundled_package_requires_is_bundled_or_in_blender():
    """Blender installs no dependencies: every requirement of a bundled wheel (as the venv's copy of
    that same version declares it, markers evaluated for CPython 3.11) is bundled too, in Blender's
    Python, or left out on purpose (LEFT_OUT, said why)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    bundled = {normalized(fetch_wheels().parse_name(name)[0]) for name in fetch_wheels().WHEELS}
    left_out = {(normalized(a), normalized(b)) for a, b in LEFT_OUT}
    checked = set()
    for distribution in sorted(bundled):
        for line in metadata.requires(distribution) or ():
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue  # an extra, or another Python implementation (cffi: pycparser on CPython only)
            name = normalized(requirement.name)
            checked.add((distribution, name))
            assert name in bundled | BLENDER_BUNDLES or (distribution, name) in left_out, f"{distribution}: {line}"
    # The lip-sync packages' chain, spelled out: soundfile needs cffi and typing_extensions (its
    # `from typing_extensions import Self` runs at import), cffi needs pycparser.
    assert {("soundfile", "cffi"), ("soundfile", "typing-extensions"), ("cffi", "pycparser"),
            ("onnxruntime", "protobuf")} <= checked
    assert left_out <= checked, "a LEFT_OUT entry no bundled package declares any more"


def test_blender_reads_the_wheels_as_python_311_and_this_platforms_own():
    """What Blender's extension tool infers from the listed wheels: CPython 3.11 only (a Blender
    with another Python says the extension is incompatible instead of failing at import), and the
    platform each wheel goes to in --split-platforms (the same as wheel_platforms here)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "blender_ext_for_test", blender_scripts() / "addons_core/bl_pkg/cli/blender_ext.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)  # a command-line script: main() runs only as __main__
    listed = manifest()["wheels"]
    assert tool.python_versions_from_wheels(listed) == {(3, 11)}
    for platform in PLATFORMS:
        assert set(tool.paths_filter_wheels_by_platform(listed, platform)) == {
            w for w in listed if platform in wheel_platforms(w.rsplit("/", 1)[1])}, platform
