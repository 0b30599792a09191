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


def unsized_wav(wav, target):
    """`target`, a copy of a WAV whose RIFF and data sizes were left at 0, as a recorder that
    stopped before it went back to write them leaves them (the audio all there)."""
    data = bytearray(wav.read_bytes())
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    data[4:8] = bytes(4)
    size_at = data.index(b"data", 12) + 4
    data[size_at : size_at + 4] = bytes(4)
    target.write_bytes(data)
    return target
