"""CronJobFlow admission (validation/cronjobflow.py, webhook/cron_review.py): what is refused, and where."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from zen_flow.validation import validate_cronjobflow
from zen_flow.webhook.cron_review import validate_cron_review

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples" / "scheduled").glob("*.yaml"))
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}
    },
}


def cron(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "CronJobFlow",
        "metadata": {"name": "nightly", "namespace": "default"},
        "spec": {
            "schedule": "0 2 * * *",
            "jobFlowTemplate": {"spec": {"steps": [{"name": "a", "template": JOB}]}},
        },
    }
    base["spec"].update(spec)
    return base


def problems(obj: dict[str, Any]) -> list[str]:
    return [str(e) for e in validate_cronjobflow(obj)]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_are_valid(path: Path) -> None:
    assert problems(yaml.safe_load(path.read_text())) == []


def test_a_minimal_cronjobflow_is_valid() -> None:
    assert problems(cron()) == []
    assert problems(cron(schedule="@hourly", timeZone="Europe/Berlin", concurrencyPolicy="Replace")) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"schedule": "61 * * * *"},
            """spec.schedule: Invalid value: "61 * * * *": minute: '61': out of range""",
        ),
        ({"schedule": "0 0 L * *"}, 'spec.schedule: Invalid value: "0 0 L * *": day-of-month'),
        ({"timeZone": "localtime"}, 'spec.timeZone: Invalid value: "localtime": unknown time zone'),
        ({"schedule": "* * * *"}, "spec.schedule: Invalid value"),
        ({"timeZone": "Mars/Olympus"}, 'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone'),
        ({"concurrencyPolicy": "Sometimes"}, 'spec.concurrencyPolicy: Unsupported value: "Sometimes"'),
        ({"startingDeadlineSeconds": -1}, "spec.startingDeadlineSeconds: Invalid value: -1"),
        ({"successfulJobsHistoryLimit": -2}, "spec.successfulJobsHistoryLimit: Invalid value: -2"),
        ({"failedJobsHistoryLimit": "one"}, "spec.failedJobsHistoryLimit: Invalid value"),
        ({"suspend": "yes"}, "spec.suspend: Invalid value"),
    ],
)
def test_bad_fields_are_named(spec: dict[str, Any], expected: str) -> None:
    found = problems(cron(**spec))
    assert any(p.startswith(expected) for p in found), found


def test_a_schedule_is_required() -> None:
    obj = cron()
    del obj["spec"]["schedule"]
    assert problems(obj) == ["spec.schedule: Required value"]


def test_the_template_spec_is_checked_with_the_jobflow_rules_under_its_own_path() -> None:
    obj = cron()
    obj["spec"]["jobFlowTemplate"]["spec"]["steps"] = [
        {"name": "a", "template": JOB, "dependencies": ["nope"]},
        {"name": "Bad_Name", "template": JOB},
    ]
    found = problems(obj)
    assert any(
        p.startswith('spec.jobFlowTemplate.spec.steps[0].dependencies[0]: Not found: "nope"') for p in found
    )
    assert any(
        p.startswith('spec.jobFlowTemplate.spec.steps[1].name: Invalid value: "Bad_Name"') for p in found
    )
    missing = cron(jobFlowTemplate={"metadata": {"labels": {"bad key!": "x"}}})
    found = problems(missing)
    assert "spec.jobFlowTemplate.spec: Required value" in found
    assert any(p.startswith("spec.jobFlowTemplate.metadata.labels: Invalid value") for p in found)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (
            "a",
            'spec.jobFlowTemplate.metadata.annotations[approve.workflow.kube-zen.io/a]: Invalid value: "a"',
        ),
        ("ghost", "spec.jobFlowTemplate.metadata.annotations[approve.workflow.kube-zen.io/ghost]: Not found"),
    ],
)
def test_template_approval_annotations_pass_the_jobflow_create_rules(step: str, expected: str) -> None:
    # Admitted, each run would be refused by the JobFlow webhook at its run time, one after another.
    obj = cron()
    obj["spec"]["jobFlowTemplate"]["metadata"] = {
        "annotations": {f"approve.workflow.kube-zen.io/{step}": "true"}
    }
    found = problems(obj)
    assert any(p.startswith(expected) for p in found), found
    # On a Manual step too: the controller creating the run may not decide its gate (no `approve`).
    manual = cron()
    manual["spec"]["jobFlowTemplate"] = {
        "metadata": {"annotations": {"approve.workflow.kube-zen.io/gate": "true"}},
        "spec": {"steps": [{"name": "gate", "type": "Manual"}]},
    }
    assert problems(manual) == [
        "spec.jobFlowTemplate.metadata.annotations[approve.workflow.kube-zen.io/gate]: Forbidden: "
        "a run's gate is decided on the run, by a user allowed to approve: the controller that creates "
        "the runs may not take a decision, and every run would be refused"
    ]


def test_a_finally_grace_in_the_template_is_checked_under_its_own_path() -> None:
    obj = cron()
    policy = {"activeDeadlineSeconds": 60, "finallyGraceSeconds": 60}
    obj["spec"]["jobFlowTemplate"]["spec"]["executionPolicy"] = policy
    assert problems(obj) == [
        "spec.jobFlowTemplate.spec.executionPolicy.finallyGraceSeconds: Invalid value: 60: must be less than "
        "activeDeadlineSeconds: it is the last seconds of the flow's deadline, kept for its finally steps"
    ]
    policy["finallyGraceSeconds"] = 10
    assert problems(obj) == []


def test_the_name_leaves_room_for_the_run_suffix() -> None:
    obj = cron()
    obj["metadata"]["name"] = "a" * 55
    [problem] = problems(obj)
    assert problem.startswith("metadata.name: Invalid value")
    assert "no more than 54 characters" in problem
    obj["metadata"]["name"] = "a" * 54
    assert problems(obj) == []


def test_wrong_kind_is_refused() -> None:
    obj = cron()
    obj["kind"] = "JobFlow"
    assert problems(obj) == ['kind: Unsupported value: "JobFlow": supported values: "CronJobFlow"']


def review(obj: Any, operation: str = "CREATE") -> bytes:
    request = {
        "uid": "u-1",
        "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": "CronJobFlow"},
        "resource": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "resource": "cronjobflows"},
        "name": "nightly",
        "namespace": "default",
        "operation": operation,
        "userInfo": {"username": "alice"},
        "object": obj,
        "oldObject": cron() if operation == "UPDATE" else None,  # an update that changes the spec
    }
    return json.dumps(
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    ).encode()


def test_the_webhook_allows_a_valid_cronjobflow() -> None:
    answer = validate_cron_review(review(cron()))
    assert answer["response"] == {"uid": "u-1", "allowed": True}


@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_the_webhook_denies_with_one_cause_per_field_like_the_apiserver(operation: str) -> None:
    obj = cron(schedule="every night")
    obj["spec"]["jobFlowTemplate"]["spec"]["steps"][0]["dependencies"] = ["ghost"]
    response = validate_cron_review(review(obj, operation))["response"]
    assert response["allowed"] is False
    status = response["status"]
    assert (status["code"], status["reason"]) == (422, "Invalid")
    assert status["message"].startswith('CronJobFlow "nightly" is invalid:')
    assert status["details"]["kind"] == "CronJobFlow"
    fields = {c["field"] for c in status["details"]["causes"]}
    assert fields == {"spec.schedule", "spec.jobFlowTemplate.spec.steps[0].dependencies[0]"}


def test_the_webhook_lets_deletes_through() -> None:
    assert validate_cron_review(review(cron(schedule="bad"), "DELETE"))["response"]["allowed"] is True


def test_an_update_that_keeps_the_spec_is_not_checked_again() -> None:
    # Accepted before a newer rule (here: stored without the webhook); a label change must go through.
    stored = cron(schedule="every night")
    relabelled = copy.deepcopy(stored)
    relabelled["metadata"]["labels"] = {"team": "data"}
    request = json.loads(review(relabelled, "UPDATE"))
    request["request"]["oldObject"] = stored
    assert validate_cron_review(json.dumps(request).encode())["response"]["allowed"] is True
    # A change of the spec is checked.
    changed = copy.deepcopy(stored)
    changed["spec"]["suspend"] = True
    request["request"]["object"] = changed
    assert validate_cron_review(json.dumps(request).encode())["response"]["allowed"] is False


def test_a_template_may_name_a_jobflowtemplate() -> None:
    # Each run is created through the apiserver, where the mutating webhook expands it.
    spec = {"templateRef": {"name": "build"}, "arguments": {"parameters": [{"name": "env", "value": "prod"}]}}
    assert problems(cron(jobFlowTemplate={"spec": spec})) == []
    [error] = problems(cron(jobFlowTemplate={"spec": {"templateRef": {"name": "Bad_Name"}}}))
    assert error.startswith(
        'spec.jobFlowTemplate.spec.templateRef.name: Invalid value: "Bad_Name": a lowercase'
    )


@pytest.mark.parametrize(
    ("field", "key"),
    [
        ("annotations", "workflow.kube-zen.io/instantiate"),  # every scheduled run would read as manual
        ("annotations", "workflow.kube-zen.io/scheduled-time"),
        ("annotations", "workflow.kube-zen.io/stop"),  # every run stopped as it starts
        ("annotations", "workflow.kube-zen.io/created-by"),
        ("annotations", "approved-by.workflow.kube-zen.io/gate"),
        ("annotations", "workflow.kube-zen.io/suspend-requested-by"),  # the webhook's record, forged
        ("annotations", "workflow.kube-zen.io/resume-requested-by"),
        ("labels", "workflow.kube-zen.io/cronjobflow"),
        ("labels", "workflow.kube-zen.io/template"),
        ("labels", "workflow.kube-zen.io/controller-instance"),  # a run goes where its CronJobFlow does
    ],
)
def test_the_template_may_not_set_the_keys_zen_flow_writes_on_a_run(field: str, key: str) -> None:
    obj = cron()
    obj["spec"]["jobFlowTemplate"]["metadata"] = {field: {key: "manual"}}
    [problem] = problems(obj)
    assert problem.startswith(f"spec.jobFlowTemplate.metadata.{field}[{key}]: Forbidden: reserved: "), problem
    # The keys a user sets on a flow to group or trace it are the template's to set.
    obj["spec"]["jobFlowTemplate"]["metadata"] = {
        "labels": {"workflow.kube-zen.io/concurrency-key": "reports"},
        "annotations": {"workflow.kube-zen.io/correlation-id": "ticket-7"},
    }
    assert problems(obj) == []


def test_a_resource_name_is_checked_against_the_longest_run_name_a_manual_one() -> None:
    # A run is nightly-29xxxxxx (16 characters), a manual run nightly-manual-xxxxx (20): a resource
    # created as <run>-<name> must fit either, or `zen-flow cron trigger` would be refused.
    def with_resource(length: int) -> dict[str, Any]:
        obj = cron()
        obj["spec"]["jobFlowTemplate"]["spec"]["resourceTemplates"] = {
            "configMapTemplates": [{"metadata": {"name": "r" * length}, "data": {"k": "v"}}]
        }
        return obj

    assert problems(with_resource(253 - 21)) == []
    [problem] = problems(with_resource(253 - 20))
    assert "the object is created as nightly-manual-xxxxx-rrr" in problem
