"""Operators report; they never hand a traceback to the user.

Expected failures (bad files, missing roles) are caught where they happen and reported with
their own message. `reports_errors` is the net under everything else: a bug still ends in a
one-line report naming the operator, and the traceback goes to the system console (stderr)
for a bug report instead of a Python error pop-up.
"""

import functools
import sys
import traceback


def reports_errors(execute):
    @functools.wraps(execute)
    def guarded(self, context, *args):
        try:
            return execute(self, context, *args)
        except Exception as error:  # noqa: BLE001 - the last net; expected errors are handled inside
            traceback.print_exc(file=sys.stderr)
            self.report(
                {"ERROR"},
                f"{self.bl_label} failed: {error} ({type(error).__name__}; details in the system console)",
            )
            return {"CANCELLED"}

    return guarded
