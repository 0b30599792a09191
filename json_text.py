"""json.loads for files users hand us. A document nested past Python's recursion limit (a broken
or hostile file of brackets) escaped every reader's JSON error as a RecursionError traceback;
here it is invalid JSON like any other, with the line and column where it nests too deep. And
`is_number`, the one check of a number read back from such a file before it is used. Pure: no
bpy, no torch.
"""

import json
import math
import re

NESTING = 100  # levels named as too deep; THA Studio's own files and glTF's nest a few


def loads(text):
    """json.loads(text), a json.JSONDecodeError for a document nested too deep to read."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(f"nested more than {NESTING} levels deep", text, too_deep(text)) from None


def is_number(value):
    """Whether a value read back from a user's file (or a .blend's ID property) is a number to
    use: finite, and not JSON's true or false (which Python takes for 1 and 0)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def too_deep(text, depth=NESTING):
    """The offset where brackets (outside strings) nest past `depth`, else the end."""
    level = 0
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        token = match.group()
        if token in "[{":
            level += 1
            if level > depth:
                return match.start()
        elif token in "]}":
            level -= 1
    return len(text)
