"""Material a test run makes once and all its pytest-xdist workers read (a rendered dataset, the
built extension): the first worker to ask makes it while the others wait, instead of each worker
making its own copy on the cores the other one is testing on."""

import os
import shutil

from filelock import FileLock


def made_once(tmp_path_factory, name, make):
    """The folder `name`, filled by `make(folder)` once in this run. Workers share the parent of
    their base temporary folders; a run without workers uses its own."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, made = root / name, root / f"{name}.made"
    with FileLock(f"{root / name}.lock"):
        if not made.exists():  # (a worker whose make failed left no mark: the next one tries again)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            made.touch()
    return folder
