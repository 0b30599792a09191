"""The one modal operator for jobs, stepped by hand (the bpy module never calls modal): it runs a
job to the end, passes other events through, cancels on Esc, and reports a user error on one
line and a bug with its traceback on the console."""

from types import SimpleNamespace

import bpy
import pytest

TIMER = SimpleNamespace(type="TIMER", value="NOTHING")
ESC = SimpleNamespace(type="ESC", value="PRESS")
MOUSE = SimpleNamespace(type="MOUSEMOVE", value="NOTHING")


@pytest.fixture
def job_operator(ext_module):
    """A registered operator whose job counts to `steps`, failing at step `fail_at` with `failure`."""
    jobs = ext_module("jobs")
    UserError = ext_module("errors").UserError

    class CountingJob(jobs.Job):
        title = "Counting"

        def __init__(self, steps, fail_at, failure):
            super().__init__()
            self.steps, self.fail_at, self.failure, self.count = steps, fail_at, failure, 0

        def _step(self):
            self.count += 1
            if self.count == self.fail_at:
                raise {"user": UserError("counting.txt: the count went wrong"), "bug": ZeroDivisionError("division by zero")}[self.failure]
            if self.count == self.steps:
                return self.finish(f"counted to {self.count}")
            return jobs.Progress(self.count / self.steps, f"at {self.count}")

    class THA_OT_test_counting(ext_module("addon.job_operator").JobOperator, bpy.types.Operator):
        bl_idname = "tha_studio.test_counting"
        bl_label = "Count (test)"

        steps: bpy.props.IntProperty(default=3)
        fail_at: bpy.props.IntProperty(default=0)
        failure: bpy.props.StringProperty(default="user")
        running = []  # the operators started, for the test to step

        def make_job(self, context):
            if self.steps < 1:
                raise UserError("steps: give 1 or more")
            type(self).running.append(self)
            return CountingJob(self.steps, self.fail_at, self.failure)

        def finished(self, context, result):
            context.scene["tha_test_counted"] = result

    bpy.utils.register_class(THA_OT_test_counting)
    yield THA_OT_test_counting
    bpy.utils.unregister_class(THA_OT_test_counting)


def start(operator_class, **options):
    assert bpy.ops.tha_studio.test_counting(**options) == {"RUNNING_MODAL"}
    return operator_class.running[-1]


def test_runs_the_job_to_the_end_on_timer_ticks(job_operator):
    op = start(job_operator, steps=3)
    assert op.modal(bpy.context, MOUSE) == {"PASS_THROUGH"}  # the interface stays usable
    results = [op.modal(bpy.context, TIMER) for _ in range(3)]
    assert results == [{"RUNNING_MODAL"}, {"RUNNING_MODAL"}, {"FINISHED"}]
    assert op.outcome == "finished" and bpy.context.scene["tha_test_counted"] == "counted to 3"
    assert op._timer is None  # the timer and the progress display are gone


def test_esc_cancels(job_operator):
    op = start(job_operator, steps=5)
    assert op.modal(bpy.context, TIMER) == {"RUNNING_MODAL"}
    assert op.modal(bpy.context, ESC) == {"CANCELLED"}
    assert op._job.cancelled and not op._job.done and op.outcome == "Counting: cancelled"
    assert "tha_test_counted" not in bpy.context.scene


def test_a_user_error_is_one_line_without_traceback(job_operator, capfd):
    op = start(job_operator, steps=5, fail_at=2, failure="user")
    assert op.modal(bpy.context, TIMER) == {"RUNNING_MODAL"}
    assert op.modal(bpy.context, TIMER) == {"CANCELLED"}
    assert op.outcome == "counting.txt: the count went wrong"
    assert "Traceback" not in capfd.readouterr().err


def test_a_bug_keeps_its_traceback_on_the_console(job_operator, capfd):
    op = start(job_operator, steps=5, fail_at=1, failure="bug")
    assert op.modal(bpy.context, TIMER) == {"CANCELLED"}
    assert op.outcome == "Count (test) failed: division by zero (ZeroDivisionError; details in the system console)"
    assert "Traceback" in capfd.readouterr().err


def test_a_job_that_cannot_start_is_reported_by_the_call(job_operator):
    # From Python, Blender turns an ERROR report into RuntimeError carrying its text.
    with pytest.raises(RuntimeError, match="steps: give 1 or more"):
        bpy.ops.tha_studio.test_counting(steps=0)
