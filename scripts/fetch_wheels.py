"""Fetch the wheels the extension zip bundles into wheels/ (gitignored), each checked by sha256.

    .venv/bin/python scripts/fetch_wheels.py          # fetch what is missing (scripts/setup.sh runs it)
    .venv/bin/python scripts/fetch_wheels.py --check  # only say whether wheels/ is complete

A stock Blender (4.2 to 5.0: CPython 3.11 with numpy, requests, zstandard and Cython) has no
torch. What posing and baking a sprite and lip sync from audio need beyond that ship inside the
extension, one zip per platform (Blender's `build --split-platforms` puts each platform's wheels
in its own zip):
- onnxruntime runs the poser (neural/ort); flatbuffers, packaging and protobuf are what its
  wheel declares it requires (Blender installs no dependencies by itself);
- safetensors reads our .safetensors weights through its numpy API, without torch;
- Pillow reads the character picture and the baked frames (pose/character_image.py, live.py);
- defusedxml parses lip-sync XML (lipsync/formats.py, imported when the add-on registers);
- soundfile reads the audio of a line for lip sync (lipsync/analyser.py, rhubarb.py); its wheels
  carry libsndfile for their platform (tagged py2.py3-none-<platform>: soundfile loads it through
  cffi's ABI mode, so it does not depend on the CPython version). At run time it imports cffi's
  `_cffi_backend` and `typing_extensions` (its `Self`); pycparser is what cffi's wheel requires
  (only cffi's compiler uses it, but Blender installs no dependencies, so the set stays whole);
- pocketsphinx is the built-in lip-sync analyser's recognizer, with its US English model inside
  the wheel; the sounddevice it declares is for its microphone class (LiveSpeech) only, imported
  there, so it is left out (tests/test_extension_manifest.py names it).

Versions are those of requirements.txt (cffi, pycparser and typing_extensions: those the venv's
pins pulled in), so the tests' venv runs the same code as the zip. The file names here and
blender_manifest.toml's `wheels` list are the same list (tests check it).
Downloads go through pip (`pip download --no-deps --only-binary=:all:` for CPython 3.11 and the
wheel's own platform tags) with `--require-hashes`, so a file that is not the one pinned here
never lands in wheels/.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from atomic_files import sha256_file  # noqa: E402 (stdlib only: runs before and without the package)
WHEELS_DIR = ROOT / "wheels"
PYTHON_VERSION = "3.11"  # Blender 4.2 to 5.0

# File name -> sha256 (as published on PyPI). Pure-Python wheels go in every platform's zip.
WHEELS = {
    # Linux x86-64
    "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl":
        "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
    "pillow-13.0.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl":
        "a625df9a2a5597fa5e5266e01aefc82604bb85d291e3547981e863560d75da6c",
    "safetensors-0.8.0-cp310-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl":
        "fd6f3f93c9a0a7cc2788ee63fb763353d4bd2e89b0751bc78fcf7dda00bea774",
    # Windows x64
    "onnxruntime-1.32.0-cp311-cp311-win_amd64.whl":
        "d7e0c45cc5f456ad7805e6dd256a7662736cda9c2fd17becae194eb3c2f6df72",
    "pillow-13.0.0-cp311-cp311-win_amd64.whl":
        "d7710eb676e9bb68965cb045be0d333b4c0d7f9dfbaa7fbf121385b1588683d3",
    "safetensors-0.8.0-cp310-abi3-win_amd64.whl":
        "096ec1a98435df7beb08853bb5aa9081a84f23d0adc67ed1a0a10550f608373f",
    # macOS arm64 (onnxruntime 1.32.0 publishes macOS 14+ wheels only)
    "onnxruntime-1.32.0-cp311-cp311-macosx_14_0_arm64.whl":
        "366b9e53d07812cc5c92822cecf7563b76a8a0f32ba3bb8dd232a206ac3bcb6c",
    "pillow-13.0.0-cp311-cp311-macosx_11_0_arm64.whl":
        "37290fbef0c73e2d51d594eb78fded7dc7170d1c3ad0a890269e6fd8c8c4e061",
    "safetensors-0.8.0-cp310-abi3-macosx_11_0_arm64.whl":
        "c80201d22cbf405b80647a60ada77bba06c8fba2da2743ba1e89cdcc39a81f25",
    # Lip sync from audio, one wheel per platform: soundfile (libsndfile inside), cffi (soundfile's
    # _cffi_backend) and pocketsphinx (the built-in analyser; macOS: a universal2 wheel only)
    "soundfile-0.14.0-py2.py3-none-manylinux_2_28_x86_64.whl":
        "1e38bac1853412871318e82a1ba69a8be677619b56025bbfcccdb41b6cafe82d",
    "cffi-2.1.1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl":
        "34e261f78cb6ceaaa36f42f2613f4380d94d9c759a9c73c769ee6e0247364632",
    "pocketsphinx-5.1.1-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl":
        "bb8fd0fc7fb08dd8f85da21f5121f34ebf4186a5bee91ce85e2d358e69a448bf",
    "soundfile-0.14.0-py2.py3-none-win_amd64.whl":
        "299491d3499460fb1b74bb4bd78b57ffc2d243a5fafa7b6ec1b264875c78453e",
    "cffi-2.1.1-cp311-cp311-win_amd64.whl":
        "42f6930c31dc7f50732c9ae793c2786c7b6b044195967bbdde40bb9be81c4cc0",
    "pocketsphinx-5.1.1-cp311-cp311-win_amd64.whl":
        "08e4d5cc7377932dae2e55191b34f9939d73bf2401046ca2bd03be6daf21ac3b",
    "soundfile-0.14.0-py2.py3-none-macosx_11_0_arm64.whl":
        "d828d35a059626da52f1415b5faee610aeab393319cb3fc4a9aef47b619fc14c",
    "cffi-2.1.1-cp311-cp311-macosx_11_0_arm64.whl":
        "398aff33cee2767e3e781d2554c54bd0dff386bb437581e0d8011fde1a942ec1",
    "pocketsphinx-5.1.1-cp311-cp311-macosx_10_9_arm64.whl":  # the universal2 wheel (see PUBLISHED_AS)
        "8cd1ae6f236c2d1941643d87b9136317f628878892fbcb873ab2795f715144d3",
    # Every platform: what onnxruntime's wheel requires besides numpy (pure Python)
    "flatbuffers-25.12.19-py2.py3-none-any.whl":
        "7634f50c427838bb021c2d66a3d1168e9d199b0607e6329399f04846d42e20b4",
    "packaging-26.4-py3-none-any.whl":
        "81383611a09c1bc0b08b76e0fd5829d7c6824c65b27a6aee339da133f4233ea2",
    "protobuf-7.36.2-py3-none-any.whl":
        "bdb3a345d48db958e6ce1f18e508beb0cc981d64f24088427549c866cd039f1e",
    # Every platform: the add-on itself (lipsync/formats.py parses Rhubarb's XML with it)
    "defusedxml-0.7.1-py2.py3-none-any.whl":
        "a352e7e428770286cc899e2542b6cdaedb2b4953ff269a210103ec58f6198a61",
    # Every platform: what soundfile and cffi require besides numpy (pure Python)
    "typing_extensions-4.16.0-py3-none-any.whl":
        "481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8",
    "pycparser-3.12-py3-none-any.whl":
        "a076f3f489b39b43ed13563a1dafe42447445bec2e294154ec5c57fcdda4c85e",
}


# Wheels kept under another name than PyPI's: Blender 4.2 to 4.5 install a macOS wheel on an
# arm64 Mac only where its platform tag ends in _arm64, so pocketsphinx's universal2 wheel (its
# only macOS one; its binaries hold an arm64 part) would be left out there, and with it lip sync
# from audio. The same file, named for arm64, installs on every version.
PUBLISHED_AS = {
    "pocketsphinx-5.1.1-cp311-cp311-macosx_10_9_arm64.whl": "pocketsphinx-5.1.1-cp311-cp311-macosx_10_9_universal2.whl",
}


class FetchError(Exception):
    """A wheel that could not be fetched or is not the pinned file."""


def parse_name(filename):
    """(distribution, version, python tag, abi tag, [platform tags]) of a wheel file name."""
    distribution, version, python_tag, abi_tag, platforms = filename[: -len(".whl")].split("-")
    return distribution, version, python_tag, abi_tag, platforms.split(".")


def is_fetched(filename):
    path = WHEELS_DIR / filename
    return path.is_file() and sha256_file(path) == WHEELS[filename]


def pip_download_command(filename, into, requirements_file):
    """pip's command for exactly this wheel: its platform tags, ABI and CPython 3.11."""
    _, _, python_tag, abi_tag, platforms = parse_name(PUBLISHED_AS.get(filename, filename))
    pure = platforms == ["any"]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
               "--no-deps", "--only-binary=:all:", "--require-hashes", "--python-version", PYTHON_VERSION,
               "--implementation", "py" if pure else "cp", "--abi", abi_tag, "--dest", str(into),
               "-r", str(requirements_file)]
    for platform in platforms:
        command += ["--platform", platform]
    return command


def fetch(filename):
    """Download one pinned wheel into wheels/ (via a temporary folder, then one rename)."""
    distribution, version, *_ = parse_name(filename)
    WHEELS_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fetch_", dir=WHEELS_DIR) as temporary:
        requirements = Path(temporary) / "requirement.txt"
        requirements.write_text(f"{distribution}=={version} --hash=sha256:{WHEELS[filename]}\n")
        into = Path(temporary) / "download"
        result = subprocess.run(pip_download_command(filename, into, requirements), capture_output=True, text=True)
        got = into / PUBLISHED_AS.get(filename, filename)
        if result.returncode != 0 or not got.is_file():
            found = ", ".join(p.name for p in into.glob("*")) if into.is_dir() else ""
            raise FetchError(f"{filename}: pip download failed (got {found or 'nothing'})\n{result.stdout}{result.stderr}".rstrip())
        if sha256_file(got) != WHEELS[filename]:  # pip checked it too; a second look costs nothing
            raise FetchError(f"{filename}: sha256 differs from the pinned {WHEELS[filename]}")
        os.replace(got, WHEELS_DIR / filename)


def remove_unlisted():
    """Wheels of older pins would only confuse a reader of wheels/ (the build takes the listed ones)."""
    removed = []
    for path in WHEELS_DIR.glob("*.whl"):
        if path.name not in WHEELS:
            path.unlink()
            removed.append(path.name)
    return removed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check wheels/; exit 1 if something is missing")
    args = parser.parse_args(argv)

    missing = [name for name in WHEELS if not is_fetched(name)]
    if args.check:
        for name in missing:
            print(f"missing or not the pinned file: wheels/{name}", file=sys.stderr)
        return 1 if missing else 0
    failures = []
    for name in missing:
        try:
            fetch(name)
            print(f"fetched wheels/{name}", file=sys.stderr)
        except FetchError as error:
            failures.append(str(error))
    if WHEELS_DIR.is_dir():
        for name in remove_unlisted():
            print(f"removed wheels/{name} (not pinned any more)", file=sys.stderr)
    for failure in failures:
        print(f"fetch_wheels: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
