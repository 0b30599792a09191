"""Progress bars on standard error that read well at a terminal and in a log (tqdm).

At a terminal the bar redraws in place. Off one (a render farm's log, a batch run's output
piped to a file, CI), tqdm's redraws all begin with a carriage return and run into one line
that grows for the whole run: a day's dataset render made a line of megabytes. There each
redraw is a line of its own, at most every LOG_INTERVAL seconds, besides the first and the last.

Pure: no bpy, no torch.
"""

from __future__ import annotations

import sys

LOG_INTERVAL = 30.0  # seconds between a log's progress lines


class LogLines:
    """A stream for tqdm off a terminal: each redraw written as a line of its own."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        # A redraw is '\r' + the bar, padded with spaces over a longer earlier one.
        line = text.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self):
        self.stream.flush()


def is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # (no isatty, or a closed stream)
        return False


def progress_bar(stream=None, log_interval=LOG_INTERVAL, **options):
    """tqdm(**options) on `stream` (default standard error), drawn in place at a terminal and as
    a line at most every `log_interval` seconds elsewhere."""
    from tqdm import tqdm

    stream = sys.stderr if stream is None else stream
    if is_terminal(stream):
        return tqdm(file=stream, dynamic_ncols=True, **options)
    # maxinterval: tqdm's monitor would otherwise redraw a slow bar every 10 s.
    return _log_bar_class()(file=LogLines(stream), ncols=80, ascii=True, mininterval=log_interval,
                            maxinterval=max(log_interval, 10.0), **options)


def _log_bar_class():
    from tqdm import tqdm

    class LogBar(tqdm):
        """A bar whose close writes its last line only where the last redraw did not."""

        def close(self):
            if not self.disable and self.last_print_n == self.n:
                self.leave = False  # (which closes without a redraw)
            super().close()

    return LogBar


def show(bar, percent, message=""):
    """Move a 0-100 bar to `percent` with `message` after it, redrawn as the bar's stream
    allows (a job reports every tenth of a second)."""
    bar.set_postfix_str(message, refresh=False)
    bar.update(percent - bar.n)


def run_with_bar(job, label, stream=None):
    """job.run() (a jobs.Job) with its progress and message on a 0-100 bar; returns its result."""
    with progress_bar(stream, total=100, desc=label, unit="%",
                      bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}") as bar:
        return job.run(lambda progress: show(bar, progress.percent(), progress.message[:60]))
