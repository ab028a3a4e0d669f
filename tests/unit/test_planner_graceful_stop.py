"""Planner: a graceful stop (`workflow.kube-zen.io/stop: RunFinally`, `zen-flow stop --run-finally`) ends
the steps that are not finally as a stop does, then runs the finally steps with `flow.outcome` Failed;
the flow ends Failed, reason Stopped. Any other value stays the stop now (test_planner_interventions,
test_planner_finally). Every plan is made again from the flow and its Jobs, so a lost status write or a
restart in the middle ends the same way."""

from __future__ import annotations

from graceful_stop_rig import ON_FAILURE, RETRY, T0, flow, job_of, reasons, stop, to_the_gate
from test_planner_finally import FINALLY, by_step, failed_condition, started
from test_planner_joins import message, phases

from zen_flow.api.constants import (
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_STOP,
)
from zen_flow.planner import CreateJob, DeleteJob
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run


def test_a_graceful_stop_stops_the_other_steps_then_runs_the_finally_steps_and_fails_stopped() -> None:
    sim = flow()
    to_the_gate(sim)
    test = job_of(sim, "test")
    stop(sim)
    result = sim.reconcile()
    assert [(a.name, a.reason) for a in result.actions if isinstance(a, DeleteJob)] == [
        (test, "stopped by alice")
    ]
    # The other steps end, and that is written before the finally steps start.
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == []
    assert message(sim, "cleanup") == "waiting for the status that ends the other steps to be written"
    assert sim.flow.status.message == "stopped by alice; the finally steps start next: cleanup"
    assert reasons(result).count("FlowStopped") == 1
    # The plan that write brings starts those that may start, seeing Failed.
    second = sim.reconcile()
    assert [a.step for a in second.actions if isinstance(a, CreateJob)] == ["cleanup"]
    assert phases(sim) == {
        "build": "Succeeded",
        "test": "Failed",
        "lint": "Succeeded",
        "gate": "Skipped",
        "publish": "Skipped",
        "cleanup": "Running",
        "notify": "Pending",
    }
    assert message(sim, "test") == "stopped by alice"  # not retried: its retryPolicy does not apply
    assert message(sim, "gate") == "no decision: stopped by alice"
    assert message(sim, "publish") == "not started: stopped by alice"
    assert message(sim, "cleanup") == ""
    assert sim.phase == "Running"
    assert (sim.flow.status.message or "").startswith("stopped by alice")
    assert "FlowStopped" not in reasons(second)  # said once
    assert "FlowFailed" not in reasons(result) + reasons(second)

    sim.complete(job_of(sim, "cleanup"))
    sim.reconcile()
    assert started(sim)[-1] == "notify"
    sim.complete(job_of(sim, "notify"))
    end = sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert (phases(sim)["cleanup"], phases(sim)["notify"]) == ("Succeeded", "Succeeded")
    assert "FlowStopped" not in reasons(end)  # said once, at the stop
    assert "FlowFailed" in reasons(end)
    assert started(sim).count("test") == 1


def test_a_failed_finally_step_is_said_beside_the_stop() -> None:
    sim = flow()
    to_the_gate(sim)
    stop(sim)
    sim.reconcile()
    sim.reconcile()  # brought by the stopping plan's write: starts cleanup
    sim.fail(job_of(sim, "cleanup"))
    run(sim, by_step(sim, {}))
    assert phases(sim)["notify"] == "Succeeded"  # finally steps do not fail-fast each other
    reason, text = failed_condition(sim)
    assert reason == "Stopped"
    assert text.startswith("stopped by alice; finally step cleanup failed: Job failed")


def test_the_value_is_read_in_any_case() -> None:
    for value in ("RunFinally", "runfinally", " RUNFINALLY "):
        sim = flow()
        to_the_gate(sim)
        stop(sim, value)
        sim.reconcile()
        sim.reconcile()
        assert phases(sim)["cleanup"] == "Running", value


def test_any_other_value_stops_now_and_runs_no_finally_step() -> None:
    for value in ("true", "run-finally", "RunFinallyPlease"):
        sim = flow()
        to_the_gate(sim)
        stop(sim, value)
        sim.reconcile()
        assert sim.phase == "Failed", value
        assert phases(sim)["cleanup"] == "Skipped"
        assert message(sim, "cleanup") == "not started: stopped by alice"


def test_without_finally_steps_a_graceful_stop_is_the_stop_now() -> None:
    steps = [job_step("a"), job_step("b", **RETRY), job_step("c", "a", "b"), manual_step("gate", "c")]
    outcomes = []
    for value in ("true", "RunFinally"):
        sim = Simulator(make_flow(steps), T0)
        sim.reconcile()
        stop(sim, value)
        result = sim.reconcile()
        outcomes.append((result.actions, result.events, sim.flow.status))
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][2].phase == "Failed"


def test_a_running_finally_step_goes_on_and_a_stop_that_stops_nothing_keeps_the_outcome() -> None:
    # Every other step had ended: the graceful stop has nothing to stop. The running finally step is not
    # deleted, the one after it still runs, and the flow ends as its steps did (as a stop that comes
    # once every step has finished).
    steps = [job_step("a"), job_step("cleanup", **FINALLY), job_step("notify", "cleanup", **FINALLY)]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.reconcile()
    assert phases(sim)["cleanup"] == "Running"
    stop(sim)
    result = sim.reconcile()
    assert not [a for a in result.actions if isinstance(a, DeleteJob)]
    assert "FlowStopped" not in reasons(result)
    run(sim, by_step(sim, {}))
    assert sim.phase == "Succeeded"
    assert phases(sim)["notify"] == "Succeeded"


def test_a_stop_now_while_the_finally_steps_of_a_graceful_stop_run_stops_them_at_once() -> None:
    sim = flow()
    to_the_gate(sim)
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    cleanup = job_of(sim, "cleanup")
    stop(sim, "true", "bob")  # the webhook writes stopped-by again: the value changed
    result = sim.reconcile()
    assert [a.name for a in result.actions if isinstance(a, DeleteJob)] == [cleanup]
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by bob")
    assert (phases(sim)["cleanup"], message(sim, "cleanup")) == ("Failed", "stopped by bob")
    assert message(sim, "notify") == "not started: stopped by bob"
    assert "FlowStopped" in reasons(result)  # a second request, said as such
    assert "notify" not in started(sim)


def test_the_flow_deadline_during_a_graceful_stop_stops_the_finally_steps() -> None:
    sim = flow(execution_policy={"activeDeadlineSeconds": 60})
    to_the_gate(sim)
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    sim.advance(60)
    sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim)[0] == "DeadlineExceeded"
    assert phases(sim)["cleanup"] == "Failed"
    assert not sim.running()


def test_a_graceful_stop_of_a_flow_that_has_not_started_runs_no_finally_step() -> None:
    # Nothing ran to clean up after; a flow queued or suspended before its first step would otherwise
    # wait for its turn to run its cleanup.
    sim = flow(suspend=True)
    sim.reconcile()
    assert sim.phase == "Suspended"
    stop(sim)
    result = sim.reconcile()
    assert not [a for a in result.actions if isinstance(a, CreateJob)]
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert message(sim, "cleanup") == "not started: stopped by alice"


def test_a_suspended_flow_stopped_gracefully_runs_its_finally_steps_once_resumed() -> None:
    sim = flow()
    to_the_gate(sim)
    sim.set_suspend(True)
    stop(sim)
    result = sim.reconcile()
    assert [a.reason for a in result.actions if isinstance(a, DeleteJob)] == ["stopped by alice"]
    assert not [a for a in result.actions if isinstance(a, CreateJob)]
    assert phases(sim)["cleanup"] == "Pending"
    sim.set_suspend(False)
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", "stopped by alice")
    assert phases(sim)["notify"] == "Succeeded"


def test_the_outcome_stays_failed_for_finally_steps_decided_in_a_later_plan() -> None:
    # The stop only skipped steps (a waiting gate): no step failed. Under parallelism 1 the second finally
    # step's `when` is decided at its slot, plans later: the status must still say the flow was stopped.
    steps = [
        manual_step("gate"),
        job_step("after", "gate"),
        job_step("first", **ON_FAILURE),
        job_step("second", **ON_FAILURE),
    ]
    sim = Simulator(make_flow(steps, execution_policy={"parallelism": 1}), T0)
    sim.reconcile()
    stop(sim)
    sim.reconcile()
    sim.reconcile()
    assert started(sim) == ["first"]
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"gate": "Skipped", "after": "Skipped", "first": "Succeeded", "second": "Succeeded"}
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_a_rerun_is_refused_while_the_request_is_set_then_runs_the_stopped_and_finally_steps() -> None:
    sim = flow()
    to_the_gate(sim)
    stop(sim)
    run(sim, by_step(sim, {}))
    assert sim.phase == "Failed"
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.annotate(ANNOTATION_RETRIED_BY, "carol")
    result = sim.reconcile()
    assert "RetryIgnored" in reasons(result)
    sim.annotate(ANNOTATION_STOP, None)  # what `zen-flow retry` does
    sim.annotate(ANNOTATION_RETRY, "r2")
    sim.reconcile()
    assert phases(sim)["test"] == "Running"
    assert phases(sim)["gate"] == "PendingApproval"
