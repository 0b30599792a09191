"""One modal operator for every long job (jobs.py): bake, lip sync, dataset runs.

A subclass, also derived from bpy.types.Operator, implements `make_job(context)` (returns a
jobs.Job) and `finished(context, result)` (uses the result and reports). JobOperator starts the
job, steps it on a window-manager timer (a step is about a tenth of a second of work, so Blender
stays responsive), shows its progress in the status bar and the window manager's progress
indicator, cancels it on Esc, and reports errors through reporting.py: a UserError on one line,
a bug with its traceback on the console.

The `bpy` module has no event loop (blender.md §0.2): timers never fire and Blender never calls
`modal`, so tests call `op.modal(context, event)` by hand, as Rhubarb NG's do.
"""

from .reporting import report_failure, reports_errors


class JobOperator:
    """Mix in before bpy.types.Operator. After the operator ends, `outcome` says how, on one line
    ("finished", "cancelled" or the error reported)."""

    bl_options = {"REGISTER"}
    TIMER_SECONDS = 0.1

    _job = None
    _timer = None
    outcome = ""

    def make_job(self, context):
        raise NotImplementedError

    def finished(self, context, result):
        pass

    @reports_errors
    def execute(self, context):
        self._job = self.make_job(context)
        try:
            self._job.start()
            window_manager = context.window_manager
            self._timer = window_manager.event_timer_add(self.TIMER_SECONDS, window=context.window)
            window_manager.modal_handler_add(self)
            window_manager.progress_begin(0, 100)
            self._show(context, self._job.progress)
        except BaseException:
            self._job.cancel()
            self._end(context)
            raise
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event is not None and event.type == "ESC" and event.value == "PRESS":
            self._job.cancel()
            self._end(context)
            self.outcome = f"{self._job.title}: cancelled"
            self.report({"WARNING"}, self.outcome)
            return {"CANCELLED"}
        if event is not None and event.type != "TIMER":
            return {"PASS_THROUGH"}  # the interface stays usable while the job runs
        try:
            progress = self._job.step()
            if not self._job.done:
                self._show(context, progress)
                return {"RUNNING_MODAL"}
            self._end(context)
            self.finished(context, self._job.result)
        except Exception as error:  # noqa: BLE001 - reported: one line for a UserError, a traceback for a bug
            self._job.cancel()
            self._end(context)
            self.outcome = report_failure(self, error)
            return {"CANCELLED"}
        self.outcome = "finished"
        return {"FINISHED"}

    def cancel(self, context):
        """Blender ends the operator (the file is closed, the window goes): stop the job too."""
        if self._job is not None:
            self._job.cancel()
        self._end(context)

    def _show(self, context, progress):
        context.window_manager.progress_update(progress.percent())
        text = f"{self._job.title}: {progress.percent()}%"
        if progress.message:
            text += f", {progress.message}"
        if context.workspace is not None:
            context.workspace.status_text_set(f"{text} (Esc to cancel)")

    def _end(self, context):
        """Remove the timer and the progress display (safe to call more than once)."""
        if self._timer is None:
            return
        window_manager = context.window_manager
        window_manager.event_timer_remove(self._timer)
        self._timer = None
        window_manager.progress_end()
        if context.workspace is not None:
            context.workspace.status_text_set(None)
