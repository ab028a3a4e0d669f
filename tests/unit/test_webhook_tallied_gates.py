"""The webhooks on gates with `approval`: the validating one lets only the named approvers decide, the
mutating one counts each distinct approver in approved-by and records who rejected in rejected-by."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from validation_samples import base_flow, step

from zen_flow.api.jobflow import StepApproval
from zen_flow.planner.approvals import decision
from zen_flow.webhook.patch import apply_patch
from zen_flow.webhook.review import mutate_review, validate_review, validate_review_decisions

UID = "705ab4f5-6393-11e8-b7cc-42010a800003"
APPROVE = "approve.workflow.kube-zen.io/gate"
REJECT = "reject.workflow.kube-zen.io/gate"
APPROVED_BY = "approved-by.workflow.kube-zen.io/gate"
REJECTED_BY = "rejected-by.workflow.kube-zen.io/gate"
MESSAGE = "decision-message.workflow.kube-zen.io/gate"


def review(obj: Any, operation: str, old: Any, user: str, groups: tuple[str, ...] = ()) -> bytes:
    request = {
        "uid": UID,
        "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "JobFlow"},
        "resource": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "resource": "jobflows"},
        "name": "flow",
        "namespace": "team-a",
        "operation": operation,
        "userInfo": {"username": user, "uid": "u-1", "groups": [*groups, "system:authenticated"]},
        "object": obj,
        "oldObject": old,
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


def gated(approval: dict[str, Any] | None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    flow = base_flow()
    if approval is not None:
        step(flow, "gate")["approval"] = approval
    flow["metadata"]["annotations"] = dict(annotations or {})
    return flow


def update(
    flow: dict[str, Any], user: str, new: dict[str, Any], groups: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`user` replaces `flow` by `new`: the mutating webhook's patch applied, as the apiserver does, and
    the validating webhook's answer on the result."""
    answer = mutate_review(review(new, "UPDATE", flow, user, groups))["response"]
    ops = json.loads(base64.b64decode(answer["patch"])) if "patch" in answer else []
    out = apply_patch(new, ops)
    return out, validate_review(review(out, "UPDATE", flow, user, groups))["response"]


def attempt(
    flow: dict[str, Any], user: str, changes: dict[str, str | None], groups: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`user` writes `changes` to the flow's annotations (`update`)."""
    new = copy.deepcopy(flow)
    annotations = new["metadata"].setdefault("annotations", {})
    for key, value in changes.items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    return update(flow, user, new, groups)


def write(
    flow: dict[str, Any], user: str, changes: dict[str, str | None], groups: tuple[str, ...] = ()
) -> dict[str, Any]:
    """`attempt`, which the validating webhook must allow."""
    out, verdict = attempt(flow, user, changes, groups)
    assert verdict["allowed"], verdict
    return out


def recorded(flow: dict[str, Any]) -> tuple[str | None, str | None]:
    annotations = flow["metadata"].get("annotations", {})
    return annotations.get(APPROVED_BY), annotations.get(REJECTED_BY)


# --- the record ----------------------------------------------------------------------------------------


def test_each_distinct_approver_is_appended_once_in_order() -> None:
    flow = gated({"required": 3})
    flow = write(flow, "alice", {APPROVE: "true-1"})
    assert recorded(flow) == ("alice", None)
    flow = write(flow, "bob", {APPROVE: "true-2"})
    assert recorded(flow) == ("alice,bob", None)
    flow = write(flow, "alice", {APPROVE: "true-3"})
    assert recorded(flow) == ("alice,bob", None)


def test_approvals_beyond_the_required_count_are_not_recorded() -> None:
    # Anyone RBAC lets decide may approve a gate that names nobody: the record stops at what decides it.
    flow = gated({"required": 2})
    for i, user in enumerate(["alice", "bob", "carol", "dave"]):
        flow = write(flow, user, {APPROVE: f"true-{i}"})
    assert recorded(flow) == ("alice,bob", None)


def test_the_same_value_written_again_is_no_approval() -> None:
    # `kubectl annotate --overwrite ...=true` twice is no change: the second approver must write a fresh
    # value (zen-flow approve does); the record says only who changed it.
    flow = write(gated({"required": 2}), "alice", {APPROVE: "true"})
    assert recorded(write(flow, "bob", {APPROVE: "true"})) == ("alice", None)


def test_taking_the_approval_back_clears_the_count() -> None:
    flow = write(write(gated({"required": 2}), "alice", {APPROVE: "true-1"}), "bob", {APPROVE: "true-2"})
    assert recorded(write(flow, "bob", {APPROVE: None})) == (None, None)
    assert recorded(write(flow, "bob", {APPROVE: "false"})) == (None, None)


def test_a_rejection_is_recorded_apart_from_the_approvals() -> None:
    flow = write(gated({"required": 2}), "alice", {APPROVE: "true-1"})
    flow = write(flow, "carol", {REJECT: "true"})
    assert recorded(flow) == ("alice", "carol")
    assert recorded(write(flow, "carol", {REJECT: None})) == ("alice", None)


def test_forged_records_are_put_back() -> None:
    flow = write(gated({"required": 2}), "alice", {APPROVE: "true-1"})
    forged = write(flow, "mallory", {APPROVED_BY: "alice,bob,carol", REJECTED_BY: "alice", "team": "x"})
    assert recorded(forged) == ("alice", None)
    # At creation too: a flow cannot be created pre-approved by others.
    created = gated({"required": 2}, {APPROVE: "true", APPROVED_BY: "alice,bob"})
    answer = mutate_review(review(created, "CREATE", None, "mallory"))["response"]
    out = apply_patch(created, json.loads(base64.b64decode(answer["patch"])))
    assert recorded(out) == ("mallory", None)


def test_a_gate_without_approval_keeps_the_last_decider_as_before() -> None:
    flow = write(gated(None), "alice", {APPROVE: "true"})
    flow = write(flow, "bob", {APPROVE: "TRUE"})
    assert recorded(flow) == ("bob", None)
    flow = write(flow, "carol", {REJECT: "true"})
    assert recorded(flow) == ("carol", None)


def test_the_decision_message_goes_with_the_approval_that_wrote_it() -> None:
    flow = write(gated({"required": 2}), "alice", {APPROVE: "true-1", MESSAGE: "tests green"})
    assert flow["metadata"]["annotations"][MESSAGE] == "tests green"
    flow = write(flow, "bob", {APPROVE: "true-2"})
    assert MESSAGE not in flow["metadata"]["annotations"]  # not bob's words


@pytest.mark.parametrize(
    ("user", "changes"),
    [
        ("alice", {APPROVE: "true-9"}),  # counted already: her message would read as bob's
        ("carol", {APPROVE: "true-9"}),  # past the count: not recorded, not audited
        ("carol", {REJECT: "not-yet"}),  # a reject value that rejects nothing
    ],
)
def test_a_message_is_kept_only_from_the_user_the_request_records(
    user: str, changes: dict[str, str | None]
) -> None:
    # The controller audits the message beside the last user recorded in approved-by (or the rejecter).
    flow = write(gated({"required": 2}), "alice", {APPROVE: "true-1"})
    flow = write(flow, "bob", {APPROVE: "true-2"})
    flow = write(flow, user, {**changes, MESSAGE: f"{user}'s words"})
    assert MESSAGE not in flow["metadata"]["annotations"]
    assert recorded(flow)[0] == "alice,bob"


def test_a_rejecters_message_is_kept() -> None:
    flow = write(gated({"required": 2}), "alice", {APPROVE: "true-1"})
    flow = write(flow, "carol", {REJECT: "true", MESSAGE: "not today"})
    assert (recorded(flow)[1], flow["metadata"]["annotations"][MESSAGE]) == ("carol", "not today")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alice", "bob", "carol"]),
            st.sampled_from([APPROVE, REJECT, APPROVED_BY, REJECTED_BY]),
            st.sampled_from(["true", "true-1", "true-2", "false", "alice,bob", None]),
        ),
        max_size=8,
    )
)
def test_the_count_only_ever_holds_users_who_approved_and_mutation_is_idempotent(
    writes: list[tuple[str, str, str | None]],
) -> None:
    flow = gated({"required": 2})
    approvers: set[str] = set()  # everyone whose write set the approve annotation to a new true value
    for user, key, value in writes:
        before = flow["metadata"]["annotations"].get(APPROVE)
        new = copy.deepcopy(flow)
        if value is None:
            new["metadata"]["annotations"].pop(key, None)
        else:
            new["metadata"]["annotations"][key] = value
        answer = mutate_review(review(new, "UPDATE", flow, user))["response"]
        out = apply_patch(new, json.loads(base64.b64decode(answer["patch"])) if "patch" in answer else [])
        again = mutate_review(review(out, "UPDATE", flow, user))["response"]
        assert "patch" not in again  # the apiserver may call it again on its own output
        after = out["metadata"]["annotations"].get(APPROVE)
        if key == APPROVE and value is not None and value.startswith("true") and value != before:
            approvers.add(user)
        if after is None or not after.startswith("true"):
            approvers.clear()
        listed, rejecter = recorded(out)
        assert set((listed or "").split(",")) - {""} <= approvers
        assert len((listed or "").split(",")) == len(set((listed or "").split(",")))
        assert rejecter in (None, user) or rejecter == recorded(flow)[1]
        flow = out


# --- spec edits before the start ------------------------------------------------------------------------


def users(*names: str) -> list[dict[str, str]]:
    return [{"kind": "User", "name": n} for n in names]


TWO_OF = {"approvers": users("alice", "bob"), "required": 2}
OTHERS = {"approvers": users("carol", "dave"), "required": 2}


def edit(flow: dict[str, Any], approval: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """An editor sets the gate's `approval` (spec.steps is editable until the flow starts)."""
    new = copy.deepcopy(flow)
    if approval is None:
        step(new, "gate").pop("approval", None)
    else:
        step(new, "gate")["approval"] = approval
    return update(flow, "editor", new)


@pytest.mark.parametrize(
    ("before", "after", "decider", "decided"),
    [
        (None, TWO_OF, "mallory", {APPROVE: "true"}),  # approved before the gate had approvers
        (TWO_OF, OTHERS, "alice", {APPROVE: "true-1"}),  # alice's 1/2 would count under carol and dave
        (TWO_OF, None, "alice", {APPROVE: "true-1"}),  # a 1/2 approval would open a plain gate
        (TWO_OF, {**TWO_OF, "required": 1}, "alice", {APPROVE: "true-1"}),
        (TWO_OF, OTHERS, "alice", {REJECT: "true"}),
    ],
)
def test_an_approval_cannot_change_under_a_decision_taken_by_the_old_one(
    before: dict[str, Any] | None, after: dict[str, Any] | None, decider: str, decided: dict[str, str]
) -> None:
    flow = write(gated(before), decider, dict(decided))
    _, verdict = edit(flow, after)
    assert verdict["status"]["code"] == 422
    assert verdict["status"]["details"]["causes"][0]["field"] == "spec.steps[2].approval"
    assert "remove it first" in verdict["status"]["message"]


def test_once_the_decision_is_taken_back_the_edit_passes_and_the_old_approver_does_not_count() -> None:
    flow = write(gated(None), "mallory", {APPROVE: "true"})
    flow = write(flow, "ops", {APPROVE: None})
    flow, verdict = edit(flow, TWO_OF)
    assert verdict["allowed"] is True
    flow = write(flow, "alice", {APPROVE: "true-2"})
    assert recorded(flow) == ("alice", None)
    assert decision(flow["metadata"]["annotations"], "gate", StepApproval(required=2)) is None


def test_other_edits_of_a_decided_flow_pass() -> None:
    flow = write(gated(TWO_OF), "alice", {APPROVE: "true-1"})
    new = copy.deepcopy(flow)
    step(new, "gate")["message"] = "check the backup"
    step(new, "c")["dependencies"] = ["gate", "b"]
    assert update(flow, "editor", new)[1]["allowed"] is True


# --- who may decide ------------------------------------------------------------------------------------

NAMED = {"approvers": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "release-managers"}]}


def decide(user: str, groups: tuple[str, ...] = (), key: str = APPROVE, operation: str = "UPDATE") -> Any:
    old = gated(NAMED)
    new = gated(NAMED, {key: "true"})
    return validate_review_decisions(
        review(new, operation, old if operation == "UPDATE" else None, user, groups)
    )


@pytest.mark.parametrize(("user", "groups"), [("alice", ()), ("bob", ("release-managers",))])
@pytest.mark.parametrize("key", [APPROVE, REJECT])
def test_a_named_user_or_a_member_of_a_named_group_may_decide(
    user: str, groups: tuple[str, ...], key: str
) -> None:
    answer, decisions = decide(user, groups, key)
    assert answer["response"]["allowed"] is True
    assert decisions is not None  # RBAC's verb is still asked
    assert decisions.steps == ("gate",)


@pytest.mark.parametrize("key", [APPROVE, REJECT])
@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_anyone_else_is_refused_naming_the_user_the_step_and_who_may(key: str, operation: str) -> None:
    answer, decisions = decide("bob", ("team-a",), key, operation)
    response = answer["response"]
    assert (response["allowed"], response["status"]["code"], decisions) == (False, 403, None)
    message = response["status"]["message"]
    assert message.startswith("user 'bob' may not decide step gate of jobflow ")
    assert "only its approvers may (User alice, Group release-managers;" in message


@pytest.mark.parametrize("taken_back", [None, "false"])
def test_anyone_rbac_lets_approve_may_take_an_approval_back(taken_back: str | None) -> None:
    # A gate that timed out at 1/2 reruns only once its approve annotation is gone: an operator who is
    # not named can clear it (it only lowers the count); RBAC's verb is still asked.
    approved = gated(NAMED, {APPROVE: "true-1", APPROVED_BY: "alice"})
    after = gated(NAMED, {APPROVE: taken_back} if taken_back else {})
    answer, decisions = validate_review_decisions(review(after, "UPDATE", approved, "ops"))
    assert answer["response"]["allowed"] is True
    assert decisions is not None
    assert decisions.steps == ("gate",)


def test_opening_changing_or_reopening_a_decision_still_needs_an_approver() -> None:
    approved = gated(NAMED, {APPROVE: "true-1", APPROVED_BY: "alice"})
    rejected = gated(NAMED, {REJECT: "true", REJECTED_BY: "alice"})
    for old, new in [
        (approved, gated(NAMED, {APPROVE: "true-2"})),  # one more approval
        (rejected, gated(NAMED)),  # a rejection taken back reopens the gate
        (approved, gated(NAMED, {REJECT: "true"})),  # approval taken back, rejection added
    ]:
        answer, _ = validate_review_decisions(review(new, "UPDATE", old, "ops"))
        assert answer["response"]["status"]["code"] == 403


def test_a_request_that_decides_nothing_is_not_checked() -> None:
    approved = gated(NAMED, {APPROVE: "true", APPROVED_BY: "alice"})
    relabelled = copy.deepcopy(approved)
    relabelled["metadata"]["labels"] = {"team": "a"}
    answer, decisions = validate_review_decisions(review(relabelled, "UPDATE", approved, "bob"))
    assert (answer["response"]["allowed"], decisions) == (True, None)


def test_a_gate_that_names_no_approvers_leaves_it_to_rbac() -> None:
    answer, decisions = validate_review_decisions(
        review(gated({"required": 2}, {APPROVE: "true"}), "UPDATE", gated({"required": 2}), "bob")
    )
    assert answer["response"]["allowed"] is True
    assert decisions is not None


def test_a_user_name_with_a_comma_cannot_be_counted_and_is_refused() -> None:
    answer, _ = validate_review_decisions(
        review(gated({"required": 2}, {APPROVE: "true"}), "UPDATE", gated({"required": 2}), "Doe, John")
    )
    assert answer["response"]["allowed"] is False
    assert "has a comma" in answer["response"]["status"]["message"]


def test_a_user_name_with_spaces_around_is_refused_so_webhook_and_controller_count_alike() -> None:
    # The controller reads approved-by exactly as the webhook writes it (core/decision_values.py): a name
    # that reads as another once trimmed would be counted by one and not the other (the gate stalled).
    group = ("release-managers",)
    flow = gated({"approvers": [{"kind": "Group", "name": "release-managers"}], "required": 2})
    flow = write(flow, "alice", {APPROVE: "true-1"}, group)
    _, verdict = attempt(flow, "alice ", {APPROVE: "true-2"}, group)
    assert verdict["status"]["code"] == 403
    assert "spaces around it" in verdict["status"]["message"]
    flow = write(flow, "bob", {APPROVE: "true-3"}, group)
    assert recorded(flow) == ("alice,bob", None)
    assert decision(flow["metadata"]["annotations"], "gate", StepApproval(required=2)) == (
        "Approved",
        "alice, bob",
    )
