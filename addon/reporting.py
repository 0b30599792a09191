"""Operators report; they never hand a traceback to the user.

A UserError (errors.py) is something the user can act on, and so is an OSError (the machine's
answer about a file: missing folder, no permission, disk full): reported as an error with its
own one-line message. Anything else is a bug: a one-line report naming the operator, with the
traceback printed to the system console (stderr) for a bug report instead of a Python error
pop-up. `reports_errors` wraps an operator's execute/invoke with this; `report_failure` does it
for code that catches by hand (the job operator's modal steps).
"""

import functools
import sys
import traceback

from ..errors import UserError


def report_failure(operator, error):
    """Report `error` on `operator` (see the module docstring); returns the line reported."""
    if isinstance(error, (UserError, OSError)):
        message = str(error) or type(error).__name__
    else:
        traceback.print_exception(error, file=sys.stderr)
        message = f"{operator.bl_label} failed: {error} ({type(error).__name__}; details in the system console)"
    operator.report({"ERROR"}, message)
    return message


def reports_errors(method):
    @functools.wraps(method)
    def guarded(self, context, *args):
        try:
            return method(self, context, *args)
        except Exception as error:  # noqa: BLE001 - the last net: user errors and bugs both end here
            report_failure(self, error)
            return {"CANCELLED"}

    return guarded
