"""The one base for errors a user can act on (bad input, a missing file, a refused setting).

A UserError is reported on one line without a traceback: the command line prints it once
(commands.py), operators report it (addon/reporting.py). Anything else is a bug and keeps its
traceback. Error classes of every layer derive from it (keeping ValueError/RuntimeError as a
second base where callers catch those). Pure: no bpy, no torch.
"""


class UserError(Exception):
    """A failure to report on one line, naming the file and the problem."""
