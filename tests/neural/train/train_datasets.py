"""Helpers of the training tests: the dataset sizes and the command line (see conftest.py)."""

import subprocess
import sys

from shared_assets import ROOT

THA1_POSES = 40
HOLD_OUT = 8
THA3_POSES = 12


def cli(*args, timeout=600, env=None):
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def models_folder(root, shared, character=True):
    from tha_studio.render.formats.mmd import write_character

    (root / "train").mkdir(parents=True)
    (root / "train" / "gene").symlink_to(shared / "assets" / "mmd" / "gene_light", target_is_directory=True)
    if character:
        write_character(root / "train" / "character")
    return root
