"""One protocol for long jobs (bake, lip-sync analysis, Rhubarb runs, dataset runs).

A job is a plain object that its caller steps, so the same job runs under a modal operator on a
timer (addon/job_operator.py), in a blocking loop on the command line (`run`), or by hand in a
test (the `bpy` module has no event loop: timers and modal operators never fire there).

    job.start()                 opens files, starts processes; cheap (may raise UserError)
    while not job.done:
        progress = job.step()   a bounded piece of work (about a tenth of a second where it
                                can be cut so), returns a Progress; raises the job's error
    job.result                  the outcome
    job.cancel()                stops it; the next step raises JobCancelled; finished work is kept

Pure: no bpy, no torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import UserError


def usable_cpus():
    """The CPUs this process may run on (a container's or a batch system's share, not the
    machine's): the most worker processes a job starts."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class JobCancelled(UserError):
    """The user cancelled the job (finished work is kept)."""


@dataclass(frozen=True)
class Progress:
    fraction: float  # 0..1
    message: str = ""

    def percent(self):
        return int(round(100 * max(0.0, min(self.fraction, 1.0))))


class Job:
    """Base for steppable jobs. A subclass implements `_start()` and `_step() -> Progress`, ends
    with `return self.finish(result)` (or raises), and `_stop()` if cancelling must stop
    something (a process, workers)."""

    title = "Working"

    def __init__(self):
        self.started = False
        self.cancelled = False
        self.progress = Progress(0.0)
        self._result = None
        self._finished = False

    @property
    def done(self):
        return self._finished

    @property
    def result(self):
        if not self._finished:
            raise RuntimeError(f"{type(self).__name__}: result asked for before the job finished")
        return self._result

    def start(self):
        if not self.started:
            self._start()
            self.started = True  # only once it worked: a failed start leaves nothing to step
        return self

    def step(self):
        if self.cancelled:
            raise JobCancelled(f"{self.title}: cancelled")
        if not self.started:
            self.start()
        elif not self._finished:
            self.progress = self._step()
        return self.progress

    def finish(self, result):
        """Called by a subclass's `_step` when the work is complete; returns the last Progress."""
        self._result = result
        self._finished = True
        self.progress = Progress(1.0, self.progress.message)
        return self.progress

    def cancel(self):
        """Stop the job (nothing to do once it has finished); safe to call more than once."""
        if not self.cancelled and not self._finished:
            self.cancelled = True
            self._stop()

    def run(self, on_progress=None):
        """Step to the end (command line, headless); returns the result."""
        try:
            self.start()
            while not self._finished:
                progress = self.step()
                if on_progress is not None:
                    on_progress(progress)
        except BaseException:
            # A failure or Ctrl-C: stop what is running (a process, workers) before it goes up.
            self.cancel()
            raise
        return self.result

    def _start(self):
        pass

    def _step(self):
        raise NotImplementedError

    def _stop(self):
        pass
