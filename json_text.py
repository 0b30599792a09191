"""json.loads for files users hand us. A document nested past Python's recursion limit (a broken
or hostile file of brackets) escaped every reader's JSON error as a RecursionError traceback;
here it is invalid JSON like any other, with the line and column where it nests too deep. Pure:
no bpy, no torch.
"""

import json
import re

NESTING = 100  # levels named as too deep; THA Studio's own files and glTF's nest a few


def loads(text):
    """json.loads(text), a json.JSONDecodeError for a document nested too deep to read."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError(f"nested more than {NESTING} levels deep", text, too_deep(text)) from None


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
