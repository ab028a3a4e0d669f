"""What an earlier stop wrote is not this stop: a rerun in part keeps the steps another stop ended, and a
later stop, graceful or not, by the same user or another, or its removal, reads only what it did itself."""

from __future__ import annotations

import pytest
from graceful_stop_rig import ON_FAILURE, T0, ending, flow, job_of, reasons, stop, to_the_gate
from test_planner_finally import FINALLY, by_step, failed_condition
from test_planner_joins import message, phases

from zen_flow.api.constants import (
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
)
from zen_flow.planner import DeleteJob
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run

# --- what an earlier stop wrote (review findings) ----------------------------------------------------------


def stopped_then_rerun_in_part() -> Simulator:
    """A stop by alice ended every step, side (continueOnFailure) too; `zen-flow retry --step a`, a minute
    later, reruns a only: side keeps its "stopped by alice"."""
    steps = [
        job_step("a"),
        job_step("side", continueOnFailure=True),
        job_step("b", "a"),
        job_step("cleanup", **FINALLY),
    ]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    stop(sim, "true")
    sim.reconcile()
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    sim.advance(60)
    sim.annotate(ANNOTATION_STOP, None)  # what `zen-flow retry --step a` does
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.annotate(ANNOTATION_RETRY_STEPS, "a")
    sim.reconcile()
    assert (phases(sim)["a"], message(sim, "side")) == ("Running", "stopped by alice")
    return sim


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_what_an_earlier_stop_wrote_is_not_this_stop(user: str) -> None:
    # A new graceful stop ends a and b: its FlowStopped event is said (before: filtered, as if an earlier
    # plan had said it, because side's message began "stopped by"), whoever asks.
    sim = stopped_then_rerun_in_part()
    sim.advance(1)
    stop(sim, "RunFinally", user)
    result = sim.reconcile()
    assert reasons(result).count("FlowStopped") == 1
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", f"stopped by {user}")


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_a_graceful_stop_that_stops_nothing_after_a_partial_rerun_keeps_the_outcome(user: str) -> None:
    # Once a and b succeeded, a graceful stop has nothing to stop: the flow ends as its steps did, with
    # side's failure (before: Stopped, side's old message taken for this stop's doing).
    sim = stopped_then_rerun_in_part()
    sim.complete(job_of(sim, "a"))
    sim.reconcile()
    sim.complete(job_of(sim, "b"))
    sim.reconcile()
    sim.reconcile()
    assert phases(sim)["cleanup"] == "Running"
    sim.advance(1)
    stop(sim, "RunFinally", user)
    result = sim.reconcile()
    assert "FlowStopped" not in reasons(result)
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("StepFailed", "step side failed: stopped by alice")


def test_a_stop_now_by_someone_else_once_the_graceful_stop_only_skipped_steps_still_ends_stopped() -> None:
    # alice's graceful stop skipped the gate and the step after it (it stopped no Job); bob changes the
    # value to true as the finally step ends: the steps alice's stop ended count, whoever asks now.
    steps = [manual_step("gate"), job_step("after", "gate"), job_step("cleanup", **FINALLY)]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.advance(5)
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    assert message(sim, "gate") == "no decision: stopped by alice"
    sim.advance(5)
    sim.complete(job_of(sim, "cleanup"))
    stop(sim, "true", "bob")
    sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by bob")


def test_a_blank_stopped_by_is_an_unrecorded_user_in_later_plans_too() -> None:
    # A step message has its whitespace collapsed: "stopped by   " was written "stopped by", which later
    # plans did not recognise as the stop's, and the flow ended as if it had not stopped anything.
    sim = flow()
    to_the_gate(sim)
    stop(sim, "RunFinally", "   ")
    sim.reconcile()
    assert message(sim, "test") == "stopped by an unrecorded user"
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", "stopped by an unrecorded user")


def test_removing_the_request_during_the_finally_steps_still_ends_the_flow_stopped() -> None:
    # The other steps stay stopped and the finally steps go on; the stop ended them, so the flow ends
    # Stopped, as its steps' messages say, with no request left (before: StepFailed "step test failed:
    # stopped by alice").
    sim = flow()
    to_the_gate(sim)
    stop(sim)
    sim.reconcile()
    sim.annotate(ANNOTATION_STOP, None)
    result = sim.reconcile()
    assert not [a for a in result.actions if isinstance(a, DeleteJob)]
    assert (sim.flow.status.message or "").startswith("stopped by alice;")
    run(sim, by_step(sim, {}))
    assert phases(sim)["notify"] == "Succeeded"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_removing_a_graceful_stop_that_only_skipped_steps_does_not_end_the_flow_succeeded() -> None:
    # alice's graceful stop skipped the waiting gate and the step after it: nothing failed. Removed while
    # the finally step runs, the flow ended Succeeded "1 step succeeded, 2 skipped", its work never done.
    steps = [manual_step("gate"), job_step("after", "gate"), job_step("cleanup", **ON_FAILURE)]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.advance(5)
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    assert phases(sim) == {"gate": "Skipped", "after": "Skipped", "cleanup": "Running"}
    sim.annotate(ANNOTATION_STOP, None)
    sim.annotate(ANNOTATION_STOPPED_BY, None)
    run(sim, by_step(sim, {}))
    assert phases(sim)["cleanup"] == "Succeeded"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_a_lost_write_of_a_stop_now_after_a_finally_step_failed_says_only_the_stop() -> None:
    # As with the write kept: "stopped by alice", not "...; finally step cleanup failed: ..." (a graceful
    # stop names it: test_a_failed_finally_step_is_said_beside_the_stop).
    steps = [job_step("a"), job_step("cleanup", **FINALLY), job_step("notify", "cleanup", **FINALLY)]
    endings = []
    for lose in (False, True):
        sim = Simulator(make_flow(steps), T0)
        sim.reconcile()
        sim.complete(job_of(sim, "a"))
        sim.reconcile()
        sim.reconcile()
        sim.fail(job_of(sim, "cleanup"))
        sim.reconcile()
        assert phases(sim)["notify"] == "Running"
        stop(sim, "true")
        sim.reconcile(write_status=not lose)
        sim.reconcile()
        endings.append(ending(sim))
    assert endings[1] == endings[0]
    assert endings[0][1] == ("Stopped", "stopped by alice")
