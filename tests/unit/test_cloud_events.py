"""CloudEvents of a flow's transitions (planner/cloud_events.py): which are sent and as which type, in
what order, with which id, headers and body (docs/OPERATOR_GUIDE.md, "CloudEvents")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from zen_flow.api.constants import ANNOTATION_RETRY, APPROVE_PREFIX
from zen_flow.planner import EventSpec
from zen_flow.planner.cloud_events import CloudEvent, cloud_event, cloud_events, header_value
from zen_flow.planner.events import NORMAL
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
P = "dev.kube-zen.jobflow."


def sent(sim: Simulator) -> list[CloudEvent]:
    """What the controller publishes for the last reconcile of `sim`."""
    return list(cloud_events(sim.flow, sim.last.status, sim.last.events, sim.now))


def types(events: list[CloudEvent]) -> list[tuple[str, str]]:
    return [(e.type.removeprefix(P), e.subject) for e in events]


def body(event: CloudEvent) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(event.data)
    return data


def test_a_two_step_flow_sends_started_steps_and_succeeded_in_order() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")], name="nightly"), T0)
    sim.reconcile()
    # The run starts before its first step does, although the planner lists step events first.
    assert types(sent(sim)) == [("started.v1", "nightly"), ("step.started.v1", "a")]
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert types(sent(sim)) == [("step.succeeded.v1", "a"), ("step.started.v1", "b")]
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert types(sent(sim)) == [("step.succeeded.v1", "b"), ("succeeded.v1", "nightly")]
    sim.reconcile()
    assert sent(sim) == []  # nothing changed: nothing is sent


def test_failures_retries_and_skips_have_their_types() -> None:
    flow = make_flow([job_step("a", retryPolicy={"limit": 1}), job_step("b", "a")])
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert types(sent(sim)) == [("step.retrying.v1", "a")]
    sim.advance(sim.last.requeue_after)
    sim.reconcile()
    [started] = sent(sim)
    assert (started.type, body(started)["retryCount"]) == (P + "step.started.v1", 1)
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert types(sent(sim)) == [("step.failed.v1", "a"), ("step.skipped.v1", "b"), ("failed.v1", "flow")]


def test_approval_gates_send_waiting_then_the_decision() -> None:
    sim = Simulator(make_flow([manual_step("gate"), job_step("deploy", "gate")]), T0)
    sim.reconcile()
    assert types(sent(sim)) == [("started.v1", "flow"), ("approval.waiting.v1", "gate")]
    sim.annotate(f"{APPROVE_PREFIX}gate", "true")
    sim.reconcile()
    assert types(sent(sim))[0] == ("approval.approved.v1", "gate")


def test_without_step_events_only_the_flows_own_and_the_approval_types_are_sent() -> None:
    # --cloudevents-step-events=false: a receiver that wants the runs, not every step of them.
    sim = Simulator(make_flow([manual_step("gate"), job_step("a", "gate"), job_step("b", "a")]), T0)
    seen: list[tuple[str, str]] = []

    def reconcile() -> None:
        sim.reconcile()
        flow, status, events = sim.flow, sim.last.status, sim.last.events
        seen.extend(types(list(cloud_events(flow, status, events, sim.now, steps=False))))

    reconcile()
    sim.annotate(f"{APPROVE_PREFIX}gate", "true")
    reconcile()
    reconcile()  # a starts in the plan the approval's status write brings
    for _ in range(2):
        sim.complete(sim.running()[0])
        reconcile()
    assert sim.flow.status.phase == "Succeeded"
    assert seen == [
        ("started.v1", "flow"),
        ("approval.waiting.v1", "gate"),
        ("approval.approved.v1", "gate"),
        ("succeeded.v1", "flow"),
    ]
    # The same plans, with the step types: these are what steps=False left out.
    failing = Simulator(make_flow([job_step("a")]), T0)
    failing.reconcile()
    failing.fail(failing.running()[0])
    failing.reconcile()
    assert types(sent(failing)) == [("step.failed.v1", "a"), ("failed.v1", "flow")]
    last = failing.last
    assert types(list(cloud_events(failing.flow, last.status, last.events, failing.now, steps=False))) == [
        ("failed.v1", "flow")
    ]


def test_events_that_are_not_transitions_of_interest_are_not_sent() -> None:
    flow = make_flow([job_step("a")])
    noise = [EventSpec(NORMAL, "FlowQueued", "waiting"), EventSpec(NORMAL, "StrayJobDeleted", "x")]
    assert cloud_events(flow, flow.status, noise, T0) == ()


def test_the_id_names_the_transition_not_the_moment_it_was_described() -> None:
    sim = Simulator(make_flow([job_step("a", retryPolicy={"limit": 1})]), T0)
    sim.reconcile()
    first = sent(sim)
    # The same transition described again later (a reconcile repeated after a lost answer): same id.
    again = cloud_events(sim.flow, sim.last.status, sim.last.events, datetime(2025, 1, 2, tzinfo=UTC))
    assert [e.id for e in again] == [e.id for e in first]
    assert len({e.id for e in first}) == 2
    sim.fail(sim.running()[0])
    sim.reconcile()
    sim.advance(sim.last.requeue_after)
    sim.reconcile()
    [second_start] = sent(sim)  # the next attempt of the same step: another transition
    assert second_start.id not in {e.id for e in first}


def test_a_rerun_is_another_run_with_other_ids() -> None:
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    first_run = {e.type: e.id for e in sent(sim)}
    sim.fail(sim.running()[0])
    sim.reconcile()
    sim.annotate(ANNOTATION_RETRY, "r-1")
    rerun: list[CloudEvent] = []
    for _ in range(3):
        sim.reconcile()
        rerun += sent(sim)
    assert types(rerun)[0] == ("retried.v1", "flow")
    second_run = {e.type: e.id for e in rerun}
    # The flow starts again: the same reason, step and attempt count, yet another transition.
    assert second_run[P + "started.v1"] != first_run[P + "started.v1"]
    assert second_run[P + "step.started.v1"] != first_run[P + "step.started.v1"]


def test_headers_are_the_binary_content_mode() -> None:
    sim = Simulator(make_flow([job_step("a")], name="nightly", namespace="team-a"), T0)
    sim.reconcile()
    started = sent(sim)[1]
    headers = started.headers()
    assert headers == {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": started.id,
        "ce-source": "/apis/workflow.kube-zen.io/v1alpha1/namespaces/team-a/jobflows/nightly",
        "ce-type": "dev.kube-zen.jobflow.step.started.v1",
        "ce-subject": "a",
        "ce-time": "2025-01-01T00:00:00Z",
    }
    assert len(started.id) == 32


def test_header_values_are_percent_encoded_as_the_http_binding_says() -> None:
    # The binding's own example, and the three printable characters it also encodes.
    assert header_value("Euro € 😀") == "Euro%20%E2%82%AC%20%F0%9F%98%80"
    assert header_value('a"b%c') == "a%22b%25c"
    assert (
        header_value("/apis/x.io/v1/namespaces/n/jobflows/f-1.2")
        == "/apis/x.io/v1/namespaces/n/jobflows/f-1.2"
    )


def test_the_body_is_compact_json_about_the_flow_and_the_step() -> None:
    flow = make_flow([job_step("a")], name="nightly", namespace="team-a", labels={"team": "data"})
    sim = Simulator(flow, T0)
    sim.reconcile()
    flow_started, step_started = sent(sim)
    for event in (flow_started, step_started):  # compact: no spaces between members
        assert event.data == json.dumps(body(event), separators=(",", ":")).encode()
    assert body(flow_started) == {
        "flow": "nightly",
        "namespace": "team-a",
        "uid": "uid-nightly",
        "phase": "Running",
        "reason": "FlowStarted",
        "message": "flow started",
        "labels": {"team": "data"},
    }
    step = body(step_started)
    job = sim.flow.status.step("a").job_ref  # type: ignore[union-attr]
    assert job is not None
    assert step == {
        "flow": "nightly",
        "namespace": "team-a",
        "uid": "uid-nightly",
        "phase": "Running",
        "reason": "StepStarted",
        "message": f"step a: created Job {job.name}",
        "step": "a",
        "stepPhase": "Running",
        "retryCount": 0,
        "job": job.name,
        "labels": {"team": "data"},
    }


def test_a_long_message_is_cut() -> None:
    flow = make_flow([job_step("a")])
    event = cloud_event(flow, flow.status, EventSpec(NORMAL, "FlowFailed", "x" * 5000), T0)
    assert len(body(event)["message"]) == 1024
