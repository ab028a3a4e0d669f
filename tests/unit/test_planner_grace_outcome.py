"""Planner: how a flow ends once the finally grace (or a graceful stop) ended some of its steps, whatever
happens to the request afterwards (taken back, a stop on top of it, a lost write in between), and what
is not taken for the grace's doing (planner.finale `cut_off`, `said_before`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from test_planner_child_flows import flow_step
from test_planner_finally import FINALLY, by_step, failed_condition
from test_planner_finally_grace import POLICY, SAID, T0, at_the_grace_point, deleted, flow, reasons
from test_planner_joins import message, phases

from zen_flow.api.constants import ANNOTATION_STOP, ANNOTATION_STOPPED_BY, StepPhase
from zen_flow.planner.grace import GRACE_MARK
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run

ON_FAILURE: dict[str, Any] = {"when": "flow.outcome == 'Failed'", **FINALLY}


def without_grace(sim: Simulator) -> None:
    """A policy edit (a GitOps apply) removes finallyGraceSeconds."""
    policy = sim.flow.spec.execution_policy
    assert policy is not None
    spec = sim.flow.spec.model_copy(
        update={"execution_policy": policy.model_copy(update={"finally_grace_seconds": None})}
    )
    sim.flow = sim.flow.model_copy(update={"spec": spec})


def test_a_grace_taken_back_once_it_ended_the_steps_still_ends_the_flow_deadline_exceeded() -> None:
    # The steps stay ended and the finally steps go on; the grace ended them, so the flow ends as the
    # steps' messages say (before: StepFailed "step test failed: flow deadline: ...").
    sim = flow()
    at_the_grace_point(sim)
    sim.reconcile()
    without_grace(sim)
    result = sim.reconcile()
    assert not deleted(result)
    assert (sim.flow.status.message or "").startswith(SAID + ";")
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)


def test_a_grace_taken_back_after_it_only_skipped_steps_does_not_end_the_flow_succeeded() -> None:
    # gate waits at the grace point: the grace skips it and deploy, nothing fails. Removed while cleanup
    # runs, the flow ended Succeeded "1 step succeeded, 2 skipped": the deploy never happened.
    steps = [manual_step("gate"), job_step("deploy", "gate"), job_step("cleanup", **ON_FAILURE)]
    sim = Simulator(make_flow(steps, execution_policy=POLICY), T0)
    sim.reconcile()
    sim.advance(70)
    sim.reconcile()
    sim.reconcile()
    assert phases(sim) == {"gate": "Skipped", "deploy": "Skipped", "cleanup": "Running"}
    without_grace(sim)
    run(sim, by_step(sim, {}))
    assert phases(sim)["cleanup"] == "Succeeded"
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)


def test_a_finally_step_whose_message_begins_like_the_graces_is_no_sign_of_it() -> None:
    # The grace never ends a finally step: only the other steps' messages are read back. A finally step
    # that failed in words beginning the same way (stored so here) fails the flow as a finally step.
    steps = [job_step("a"), job_step("cleanup", **FINALLY)]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.complete(next(iter(sim.running())))
    sim.reconcile()
    sim.reconcile()
    assert phases(sim)["cleanup"] == "Running"
    sim.advance(5)
    words = f"{GRACE_MARK}of its own words"
    status = sim.flow.status.model_copy(
        update={
            "steps": tuple(
                replace(s, phase=StepPhase.FAILED.value, message=words, completion_time=sim.now)
                if s.name == "cleanup"
                else s
                for s in sim.flow.status.steps
            )
        }
    )
    sim.flow = sim.flow.model_copy(update={"status": status})
    sim.reconcile()
    assert failed_condition(sim) == ("FinallyStepFailed", f"finally step cleanup failed: {words}")


def test_a_flow_step_whose_child_ended_for_its_own_grace_is_no_sign_of_the_parents() -> None:
    # The child's own grace ended it: the parent's step says the child's words after its own, and the
    # parent, with no grace of its own, ends StepFailed, not DeadlineExceeded.
    sim = Simulator(make_flow([flow_step("sub"), job_step("cleanup", **FINALLY)]), T0)
    sim.reconcile()
    child = next(iter(sim.running()))
    sim.fail(child, "ChildFlowFailed", f"child flow {child} failed: {SAID}")  # as planner.as_job says it
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"sub": "Failed", "cleanup": "Succeeded"}
    assert failed_condition(sim) == ("StepFailed", f"step sub failed: child flow {child} failed: {SAID}")


def graceful_stop(sim: Simulator) -> None:
    sim.annotate(ANNOTATION_STOP, "RunFinally")
    sim.annotate(ANNOTATION_STOPPED_BY, "alice")


def test_a_graceful_stop_seen_with_the_grace_point_in_one_plan_stops_nothing_more() -> None:
    # A stop set after the point, seen only by the same (late) plan as the point: the point came first,
    # so the grace ends the steps and the flow ends DeadlineExceeded, as when the plans saw them apart.
    sim = flow()
    sim.reconcile()
    sim.advance(75)
    graceful_stop(sim)
    result = sim.reconcile()
    assert "FlowStopped" not in reasons(result)
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)


@pytest.mark.parametrize("lost", [False, True])
def test_a_graceful_stop_after_the_grace_point_ends_alike_whether_the_graces_write_landed(lost: bool) -> None:
    # The grace's plan deletes test's Job; a graceful stop lands (its annotation is what refuses that
    # plan's status write, a 409). The next plan finds the Job gone: the grace's, not the stop's.
    sim = flow()
    at_the_grace_point(sim, write=not lost)
    graceful_stop(sim)
    result = sim.reconcile()
    assert "FlowStopped" not in reasons(result)
    assert message(sim, "test") == SAID
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)
