"""Planner: Manual approval gates (approve, reject, pre-approve, audit) and suspend/resume."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from zen_flow.api import JobFlow
from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_CORRELATION_ID,
    ANNOTATION_CREATED_BY,
    ANNOTATION_RESUME_REQUESTED_BY,
    ANNOTATION_STOP,
    ANNOTATION_SUSPEND_REQUESTED_BY,
    APPROVE_PREFIX,
    REJECT_PREFIX,
)
from zen_flow.planner import CreateJob
from zen_flow_dev.testing.examples import ORIGINAL_FORMS, load, upstream_params
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def phases(sim: Simulator) -> dict[str, str]:
    return {s.name: s.phase for s in sim.flow.status.steps}


def reasons(sim: Simulator) -> list[str]:
    return [e.reason for e in sim.last.events]


def gated() -> Simulator:
    flow = make_flow(
        [
            job_step("backup"),
            manual_step("approve", "backup", message="Approve the migration?"),
            job_step("migrate", "approve"),
        ]
    )
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    return sim


def test_manual_step_waits_for_approval_and_the_flow_pauses() -> None:
    sim = gated()
    assert phases(sim) == {"backup": "Succeeded", "approve": "PendingApproval", "migrate": "Pending"}
    assert sim.phase == "Paused"
    approve = sim.flow.status.step("approve")
    assert approve is not None
    assert approve.message == "Approve the migration?"
    assert sim.flow.status.message == "waiting for approval of approve"
    conds = {c.type: c for c in sim.flow.status.conditions}
    assert conds["WaitingForApproval"].status == "True"
    assert conds["Ready"].status == "False"
    assert "StepPendingApproval" in reasons(sim)
    assert "FlowPaused" in reasons(sim)
    # Waiting costs nothing: no actions, same status, no wake-up.
    again = sim.reconcile()
    assert again.actions == ()
    assert again.status is sim.flow.status
    assert again.requeue_after is None


def test_approval_annotation_releases_the_gate_and_records_the_user() -> None:
    sim = gated()
    sim.advance(120)
    sim.annotate(APPROVE_PREFIX + "approve", "true")
    sim.annotate(ANNOTATION_APPROVED_BY_PREFIX + "approve", "alice@example.com")
    result = sim.reconcile()
    # migrate starts once the approval is stored (taken back or overruled before, it never ran).
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == []
    approve = sim.flow.status.step("approve")
    assert approve is not None
    assert (approve.phase, approve.approved_by) == ("Succeeded", "alice@example.com")
    assert "StepApproved" in reasons(sim)
    result = sim.reconcile()  # the plan its status write brings
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["migrate"]
    assert sim.phase == "Running"
    audit = sim.flow.status.audit
    assert audit is not None
    assert len(audit.approvals) == 1
    record = audit.approvals[0]
    assert (record.step, record.decision, record.user, record.time) == (
        "approve",
        "Approved",
        "alice@example.com",
        T0.replace(minute=2),
    )
    sim.reconcile()
    assert len(sim.flow.status.audit.approvals) == 1  # type: ignore[union-attr]


def test_rejection_fails_the_step_without_retry() -> None:
    sim = gated()
    sim.annotate(REJECT_PREFIX + "approve", "true")
    sim.annotate(ANNOTATION_APPROVED_BY_PREFIX + "approve", "bob")
    result = sim.reconcile()
    assert result.actions == ()
    assert phases(sim) == {"backup": "Succeeded", "approve": "Failed", "migrate": "Skipped"}
    approve = sim.flow.status.step("approve")
    assert approve is not None
    assert approve.message == "rejected by bob"
    assert sim.phase == "Failed"
    assert "StepRejected" in reasons(sim)
    assert sim.flow.status.audit.approvals[0].decision == "Rejected"  # type: ignore[union-attr]


def test_pre_approval_passes_the_gate_directly() -> None:
    flow = make_flow(
        [job_step("backup"), manual_step("approve", "backup"), job_step("migrate", "approve")],
        annotations={APPROVE_PREFIX + "approve": "True"},
    )
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert phases(sim)["approve"] == "Succeeded"
    assert "StepApproved" in reasons(sim)
    result = sim.reconcile()  # once the approval is stored
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["migrate"]


def test_approval_value_must_be_true() -> None:
    sim = gated()
    sim.annotate(APPROVE_PREFIX + "approve", "yes")
    sim.reconcile()
    assert phases(sim)["approve"] == "PendingApproval"


def test_other_branches_keep_running_while_a_gate_waits() -> None:
    flow = make_flow([manual_step("gate"), job_step("side")])
    sim = Simulator(flow, T0)
    sim.reconcile()
    assert phases(sim) == {"gate": "PendingApproval", "side": "Running"}
    assert sim.phase == "Running"  # Paused only when nothing runs
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Paused"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(ORIGINAL_FORMS / "typeless-gate.yaml", id="original-forms/typeless-gate.yaml"),
        *upstream_params("manual-approval-flow.yaml"),
    ],
)
def test_the_original_gate_forms_pause_and_run_once_approved(path: Path) -> None:
    doc = load(path)
    doc["metadata"].update(uid="u-1", generation=1)
    sim = Simulator(JobFlow.model_validate(doc), T0)
    for _ in range(10):  # bounded: every round starts or finishes a step
        sim.reconcile()
        for name in sim.running():
            sim.complete(name)
    assert sim.phase == "Paused"
    assert "PendingApproval" in {s.phase for s in sim.flow.status.steps}

    def approve(s: Simulator) -> bool:
        pending = [st.name for st in s.flow.status.steps if st.phase == "PendingApproval"]
        for name in pending:
            s.annotate(APPROVE_PREFIX + name, "true")
        return bool(pending)

    run(sim, lambda _: "complete", on_idle=approve)
    assert sim.phase == "Succeeded"


# --- suspend --------------------------------------------------------------------------------------------


def test_suspend_starts_nothing_new_but_lets_running_jobs_finish() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    sim.set_suspend(True)
    result = sim.reconcile()
    assert result.actions == ()
    assert sim.phase == "Suspended"
    assert "FlowSuspended" in reasons(sim)
    assert sim.flow.status.observed_generation == 2
    conds = {c.type: c for c in sim.flow.status.conditions}
    assert conds["Suspended"].status == "True"
    sim.complete(sim.running()[0])
    result = sim.reconcile()
    assert result.actions == ()
    assert phases(sim) == {"a": "Succeeded", "b": "Pending"}
    assert sim.phase == "Suspended"
    sim.set_suspend(False)
    result = sim.reconcile()
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["b"]
    assert sim.phase == "Running"
    assert "FlowResumed" in reasons(sim)


def test_the_suspend_and_resume_events_name_who_asked() -> None:
    # `kubectl describe jf` shows who suspended the flow and who resumed it (the webhook's record).
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    sim.annotate(ANNOTATION_SUSPEND_REQUESTED_BY, "bob")
    sim.set_suspend(True)
    sim.reconcile()
    [said] = [e.message for e in sim.last.events if e.reason == "FlowSuspended"]
    assert said.endswith("(suspended by bob)"), said
    sim.annotate(ANNOTATION_RESUME_REQUESTED_BY, "carol")
    sim.set_suspend(False)
    sim.reconcile()
    assert [e.message for e in sim.last.events if e.reason == "FlowResumed"] == ["flow resumed by carol"]


def test_a_suspension_nobody_is_recorded_for_says_no_name() -> None:
    # Flows stored before the webhook recorded it (or without the webhook) say what they said before.
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    sim.set_suspend(True)
    sim.reconcile()
    [said] = [e.message for e in sim.last.events if e.reason == "FlowSuspended"]
    assert "suspended by" not in said
    sim.set_suspend(False)
    sim.reconcile()
    assert [e.message for e in sim.last.events if e.reason == "FlowResumed"] == ["flow resumed"]


@pytest.mark.parametrize("end", ["last job", "stop", "gate timeout"])
def test_a_suspended_flow_that_ends_while_suspended_does_not_say_it_resumed(end: str) -> None:
    # Only a resume (spec.suspend set back to false) is one: a flow that ends with spec.suspend still
    # true (its last Job finished, stopped, a gate's timeout) says how it ended, never "flow resumed".
    sim = Simulator(make_flow([job_step("a"), manual_step("gate", timeoutSeconds=60)]), T0)
    sim.reconcile()
    sim.set_suspend(True)
    sim.reconcile()
    assert sim.phase == "Suspended"
    if end == "last job":
        sim.annotate(APPROVE_PREFIX + "gate", "true")
        sim.complete(sim.running()[0])
    elif end == "stop":
        sim.annotate(ANNOTATION_STOP, "true")
    else:
        sim.complete(sim.running()[0])
        sim.advance(61)
    sim.reconcile()
    assert sim.terminal
    assert "FlowResumed" not in reasons(sim)
    assert ("FlowSucceeded" if end == "last job" else "FlowFailed") in reasons(sim)


def test_a_flow_created_suspended_starts_nothing() -> None:
    sim = Simulator(make_flow([job_step("a")], suspend=True), T0)
    result = sim.reconcile()
    assert result.actions == ()
    assert sim.phase == "Suspended"
    assert sim.flow.status.start_time is None
    sim.set_suspend(False)
    sim.reconcile()
    assert sim.phase == "Running"
    assert "FlowStarted" in reasons(sim)


# --- who started the flow -------------------------------------------------------------------------------


def test_the_creator_and_correlation_id_are_recorded_once_in_the_audit() -> None:
    flow = make_flow([job_step("a"), job_step("b", "a")])
    annotations = {
        ANNOTATION_CREATED_BY: "system:serviceaccount:ci:deployer",
        ANNOTATION_CORRELATION_ID: "pipeline-4711",
    }
    flow = flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"annotations": annotations})})
    sim = Simulator(flow, T0)
    sim.reconcile()
    audit = sim.flow.status.audit
    assert audit is not None
    assert audit.initiated_by is not None
    assert (audit.initiated_by.user, audit.initiated_by.type) == (
        "system:serviceaccount:ci:deployer",
        "ServiceAccount",
    )
    assert audit.correlation_id == "pipeline-4711"
    # An edited annotation does not rewrite history.
    sim.annotate(ANNOTATION_CREATED_BY, "mallory")
    sim.annotate(ANNOTATION_CORRELATION_ID, "other")
    sim.complete(sim.running()[0])
    sim.reconcile()
    audit = sim.flow.status.audit
    assert audit is not None
    assert audit.initiated_by is not None
    assert (audit.initiated_by.user, audit.correlation_id) == (
        "system:serviceaccount:ci:deployer",
        "pipeline-4711",
    )


def test_a_person_is_recorded_as_a_user_and_no_webhook_means_no_initiator() -> None:
    flow = make_flow([job_step("a")])
    with_user = flow.model_copy(
        update={
            "metadata": flow.metadata.model_copy(update={"annotations": {ANNOTATION_CREATED_BY: "alice"}})
        }
    )
    sim = Simulator(with_user, T0)
    sim.reconcile()
    assert sim.flow.status.audit is not None
    assert sim.flow.status.audit.initiated_by is not None
    assert sim.flow.status.audit.initiated_by.type == "User"
    bare = Simulator(flow, T0)
    bare.reconcile()
    assert bare.flow.status.audit is None


# --- a gate's timeoutSeconds: how long it waits for a decision ---------------------------------------------


def timed_gate(timeout: int) -> Simulator:
    flow = make_flow(
        [job_step("build"), manual_step("gate", "build", timeoutSeconds=timeout), job_step("ship", "gate")]
    )
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.advance(10)
    sim.complete(sim.running()[0])
    sim.reconcile()  # the gate is reached at T0+10
    return sim


def test_a_gate_nobody_decides_is_rejected_when_its_timeout_passes() -> None:
    sim = timed_gate(60)
    assert phases(sim)["gate"] == "PendingApproval"
    assert sim.last.requeue_after == 60  # the planner wakes itself up to end the wait
    sim.advance(59)
    sim.reconcile()
    assert phases(sim)["gate"] == "PendingApproval"
    sim.advance(1)
    sim.reconcile()
    assert phases(sim) == {"build": "Succeeded", "gate": "Failed", "ship": "Skipped"}
    gate = sim.flow.status.step("gate")
    assert gate is not None
    assert gate.message == "rejected: no decision within 60s (timeoutSeconds)"
    assert "StepRejected" in reasons(sim)
    assert sim.phase == "Failed"
    failed = next(c for c in sim.flow.status.conditions if c.type == "Failed")
    assert failed.message == "step gate failed: rejected: no decision within 60s (timeoutSeconds)"


def test_a_decision_before_the_timeout_wins() -> None:
    sim = timed_gate(60)
    sim.advance(30)
    sim.annotate(f"{APPROVE_PREFIX}gate", "true")
    sim.reconcile()
    assert phases(sim)["gate"] == "Succeeded"
    sim.advance(600)
    sim.reconcile()
    assert phases(sim)["gate"] == "Succeeded"
    assert phases(sim)["ship"] == "Running"


def test_a_decision_seen_only_after_the_timeout_still_counts() -> None:
    # Given in time, perhaps, and seen late (a restart, a backlog): nothing tells when it was given.
    sim = timed_gate(60)
    sim.advance(90)
    sim.annotate(f"{APPROVE_PREFIX}gate", "true")
    sim.reconcile()
    sim.reconcile()
    assert phases(sim) == {"build": "Succeeded", "gate": "Succeeded", "ship": "Running"}


def test_the_deciders_message_is_kept_in_the_audit() -> None:
    sim = gated()
    sim.annotate("decision-message.workflow.kube-zen.io/approve", "backup verified")
    sim.annotate(f"{APPROVE_PREFIX}approve", "true")
    sim.reconcile()
    audit = sim.flow.status.audit
    assert audit is not None
    assert [(a.step, a.decision, a.message) for a in audit.approvals] == [
        ("approve", "Approved", "backup verified")
    ]


@pytest.mark.parametrize(
    ("end", "message"),
    [
        ("deadline", "no decision: flow deadline exceeded"),
        ("stop", "no decision: stopped by alice"),
        ("failure", "no decision: the flow failed"),
    ],
)
def test_a_gate_the_flow_ends_before_anyone_decides_says_so_and_reruns(end: str, message: str) -> None:
    # The gate was reached (it has a startTime): "not started" would be false. Skipped, not Failed: a
    # rerun of the flow reaches the gate again (a failed gate would be a rejection, which stays).
    steps = [manual_step("gate"), job_step("ship", "gate"), job_step("side")]
    sim = Simulator(make_flow(steps, execution_policy={"activeDeadlineSeconds": 100}), T0)
    sim.reconcile()
    reached = sim.flow.status.step("gate")
    assert reached is not None
    assert (reached.phase, reached.start_time) == ("PendingApproval", T0)
    sim.advance(50)
    if end == "deadline":
        sim.advance(50)
    elif end == "stop":
        sim.annotate("workflow.kube-zen.io/stop", "true")
        sim.annotate("workflow.kube-zen.io/stopped-by", "alice")
    else:
        sim.fail(sim.running()[0])
    sim.reconcile()
    gate = sim.flow.status.step("gate")
    assert gate is not None
    assert (gate.phase, gate.message, gate.start_time) == ("Skipped", message, T0)
    assert phases(sim)["ship"] == "Skipped"
    assert sim.phase == "Failed"
    sim.annotate("workflow.kube-zen.io/stop", None)
    sim.annotate("workflow.kube-zen.io/retry", "again")
    sim.reconcile()
    assert phases(sim)["gate"] == "PendingApproval"
