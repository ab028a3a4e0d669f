"""Changes to a stored JobFlow the apiserver takes or refuses by the CRD and its admission policy: the spec
once the flow started, a pending flow's edits, and status writes."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from crd_validation_rig import objects_fixture as objects_fixture  # the `objects` fixture
from jobflow_objects import Kubectl, create, flow, get, job, kubectl_create, patch_status
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "started",
    [
        pytest.param({"phase": "Running", "startTime": "2026-01-02T03:04:05Z"}, id="flow-running"),
        pytest.param({"phase": "Pending", "steps": [{"name": "a", "phase": "Running"}]}, id="step-running"),
        pytest.param({"phase": "Failed"}, id="flow-failed-before-any-step"),
    ],
)
async def test_steps_are_immutable_once_the_flow_started(
    objects: client.CustomObjectsApi, kubectl: Kubectl, namespace: str, started: dict[str, Any]
) -> None:
    await create(objects, flow("frozen", namespace, [{"name": "a", "template": job("echo 1")}]))

    def edit(patch: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        body = json.dumps({"spec": patch})
        return kubectl("patch", "jf", "frozen", "-n", namespace, "--type=merge", "-p", body, check=False)

    def set_command(command: str) -> subprocess.CompletedProcess[str]:
        return edit({"steps": [{"name": "a", "template": job(command)}]})

    assert set_command("echo 2").returncode == 0  # no status yet: editable
    await patch_status(
        objects, namespace, "frozen", {"phase": "Pending", "steps": [{"name": "a", "phase": "Pending"}]}
    )
    assert set_command("echo 3").returncode == 0  # not started yet: still editable
    await patch_status(objects, namespace, "frozen", started)
    refused = set_command("echo 4")  # a change deep inside the Job template is seen too
    assert refused.returncode != 0
    assert "spec.steps cannot change once the flow has started" in refused.stderr
    refused = edit({"arguments": {"parameters": [{"name": "p", "value": "v"}]}})
    assert refused.returncode != 0
    assert "spec.arguments cannot change once the flow has started" in refused.stderr
    # What stays possible after the start: suspend, policy edits, approvals, status writes.
    assert edit({"suspend": True}).returncode == 0
    assert edit({"executionPolicy": {"ttlSecondsAfterFinished": 60}}).returncode == 0
    kubectl("annotate", "jf", "frozen", "-n", namespace, "approve.workflow.kube-zen.io/a=true")
    await patch_status(objects, namespace, "frozen", {"phase": "Suspended"})
    stored = await get(objects, namespace, "frozen")
    assert stored["spec"]["steps"][0]["template"] == job("echo 3")


async def test_a_stored_flow_past_the_webhooks_string_limits_can_still_have_its_status_written(
    objects: client.CustomObjectsApi, namespace: str
) -> None:
    # Stored before the webhook bounded them (or in the CRD-only mode): a 603-character input JSONPath and
    # a 300-character Secret name. The controller fails the flow as InvalidSpec, a status write the schema
    # must take: spec.steps is atomic, so a bound there is not ratcheted and would refuse every write.
    steps = [
        {"name": "a", "template": job()},
        {
            "name": "b",
            "template": job(),
            "dependencies": ["a"],
            "inputs": {"parameters": [{"name": "v", "valueFrom": {"jsonPath": "a:$" + ".x" * 300}}]},
        },
        {
            "name": "c",
            "template": job(),
            "inputs": {
                "parameters": [{"name": "s", "valueFrom": {"secretKeyRef": {"name": "s" * 300, "key": "k"}}}]
            },
        },
    ]
    await create(objects, flow("long", namespace, steps))
    await patch_status(objects, namespace, "long", {"phase": "Failed"})
    assert (await get(objects, namespace, "long"))["status"]["phase"] == "Failed"


def test_a_pending_flow_cannot_be_edited_into_a_broken_one(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any
) -> None:
    # The step rules are an admission policy (not CRD rules, which would run on every status write): it
    # checks updates that change spec.steps as it checks creates.
    assert (
        kubectl_create(kubectl, flow("edited", namespace, [{"name": "a", "template": job()}])).returncode == 0
    )
    broken = json.dumps({"spec": {"steps": [{"name": "a", "template": job()}, {"name": "b", "type": "Job"}]}})
    done = kubectl("patch", "jf", "edited", "-n", namespace, "--type=merge", "-p", broken, check=False)
    assert done.returncode != 0
    assert "a step of type Job needs a template" in done.stderr
    assert "(step b)" in done.stderr
    label = kubectl("label", "jf", "edited", "-n", namespace, "team=a", check=False)
    assert label.returncode == 0, label.stderr


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"phase": "Exploded"}, 'status.phase: Unsupported value: "Exploded"'),
        ({"steps": [{"name": "a", "phase": "Done"}]}, 'status.steps[0].phase: Unsupported value: "Done"'),
        (
            {"conditions": [{"type": "Complete", "status": True}]},
            "status.conditions[0].status: Invalid value",
        ),
        ({"steps": [{"name": "a", "message": "m" * 1025}]}, "status.steps[0].message: Too long"),
    ],
)
async def test_invalid_status_writes_are_rejected(
    objects: client.CustomObjectsApi, namespace: str, status: dict[str, Any], message: str
) -> None:
    await create(objects, flow("st", namespace, [{"name": "a", "template": job()}]))
    with pytest.raises(ApiException) as raised:
        await patch_status(objects, namespace, "st", status)
    assert raised.value.status == 422
    assert message in json.loads(raised.value.body or "{}")["message"]
