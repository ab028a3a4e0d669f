"""The webhooks on values supplied at a Manual gate: setting, changing or removing them takes the authority
of deciding the gate (RBAC's approve is asked, the gate's approvers are enforced); the mutating webhook
records who set them (values-by), unforgeably; an approval needing a value has one; a decided gate's
values stay as the status recorded them."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

from validation_samples import base_flow, step

from zen_flow.webhook.patch import apply_patch
from zen_flow.webhook.review import mutate_review, validate_review_decisions

UID = "705ab4f5-6393-11e8-b7cc-42010a800009"
VALUES = "values.workflow.kube-zen.io/gate"
VALUES_BY = "values-by.workflow.kube-zen.io/gate"
APPROVE = "approve.workflow.kube-zen.io/gate"


def review(obj: Any, operation: str, old: Any, user: str, groups: tuple[str, ...] = ()) -> bytes:
    request = {
        "uid": UID,
        "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "JobFlow"},
        "resource": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "resource": "jobflows"},
        "name": "rel",
        "namespace": "team-a",
        "operation": operation,
        "userInfo": {"username": user, "uid": "u-1", "groups": [*groups, "system:authenticated"]},
        "object": obj,
        "oldObject": old,
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


def gated(approval: dict[str, Any] | None = None, status: dict[str, Any] | None = None) -> dict[str, Any]:
    flow = base_flow()
    flow["metadata"]["name"] = "rel"
    gate = step(flow, "gate")
    gate["outputs"] = {
        "parameters": [{"name": "env", "valueFrom": {"supplied": {"enum": ["staging", "prod"]}}}]
    }
    if approval is not None:
        gate["approval"] = approval
    flow["metadata"]["annotations"] = {}
    if status is not None:
        flow["status"] = status
    return flow


def write(
    flow: dict[str, Any], user: str, changes: dict[str, str | None], groups: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...] | None]:
    """`user` writes `changes` to the annotations: the mutating webhook's patch applied as the apiserver
    does, then the validating webhook's answer and the decisions it leaves to RBAC's question."""
    new = copy.deepcopy(flow)
    annotations = new["metadata"].setdefault("annotations", {})
    for key, value in changes.items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    answer = mutate_review(review(new, "UPDATE", flow, user, groups))["response"]
    out = apply_patch(new, json.loads(base64.b64decode(answer["patch"])) if "patch" in answer else [])
    verdict, decisions = validate_review_decisions(review(out, "UPDATE", flow, user, groups))
    return out, verdict["response"], decisions.steps if decisions is not None else None


def test_values_alone_are_a_decision_rbac_is_asked_about() -> None:
    out, verdict, asked = write(gated(), "alice", {VALUES: '{"env":"prod"}'})
    assert verdict["allowed"], verdict
    assert asked == ("gate",)  # the server asks the apiserver whether alice may `approve` the flow
    assert out["metadata"]["annotations"][VALUES_BY] == "alice"


def test_removing_values_is_a_decision_too_and_drops_who_set_them() -> None:
    flow, _, _ = write(gated(), "alice", {VALUES: '{"env":"prod"}'})
    out, verdict, asked = write(flow, "bob", {VALUES: None})
    assert (verdict["allowed"], asked) == (True, ("gate",))
    assert VALUES_BY not in out["metadata"]["annotations"]


def test_values_and_approval_in_one_write_are_accepted_and_recorded() -> None:
    out, verdict, asked = write(gated(), "alice", {VALUES: '{"env":"prod"}', APPROVE: "true"})
    assert verdict["allowed"], verdict
    assert asked == ("gate",)
    annotations = out["metadata"]["annotations"]
    assert (annotations[VALUES_BY], annotations["approved-by.workflow.kube-zen.io/gate"]) == (
        "alice",
        "alice",
    )


def test_only_the_gates_approvers_may_supply_its_values() -> None:
    flow = gated({"approvers": [{"kind": "Group", "name": "release-managers"}]})
    _, verdict, asked = write(flow, "mallory", {VALUES: '{"env":"prod"}'})
    assert (verdict["allowed"], verdict["status"]["code"], asked) == (False, 403, None)
    assert "only its approvers may (Group release-managers" in verdict["status"]["message"]
    _, verdict, _ = write(flow, "alice", {VALUES: '{"env":"prod"}'}, groups=("release-managers",))
    assert verdict["allowed"], verdict


def test_a_forged_record_of_who_supplied_is_put_back() -> None:
    flow, _, _ = write(gated(), "alice", {VALUES: '{"env":"prod"}'})
    out, verdict, asked = write(flow, "mallory", {VALUES_BY: "bob"})
    assert (verdict["allowed"], asked) == (True, None)
    assert out["metadata"]["annotations"][VALUES_BY] == "alice"


def test_a_value_outside_the_enum_is_refused_with_422() -> None:
    _, verdict, _ = write(gated(), "alice", {VALUES: '{"env":"qa"}'})
    assert (verdict["allowed"], verdict["status"]["code"]) == (False, 422)
    assert "value 'qa' of parameter 'env' is not one of: staging, prod" in verdict["status"]["message"]


def test_an_approval_without_the_value_is_refused_naming_the_parameter() -> None:
    _, verdict, _ = write(gated(), "alice", {APPROVE: "true"})
    assert (verdict["allowed"], verdict["status"]["code"]) == (False, 422)
    assert (
        "step gate needs a value for parameter 'env': zen-flow approve rel gate -p env=..."
        in verdict["status"]["message"]
    )


def test_on_a_tallied_gate_every_approval_needs_the_values_present() -> None:
    flow = gated({"required": 2})
    flow, verdict, _ = write(flow, "alice", {VALUES: '{"env":"prod"}', APPROVE: "true-1"})
    assert verdict["allowed"], verdict
    # bob approves alice's values as they are; he cannot approve others while her approval stands.
    approved, verdict, _ = write(flow, "bob", {APPROVE: "true-2"})
    assert verdict["allowed"], verdict
    _, verdict, _ = write(flow, "bob", {APPROVE: "true-2", VALUES: None})
    assert verdict["status"]["code"] == 422
    _, verdict, _ = write(flow, "bob", {APPROVE: "true-2", VALUES: '{"env":"staging"}'})
    assert verdict["status"]["code"] == 422
    # Nor can carol, alone, turn what alice and bob approved into another value.
    _, verdict, _ = write(approved, "carol", {VALUES: '{"env":"staging"}'})
    assert (verdict["allowed"], verdict["status"]["code"]) == (False, 422)
    assert "step gate carries an approval (approve.workflow.kube-zen.io/gate)" in verdict["status"]["message"]
    # Once the approvals are taken back, the values may change (and every approver approves anew).
    withdrawn, verdict, _ = write(approved, "carol", {APPROVE: None})
    assert verdict["allowed"], verdict
    _, verdict, _ = write(withdrawn, "carol", {VALUES: '{"env":"staging"}'})
    assert verdict["allowed"], verdict


def test_the_values_of_a_decided_gate_are_frozen_until_a_rerun_reaches_it() -> None:
    status = {"phase": "Running", "steps": [{"name": "gate", "phase": "Succeeded"}]}
    flow = gated(status=status)
    flow["metadata"]["annotations"] = {VALUES: '{"env":"prod"}', APPROVE: "true"}
    _, verdict, _ = write(flow, "alice", {VALUES: '{"env":"staging"}'})
    assert (verdict["allowed"], verdict["status"]["code"]) == (False, 422)
    assert "step gate is Succeeded: its values are recorded with its decision" in verdict["status"]["message"]
    # Reached again by a rerun (its approval taken back first, as a rerun asks), they may change.
    flow["status"] = {"phase": "Running", "steps": [{"name": "gate", "phase": "PendingApproval"}]}
    del flow["metadata"]["annotations"][APPROVE]
    _, verdict, _ = write(flow, "alice", {VALUES: '{"env":"staging"}'})
    assert verdict["allowed"], verdict


def test_a_flow_created_with_values_is_a_decision_and_records_its_creator() -> None:
    flow = gated()
    flow["metadata"]["annotations"] = {VALUES: '{"env":"prod"}', VALUES_BY: "someone-else"}
    answer = mutate_review(review(flow, "CREATE", None, "alice"))["response"]
    out = apply_patch(flow, json.loads(base64.b64decode(answer["patch"])))
    assert out["metadata"]["annotations"][VALUES_BY] == "alice"
    verdict, decisions = validate_review_decisions(review(out, "CREATE", None, "alice"))
    assert verdict["response"]["allowed"], verdict
    assert decisions is not None
    assert decisions.steps == ("gate",)
