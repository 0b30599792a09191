"""Zip archives as model downloads come: made on a Japanese Windows, names in cp932 without the
zip's UTF-8 flag (Python's zipfile only writes ASCII or flagged UTF-8 names, so the names are
written as ASCII stand-ins of the same length and their bytes replaced after)."""

import zipfile
from pathlib import Path


def windows_zip(target, files, separator="\\"):
    """Write `files` ({name with '/': bytes}) into a zip at `target` as a Japanese Windows'
    archiver stores them: cp932 names, no UTF-8 flag, `separator` between folders."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    stand_ins = {}
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as bundle:
        for number, (name, data) in enumerate(files.items()):
            raw = name.replace("/", separator).encode("cp932")
            stand_in = (f"Q{number:03d}Q" + "Z" * len(raw))[: len(raw)]
            assert len(raw) >= 5, name  # (a stand-in must be unique)
            stand_ins[stand_in.encode("ascii")] = raw
            bundle.writestr(stand_in, data)
    data = target.read_bytes()
    for stand_in, raw in stand_ins.items():
        assert data.count(stand_in) == 2  # the local header and the central directory
        data = data.replace(stand_in, raw)
    target.write_bytes(data)
    return target
