"""JobFlowTemplates and ClusterJobFlowTemplates at admission (webhook/templates.py, through the server's
routes): a template is checked with the JobFlow rules; a flow created naming one is expanded by the
mutating webhook, which reads the template, and the validating webhook then sees an ordinary flow."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from zen_flow.kube.errors import Forbidden, TransportError
from zen_flow.webhook.patch import apply_patch
from zen_flow.webhook.review import validate_review
from zen_flow.webhook.server import create_webhook_app

UID = "c0a3d0a8-0000-4000-8000-000000000003"
API = "workflow.kube-zen.io/v1alpha1"
LABEL = "workflow.kube-zen.io/template"
CLUSTER_LABEL = "workflow.kube-zen.io/cluster-template"
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}
    },
}
TEMPLATE = {
    "apiVersion": API,
    "kind": "JobFlowTemplate",
    "metadata": {"name": "build", "namespace": "team-a"},
    "spec": {
        "steps": [{"name": "compile", "template": JOB}],
        "arguments": {"parameters": [{"name": "env", "value": "dev", "enum": ["dev", "prod"]}]},
        "executionPolicy": {"backoffLimit": 2},
    },
}


def review(obj: Any, operation: str = "CREATE", old: Any = None, kind: str = "JobFlow") -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": "workflow.kube-zen.io", "version": "v1alpha1", "kind": kind},
            "operation": operation,
            "name": obj["metadata"].get("name", ""),
            "namespace": "team-a",
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": obj,
            "oldObject": old,
        },
    }


def flow(**spec: Any) -> dict[str, Any]:
    # As the apiserver hands it to the webhooks: the CRD's executionPolicy defaults written already.
    policy = {"concurrencyPolicy": "Forbid", "ttlSecondsAfterFinished": 86400, "backoffLimit": 6}
    return {
        "apiVersion": API,
        "kind": "JobFlow",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"templateRef": {"name": "build"}, "executionPolicy": policy, **spec},
    }


class Templates:
    """JobFlowTemplates by (namespace, name), ClusterJobFlowTemplates by ("<cluster>", name)."""

    def __init__(self, *stored: dict[str, Any], error: Exception | None = None) -> None:
        self.stored = {(t["metadata"].get("namespace", CLUSTER), t["metadata"]["name"]): t for t in stored}
        self.error = error
        self.asked: list[tuple[str, str]] = []

    async def get(self, namespace: str, name: str, *, cluster: bool = False) -> dict[str, Any] | None:
        where = CLUSTER if cluster else namespace
        self.asked.append((where, name))
        if self.error is not None:
            raise self.error
        return copy.deepcopy(self.stored.get((where, name)))


CLUSTER = "<cluster>"
CLUSTER_TEMPLATE = {
    **TEMPLATE,
    "kind": "ClusterJobFlowTemplate",
    "metadata": {"name": "build"},
    "spec": {**TEMPLATE["spec"], "executionPolicy": {"backoffLimit": 3}},
}


async def post(client: TestClient[Any, Any], path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await client.post(path, json=body)
    assert answer.status == 200
    response: dict[str, Any] = (await answer.json())["response"]
    return response


def patched(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    assert response["allowed"], response
    ops = json.loads(base64.b64decode(response["patch"])) if "patch" in response else []
    result: dict[str, Any] = apply_patch(obj, ops)
    return result


async def test_a_flow_naming_a_template_is_expanded_labelled_and_then_valid(aiohttp_client: Any) -> None:
    templates = Templates(TEMPLATE)
    client = await aiohttp_client(create_webhook_app(templates=templates))
    obj = flow(arguments={"parameters": [{"name": "env", "value": "prod"}]})
    stored = patched(obj, await post(client, "/mutate-jobflow", review(obj)))
    assert templates.asked == [("team-a", "build")]
    assert stored["spec"]["steps"] == TEMPLATE["spec"]["steps"]
    assert stored["spec"]["arguments"]["parameters"] == [
        {"name": "env", "value": "prod", "enum": ["dev", "prod"]}
    ]
    # The template's backoffLimit stands over the schema default the apiserver wrote into the flow.
    assert stored["spec"]["executionPolicy"]["backoffLimit"] == 2
    assert "templateRef" not in stored["spec"]  # the label records it: a flow holds steps or templateRef
    assert stored["metadata"]["labels"] == {LABEL: "build"}
    assert stored["metadata"]["annotations"]["workflow.kube-zen.io/created-by"] == "alice"
    assert validate_review(json.dumps(review(stored)).encode())["response"]["allowed"]
    # Called again on its own output (reinvocation): nothing changes, and the template is not read again.
    again = await post(client, "/mutate-jobflow", review(stored))
    assert patched(stored, again) == stored
    assert len(templates.asked) == 1


async def test_a_missing_template_is_refused_naming_it_and_the_namespace(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_webhook_app(templates=Templates()))
    response = await post(client, "/mutate-jobflow", review(flow()))
    assert not response["allowed"]
    assert response["status"]["code"] == 422
    assert response["status"]["details"]["causes"] == [
        {
            "reason": "FieldValueNotFound",
            "field": "spec.templateRef.name",
            "message": 'Not found: "build": JobFlowTemplate "build" not found in namespace "team-a"',
        }
    ]


async def test_undeclared_arguments_and_values_outside_the_enum_are_refused(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_webhook_app(templates=Templates(TEMPLATE)))
    obj = flow(arguments={"parameters": [{"name": "env", "value": "qa"}, {"name": "colour", "value": "red"}]})
    response = await post(client, "/mutate-jobflow", review(obj))
    assert not response["allowed"]
    assert [c["field"] for c in response["status"]["details"]["causes"]] == [
        "spec.arguments.parameters[0].value",
        "spec.arguments.parameters[1].name",
    ]
    assert '"colour"' in response["status"]["message"]


async def test_steps_and_a_template_ref_together_are_refused_whatever_the_label(
    aiohttp_client: Any,
) -> None:
    templates = Templates(TEMPLATE)
    client = await aiohttp_client(create_webhook_app(templates=templates))
    both = flow(steps=[{"name": "mine", "template": JOB}])
    response = await post(client, "/mutate-jobflow", review(both))
    assert not response["allowed"]
    assert "set steps or templateRef, not both" in response["status"]["message"]
    # The label a flow made from the template carries does not make its own steps the template's.
    both["metadata"]["labels"] = {LABEL: "build"}
    again = await post(client, "/mutate-jobflow", review(both))
    assert not again["allowed"]
    assert [c["field"] for c in again["status"]["details"]["causes"]] == ["spec.templateRef"]
    assert not validate_review(json.dumps(review(both)).encode())["response"]["allowed"]
    assert templates.asked == []


async def test_a_template_that_cannot_be_read_refuses_the_create(aiohttp_client: Any) -> None:
    templates = Templates(error=TransportError("connection reset"))
    client = await aiohttp_client(create_webhook_app(templates=templates))
    response = await post(client, "/mutate-jobflow", review(flow()))
    assert not response["allowed"]
    assert response["status"]["code"] == 503
    assert "could not read JobFlowTemplate 'build'" in response["status"]["message"]


async def test_without_a_template_reader_the_flow_is_left_for_the_controller(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_webhook_app())
    obj = flow()
    stored = patched(obj, await post(client, "/mutate-jobflow", review(obj)))
    assert "steps" not in stored["spec"]
    assert validate_review(json.dumps(review(stored)).encode())["response"]["allowed"]


async def test_a_template_is_checked_with_the_jobflow_rules(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_webhook_app())
    bad = copy.deepcopy(TEMPLATE)
    bad["spec"]["steps"][0]["dependencies"] = ["ghost"]
    response = await post(client, "/validate-jobflowtemplate", review(bad, kind="JobFlowTemplate"))
    assert not response["allowed"]
    assert response["status"]["message"] == (
        'JobFlowTemplate "build" is invalid:\nspec.steps[0].dependencies[0]: Not found: "ghost"'
    )
    ok = await post(client, "/validate-jobflowtemplate", review(TEMPLATE, kind="JobFlowTemplate"))
    assert ok["allowed"]
    # An update that keeps the stored spec (a label) is not checked again.
    labelled = copy.deepcopy(bad)
    labelled["metadata"]["labels"] = {"team": "a"}
    kept = await post(
        client, "/validate-jobflowtemplate", review(labelled, "UPDATE", bad, kind="JobFlowTemplate")
    )
    assert kept["allowed"]


async def test_without_a_template_reader_a_gate_decided_at_creation_is_refused_saying_why(
    aiohttp_client: Any,
) -> None:
    # The flow is left unexpanded: neither the gate nor its approvers can be checked, so the decision is
    # refused, saying that the flow is not expanded (not "no step of that name": the template has it).
    client = await aiohttp_client(create_webhook_app())
    obj = flow()
    obj["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/gate": "true"}
    stored = patched(obj, await post(client, "/mutate-jobflow", review(obj)))
    response = validate_review(json.dumps(review(stored)).encode())["response"]
    assert not response["allowed"]
    message = response["status"]["message"]
    assert 'Forbidden: the flow is not expanded from JobFlowTemplate "build" yet' in message
    assert "decide the gate once the flow holds its steps" in message
    assert "no step of that name" not in message


# --- ClusterJobFlowTemplates (templateRef.clusterScope: true) ----------------------------------------------


def cluster_flow(**spec: Any) -> dict[str, Any]:
    obj = flow(**spec)
    obj["spec"]["templateRef"]["clusterScope"] = True
    return obj


async def test_a_flow_naming_a_cluster_template_is_expanded_from_it_and_labelled_so(
    aiohttp_client: Any,
) -> None:
    # The namespace's template of the same name is not the one a clusterScope flow names.
    templates = Templates(TEMPLATE, CLUSTER_TEMPLATE)
    client = await aiohttp_client(create_webhook_app(templates=templates))
    obj = cluster_flow(arguments={"parameters": [{"name": "env", "value": "prod"}]})
    obj["metadata"]["labels"] = {"team": "a"}
    stored = patched(obj, await post(client, "/mutate-jobflow", review(obj)))
    assert templates.asked == [(CLUSTER, "build")]
    assert stored["spec"]["steps"] == CLUSTER_TEMPLATE["spec"]["steps"]
    assert stored["spec"]["executionPolicy"]["backoffLimit"] == 3  # the cluster template's
    assert stored["spec"]["arguments"]["parameters"][0]["value"] == "prod"
    assert "templateRef" not in stored["spec"]
    assert stored["metadata"]["labels"] == {"team": "a", LABEL: "build", CLUSTER_LABEL: "true"}
    assert validate_review(json.dumps(review(stored)).encode())["response"]["allowed"]
    # A flow without labels gets both.
    bare = cluster_flow()
    assert patched(bare, await post(client, "/mutate-jobflow", review(bare)))["metadata"]["labels"] == {
        LABEL: "build",
        CLUSTER_LABEL: "true",
    }
    # And a flow naming the namespace's template gets no cluster label.
    plain = patched(flow(), await post(client, "/mutate-jobflow", review(flow())))
    assert plain["metadata"]["labels"] == {LABEL: "build"}
    assert plain["spec"]["executionPolicy"]["backoffLimit"] == 2


async def test_a_cluster_template_label_set_by_hand_goes_from_a_flow_of_the_namespaces_template(
    aiohttp_client: Any,
) -> None:
    # Both template labels are informational and a user may set them; a flow expanded from the
    # namespace's template must not keep one saying it came from a cluster template.
    client = await aiohttp_client(create_webhook_app(templates=Templates(TEMPLATE, CLUSTER_TEMPLATE)))
    obj = flow()
    obj["metadata"]["labels"] = {"team": "a", CLUSTER_LABEL: "true", LABEL: "other"}
    stored = patched(obj, await post(client, "/mutate-jobflow", review(obj)))
    assert stored["metadata"]["labels"] == {"team": "a", LABEL: "build"}
    assert validate_review(json.dumps(review(stored)).encode())["response"]["allowed"]
    # From the cluster template, the label stays (set to "true").
    labelled = cluster_flow()
    labelled["metadata"]["labels"] = {CLUSTER_LABEL: "true"}
    answer = await post(client, "/mutate-jobflow", review(labelled))
    assert patched(labelled, answer)["metadata"]["labels"] == {LABEL: "build", CLUSTER_LABEL: "true"}


async def test_a_missing_cluster_template_is_refused_naming_the_field_and_the_kind(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(create_webhook_app(templates=Templates(TEMPLATE)))
    response = await post(client, "/mutate-jobflow", review(cluster_flow()))
    assert not response["allowed"]
    assert response["status"]["code"] == 422
    assert response["status"]["details"]["causes"] == [
        {
            "reason": "FieldValueNotFound",
            "field": "spec.templateRef.name",
            "message": 'Not found: "build": ClusterJobFlowTemplate "build" not found',
        }
    ]


async def test_a_cluster_template_zen_flow_may_not_read_is_refused_naming_the_grant(
    aiohttp_client: Any,
) -> None:
    denied = Forbidden(403, "Forbidden", 'clusterjobflowtemplates "build" is forbidden: User "sa" cannot get')
    client = await aiohttp_client(create_webhook_app(templates=Templates(error=denied)))
    response = await post(client, "/mutate-jobflow", review(cluster_flow()))
    assert not response["allowed"]
    assert response["status"]["code"] == 422  # a verdict, not a 503 to try again
    [cause] = response["status"]["details"]["causes"]
    assert cause["field"] == "spec.templateRef.name"
    assert 'may not read ClusterJobFlowTemplate "build"' in cause["message"]
    assert "`get` on clusterjobflowtemplates" in cause["message"]
    assert 'User "sa" cannot get' in cause["message"]


async def test_a_cluster_template_that_cannot_be_read_says_which(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_webhook_app(templates=Templates(error=TransportError("reset"))))
    response = await post(client, "/mutate-jobflow", review(cluster_flow()))
    assert response["status"]["code"] == 503
    assert response["status"]["message"] == (
        "could not read ClusterJobFlowTemplate 'build' to expand the flow: reset"
    )


async def test_a_cluster_template_is_checked_with_the_jobflow_rules(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_webhook_app())
    path, kind = "/validate-clusterjobflowtemplate", "ClusterJobFlowTemplate"
    bad = copy.deepcopy(CLUSTER_TEMPLATE)
    bad["spec"]["steps"][0]["dependencies"] = ["ghost"]
    response = await post(client, path, review(bad, kind=kind))
    assert not response["allowed"]
    assert response["status"]["message"] == (
        'ClusterJobFlowTemplate "build" is invalid:\nspec.steps[0].dependencies[0]: Not found: "ghost"'
    )
    assert (await post(client, path, review(CLUSTER_TEMPLATE, kind=kind)))["allowed"]
    chained = copy.deepcopy(CLUSTER_TEMPLATE)
    chained["spec"]["templateRef"] = {"name": "other", "clusterScope": True}
    response = await post(client, path, review(chained, kind=kind))
    assert (
        "a ClusterJobFlowTemplate holds steps; it cannot name another template"
        in response["status"]["message"]
    )


async def test_a_gate_decided_on_an_unexpanded_cluster_flow_names_the_cluster_template(
    aiohttp_client: Any,
) -> None:
    client = await aiohttp_client(create_webhook_app())
    obj = cluster_flow()
    obj["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/gate": "true"}
    stored = patched(obj, await post(client, "/mutate-jobflow", review(obj)))
    response = validate_review(json.dumps(review(stored)).encode())["response"]
    assert 'the flow is not expanded from ClusterJobFlowTemplate "build" yet' in response["status"]["message"]


async def test_cluster_scope_must_be_a_boolean(aiohttp_client: Any) -> None:
    obj = flow()
    obj["spec"]["templateRef"]["clusterScope"] = "yes"
    response = validate_review(json.dumps(review(obj)).encode())["response"]
    assert not response["allowed"]
    assert [c["field"] for c in response["status"]["details"]["causes"]] == ["spec.templateRef.clusterScope"]


@pytest.mark.parametrize("cluster", [False, True])
@pytest.mark.parametrize("name", ["..", "a/b", "Build", "build?watch=1"])
async def test_a_template_name_that_cannot_be_one_is_refused_before_any_read(
    aiohttp_client: Any, name: str, cluster: bool
) -> None:
    # The name goes into the read's URL path: `..` (with clusterScope) read the API group's listing.
    templates = Templates(TEMPLATE, CLUSTER_TEMPLATE)
    client = await aiohttp_client(create_webhook_app(templates=templates))
    obj = flow(templateRef={"name": name, "clusterScope": cluster})
    response = await post(client, "/mutate-jobflow", review(obj))
    assert templates.asked == []
    assert not response["allowed"]
    assert response["status"]["code"] == 422
    [cause] = response["status"]["details"]["causes"]
    assert cause["field"] == "spec.templateRef.name"
    assert cause["message"].startswith(f"Invalid value: {json.dumps(name)}: ")
