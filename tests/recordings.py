"""Recordings damaged as they are in the wild, made from real ones."""


def cut_copy(path, target, fraction=0.5):
    """`target`, holding the first `fraction` of `path`'s bytes: an interrupted copy or recording."""
    data = path.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def flac_without_length(flac, target):
    """`target`, a copy of a FLAC whose stream info leaves the total sample count out (0), as an
    encoder writing to a pipe leaves it."""
    data = bytearray(flac.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO comes first
    field = int.from_bytes(data[18:26], "big")  # its last 36 bits: the total samples
    data[18:26] = (field & ~((1 << 36) - 1)).to_bytes(8, "big")
    target.write_bytes(data)
    return target
