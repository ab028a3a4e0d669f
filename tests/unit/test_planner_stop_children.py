"""Planner: a parent's graceful stop (`workflow.kube-zen.io/stop: RunFinally`) stops a Flow step's running
child gracefully too (its own `RunFinally`: its finally steps run), as the finally grace does, instead of
deleting it; the step runs on until the child ends, then ends "stopped by USER; ...", the parent's
finally steps run after it, and the parent ends Stopped. The stop is recorded in the Running step's
message, so a re-plan from the stored status (a restart, the request removed, the grace point come)
still ends the flow Stopped. A stop now, or one escalated to it, deletes the child as before
(planner.finale `stop_child`)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_planner_child_flows import T0, child_of, deletes, flow_step, reasons, stopped, stops
from test_planner_finally import FINALLY, by_step, failed_condition
from test_planner_joins import message, phases

from zen_flow.api.constants import ANNOTATION_STOP, ANNOTATION_STOPPED_BY, StepPhase
from zen_flow.api.job import Job
from zen_flow.planner import CreateJob, DeleteJob, StopChild, SuspendChild
from zen_flow.planner.actions import pruned
from zen_flow.planner.child_job import ChildFlowJob
from zen_flow.planner.children import as_job
from zen_flow.planner.interventions import CHILD_STOPPING
from zen_flow.planner.steps import HELD_CHILD, MAX_MESSAGE
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator, run

BY = "parent flow flow (stopped by alice)"  # the child's stopped-by without the webhook
HELD = f"stopped by alice{CHILD_STOPPING}"  # the Running step's message while its child stops
CHILD_DELETED = "child flow {name} was deleted before it finished stopping"


def asked(job: Job) -> bool:
    """Does the child carry a stop?"""
    assert isinstance(job, ChildFlowJob)
    return bool(job.child.metadata.annotations.get(ANNOTATION_STOP))


def running_child(**spec: Any) -> tuple[Simulator, str, dict[str, Any]]:
    """A parent whose Flow step `sub` runs its child, a finally step `cleanup` after it."""
    sim = Simulator(make_flow([flow_step("sub"), job_step("cleanup", **FINALLY)], **spec), T0)
    sim.reconcile()
    [create] = [a for a in sim.last.actions if isinstance(a, CreateJob)]
    sim.jobs[create.name] = as_job(child_of(create.body))
    sim.advance(5)
    sim.reconcile()
    assert phases(sim)["sub"] == "Running"
    return sim, create.name, create.body


def stop(sim: Simulator, value: str = "RunFinally", user: str = "alice") -> None:
    sim.annotate(ANNOTATION_STOP, value)
    sim.annotate(ANNOTATION_STOPPED_BY, user)


def child_ends_stopped(sim: Simulator, name: str, body: dict[str, Any]) -> None:
    ended = child_of(body, phase="Failed", message=f"stopped by {BY}")
    sim.jobs[name] = as_job(stopped(ended, BY))
    sim.advance(5)


def test_a_graceful_stop_stops_a_running_child_to_run_its_finally_steps_not_deleted() -> None:
    sim, name, body = running_child()
    stop(sim)
    result = sim.reconcile()
    # Before: the child was deleted, its own finally steps never ran.
    assert stops(result) == [StopChild(name, "sub", f"uid-{name}", by=BY, after_write=True)]
    assert not deletes(result)
    assert "FlowStopped" not in reasons(result)  # nothing ended yet: said when the child ends stopped
    assert phases(sim) == {"sub": "Running", "cleanup": "Pending"}
    assert message(sim, "sub") == HELD
    assert sim.flow.status.message == "stopped by alice; waiting for running steps to finish; running: sub"
    # Its patch landed: not sent again, and the finally step waits for the child to end.
    sim.jobs[name] = as_job(stopped(child_of(body), BY))
    sim.advance(5)
    later = sim.reconcile()
    assert not stops(later)
    assert not deletes(later)
    assert not [a for a in later.actions if isinstance(a, CreateJob)]


def test_once_the_child_ends_stopped_the_step_fails_for_the_stop_then_the_finally_steps_run() -> None:
    sim, name, body = running_child()
    stop(sim)
    sim.reconcile()
    child_ends_stopped(sim, name, body)
    result = sim.reconcile()
    assert phases(sim) == {"sub": "Failed", "cleanup": "Pending"}
    assert (message(sim, "sub") or "").startswith(f"stopped by alice; child flow {name} was stopped by {BY}")
    assert reasons(result).count("FlowStopped") == 1
    assert "FlowStopped" not in reasons(sim.reconcile())
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"sub": "Failed", "cleanup": "Succeeded"}
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_a_restart_or_a_lost_write_mid_stop_plans_the_same_from_the_stored_status() -> None:
    sim, name, body = running_child()
    stop(sim)
    first = sim.reconcile(write_status=False)  # its write lost, its patch too: sent again
    again = sim.reconcile()
    assert stops(again) == stops(first)
    assert message(sim, "sub") == HELD
    sim.jobs[name] = as_job(stopped(child_of(body), BY))
    sim.advance(5)
    # A restarted controller plans from the stored flow, its children and the clock: the same plan.
    restarted = Simulator(sim.flow, sim.now, jobs=dict(sim.jobs))
    assert restarted.preview() == sim.preview()
    child_ends_stopped(restarted, name, body)
    restarted.reconcile(write_status=False)  # the write that ends the step lost: ended again
    run(restarted, by_step(restarted, {}))
    assert phases(restarted) == {"sub": "Failed", "cleanup": "Succeeded"}
    assert failed_condition(restarted) == ("Stopped", "stopped by alice")


def test_the_stop_removed_while_the_child_stops_still_ends_the_flow_stopped() -> None:
    sim, name, body = running_child()
    stop(sim)
    sim.reconcile()
    sim.annotate(ANNOTATION_STOP, None)
    sim.annotate(ANNOTATION_STOPPED_BY, None)
    sim.jobs[name] = as_job(stopped(child_of(body), BY))
    sim.advance(5)
    sim.reconcile()
    assert message(sim, "sub") == HELD  # read back from the stored status
    assert sim.flow.status.message.startswith("stopped by alice")  # type: ignore[union-attr]
    child_ends_stopped(sim, name, body)
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"sub": "Failed", "cleanup": "Succeeded"}
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_a_stop_before_the_grace_point_whose_child_still_stops_then_stays_stopped() -> None:
    policy = {"activeDeadlineSeconds": 100, "finallyGraceSeconds": 30}
    sim, name, body = running_child(execution_policy=policy)
    stop(sim)
    sim.reconcile()
    sim.jobs[name] = as_job(stopped(child_of(body), BY))
    sim.advance(70)  # the grace point has come: the child, stopped already, is not stopped again
    result = sim.reconcile()
    assert not stops(result)
    assert not deletes(result)
    assert message(sim, "sub") == HELD
    child_ends_stopped(sim, name, body)
    result = sim.reconcile()
    assert "FlowDeadlineGrace" not in reasons(result)
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", "stopped by alice")  # before: DeadlineExceeded


def test_a_stop_escalated_to_now_while_the_child_stops_deletes_it() -> None:
    sim, name, body = running_child()
    stop(sim)
    sim.reconcile()
    sim.jobs[name] = as_job(stopped(child_of(body), BY))
    stop(sim, "true", "bob")
    sim.advance(5)
    result = sim.reconcile()
    assert [(a.name, a.reason) for a in deletes(result)] == [(name, "stopped by bob")]
    assert phases(sim) == {"sub": "Failed", "cleanup": "Skipped"}
    assert failed_condition(sim) == ("Stopped", "stopped by bob")


def test_a_stop_escalated_to_now_after_the_childs_stop_was_lost_deletes_it_and_sends_no_stop() -> None:
    sim, name, _ = running_child()
    stop(sim)
    sim.reconcile(held=False)  # the write recording the stop landed, the StopChild held for it was lost
    assert message(sim, "sub") == HELD
    stop(sim, "true", "bob")
    sim.advance(5)
    result = sim.reconcile()
    assert [(a.name, a.reason) for a in deletes(result)] == [(name, "stopped by bob")]
    assert not stops(result)  # before: the lost StopChild sent again, beside the delete of its child
    assert failed_condition(sim) == ("Stopped", "stopped by bob")


def test_a_plan_drops_only_the_stop_of_a_child_it_deletes() -> None:
    gone, kept = StopChild("c", "sub", by=BY), StopChild("d", "other", by=BY)
    delete = DeleteJob("c", "sub", "stopped by bob")
    assert pruned([delete, gone, kept]) == (delete, kept)
    assert pruned([gone, kept]) == (gone, kept)  # nothing deleted: nothing dropped


def test_a_stop_now_still_deletes_a_running_child() -> None:
    sim, name, _ = running_child()
    stop(sim, "true")
    result = sim.reconcile()
    assert not stops(result)
    assert [(a.name, a.reason) for a in deletes(result)] == [(name, "stopped by alice")]
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_a_child_already_stopped_by_its_user_is_not_stopped_again_and_ends_for_the_parents_stop() -> None:
    sim, name, body = running_child()
    sim.jobs[name] = as_job(stopped(child_of(body), who="carol"))
    stop(sim)
    result = sim.reconcile()
    assert not stops(result)
    assert not deletes(result)
    sim.jobs[name] = as_job(stopped(child_of(body, phase="Failed", message="stopped by carol"), who="carol"))
    sim.advance(5)
    sim.reconcile()
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"sub": "Failed", "cleanup": "Succeeded"}
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_a_child_whose_stop_stopped_nothing_succeeds_and_the_flow_ends_as_its_steps_did() -> None:
    sim, name, body = running_child()
    stop(sim)
    sim.reconcile()
    sim.jobs[name] = as_job(stopped(child_of(body, phase="Succeeded"), BY))
    sim.advance(5)
    result = sim.reconcile()
    assert "FlowStopped" not in reasons(result)
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"sub": "Succeeded", "cleanup": "Succeeded"}
    assert sim.phase == "Succeeded"


# --- property -------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_a_stopped_parent_amid_lost_writes_restarts_and_edits_ends_stopped_after_its_childs_finally(
    seed: int, graced: bool, second_child: bool, timed: bool, beside: bool
) -> None:
    """Random lost writes, restarts (a fresh plan from the stored flow must equal the running one's),
    the request removed or escalated, the grace point passing, children timing out, deleted outside
    zen-flow or failing, with retries left; what waits for a write that landed dropped (`held=False`:
    the next plan sends it again, a Job step's delete beside the stopping children, `beside`, by
    finale.delete_again) and deleted Jobs lingering while they go: no Flow step makes a new child after
    the stop; a child is stopped only once its parent's stored status records the stop (the controller
    sends a StopChild after the write: `sim.child_stops`), deleted only by a stop now, the deadline or
    its step's timeout; otherwise it ends stopped, and the parent ends Stopped with its finally step run."""
    rng = random.Random(seed)
    policy = {"activeDeadlineSeconds": 400, "finallyGraceSeconds": 300} if graced else None
    timeout = {"timeoutSeconds": 90} if timed else {}
    steps = [flow_step("sub", retryPolicy={"limit": 2}, **timeout), job_step("cleanup", **FINALLY)]
    if second_child:
        steps.insert(1, flow_step("sub2", retryPolicy={"limit": 2}))
    if beside:
        steps.insert(1, job_step("work"))
    sim = Simulator(make_flow(steps, execution_policy=policy), T0, instant_delete=rng.random() < 0.5)
    sim.reconcile()
    bodies = {a.name: a.body for a in sim.last.actions if isinstance(a, CreateJob) and a.step != "work"}
    for name, body in bodies.items():
        sim.jobs[name] = as_job(child_of(body))
    sim.reconcile()
    stop(sim)
    escalated = removed = stored = False
    deleted: set[str] = set()
    for _ in range(60):
        before = sim.flow
        assert Simulator(before, sim.now, jobs=dict(sim.jobs)).preview() == sim.preview()
        written = rng.random() > 0.25
        sent = len(sim.child_stops)
        result = sim.reconcile(write_status=written, held=rng.random() > 0.2)
        # Stored by a plan that saw it: tracked here, not read from what the mechanism writes.
        stored |= written and not removed and not escalated
        assert not [a for a in result.actions if isinstance(a, CreateJob) and a.step != "cleanup"]
        # A child the plan deletes is neither stopped nor suspended by it too.
        gone = {a.name for a in deletes(result)}
        assert not [a for a in result.actions if isinstance(a, StopChild | SuspendChild) and a.name in gone]
        deleted |= {
            a.name for a in deletes(result) if a.name in bodies and not a.reason.startswith("timed out")
        }
        for action in sim.child_stops[sent:]:  # the patch lands (or is lost: sent again by the next plan)
            said = message(sim, action.step) or ""  # sent once the status recording the stop landed
            assert said.startswith("stopped by "), f"{action.name} stopped before its parent stored: {said!r}"
            if rng.random() < 0.7 and action.name not in deleted:
                sim.jobs[action.name] = as_job(stopped(child_of(bodies[action.name]), BY))
        for name, body in bodies.items():
            child = sim.jobs.get(name)
            if child is None or name in deleted or child.finished or child.deleting:
                continue
            roll = rng.random()
            if asked(child) and roll < 0.2:
                child_ends_stopped(sim, name, body)
            elif roll > 0.95:
                del sim.jobs[name]  # deleted outside zen-flow
            elif roll > 0.9:
                sim.jobs[name] = as_job(child_of(body, phase="Failed", message="step x failed"))
        roll = rng.random()
        if roll < 0.04 and not escalated:
            stop(sim, "true", "bob")
            escalated = True
        elif roll < 0.2 and not removed and not escalated and stored:
            # Taken back once stored (before that it stopped nothing, in time).
            sim.annotate(ANNOTATION_STOP, None)
            removed = True
        if rng.random() < 0.5:
            sim.collect()  # the deleted children gone
        if sim.terminal and sim.last.status == sim.flow.status:
            break
        if not sim.running():
            sim.collect()
            run(sim, by_step(sim, {}))
            break
        sim.advance(rng.choice([0, 1, 5, 30]))
    else:
        raise AssertionError(f"flow did not finish: {sim.phase} {sim.flow.status.message}")
    assert sim.phase == "Failed"
    reason = failed_condition(sim)[0]
    deadline = graced and sim.now >= T0 + timedelta(seconds=400)
    assert reason == "Stopped" or (deadline and reason == "DeadlineExceeded"), reason
    if deleted:
        assert escalated or deadline, f"{deleted} deleted by a graceful stop"
    if not escalated and not deadline:
        assert sim.flow.status.steps[-1].phase == StepPhase.SUCCEEDED  # the parent's finally step ran


# --- the recorded stop outlives the request: whatever ends the attempt, the step ends for the stop ---------


def recorded_stop(**step: Any) -> tuple[Simulator, str, dict[str, Any]]:
    """`sub` (with `step`'s fields) holds for alice's graceful stop, recorded; the request then removed,
    the child carrying its own stop."""
    sim = Simulator(make_flow([flow_step("sub", **step), job_step("cleanup", **FINALLY)]), T0)
    sim.reconcile()
    [create] = [a for a in sim.last.actions if isinstance(a, CreateJob)]
    sim.jobs[create.name] = as_job(child_of(create.body))
    sim.advance(5)
    sim.reconcile()
    stop(sim)
    sim.reconcile()
    sim.jobs[create.name] = as_job(stopped(child_of(create.body), BY))
    sim.annotate(ANNOTATION_STOP, None)
    sim.annotate(ANNOTATION_STOPPED_BY, None)
    sim.advance(5)
    sim.reconcile()
    assert message(sim, "sub") == HELD
    return sim, create.name, create.body


def ends_stopped_after_its_finally(sim: Simulator, name: str, first_words: str) -> None:
    assert phases(sim)["sub"] == "Failed"
    said = message(sim, "sub") or ""
    assert said.startswith("stopped by alice")
    assert first_words in said
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"sub": "Failed", "cleanup": "Succeeded"}
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert not [n for n in sim.jobs if n.startswith(f"{name}-")]  # never retried: no new child


def test_a_recorded_stop_whose_child_times_out_ends_the_step_for_the_stop_not_a_retry() -> None:
    sim, name, _ = recorded_stop(timeoutSeconds=60, retryPolicy={"limit": 2})
    sim.advance(70)
    result = sim.reconcile()
    # Before: the step went Retrying and the next plan made a new child, the stop forgotten.
    assert [(a.name, a.reason) for a in deletes(result)] == [(name, "timed out after 60s")]
    assert "FlowStopped" in reasons(result)
    ends_stopped_after_its_finally(sim, name, "; timed out after 60s")


def test_a_recorded_stop_whose_child_is_deleted_outside_ends_the_step_for_the_stop() -> None:
    sim, name, _ = recorded_stop(retryPolicy={"limit": 2})
    del sim.jobs[name]
    sim.advance(5)
    sim.reconcile()
    # Before: "stopped by alice" alone, nothing said of the child gone.
    assert message(sim, "sub") == f"stopped by alice; {CHILD_DELETED.format(name=name)}"
    ends_stopped_after_its_finally(sim, name, "")


def test_a_recorded_stop_whose_child_is_being_deleted_outside_says_so_within_the_cap() -> None:
    sim, name, body = running_child()
    stop(sim, user=LONG_USER)
    sim.reconcile()
    record = (message(sim, "sub") or "").removesuffix(CHILD_STOPPING)  # the user cut to fit it whole
    assert record.startswith("stopped by system:serviceaccount:team-payments")
    job = as_job(stopped(child_of(body), who=f"parent flow flow (stopped by {LONG_USER})"))
    sim.jobs[name] = replace(job, metadata=replace(job.metadata, deletion_timestamp=sim.now))
    sim.advance(5)
    sim.reconcile()
    said = message(sim, "sub") or ""
    assert said == f"{record}; {CHILD_DELETED.format(name=name)}"  # before: the record alone
    assert len(said) <= MAX_MESSAGE  # whole: the longest record and child name fit a step's message
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"sub": "Failed", "cleanup": "Succeeded"}
    assert failed_condition(sim) == ("Stopped", f"stopped by {LONG_USER}")  # the request, still set


def test_a_stop_escalated_to_now_whose_write_was_lost_ends_stopped_by_it_not_deleted() -> None:
    sim, name, _ = running_child()
    stop(sim)
    sim.reconcile()
    stop(sim, "true", "bob")
    sim.advance(5)
    sim.reconcile(write_status=False)  # bob's delete went out, the write ending the step was lost
    assert name not in sim.jobs
    sim.advance(5)
    sim.reconcile()
    assert message(sim, "sub") == "stopped by bob"  # zen-flow's own delete, not one from outside
    assert failed_condition(sim) == ("Stopped", "stopped by bob")


def test_a_recorded_stop_whose_child_the_deadline_deleted_with_its_write_lost_ends_for_the_deadline() -> None:
    sim, name, _ = running_child(execution_policy={"activeDeadlineSeconds": 100})
    stop(sim)
    sim.reconcile()
    assert message(sim, "sub") == HELD
    sim.advance(120)
    result = sim.reconcile(write_status=False)  # the deadline's delete went out, its write was lost
    assert [a.name for a in deletes(result)] == [name]
    sim.advance(5)
    sim.reconcile()
    said = message(sim, "sub") or ""
    assert "was deleted before it finished stopping" not in said  # zen-flow deleted it, for the deadline
    assert failed_condition(sim)[0] == "DeadlineExceeded"


def test_a_recorded_stop_whose_child_fails_ends_the_step_for_the_stop() -> None:
    sim, name, body = recorded_stop(retryPolicy={"limit": 2})
    sim.jobs[name] = as_job(child_of(body, phase="Failed", message="step x failed"))
    sim.advance(5)
    sim.reconcile()
    ends_stopped_after_its_finally(sim, name, f"; child flow {name} failed")


def test_a_recorded_stop_whose_child_is_deleted_after_the_grace_point_ends_stopped() -> None:
    policy = {"activeDeadlineSeconds": 100, "finallyGraceSeconds": 30}
    sim, name, body = running_child(execution_policy=policy)
    stop(sim)
    sim.reconcile()
    sim.jobs[name] = as_job(stopped(child_of(body), BY))
    sim.advance(70)
    sim.reconcile()
    del sim.jobs[name]
    sim.advance(1)
    sim.reconcile()
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", "stopped by alice")  # before: DeadlineExceeded


def test_a_recorded_stop_whose_patch_was_lost_sends_it_again_after_the_request_is_removed() -> None:
    sim, name, body = running_child()
    stop(sim)
    first = sim.reconcile()  # its StopChild patch lost
    sim.annotate(ANNOTATION_STOP, None)
    sim.advance(5)
    # Before: nothing stopped the child any more, and the flow ended as if never stopped.
    assert stops(sim.reconcile()) == stops(first)
    sim.jobs[name] = as_job(stopped(child_of(body), BY))
    sim.advance(5)
    assert not stops(sim.reconcile())
    child_ends_stopped(sim, name, body)
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


LONG_USER = "system:serviceaccount:team-payments-production-eu-west:" + "release-orchestrator-" * 4


def test_a_long_stopper_keeps_its_record_under_a_suspension_and_fits_the_status() -> None:
    sim, name, body = running_child()
    stop(sim, user="u" * 1100)  # without the webhook, stopped-by is free text
    sim.reconcile()
    assert all(len(s.message or "") <= 256 for s in sim.flow.status.steps)  # the CRD's cap is 1024
    assert (message(sim, "sub") or "").endswith(CHILD_STOPPING)

    sim, name, body = running_child()
    suspend = sim.flow.spec.model_copy(update={"suspend": True})
    sim.flow = sim.flow.model_copy(update={"spec": suspend})
    sim.reconcile()
    child = child_of(body)
    child = child.model_copy(update={"spec": child.spec.model_copy(update={"suspend": True})})
    sim.jobs[name] = as_job(child)
    sim.advance(5)
    sim.reconcile()
    stop(sim, user=LONG_USER)
    sim.advance(5)
    sim.reconcile()
    said = message(sim, "sub") or ""
    assert said.startswith(HELD_CHILD)  # the suspension is still said, before: dropped
    assert said.endswith(CHILD_STOPPING)
    sim.jobs[name] = as_job(stopped(child, who=f"parent flow flow (stopped by {LONG_USER})"))
    sim.annotate(ANNOTATION_STOP, None)
    sim.advance(5)
    sim.reconcile()
    assert (message(sim, "sub") or "").endswith(CHILD_STOPPING)  # before: cut off, the stop lost
    sim.flow = sim.flow.model_copy(update={"spec": sim.flow.spec.model_copy(update={"suspend": False})})
    child_ends_stopped(sim, name, body)
    run(sim, by_step(sim, {}))
    reason, said = failed_condition(sim)
    assert reason == "Stopped"  # before: StepFailed
    assert said.startswith("stopped by system:serviceaccount:team-payments")
