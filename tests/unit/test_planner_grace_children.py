"""Planner: a Flow step's running child at its parent's finally grace point is stopped gracefully
(`workflow.kube-zen.io/stop: RunFinally`: its own finally steps run), not deleted; the step runs on until
the child ends, then ends for the grace, and the parent's finally steps start after it; the parent's
deadline deletes a child still running (planner.finale `stop_child`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from test_planner_child_flows import (
    T0,
    apply,
    as_job,
    child_of,
    creates,
    deletes,
    flow_step,
    phase_of,
    reasons,
    stopped,
    stops,
)
from test_planner_finally import FINALLY, by_step, failed_condition
from test_planner_finally_grace import POLICY, SAID
from test_planner_joins import message, phases

from zen_flow.api import JobFlow
from zen_flow.planner import CreateJob, StopChild, plan
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator, run

POINT = T0 + timedelta(seconds=70)  # deadline 100, grace 30


def started() -> tuple[JobFlow, dict[str, Any]]:
    parent = make_flow([flow_step("sub"), job_step("cleanup", **FINALLY)], execution_policy=POLICY)
    first = plan(parent, [], T0)
    return apply(parent, first), creates(first)[0].body


def test_at_the_grace_point_a_running_child_is_stopped_to_run_its_finally_steps_not_deleted() -> None:
    parent, body = started()
    child = as_job(child_of(body))
    result = plan(parent, [child], POINT)
    assert stops(result) == [
        StopChild(child.metadata.name, "sub", child.metadata.uid, by="parent flow flow", after_write=True)
    ]
    assert not deletes(result)  # before: deleted, its own finally steps never ran
    assert "FlowDeadlineGrace" not in reasons(result)  # said when the step ends, if the stop stops it
    parent = apply(parent, result)
    assert (phase_of(parent, "sub"), phase_of(parent, "cleanup")) == ("Running", "Pending")
    assert parent.status.message == f"{SAID}; waiting for running steps to finish; running: sub"
    # Its patch landed: not sent again, and the parent's finally step waits for the child to end.
    going = as_job(stopped(child_of(body)))
    later = plan(parent, [going], POINT + timedelta(seconds=5))
    assert not stops(later)
    assert not deletes(later)
    assert "FlowDeadlineGrace" not in reasons(later)
    assert not [a for a in later.actions if isinstance(a, CreateJob)]
    assert apply(parent, later).status.message == parent.status.message


def test_a_lost_write_sends_the_stop_again_until_the_child_carries_it() -> None:
    parent, body = started()
    child = as_job(child_of(body))
    first = plan(parent, [child], POINT)
    again = plan(parent, [child], POINT + timedelta(seconds=1))  # first's status write lost, its patch too
    assert stops(again) == stops(first)
    assert not deletes(again)
    assert phase_of(apply(parent, again), "sub") == "Running"


def test_once_the_stopped_child_ends_the_step_ends_for_the_grace_then_the_finally_steps_run() -> None:
    sim = Simulator(
        make_flow([flow_step("sub"), job_step("cleanup", **FINALLY)], execution_policy=POLICY), T0
    )
    sim.reconcile()
    [create] = [a for a in sim.last.actions if isinstance(a, CreateJob)]
    name = create.name
    sim.jobs[name] = as_job(child_of(create.body))  # the child, as the controller shows it
    sim.advance(70)
    assert stops(sim.reconcile()) == [
        StopChild(name, "sub", f"uid-{name}", by="parent flow flow", after_write=True)
    ]
    sim.jobs[name] = as_job(stopped(child_of(create.body)))
    sim.advance(5)
    assert not [a for a in sim.reconcile().actions if isinstance(a, CreateJob)]
    sim.jobs[name] = as_job(
        stopped(child_of(create.body, phase="Failed", message="stopped by parent flow flow"))
    )
    sim.advance(5)
    result = sim.reconcile()
    assert phases(sim) == {"sub": "Failed", "cleanup": "Pending"}
    assert (message(sim, "sub") or "").startswith(
        f"{SAID}; child flow {name} was stopped by parent flow flow"
    )
    assert reasons(result).count("FlowDeadlineGrace") == 1  # the grace ended a step: said once
    assert "FlowDeadlineGrace" not in reasons(sim.reconcile())
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"sub": "Failed", "cleanup": "Succeeded"}
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)


def test_at_the_deadline_a_child_still_running_is_deleted() -> None:
    parent, body = started()
    parent = apply(parent, plan(parent, [as_job(child_of(body))], POINT))
    going = as_job(stopped(child_of(body)))
    result = plan(parent, [going], T0 + timedelta(seconds=100))
    assert [(a.name, a.reason) for a in deletes(result)] == [(going.metadata.name, "flow deadline exceeded")]
    parent = apply(parent, result)
    assert parent.status.phase == "Failed"
    assert phase_of(parent, "cleanup") == "Skipped"


def test_a_child_whose_stop_stopped_nothing_succeeds_and_the_flow_ends_as_its_steps_did() -> None:
    # At the point the child's own main steps had ended: its RunFinally stop stops nothing, it ends
    # Succeeded; a stop that came too late to stop anything changes nothing.
    sim = Simulator(
        make_flow([flow_step("sub"), job_step("cleanup", **FINALLY)], execution_policy=POLICY), T0
    )
    sim.reconcile()
    [create] = [a for a in sim.last.actions if isinstance(a, CreateJob)]
    name = create.name
    sim.jobs[name] = as_job(child_of(create.body))
    sim.advance(70)
    result = sim.reconcile()
    assert stops(result) == [StopChild(name, "sub", f"uid-{name}", by="parent flow flow", after_write=True)]
    assert "FlowDeadlineGrace" not in reasons(result)  # nothing ended yet: no warning it fails
    sim.jobs[name] = as_job(stopped(child_of(create.body, phase="Succeeded")))
    sim.advance(5)
    assert "FlowDeadlineGrace" not in reasons(sim.reconcile())
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"sub": "Succeeded", "cleanup": "Succeeded"}
    assert sim.phase == "Succeeded"


def test_a_child_already_stopped_at_the_point_is_not_stopped_again_and_its_end_is_announced() -> None:
    sim = Simulator(
        make_flow([flow_step("sub"), job_step("cleanup", **FINALLY)], execution_policy=POLICY), T0
    )
    sim.reconcile()
    [create] = [a for a in sim.last.actions if isinstance(a, CreateJob)]
    name = create.name
    sim.jobs[name] = as_job(stopped(child_of(create.body), who="user"))
    sim.advance(70)
    result = sim.reconcile()
    assert not stops(result)
    assert not deletes(result)
    assert "FlowDeadlineGrace" not in reasons(result)
    ended = child_of(create.body, phase="Failed", message="stopped by user")
    sim.jobs[name] = as_job(stopped(ended, who="user"))
    sim.advance(5)
    assert reasons(sim.reconcile()).count("FlowDeadlineGrace") == 1  # the grace ended the step
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"sub": "Failed", "cleanup": "Succeeded"}
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)
