"""The progress deadline: a Running flow whose steps stop changing phase says so on the flow itself
(condition Progressing=False, a Warning event), and says so again when it moves on; nothing is stopped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from zen_flow.api import JobFlow
from zen_flow.api.meta import Condition
from zen_flow.controller.metrics import Metrics
from zen_flow.planner import plan
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
HOUR = 3600.0


def progressing(sim: Simulator) -> Condition:
    return next(c for c in sim.flow.status.conditions if c.type == "Progressing")


def reasons(sim: Simulator) -> list[str]:
    return [e.reason for e in sim.last.events]


def test_a_step_running_past_the_deadline_marks_the_flow_not_progressing_once() -> None:
    sim = Simulator(make_flow([job_step("build"), job_step("test", "build")]), T0, progress_deadline=HOUR)
    first = sim.reconcile()
    assert progressing(sim).status == "True"
    assert progressing(sim).reason == "StepsProgressing"
    assert sim.flow.status.last_progress_time == T0
    assert first.requeue_after == HOUR  # the planner wakes itself up to notice

    sim.advance(HOUR)
    stalled = sim.reconcile()
    cond = progressing(sim)
    assert (cond.status, cond.reason) == ("False", "ProgressDeadlineExceeded")
    assert (
        cond.message
        == "no step changed phase for 1h (last change 2025-01-01T00:00:00Z); still running: build"
    )
    assert cond.last_transition_time == T0 + timedelta(hours=1)
    assert stalled.actions == ()  # a slow step is not stopped: only reported
    assert [(e.type, e.reason) for e in stalled.events] == [("Warning", "ProgressDeadlineExceeded")]
    assert sim.phase == "Running"

    sim.advance(60)
    again = sim.reconcile()
    assert again.status == sim.flow.status
    assert again.events == ()  # said once, not on every reconcile


def test_the_next_step_transition_makes_it_progress_again() -> None:
    sim = Simulator(make_flow([job_step("build"), job_step("test", "build")]), T0, progress_deadline=HOUR)
    sim.reconcile()
    sim.advance(2 * HOUR)
    sim.reconcile()
    assert progressing(sim).status == "False"

    sim.complete(sim.running()[0])
    sim.reconcile()
    assert progressing(sim).status == "True"
    assert sim.flow.status.last_progress_time == T0 + timedelta(hours=2)
    assert "FlowProgressing" in reasons(sim)
    assert sim.last.requeue_after == HOUR  # counting again from this transition


def test_without_a_deadline_a_flow_never_stalls() -> None:
    sim = Simulator(make_flow([job_step("build")]), T0)
    first = sim.reconcile()
    assert first.requeue_after is None
    sim.advance(1000 * HOUR)
    assert sim.reconcile().events == ()
    assert progressing(sim).status == "True"


def test_a_flow_waiting_for_approval_or_finished_is_not_stalled() -> None:
    sim = Simulator(make_flow([manual_step("gate")]), T0, progress_deadline=60)
    sim.reconcile()
    assert sim.phase == "Paused"
    sim.advance(10 * HOUR)
    sim.reconcile()
    cond = progressing(sim)
    assert (cond.status, cond.reason) == ("False", "FlowPaused")  # waiting for a human is not stuck
    assert "ProgressDeadlineExceeded" not in reasons(sim)

    done = Simulator(make_flow([job_step("a")]), T0, progress_deadline=60)
    done.reconcile()
    done.complete(done.running()[0])
    done.reconcile()
    assert (progressing(done).status, progressing(done).reason) == ("False", "FlowSucceeded")


def test_a_status_from_before_the_field_counts_from_its_latest_step_timestamp() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0, progress_deadline=HOUR)
    sim.reconcile()
    sim.advance(30 * 60)
    sim.complete(sim.running()[0])
    sim.reconcile()  # b started at T0+30m
    wire = sim.flow.status.to_wire()
    del wire["lastProgressTime"]
    legacy = sim.flow.model_copy(update={"status": type(sim.flow.status).model_validate(wire)})
    early = plan(legacy, list(sim.jobs.values()), T0 + timedelta(minutes=80), progress_deadline=HOUR)
    assert early.status.last_progress_time == T0 + timedelta(minutes=30)
    assert next(c for c in early.status.conditions if c.type == "Progressing").status == "True"
    assert early.requeue_after == 10 * 60


def _flow_with(namespace: str, name: str, reason: str) -> JobFlow:
    flow = make_flow([job_step("a")], name=name, namespace=namespace)
    cond = Condition(type="Progressing", status="False", reason=reason, last_transition_time=T0)
    return flow.model_copy(
        update={"status": flow.status.model_copy(update={"phase": "Running", "conditions": (cond,)})}
    )


def test_the_not_progressing_gauge_counts_stalled_flows_per_namespace() -> None:
    flows = [
        _flow_with("team-a", "stuck-1", "ProgressDeadlineExceeded"),
        _flow_with("team-a", "stuck-2", "ProgressDeadlineExceeded"),
        _flow_with("team-a", "fine", "StepsProgressing"),
        _flow_with("team-b", "fine", "StepsProgressing"),
    ]
    metrics = Metrics()
    metrics.watch_flows(lambda: flows)
    text = metrics.render().decode()
    assert 'zen_flow_jobflows_not_progressing{namespace="team-a"} 2.0' in text
    # A namespace with flows and none stuck reads 0, so an alert or a panel sees a value, not a gap.
    assert 'zen_flow_jobflows_not_progressing{namespace="team-b"} 0.0' in text
