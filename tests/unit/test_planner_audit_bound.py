"""The audit stays within the admission size bound however often a flow is rerun: each gate keeps the
entries of as many decisions as one reach of it can write (the newest: what an earlier reach audited goes
first), and status.audit.retries keeps the newest request and as many earlier ones as fit in
AUDIT_RETRIES_BYTES, which validation/size.py counts."""

from __future__ import annotations

import json

from test_planner_tallied_gates import T0, approve, write

from zen_flow.api.constants import (
    ANNOTATION_DECISION_MESSAGE_PREFIX,
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    APPROVE_PREFIX,
    AUDIT_RETRIES_BYTES,
)
from zen_flow.api.jobflow import JobFlow
from zen_flow.validation.size import status_bound
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

APPROVAL = {"approvers": [{"kind": "User", "name": u} for u in ("alice", "bob", "carol")], "required": 3}


def rerun(sim: Simulator, rid: str) -> None:
    sim.annotate(ANNOTATION_RETRY, rid)
    sim.annotate(ANNOTATION_RETRIED_BY, "ops")
    sim.advance(1)


def bound(flow: JobFlow) -> int:
    return status_bound(flow.spec.model_dump(by_alias=True, exclude_none=True, mode="json"))


def size(sim: Simulator) -> int:
    return len(json.dumps(sim.flow.status.to_wire()))


def test_a_gate_reached_by_rerun_after_rerun_keeps_the_audit_of_one_reach() -> None:
    # x fails each run while the gate waits with two approvals of three; each rerun reaches the gate again
    # and audits alice and bob again. `opened` was approved in the first run: its entry stays.
    steps = [manual_step("gate", approval=APPROVAL), manual_step("opened"), job_step("x")]
    sim = Simulator(make_flow(steps), T0)
    sim.annotate(APPROVE_PREFIX + "opened", "true")
    sim.reconcile()
    approve(sim, "alice")
    approve(sim, "bob")
    for run in range(6):
        sim.advance(1)
        sim.reconcile()
        sim.fail(sim.running()[0])
        sim.advance(1)
        sim.reconcile()
        assert sim.phase == "Failed"
        rerun(sim, f"r{run}")
    audit = sim.flow.status.audit
    assert audit is not None
    gate = [a for a in audit.approvals if a.step == "gate"]
    assert len(gate) == 5  # 2 * required - 1: the most one reach writes
    assert [a.user for a in gate[-2:]] == ["alice", "bob"]  # the latest reach, whole
    assert gate[-1].time == max(a.time for a in gate if a.time is not None)
    assert [a.step for a in audit.approvals if a.step != "gate"] == ["opened"]
    assert size(sim) <= bound(sim.flow)


def test_rerun_requests_without_end_keep_the_status_within_its_bound() -> None:
    # A step that fails every time, rerun 300 times: each request is audited with the step it reran.
    sim = Simulator(make_flow([job_step("a-step-with-a-long-name-to-fill-the-audit-of-its-reruns")]), T0)
    for run in range(300):
        sim.reconcile()
        sim.fail(sim.running()[0])
        sim.advance(1)
        sim.reconcile()
        rerun(sim, f"request-{run:04}")
    sim.reconcile()
    audit = sim.flow.status.audit
    assert audit is not None
    assert audit.retries[-1].id == "request-0299"  # the newest is always kept, and honoured once
    earlier = [r.model_dump(mode="json", exclude_none=True) for r in audit.retries[:-1]]
    assert sum(len(json.dumps(e, separators=(",", ":"))) + 1 for e in earlier) <= AUDIT_RETRIES_BYTES
    assert 100 < len(audit.retries) < 300
    assert size(sim) <= bound(sim.flow)
    again = sim.reconcile()
    assert not any(e.reason in ("FlowRetried", "RetryIgnored") for e in again.events)


def test_a_request_id_longer_than_the_status_holds_is_honoured_once_under_a_shortened_id() -> None:
    # The annotation's value has no length limit, status.audit.retries[].id holds 253 characters: stored
    # whole, the status write recording the rerun would be refused, and the request tried again for ever.
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    long_id = "r" * 300
    rerun(sim, long_id)
    sim.reconcile()
    assert sim.phase == "Running"
    audit = sim.flow.status.audit
    assert audit is not None
    (recorded,) = audit.retries
    assert len(recorded.id) == 253
    assert recorded.id.startswith("r" * 200)
    sim.fail(sim.running()[0])
    sim.advance(1)
    sim.reconcile()
    assert sim.phase == "Failed"  # the same request is not honoured a second time
    rerun(sim, long_id[:-1] + "s")  # another long id: another request, another record
    sim.reconcile()
    assert sim.phase == "Running"
    assert len({r.id for r in sim.flow.status.audit.retries}) == 2


def test_plain_gates_approved_with_long_messages_stay_within_the_bound() -> None:
    # Each plain gate's audit entry keeps its decision message (cut at 1 KiB) and the approver's name:
    # admission must count them, or a flow it admitted could write a status larger than it allowed for.
    gates = [f"gate-{i:03}" for i in range(100)]
    sim = Simulator(make_flow([manual_step(g) for g in gates]), T0)
    sim.reconcile()
    for gate in gates:
        changes = {APPROVE_PREFIX + gate: "true", ANNOTATION_DECISION_MESSAGE_PREFIX + gate: "why " * 400}
        write(sim, "u" * 250, changes)
        sim.advance(1)
        sim.reconcile()
    assert sim.phase == "Succeeded"
    audit = sim.flow.status.audit
    assert audit is not None
    assert all(a.message is not None and len(a.message) == 1024 for a in audit.approvals)
    assert size(sim) <= bound(sim.flow)
