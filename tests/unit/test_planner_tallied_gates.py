"""Planner: Manual gates with `approval` (named approvers, several required approvals).

The annotations come from the mutating webhook's own rules (`desired_audit`), as a user's write would
leave them on the stored flow, so the planner is tested against the record the webhook really writes.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any

from zen_flow.api.constants import (
    ANNOTATION_APPROVED_BY_PREFIX,
    ANNOTATION_DECISION_MESSAGE_PREFIX,
    APPROVE_PREFIX,
    REJECT_PREFIX,
)
from zen_flow.planner import CreateJob
from zen_flow.planner.interventions import rerun_refusal
from zen_flow.validation.size import status_bound
from zen_flow.webhook.mutation import desired_audit
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
_fresh = itertools.count(1)


def phases(sim: Simulator) -> dict[str, str]:
    return {s.name: s.phase for s in sim.flow.status.steps}


def write(sim: Simulator, user: str, changes: dict[str, str | None]) -> None:
    """`user` writes `changes` to the flow's annotations through the mutating webhook."""
    old = dict(sim.flow.metadata.annotations)
    new = {k: v for k, v in {**old, **changes}.items() if v is not None}
    spec = sim.flow.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    want = desired_audit(
        "UPDATE", {"metadata": {"annotations": new}, "spec": spec}, {"metadata": {"annotations": old}}, user
    )
    for key, value in {**changes, **want}.items():
        sim.annotate(key, value)


def approve(sim: Simulator, user: str, step: str = "gate", message: str | None = None) -> None:
    changes: dict[str, str | None] = {APPROVE_PREFIX + step: f"true-{next(_fresh)}"}  # as zen-flow approve
    if message:
        changes[ANNOTATION_DECISION_MESSAGE_PREFIX + step] = message
    write(sim, user, changes)


def reject(sim: Simulator, user: str, step: str = "gate") -> None:
    write(sim, user, {REJECT_PREFIX + step: "true"})


def tallied(approval: dict[str, Any], annotations: dict[str, str] | None = None, **gate: Any) -> Simulator:
    """build, then a gate with `approval`, then ship; the gate reached."""
    steps = [
        job_step("build"),
        manual_step("gate", "build", approval=approval, **gate),
        job_step("ship", "gate"),
    ]
    sim = Simulator(make_flow(steps, name="release", annotations=annotations), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    return sim


def audited(sim: Simulator) -> list[tuple[str, str | None]]:
    audit = sim.flow.status.audit
    return [(a.decision, a.user) for a in audit.approvals] if audit is not None else []


def gate_message(sim: Simulator) -> str | None:
    gate = sim.flow.status.step("gate")
    return gate.message if gate is not None else None


def test_one_approval_of_two_waits_and_says_who_and_how_many() -> None:
    sim = tallied({"required": 2})
    assert gate_message(sim) == "approvals 0/2; waiting for 2 more"
    approve(sim, "alice")
    result = sim.reconcile()
    assert not [a for a in result.actions if isinstance(a, CreateJob)]
    assert (sim.phase, phases(sim)["gate"]) == ("Paused", "PendingApproval")
    assert gate_message(sim) == "approvals 1/2 (alice); waiting for 1 more"
    assert (
        sim.flow.status.message == "waiting for approval of gate: approvals 1/2 (alice); waiting for 1 more"
    )
    gate = sim.flow.status.step("gate")
    assert gate is not None
    assert gate.approved_by == "alice"
    assert audited(sim) == [("Approved", "alice")]
    # Nothing new: nothing written again, nothing audited twice.
    assert sim.reconcile().status is sim.flow.status


def test_two_distinct_approvals_open_the_gate() -> None:
    sim = tallied({"required": 2})
    approve(sim, "alice", message="tests green")
    sim.reconcile()
    approve(sim, "bob", message="looked at the diff")
    sim.reconcile()
    assert [a.step for a in sim.reconcile().actions if isinstance(a, CreateJob)] == ["ship"]
    gate = sim.flow.status.step("gate")
    assert gate is not None
    assert (gate.phase, gate.approved_by, gate.message) == (
        "Succeeded",
        "alice, bob",
        "approved by alice, bob",
    )
    audit = sim.flow.status.audit
    assert audit is not None
    assert [(a.decision, a.user, a.message) for a in audit.approvals] == [
        ("Approved", "alice", "tests green"),
        ("Approved", "bob", "looked at the diff"),
    ]


def test_the_same_user_approving_twice_counts_once() -> None:
    sim = tallied({"required": 2})
    approve(sim, "alice")
    sim.reconcile()
    approve(sim, "alice")
    sim.reconcile()
    assert phases(sim)["gate"] == "PendingApproval"
    assert gate_message(sim) == "approvals 1/2 (alice); waiting for 1 more"
    assert audited(sim) == [("Approved", "alice")]


def test_one_rejection_rejects_the_gate_whatever_the_approvals() -> None:
    sim = tallied({"required": 2})
    approve(sim, "alice")
    sim.reconcile()
    reject(sim, "carol")
    sim.reconcile()
    assert (sim.phase, phases(sim)) == ("Failed", {"build": "Succeeded", "gate": "Failed", "ship": "Skipped"})
    gate = sim.flow.status.step("gate")
    assert gate is not None
    assert (gate.message, gate.approved_by) == ("rejected by carol", "carol")
    assert audited(sim) == [("Approved", "alice"), ("Rejected", "carol")]


def test_approvals_given_before_the_gate_is_reached_count_when_it_is() -> None:
    steps = [
        job_step("build"),
        manual_step("gate", "build", approval={"required": 2}),
        job_step("ship", "gate"),
    ]
    sim = Simulator(make_flow(steps, name="release"), T0)
    sim.reconcile()
    approve(sim, "alice")
    approve(sim, "bob")
    sim.reconcile()
    assert phases(sim)["gate"] == "Pending"  # decided only once reached
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert [a.step for a in sim.reconcile().actions if isinstance(a, CreateJob)] == ["ship"]
    assert audited(sim) == [("Approved", "alice"), ("Approved", "bob")]


def test_an_approval_taken_back_is_no_longer_counted() -> None:
    sim = tallied({"required": 2})
    approve(sim, "alice")
    sim.reconcile()
    write(sim, "alice", {APPROVE_PREFIX + "gate": None})
    sim.reconcile()
    assert gate_message(sim) == "approvals 0/2; waiting for 2 more"
    approve(sim, "bob")
    sim.reconcile()
    assert phases(sim)["gate"] == "PendingApproval"  # alice's approval went with the annotation
    assert gate_message(sim) == "approvals 1/2 (bob); waiting for 1 more"


def test_a_gate_one_approval_opens_keeps_its_message_until_approved() -> None:
    sim = tallied({"approvers": [{"kind": "User", "name": "alice"}]}, message="Check the backup")
    assert gate_message(sim) == "Check the backup"
    assert sim.flow.status.message == "waiting for approval of gate"
    approve(sim, "alice")
    sim.reconcile()
    assert phases(sim)["gate"] == "Succeeded"
    assert gate_message(sim) == "approved by alice"


def test_a_custom_message_follows_the_count() -> None:
    sim = tallied({"required": 3}, message="Check the backup")
    approve(sim, "alice")
    sim.reconcile()
    assert gate_message(sim) == "approvals 1/3 (alice); waiting for 2 more: Check the backup"


def test_several_waiting_gates_each_show_their_count_in_the_flow_message() -> None:
    steps = [
        manual_step("gate", approval={"required": 2}),
        manual_step("other"),
    ]
    sim = Simulator(make_flow(steps, name="release"), T0)
    sim.reconcile()
    approve(sim, "alice")
    sim.reconcile()
    assert sim.flow.status.message == "waiting for approval of gate (approvals 1/2), other"


def test_a_timed_out_gate_with_partial_approvals_reruns_once_its_approvals_are_taken_back() -> None:
    sim = tallied({"required": 2}, timeoutSeconds=60)
    approve(sim, "alice")
    sim.reconcile()
    sim.advance(60)
    sim.reconcile()
    assert (sim.phase, phases(sim)["gate"]) == ("Failed", "Failed")
    # Its approve annotation would count at once in the rerun: the rerun waits for it to go.
    why = rerun_refusal(sim.flow)
    assert why is not None
    assert "approve.workflow.kube-zen.io/gate" in why
    write(sim, "alice", {APPROVE_PREFIX + "gate": None})
    assert rerun_refusal(sim.flow) is None
    write(sim, "alice", {"workflow.kube-zen.io/retry": "r1"})
    sim.reconcile()
    assert (sim.phase, phases(sim)["gate"]) == ("Paused", "PendingApproval")
    assert gate_message(sim) == "approvals 0/2; waiting for 2 more"
    approve(sim, "alice")
    approve(sim, "bob")
    sim.reconcile()
    assert phases(sim)["gate"] == "Succeeded"
    # The first run's approval and the rerun's are each in the audit.
    assert audited(sim) == [("Approved", "alice"), ("Approved", "alice"), ("Approved", "bob")]


def test_without_the_webhook_the_annotation_is_one_unrecorded_approval() -> None:
    """Nothing records users without the webhook: a gate one approval opens still opens, one that needs
    more waits (docs/API.md: required > 1 needs the webhook)."""
    one = tallied({"approvers": [{"kind": "User", "name": "alice"}]})
    one.annotate(APPROVE_PREFIX + "gate", "true")
    one.reconcile()
    assert phases(one)["gate"] == "Succeeded"
    two = tallied({"required": 2})
    two.annotate(APPROVE_PREFIX + "gate", "true")
    two.reconcile()
    assert phases(two)["gate"] == "PendingApproval"
    assert gate_message(two) == "approvals 1/2; waiting for 1 more"


def test_without_the_webhook_a_hand_written_record_is_counted_as_written() -> None:
    """The controller cannot tell who wrote an annotation: without the mutating webhook, one user writing
    the record opens a gate needing three, and the audit names them all (docs/API.md, SECURITY.md say so:
    the record is trustworthy only where the webhook writes it)."""
    sim = tallied(
        {"approvers": [{"kind": "User", "name": u} for u in ("alice", "bob", "carol")], "required": 3}
    )
    sim.annotate(APPROVE_PREFIX + "gate", "true-1")
    sim.annotate(ANNOTATION_APPROVED_BY_PREFIX + "gate", "alice,bob,carol")
    sim.reconcile()
    assert phases(sim)["gate"] == "Succeeded"
    assert audited(sim) == [("Approved", "alice"), ("Approved", "bob"), ("Approved", "carol")]


# --- the audit stays bounded ----------------------------------------------------------------------------


def test_approving_and_taking_back_over_and_over_audits_the_user_once() -> None:
    sim = tallied(
        {"approvers": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"}], "required": 2}
    )
    for _ in range(50):
        approve(sim, "alice", message="x" * 1000)
        sim.reconcile()
        write(sim, "alice", {APPROVE_PREFIX + "gate": None})
        sim.reconcile()
    assert audited(sim) == [("Approved", "alice")]
    approve(sim, "alice")
    approve(sim, "bob")
    sim.reconcile()
    assert phases(sim)["gate"] == "Succeeded"
    assert audited(sim) == [("Approved", "alice"), ("Approved", "bob")]


def cycle_then_open(sim: Simulator, cycling: list[str], opening: list[str]) -> None:
    """Each of `cycling` approves (with a long message) and takes it back; then `opening` approve."""
    for user in cycling:
        approve(sim, user, message=f"{user}: " + "x" * 1100)
        sim.reconcile()
        write(sim, user, {APPROVE_PREFIX + "gate": None})
        sim.reconcile()
    for user in opening:
        approve(sim, user, message=f"{user}: " + "y" * 1100)
        sim.reconcile()


def test_approvals_taken_back_are_audited_at_most_required_minus_one_and_those_that_open_it_always() -> None:
    sim = tallied({"required": 2})
    cycle_then_open(sim, ["alice", "bob", "carol"], ["dave", "erin"])
    assert phases(sim)["gate"] == "Succeeded"
    assert audited(sim) == [("Approved", "alice"), ("Approved", "dave"), ("Approved", "erin")]


def test_the_admission_size_bound_covers_what_a_tallied_gate_writes() -> None:
    """validation/size.py allows each gate room for its status entry and its decisions: the most a gate
    needing 3 approvals can write, long messages and approvals taken back included, fits in it."""
    sim = tallied({"required": 3})
    cycle_then_open(sim, [f"user-{i}" for i in range(10)], ["x-1", "x-2", "x-3"])
    assert phases(sim)["gate"] == "Succeeded"
    gate = sim.flow.status.step("gate")
    audit = sim.flow.status.audit
    assert gate is not None
    assert audit is not None
    written = len(json.dumps(gate.to_wire())) + sum(
        len(json.dumps(a.model_dump(by_alias=True, mode="json"))) for a in audit.approvals
    )
    spec = sim.flow.spec.model_dump(by_alias=True, exclude_none=True, mode="json")
    without = {**spec, "steps": [s for s in spec["steps"] if s["name"] != "gate"]}
    assert written <= status_bound(spec) - status_bound(without)


def test_the_message_of_an_approver_counted_already_is_nobody_elses() -> None:
    sim = tallied({"required": 3})
    approve(sim, "alice")
    sim.reconcile()
    approve(sim, "bob")
    approve(sim, "alice", message="alice again: ping me")  # she counts already; bob is not audited yet
    sim.reconcile()
    audit = sim.flow.status.audit
    assert audit is not None
    assert [(a.user, a.message) for a in audit.approvals] == [("alice", None), ("bob", None)]


# --- gates without `approval` behave as before ---------------------------------------------------------


def test_a_gate_without_approval_is_decided_by_true_only() -> None:
    sim = Simulator(make_flow([manual_step("gate"), job_step("ship", "gate")], name="f"), T0)
    sim.reconcile()
    sim.annotate(APPROVE_PREFIX + "gate", "true-by-mistake")
    sim.reconcile()
    assert phases(sim)["gate"] == "PendingApproval"
    sim.annotate(APPROVE_PREFIX + "gate", "TRUE")
    sim.reconcile()
    assert phases(sim)["gate"] == "Succeeded"


def test_a_message_that_looks_like_a_count_is_never_read_as_one() -> None:
    looks = "approvals 1/2 (CAB); waiting for 1 more: file a ticket"
    steps = [manual_step("gate", message=looks), manual_step("one", approval={"required": 1}, message=looks)]
    sim = Simulator(make_flow(steps, name="f"), T0)
    sim.reconcile()
    assert gate_message(sim) == looks
    assert sim.flow.status.message == "waiting for approval of gate, one"
