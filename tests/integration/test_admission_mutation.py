"""zen-flow's mutating webhook with the real kube-apiserver (admission_rig): a created flow's defaults and
creator, approvals and who may decide them, the examples admitted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from admission_rig import DEADLINE, Webhook, annotations_of, apply, field_errors, get_flow
from admission_rig import webhook_fixture as webhook_fixture  # the `webhook` fixture
from jobflow_objects import DEFAULT_POLICY, Kubectl, flow, job

from zen_flow.api.constants import ANNOTATION_APPROVED_BY_PREFIX, ANNOTATION_CREATED_BY, APPROVE_PREFIX
from zen_flow_dev.cluster.adminclient import wait_until
from zen_flow_dev.testing.examples import all_flow_params, load

pytestmark = pytest.mark.integration


def test_a_created_flow_gets_its_defaults_and_its_creator(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    body = flow(
        "defaults", namespace, [{"name": "a", "template": job()}], executionPolicy={"backoffLimit": 2}
    )
    body["metadata"]["annotations"] = {
        ANNOTATION_CREATED_BY: "mallory",  # forged: overwritten
        ANNOTATION_APPROVED_BY_PREFIX + "a": "mallory",  # forged: dropped
    }
    done = apply(kubectl, body)
    assert done.returncode == 0, done.stderr
    stored = get_flow(kubectl, namespace, "defaults")
    assert stored["spec"]["executionPolicy"] == {**DEFAULT_POLICY, "backoffLimit": 2}
    assert annotations_of(stored)[ANNOTATION_CREATED_BY] == webhook.user
    assert ANNOTATION_APPROVED_BY_PREFIX + "a" not in annotations_of(stored)

    # An UPDATE cannot rewrite who created the flow either.
    kubectl(
        "annotate", "jobflow", "defaults", "-n", namespace, "--overwrite", f"{ANNOTATION_CREATED_BY}=mallory"
    )
    assert annotations_of(get_flow(kubectl, namespace, "defaults"))[ANNOTATION_CREATED_BY] == webhook.user


def test_an_approval_records_the_approver(webhook: Webhook, kubectl: Kubectl, namespace: str) -> None:
    steps: list[dict[str, Any]] = [
        {"name": "gate", "type": "Manual"},
        {"name": "work", "template": job(), "dependencies": ["gate"]},
    ]
    done = kubectl("create", "-f", "-", input=json.dumps(flow("gated", namespace, steps)))
    assert done.returncode == 0

    kubectl("annotate", "jobflow", "gated", "-n", namespace, f"{APPROVE_PREFIX}gate=true")
    stored = annotations_of(get_flow(kubectl, namespace, "gated"))
    assert stored[APPROVE_PREFIX + "gate"] == "true"
    assert stored[ANNOTATION_APPROVED_BY_PREFIX + "gate"] == webhook.user

    typo = kubectl("annotate", "jobflow", "gated", "-n", namespace, f"{APPROVE_PREFIX}gaet=true", check=False)
    assert typo.returncode != 0
    [printed] = field_errors(typo.stderr, "gated")
    assert printed.startswith(f'metadata.annotations[{APPROVE_PREFIX}gaet]: Not found: "gaet"')


def test_only_a_user_with_the_approve_verb_decides_a_manual_step(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # bob may read and patch flows (so he may write the annotation) but not `approve` them: the validating
    # webhook asks this apiserver's RBAC and refuses his decision; once a Role grants the verb, it is his.
    steps: list[dict[str, Any]] = [
        {"name": "gate", "type": "Manual"},
        {"name": "work", "template": job(), "dependencies": ["gate"]},
    ]
    kubectl("create", "-f", "-", input=json.dumps(flow("guarded", namespace, steps)))
    rule = {"apiGroups": ["workflow.kube-zen.io"], "resources": ["jobflows"], "verbs": ["get", "patch"]}
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "flow-deciders", "namespace": namespace}, "rules": [rule]}  # fmt: skip
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "flow-deciders", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "flow-deciders"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bob"}],
    }
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]})
    )
    decide = ("annotate", "jobflow", "guarded", "-n", namespace, f"{APPROVE_PREFIX}gate=true", "--as=bob")

    def refused() -> subprocess.CompletedProcess[str] | None:
        done = kubectl(*decide, check=False)
        return done if 'needs the verb "approve"' in done.stderr else None  # once bob's patch is allowed

    said = wait_until(refused, timeout=DEADLINE, what="bob's decision refused for want of approve")
    assert "user 'bob' may not decide step gate of jobflow" in said.stderr
    assert APPROVE_PREFIX + "gate" not in annotations_of(get_flow(kubectl, namespace, "guarded"))

    rule["verbs"].append("approve")
    kubectl("apply", "-f", "-", input=json.dumps(role))
    wait_until(
        lambda: kubectl(*decide, check=False).returncode == 0, timeout=DEADLINE, what="bob's decision taken"
    )
    stored = annotations_of(get_flow(kubectl, namespace, "guarded"))
    assert stored[ANNOTATION_APPROVED_BY_PREFIX + "gate"] == "bob"


def test_a_gate_with_approvers_counts_each_named_approver_once(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # Everyone here has RBAC's approve; the gate itself names alice and the group release-managers and
    # needs two of them: carol is refused by the gate's list, alice and bob (by his group) are counted.
    approval = {
        "approvers": [{"kind": "User", "name": "alice"}, {"kind": "Group", "name": "release-managers"}],
        "required": 2,
    }
    steps: list[dict[str, Any]] = [
        {"name": "gate", "type": "Manual", "approval": approval},
        {"name": "work", "template": job(), "dependencies": ["gate"]},
    ]
    kubectl("create", "-f", "-", input=json.dumps(flow("counted", namespace, steps)))
    rule = {
        "apiGroups": ["workflow.kube-zen.io"],
        "resources": ["jobflows"],
        "verbs": ["get", "patch", "approve"],
    }
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "gate-deciders", "namespace": namespace}, "rules": [rule]}  # fmt: skip
    subjects = [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}
        for user in ("alice", "bob", "carol")
    ]
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "gate-deciders", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gate-deciders"},
        "subjects": subjects,
    }
    kubectl(
        "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": [role, binding]})
    )

    def decide(value: str, *who: str) -> subprocess.CompletedProcess[str]:
        key = f"{APPROVE_PREFIX}gate={value}"
        return kubectl(
            "annotate", "--overwrite", "jobflow", "counted", "-n", namespace, key, *who, check=False
        )

    def refused() -> subprocess.CompletedProcess[str] | None:
        done = decide("true-1", "--as=carol")
        return done if "only its approvers may" in done.stderr else None  # once carol's patch is allowed

    said = wait_until(refused, timeout=DEADLINE, what="carol's decision refused by the gate's approvers")
    assert "user 'carol' may not decide step gate of jobflow" in said.stderr
    assert "(User alice, Group release-managers; spec.steps[].approval.approvers)" in said.stderr
    assert APPROVE_PREFIX + "gate" not in annotations_of(get_flow(kubectl, namespace, "counted"))

    done = decide("true-1", "--as=alice")
    assert done.returncode == 0, done.stderr
    assert (
        annotations_of(get_flow(kubectl, namespace, "counted"))[ANNOTATION_APPROVED_BY_PREFIX + "gate"]
        == "alice"
    )
    # The same value again is no change: bob must write a new one to be counted.
    done = decide("true-2", "--as=bob", "--as-group=release-managers")
    assert done.returncode == 0, done.stderr
    decide("true-3", "--as=alice")  # alice again: counted once
    stored = annotations_of(get_flow(kubectl, namespace, "counted"))
    assert stored[ANNOTATION_APPROVED_BY_PREFIX + "gate"] == "alice,bob"
    # Nobody writes the record by hand.
    kubectl(
        "annotate", "--overwrite", "jobflow", "counted", "-n", namespace,
        f"{ANNOTATION_APPROVED_BY_PREFIX}gate=alice,bob,mallory",
    )  # fmt: skip
    assert (
        annotations_of(get_flow(kubectl, namespace, "counted"))[ANNOTATION_APPROVED_BY_PREFIX + "gate"]
        == "alice,bob"
    )
    # Taking the approvals back is left to RBAC: carol, not named, may (it cannot open the gate).
    done = kubectl("annotate", "jobflow", "counted", "-n", namespace, f"{APPROVE_PREFIX}gate-", "--as=carol")
    assert done.returncode == 0, done.stderr
    stored = annotations_of(get_flow(kubectl, namespace, "counted"))
    assert APPROVE_PREFIX + "gate" not in stored
    assert ANNOTATION_APPROVED_BY_PREFIX + "gate" not in stored


@pytest.mark.parametrize("path", all_flow_params())
def test_the_examples_are_admitted(webhook: Webhook, kubectl: Kubectl, namespace: str, path: Path) -> None:
    example = load(path)
    example["metadata"]["namespace"] = namespace
    done = kubectl("create", "-o", "json", "-f", "-", input=json.dumps(example), check=False)
    assert done.returncode == 0, f"{path.name}: {done.stderr}"
    created = json.loads(done.stdout)
    assert annotations_of(created)[ANNOTATION_CREATED_BY] == webhook.user
    assert created["spec"]["steps"] == example["spec"]["steps"]
