"""The CronJobFlow webhook refuses a key its run template's spec does not have. The CRD keeps
spec.jobFlowTemplate.spec whole (x-kubernetes-preserve-unknown-fields), so neither pruning nor kubectl's
strict field validation catches a typo there, as they do in a JobFlow: the CronJobFlow was stored with it,
and every run was created without it (a misspelt `template` made each run's step a Manual gate)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from zen_flow.webhook.cron_review import validate_cron_review

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}
    },
}


def cron(**step: Any) -> dict[str, Any]:
    return {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "CronJobFlow",
        "metadata": {"name": "nightly", "namespace": "default"},
        "spec": {
            "schedule": "0 2 * * *",
            "jobFlowTemplate": {"spec": {"steps": [{"name": "a", "template": JOB, **step}]}},
        },
    }


def review(obj: Any, operation: str = "CREATE", old: Any = None) -> dict[str, Any]:
    request = {
        "uid": "u-1",
        "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "CronJobFlow"},
        "resource": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "resource": "cronjobflows"},
        "name": "nightly",
        "namespace": "default",
        "operation": operation,
        "userInfo": {"username": "alice"},
        "object": obj,
        "oldObject": old,
    }
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    response: dict[str, Any] = validate_cron_review(json.dumps(body).encode())["response"]
    return response


def causes(response: dict[str, Any]) -> dict[str, str]:
    return {c["field"]: c["message"] for c in response["status"]["details"]["causes"]}


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_an_unknown_key_in_the_run_template_is_refused_with_its_path(operation: str) -> None:
    obj = cron(timeoutSecond=60)
    obj["spec"]["jobFlowTemplate"]["spec"]["steps"][0]["templat"] = obj["spec"]["jobFlowTemplate"]["spec"][
        "steps"
    ][0].pop("template")
    obj["spec"]["jobFlowTemplate"]["spec"]["execution_policy"] = {"backoffLimit": 1}
    response = review(obj, operation, old=cron() if operation == "UPDATE" else None)
    assert response["allowed"] is False
    assert (response["status"]["code"], response["status"]["reason"]) == (422, "Invalid")
    said = causes(response)
    assert set(said) >= {
        "spec.jobFlowTemplate.spec.steps[0].templat",
        "spec.jobFlowTemplate.spec.steps[0].timeoutSecond",
        "spec.jobFlowTemplate.spec.execution_policy",
    }
    assert "did you mean template?" in said["spec.jobFlowTemplate.spec.steps[0].templat"]
    assert "did you mean timeoutSeconds?" in said["spec.jobFlowTemplate.spec.steps[0].timeoutSecond"]
    assert "did you mean executionPolicy?" in said["spec.jobFlowTemplate.spec.execution_policy"]
    assert all("every run" in said[field] for field in said if field.startswith("spec.jobFlowTemplate.spec."))


def test_a_run_template_of_known_keys_is_allowed() -> None:
    assert review(cron(timeoutSeconds=60))["allowed"] is True


def test_a_stored_unknown_key_does_not_refuse_an_update_that_keeps_the_spec() -> None:
    # Stored before this check: a label change (ratcheting, as for every rule) must still go through.
    stored = cron(timeoutSecond=60)
    relabelled = copy.deepcopy(stored)
    relabelled["metadata"]["labels"] = {"team": "data"}
    assert review(relabelled, "UPDATE", old=stored)["allowed"] is True


def test_suspending_a_cron_stored_with_an_unknown_key_is_allowed() -> None:
    # `zen-flow cron suspend` patches spec.suspend: the emergency stop must not fail on a key that did no
    # harm (stored before this check, or a newer release's field after a rollback).
    stored = cron(timeoutSecond=60)
    for edit in ("suspend", "parallelism"):
        changed = copy.deepcopy(stored)
        if edit == "suspend":
            changed["spec"]["suspend"] = True
        else:  # an edit elsewhere in the run template keeps the old key too
            changed["spec"]["jobFlowTemplate"]["spec"]["steps"][0]["timeoutSecond"] = 120
            changed["spec"]["jobFlowTemplate"]["spec"]["steps"].append({"name": "b", "template": JOB})
        assert review(changed, "UPDATE", old=stored)["allowed"] is True, edit


def test_an_update_adding_an_unknown_key_is_refused_though_another_was_stored() -> None:
    stored = cron(timeoutSecond=60)
    changed = copy.deepcopy(stored)
    changed["spec"]["suspend"] = True
    changed["spec"]["jobFlowTemplate"]["spec"]["steps"][0]["retrys"] = 2
    response = review(changed, "UPDATE", old=stored)
    assert response["allowed"] is False
    assert set(causes(response)) == {"spec.jobFlowTemplate.spec.steps[0].retrys"}
