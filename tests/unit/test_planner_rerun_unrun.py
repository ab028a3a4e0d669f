"""A flow ended from outside its steps (a stop now or RunFinally, its deadline, a newer Replace flow) while
it was paused at a gate has no failed step: its rerun puts the steps that end left unrun back to Pending
and reaches the gate again (docs/API.md, "Approval": "A rerun of the flow reaches it again")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    APPROVE_PREFIX,
    LABEL_CONCURRENCY_KEY,
)
from zen_flow.planner import CreateJob
from zen_flow.planner.interventions import rerun_refusal
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.group import FlowGroup
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
STEPS = [
    job_step("build"),
    manual_step("gate", "build", approval={"required": 2}),
    job_step("ship", "gate"),
    job_step("cleanup", **{"finally": True}),
]


def phases(sim: Simulator) -> dict[str, str]:
    return {s.name: s.phase for s in sim.flow.status.steps}


def paused(policy: dict[str, object] | None = None, name: str = "flow") -> Simulator:
    sim = Simulator(make_flow(STEPS, name=name, execution_policy=policy), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.advance(1)
    sim.reconcile()
    assert sim.phase == "Paused"
    return sim


def settle(sim: Simulator) -> None:
    for _ in range(6):
        sim.reconcile()
        for job in sim.running():
            sim.complete(job)
        sim.advance(1)


def ask(sim: Simulator, steps: str | None = None) -> list[str]:
    """Send a rerun request as `zen-flow retry` would (it removes the stop request); the events said."""
    sim.annotate(ANNOTATION_STOP, None)
    sim.annotate(ANNOTATION_STOPPED_BY, None)
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.annotate(ANNOTATION_RETRIED_BY, "ops")
    sim.annotate(ANNOTATION_RETRY_STEPS, steps)
    events = sim.reconcile().events
    return [f"{e.reason}: {e.message}" for e in events if e.reason in ("FlowRetried", "RetryIgnored")]


@pytest.mark.parametrize("how", ["true", "RunFinally", "deadline"])
def test_a_flow_ended_while_paused_at_a_gate_reruns_and_reaches_the_gate_again(how: str) -> None:
    sim = paused({"activeDeadlineSeconds": 600} if how == "deadline" else None)
    if how == "deadline":
        sim.advance(700)
    else:
        sim.annotate(ANNOTATION_STOP, how)
        sim.annotate(ANNOTATION_STOPPED_BY, "ops")
    settle(sim)
    assert sim.phase == "Failed"
    assert sim.flow.status.step("gate").message.startswith("no decision: ")  # type: ignore[union-attr]
    sim.annotate(ANNOTATION_STOP, None)
    assert rerun_refusal(sim.flow) is None  # what `zen-flow retry` asks first
    said = ask(sim)
    assert said == ["FlowRetried: rerun requested by ops: gate, ship, cleanup"]
    assert sim.phase == "Paused"
    assert phases(sim) == {
        "build": "Succeeded",
        "gate": "PendingApproval",
        "ship": "Pending",
        "cleanup": "Pending",
    }
    assert sim.flow.status.audit.retries[-1].steps == ("gate", "ship", "cleanup")  # type: ignore[union-attr]
    # Reached again, the gate waits for its two approvals with a fresh timeout, then the flow runs on.
    assert sim.flow.status.step("gate").start_time == sim.now  # type: ignore[union-attr]
    sim.annotate(f"{APPROVE_PREFIX}gate", "true-1")
    sim.annotate(f"{ANNOTATION_APPROVED_BY_PREFIX}gate", "alice,bob")
    settle(sim)
    assert sim.phase == "Succeeded"


def test_a_flow_replaced_while_paused_at_a_gate_reruns() -> None:
    labels = {LABEL_CONCURRENCY_KEY: "k"}
    policy = {"concurrencyPolicy": "Replace"}
    group = FlowGroup(T0)
    old = group.add(make_flow(STEPS, name="old", labels=labels, execution_policy=policy, created=T0))
    group.reconcile("old")
    old.complete(old.running()[0])
    group.advance(1)
    group.reconcile("old")
    assert old.phase == "Paused"
    group.add(
        make_flow(
            [job_step("x")],
            name="new",
            labels=labels,
            execution_policy=policy,
            created=T0 + timedelta(seconds=1),
        )
    )
    group.reconcile("new")
    for _ in range(3):
        group.reconcile("old")
        for job in old.running():
            old.complete(job)
        group.advance(1)
    assert old.phase == "Failed"
    assert old.flow.status.step("gate").message.startswith("no decision: replaced")  # type: ignore[union-attr]
    assert rerun_refusal(old.flow) is None


def test_a_rerun_naming_steps_of_a_stopped_paused_flow_must_name_one_its_end_left_unrun() -> None:
    sim = paused()
    sim.annotate(ANNOTATION_STOP, "true")
    settle(sim)
    assert rerun_refusal(sim.flow, ["build"]) == "no failed Job step or timed-out gate to rerun among build"
    said = ask(sim, "gate")
    assert said == ["FlowRetried: rerun requested by ops: gate"]
    assert phases(sim)["gate"] == "PendingApproval"


def test_an_approval_given_after_the_stop_counts_when_the_rerun_reaches_the_gate() -> None:
    # Unlike a timed-out gate's (refused: the timeout was its outcome), the annotations of a gate the flow's
    # end left undecided are decisions on it, as a pre-approval is: the rerun counts them at once.
    sim = paused()
    sim.annotate(ANNOTATION_STOP, "true")
    settle(sim)
    sim.annotate(f"{APPROVE_PREFIX}gate", "true-1")
    sim.annotate(f"{ANNOTATION_APPROVED_BY_PREFIX}gate", "alice,bob")
    assert rerun_refusal(sim.flow) is None
    ask(sim)
    assert phases(sim)["gate"] == "Succeeded"
    sim.reconcile()  # ship starts once the approval is written
    assert [a.step for a in sim.plans[-1].actions if isinstance(a, CreateJob)] == ["ship"]


def test_a_flow_failed_as_invalid_stays_unrerunnable() -> None:
    # Only the ends from outside count: an invalid spec's steps are Skipped "not started: ..." too, and a
    # rerun would fail it again at once.
    sim = Simulator(make_flow([job_step("a", "nope")]), T0)
    sim.reconcile()
    assert sim.phase == "Failed"
    assert rerun_refusal(sim.flow) == "no failed Job step or timed-out gate to rerun"
