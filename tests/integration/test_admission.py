"""zen-flow's validating webhook registered with the real kube-apiserver (admission_rig), exercised with
kubectl: the field errors it denies with, updates, specs checked once; offline validation.

Order matters for what can be tested here: the apiserver runs mutating webhooks, then the CRD's schema
and CEL rules, then validating webhooks. An input the CRD already rejects never reaches the validating
webhook, so the denial cases below are ones only the webhook catches, and they assert its field errors.
kubectl prints an Invalid status from its details alone (`The JobFlow "x" is invalid:` and one line per
cause), without the apiserver's `admission webhook "..." denied the request` message; API clients get
that message too (checked once, through the Python client).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from typing import Any
from unittest.mock import patch

import pytest
import yaml
from admission_rig import DENIED, ZZZ, Webhook, annotations_of, apply, field_errors, get_flow
from admission_rig import webhook_fixture as webhook_fixture  # the `webhook` fixture
from jobflow_objects import Kubectl, flow, job
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

import zen_flow.validation.flow as flow_rules
import zen_flow.webhook.review as review_module
from zen_flow.api.constants import GROUP, PLURAL, VERSION
from zen_flow.validation import AcceptedSpecs
from zen_flow.webhook import handlers
from zen_flow.webhook.bodies import BodyBudget, Shed
from zen_flow_dev.testing.crd import REPO
from zen_flow_dev.testing.examples import original_forms, project_examples, upstream_examples

pytestmark = pytest.mark.integration


# --- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "spec", "error"),
    [
        pytest.param(
            [{"name": "a", "template": job()}, {"name": "b", "template": job(), "dependencies": ["zzz"]}],
            {},
            'spec.steps[1].dependencies[0]: Not found: "zzz"',
            id="unknown-dependency",
        ),
        pytest.param(
            [
                {"name": "a", "template": job(), "dependencies": ["c"]},
                {"name": "b", "template": job(), "dependencies": ["a"]},
                {"name": "c", "template": job(), "dependencies": ["b"]},
            ],
            {},
            'spec.steps[0].dependencies: Invalid value: "a -> c -> b -> a": the dependencies form a cycle',
            id="cycle",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "when": "steps.a.phase == "}],
            {},
            'spec.steps[0].when: Invalid value: "steps.a.phase == ": does not compile',
            id="when-does-not-compile",
        ),
        pytest.param(
            [
                {"name": "a", "template": job()},
                {
                    "name": "b",
                    "template": job(),
                    "dependencies": ["a"],
                    "inputs": {"parameters": [{"name": "p", "valueFrom": {"jsonPath": "nope:$.status"}}]},
                },
            ],
            {},
            'spec.steps[1].inputs.parameters[0].valueFrom.jsonPath: Not found: "nope:$.status"',
            id="jsonpath-to-unknown-step",
        ),
        pytest.param(
            [{"name": "a", "template": {**job(), "apiVersion": "batch/v2"}}],
            {},
            'spec.steps[0].template.apiVersion: Unsupported value: "batch/v2"',
            id="template-not-a-batch-v1-job",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {
                "resourceTemplates": {
                    "configMapTemplates": [
                        {"metadata": {"name": "cache", "labels": {"workflow.kube-zen.io/memo-cache": "true"}}}
                    ]
                }
            },
            "spec.resourceTemplates.configMapTemplates[0].metadata.labels[workflow.kube-zen.io/memo-cache]: "
            "Forbidden: a key of zen-flow's own",
            id="resource-template-with-zen-flows-own-label",
        ),
    ],
)
def test_kubectl_apply_of_an_invalid_flow_is_refused_with_the_field_error(
    webhook: Webhook,
    kubectl: Kubectl,
    namespace: str,
    steps: list[dict[str, Any]],
    spec: dict[str, Any],
    error: str,
) -> None:
    done = apply(kubectl, flow("bad", namespace, steps, **spec))
    assert done.returncode != 0
    [printed] = field_errors(done.stderr, "bad")
    assert printed.startswith(error)
    assert kubectl("get", "jobflow", "bad", "-n", namespace, check=False).returncode != 0


async def test_every_error_of_a_flow_is_reported_at_once(
    webhook: Webhook, kubectl: Kubectl, namespace: str, api_client: Any
) -> None:
    steps = [
        {"name": "a", "template": job(), "dependencies": ["b"]},
        {"name": "b", "template": job(), "dependencies": ["a"]},
        {"name": "c", "template": job(), "dependencies": ["zzz"], "when": "=="},
    ]
    body = flow("many", namespace, steps)
    done = apply(kubectl, body)
    assert done.returncode != 0
    printed = field_errors(done.stderr, "many")
    expected = [
        'spec.steps[0].dependencies: Invalid value: "a -> b -> a"',
        'spec.steps[2].dependencies[0]: Not found: "zzz"',
        'spec.steps[2].when: Invalid value: "==": does not compile',
    ]
    assert len(printed) == len(expected)
    for start in expected:
        assert any(line.startswith(start) for line in printed), (start, printed)

    # What API clients get: the webhook named in the message, and one cause per error.
    objects = client.CustomObjectsApi(api_client)
    with pytest.raises(ApiException) as raised:
        await objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert raised.value.status == 422
    status = json.loads(raised.value.body or "{}")
    assert status["reason"] == "Invalid"
    assert status["message"].startswith(f'{DENIED}: JobFlow "many" is invalid:')
    assert status["details"]["kind"] == "JobFlow"
    assert status["details"]["name"] == "many"
    assert [f"{c['field']}: {c['message']}" for c in status["details"]["causes"]] == printed


def test_an_update_is_validated_too(webhook: Webhook, kubectl: Kubectl, namespace: str) -> None:
    body = flow("upd", namespace, [{"name": "a", "template": job()}, {"name": "b", "template": job()}])
    assert apply(kubectl, body).returncode == 0
    body["spec"]["steps"][1]["dependencies"] = ["zzz"]
    done = apply(kubectl, body)
    assert done.returncode != 0
    assert field_errors(done.stderr, "upd") == [ZZZ]
    assert "dependencies" not in get_flow(kubectl, namespace, "upd")["spec"]["steps"][1]


def test_steps_cannot_change_once_the_flow_started(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    body = flow("started", namespace, [{"name": "a", "template": job("echo 1")}])
    assert apply(kubectl, body).returncode == 0
    body["spec"]["steps"][0]["template"] = job("echo 2")
    assert apply(kubectl, body).returncode == 0  # not started: editable
    status = json.dumps({"status": {"phase": "Running", "startTime": "2026-01-02T03:04:05Z"}})
    kubectl(
        "patch", "jobflow", "started", "-n", namespace, "--subresource=status", "--type=merge", "-p", status
    )
    body["spec"]["steps"][0]["template"] = job("echo 3")
    done = apply(kubectl, body)
    assert done.returncode != 0
    # The admission policy that ships with the CRD (config/crd/admission-policies.yaml) runs before the
    # validating webhook and refuses first; the webhook's own check ("spec.steps: Forbidden: steps cannot
    # change after the flow started") stands behind it for a cluster without that policy.
    assert "spec.steps cannot change once the flow has started" in done.stderr
    assert get_flow(kubectl, namespace, "started")["spec"]["steps"][0]["template"] == job("echo 2")
    # Suspending stays possible, and goes through both webhooks.
    kubectl("patch", "jobflow", "started", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    # The scheduled time its Jobs render as {{.JobFlow.ScheduledTime}} is refused by the policy too (added
    # here), so a cluster without the webhook cannot mis-key a memoized result; other annotations are not.
    night = "workflow.kube-zen.io/scheduled-time=2026-12-08T02:30:00Z"
    done = kubectl("annotate", "jobflow", "started", "-n", namespace, night, check=False)
    assert done.returncode != 0
    assert (
        "metadata.annotations[workflow.kube-zen.io/scheduled-time] cannot change once the flow has started"
        in done.stderr
    )
    kubectl("annotate", "jobflow", "started", "-n", namespace, "note=late")
    assert "workflow.kube-zen.io/scheduled-time" not in annotations_of(
        get_flow(kubectl, namespace, "started")
    )


def test_flows_created_from_one_manifest_with_generate_name_have_their_spec_checked_once(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # The validating webhook sees the name the apiserver generated, a new one for every flow, and a
    # pipeline that creates flows from one manifest must not pay a 500-step spec's checks each time.
    body = flow("unused", namespace, [{"name": "a", "template": job()}, {"name": "b", "template": job()}])
    body["metadata"] = {"generateName": "nightly-", "namespace": namespace}
    # The apiserver is real and nothing stands in for it: the two patches reach only the webhook's
    # server, which runs in this process, to count its own work in place (a memory of accepted specs of
    # its own for this test, and a spy that lets every check run unchanged). No seam would do it more
    # cleanly: the memory is the review module's, shared by every request, with no constructor to take it.
    with (
        patch.object(review_module, "ACCEPTED", AcceptedSpecs()),
        patch.object(flow_rules, "check_spec", wraps=flow_rules.check_spec) as check_spec,
    ):
        created = [
            json.loads(kubectl("create", "-o", "json", "-f", "-", input=json.dumps(body)).stdout)
            for _ in range(3)
        ]
    assert len({c["metadata"]["name"] for c in created}) == 3
    assert check_spec.call_count == 1


def test_flows_submitted_with_other_argument_values_have_their_spec_checked_once_and_each_value_checked(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # `zen-flow submit flow.yaml -p env=...`: the same spec with other values; only the values are new.
    body = flow("unused", namespace, [{"name": "a", "template": job()}])
    body["metadata"] = {"generateName": "deploy-", "namespace": namespace}
    env = {"name": "env", "value": "dev", "enum": ["dev", "prod"]}
    with (
        patch.object(review_module, "ACCEPTED", AcceptedSpecs()),
        patch.object(flow_rules, "check_spec", wraps=flow_rules.check_spec) as check_spec,
    ):
        outcomes = []
        for value in ("dev", "prod", "staging"):
            body["spec"]["arguments"] = {"parameters": [{**env, "value": value}]}
            outcomes.append(kubectl("create", "-f", "-", input=json.dumps(body), check=False))
    assert [done.returncode for done in outcomes[:2]] == [0, 0]
    assert check_spec.call_count == 1
    assert outcomes[2].returncode != 0
    assert 'spec.arguments.parameters[0].value: Unsupported value: "staging"' in outcomes[2].stderr


# --- offline validation ---------------------------------------------------------------------------------


def test_make_validate_examples_checks_the_examples_and_the_original_forms() -> None:
    done = subprocess.run(
        ["make", "-s", "validate-examples"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "JobFlow(s)" not in done.stdout  # errors only on stdout; the summary is on stderr
    kinds = [
        yaml.safe_load(p.read_text())["kind"]
        for folder in ("templates", "cluster-templates", "child-flows")
        for p in (REPO / "examples" / folder).glob("*.yaml")
    ]
    expected = len(project_examples()) + len(original_forms()) + len(upstream_examples())
    expected += kinds.count("JobFlow")  # beside the templates they use (made from one, or running one)
    scheduled = len(list((REPO / "examples" / "scheduled").glob("*.yaml")))  # CronJobFlows
    templates, cluster_templates = kinds.count("JobFlowTemplate"), kinds.count("ClusterJobFlowTemplate")
    summary = (
        f"{expected} JobFlow(s), {scheduled} CronJobFlow(s), {templates} JobFlowTemplate(s) and "
        f"{cluster_templates} ClusterJobFlowTemplate(s) checked"
    )
    assert f"{summary}, 0 invalid" in done.stderr


def test_kubectl_prints_the_webhooks_warning_for_an_artifact_stored_nowhere(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # Accepted (the original took it), but kept nowhere: the user hears it where they applied it.
    artifact = {"name": "report", "path": "/out/report.txt"}
    body = flow(
        "nowhere", namespace, [{"name": "a", "template": job(), "outputs": {"artifacts": [artifact]}}]
    )
    done = apply(kubectl, body)
    assert done.returncode == 0, done.stderr
    assert "Warning: spec.steps[0].outputs.artifacts[0]: no s3, so report is stored nowhere" in done.stderr, (
        done.stderr
    )
    labelled = kubectl("label", "jobflow", "nowhere", "-n", namespace, "team=a", check=False)
    assert labelled.returncode == 0
    assert "Warning" not in labelled.stderr  # the spec did not change: said once


async def test_a_review_with_no_thread_in_time_reaches_the_client_as_a_429_to_retry(
    webhook: Webhook, namespace: str, api_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One review of the namespace holds its namespace's review thread; the next one through the apiserver
    # waits --webhook-queue-wait-seconds (3 s) and is denied with code 429: the apiserver hands the client
    # a 429 with Retry-After, which client-go (kubectl, controllers) retries.
    inside, gate = threading.Event(), threading.Event()
    marker = f'"namespace":"{namespace}"'.encode()  # as the apiserver encodes the review
    validate = handlers.validate_review_decisions

    def held(body: bytes) -> Any:
        if marker in body and not gate.is_set():
            inside.set()
            gate.wait(30)
        return validate(body)

    monkeypatch.setattr(handlers, "validate_review_decisions", held)
    objects = client.CustomObjectsApi(api_client)
    one_step = [{"name": "a", "template": job()}]

    async def dry_run(name: str) -> Any:
        body = flow(name, namespace, one_step)
        return await objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body, dry_run="All"
        )

    first = asyncio.create_task(dry_run("first"))
    try:
        assert await asyncio.to_thread(inside.wait, 30), "the first review never reached the webhook"
        with pytest.raises(ApiException) as raised:
            await dry_run("second")
    finally:
        gate.set()
        await asyncio.gather(first, return_exceptions=True)
    assert raised.value.status == 429
    assert (raised.value.headers or {}).get("Retry-After") == "1"
    status = json.loads(raised.value.body or "{}")
    assert status["reason"] == "TooManyRequests"
    assert "the zen-flow admission webhook is busy" in status["message"]
    assert f"namespace {namespace!r}" in status["message"]


async def test_the_apiserver_retries_a_call_refused_past_the_body_budget(
    webhook: Webhook, namespace: str, api_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past --webhook-body-budget-bytes a request is answered 503 with Retry-After: 1, unread. The apiserver
    # calls webhooks with client-go, which retries such an answer a second later, within the call's
    # timeout: the write goes through once the budget has room again.
    calls: list[float] = []
    body = BodyBudget.body

    def refused_once(self: BodyBudget, request: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise Shed("held bodies use the budget")
        return body(self, request)

    monkeypatch.setattr(BodyBudget, "body", refused_once)
    objects = client.CustomObjectsApi(api_client)
    created = await objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        flow("retried", namespace, [{"name": "a", "template": job()}]),
        dry_run="All",
    )
    assert created["metadata"]["name"] == "retried"
    assert len(calls) >= 3  # the mutating call, refused, then again; the validating call
    assert calls[1] - calls[0] >= 0.9  # after the Retry-After second
