"""Numbers a real model can hold where a coordinate belongs: finite, and within reach of its origin.

A damaged file can hold NaN, infinities or 1e38 there. Imported, such a model draws stray
triangles across every render of it and poisons the head band, so readers refuse it by name.
"""

import functools

import numpy as np

# No real model places a vertex or bone this far out: 100,000 MMD units is 8 km at MMD's 8 cm a
# unit; glTF and VRM avatars are in metres.
MAX_MMD_COORDINATE = 1e5
MAX_METRES = 8e3


def quiet_file_numbers(function):
    """`function` with numpy's floating-point warnings off. A file's NaN and infinities are the
    reader's to name (first_unreal_row and the like), in words, with the file; numpy would print
    a RuntimeWarning first, even for merely converting a signalling NaN to float64."""

    @functools.wraps(function)
    def quietly(*args, **kwargs):
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # (one a call: re-entrant)
            return function(*args, **kwargs)

    return quietly


@quiet_file_numbers
def first_unreal_row(values, limit=None, unit="units"):
    """(index, problem) for the first row of `values` that holds NaN, an infinity or (with
    `limit`, in `unit`) a magnitude past it, the problem showing the row; None when every row is fine."""
    rows = np.asarray(values, np.float64)
    if not rows.size:
        return None
    rows = rows.reshape(len(rows), -1)
    bad = ~np.isfinite(rows).all(axis=1)
    if limit is not None:
        bad |= (np.abs(np.nan_to_num(rows)) > limit).any(axis=1)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    shown = ", ".join(f"{value:g}" for value in rows[i])
    if not np.isfinite(rows[i]).all():
        return i, f"({shown}) is not a finite number"
    return i, f"({shown}) lies past {limit:,.0f} {unit}, where no real model reaches"
