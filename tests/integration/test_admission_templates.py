"""Flows naming a JobFlowTemplate or ClusterJobFlowTemplate admitted by the real kube-apiserver and
zen-flow's webhooks (admission_rig): stored expanded, refused naming the field."""

from __future__ import annotations

import copy
import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from admission_rig import Webhook, apply, field_errors, get_flow
from admission_rig import webhook_fixture as webhook_fixture  # the `webhook` fixture
from jobflow_objects import Kubectl, flow

from zen_flow.api.constants import LABEL_CLUSTER_TEMPLATE, LABEL_TEMPLATE
from zen_flow_dev.testing.crd import REPO
from zen_flow_dev.testing.examples import load

pytestmark = pytest.mark.integration


TEMPLATES = REPO / "examples" / "templates"
CLUSTER_TEMPLATES = REPO / "examples" / "cluster-templates"


def test_a_flow_naming_a_template_is_stored_expanded_and_applied_again_is_refused(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    [template] = [d for d in map(load, sorted(TEMPLATES.glob("*.yaml"))) if d["kind"] == "JobFlowTemplate"]
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    made = flow("made", namespace, [])
    made["spec"] = {
        "templateRef": {"name": template["metadata"]["name"]},
        "arguments": {"parameters": [{"name": "ref", "value": "v2"}]},
    }
    done = apply(kubectl, made)
    assert done.returncode == 0, done.stderr
    stored = get_flow(kubectl, namespace, "made")
    assert stored["spec"]["steps"] == template["spec"]["steps"]
    assert "templateRef" not in stored["spec"]
    assert stored["metadata"]["labels"][LABEL_TEMPLATE] == template["metadata"]["name"]
    assert [(p["name"], p["value"]) for p in stored["spec"]["arguments"]["parameters"]] == [
        ("ref", "v2"),
        ("suite", "unit"),
    ]
    assert stored["spec"]["executionPolicy"]["backoffLimit"] == 2  # the template's, over the default
    # The same manifest applied again is refused, not expanded again: client-side and server-side apply
    # both give templateRef back beside the steps, and the CRD's rule refuses both (before the webhook).
    both = "spec.templateRef naming a JobFlowTemplate to take them from, not both"
    again = apply(kubectl, made)
    assert again.returncode != 0
    assert both in again.stderr
    server_side = kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(made), check=False
    )
    assert server_side.returncode != 0
    assert both in server_side.stderr
    assert get_flow(kubectl, namespace, "made")["spec"] == stored["spec"]


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        pytest.param(
            {
                "templateRef": {"name": "build-and-test"},
                "arguments": {"parameters": [{"name": "colour", "value": "red"}]},
            },
            'spec.arguments.parameters[0].name: Not found: "colour": JobFlowTemplate "build-and-test" '
            "declares no such argument (it declares: ref, suite)",
            id="undeclared-argument",
        ),
        pytest.param(
            {"templateRef": {"name": "ghost"}},
            'spec.templateRef.name: Not found: "ghost": JobFlowTemplate "ghost" not found in namespace',
            id="missing-template",
        ),
        pytest.param(
            {"templateRef": {"name": "ghost", "clusterScope": True}},
            'spec.templateRef.name: Not found: "ghost": ClusterJobFlowTemplate "ghost" not found',
            id="missing-cluster-template",
        ),
        pytest.param(  # refused before any read: `..` in the read's path was the API group's listing
            {"templateRef": {"name": "..", "clusterScope": True}},
            'spec.templateRef.name: Invalid value: "..": a lowercase RFC 1123 subdomain',
            id="not-a-template-name",
        ),
    ],
)
def test_a_flow_the_template_cannot_make_is_refused_naming_the_field(
    webhook: Webhook, kubectl: Kubectl, namespace: str, spec: dict[str, Any], error: str
) -> None:
    [template] = [d for d in map(load, sorted(TEMPLATES.glob("*.yaml"))) if d["kind"] == "JobFlowTemplate"]
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    bad = flow("bad", namespace, [])
    bad["spec"] = spec
    done = apply(kubectl, bad)
    assert done.returncode != 0
    [printed] = field_errors(done.stderr, "bad")
    assert printed.startswith(error), printed


CHILD_FLOWS = REPO / "examples" / "child-flows"


def test_a_flow_step_whose_template_is_not_there_yet_is_refused_and_applying_again_creates_it(
    webhook: Webhook, kubectl: Kubectl, namespace: str
) -> None:
    # The flow before its template (the wrong order of `kubectl apply -f dir/`): refused naming the step.
    release = load(CHILD_FLOWS / "b-release.yaml")
    release["metadata"]["namespace"] = namespace
    done = apply(kubectl, release)
    assert done.returncode != 0
    assert field_errors(done.stderr, "release") == [
        f'spec.steps[0].flow.templateRef.name: Not found: "package": JobFlowTemplate "package" not found in '
        f'namespace "{namespace}"'
    ]
    # A template whose Flow step names a template that is not there is admitted, with a warning.
    library = load(CHILD_FLOWS / "a-package.yaml")
    library["metadata"]["name"] = "library"
    library["spec"]["steps"] = release["spec"]["steps"][:1]
    warned = kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(library), check=False)
    assert warned.returncode == 0, warned.stderr
    assert 'Warning: spec.steps[0].flow.templateRef.name: Not found: "package"' in warned.stderr
    # Applying the folder again (template first, in name order) creates both; a wrong argument is refused.
    applied = kubectl("apply", "-n", namespace, "-f", str(CHILD_FLOWS), check=False)
    assert applied.returncode == 0, applied.stderr
    assert get_flow(kubectl, namespace, "release")["spec"]["steps"] == release["spec"]["steps"]
    wrong = copy.deepcopy(release)
    wrong["metadata"]["name"] = "wrong"
    wrong["spec"]["steps"][0]["flow"]["arguments"]["parameters"][0]["name"] = "colour"
    refused = apply(kubectl, wrong)
    assert refused.returncode != 0
    assert field_errors(refused.stderr, "wrong") == [
        'spec.steps[0].flow.arguments.parameters[0].name: Not found: "colour": JobFlowTemplate "package" '
        "declares no such argument (it declares: version)"
    ]
    # A run the controller makes of a CronJobFlow (its controller owner) is admitted, with the finding as a
    # warning: refusing it would skip the whole run.
    run = copy.deepcopy(wrong)
    run["metadata"]["name"] = "nightly-29000000"
    run["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "CronJobFlow",
            "name": "nightly",
            "uid": "c0a3d0a8-0000-4000-8000-000000000009",
            "controller": True,
        }
    ]
    admitted = kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(run), check=False)
    assert admitted.returncode == 0, admitted.stderr
    assert 'Warning: spec.steps[0].flow.arguments.parameters[0].name: Not found: "colour"' in admitted.stderr
    assert 'admitted as a run of CronJobFlow "nightly"' in admitted.stderr


@pytest.fixture
def cluster_template(kubectl: Kubectl) -> Iterator[dict[str, Any]]:
    """The example ClusterJobFlowTemplate under a name of this test's (cluster-scoped: shared by every
    test of the apiserver), deleted afterwards."""
    [template] = [
        d
        for d in map(load, sorted(CLUSTER_TEMPLATES.glob("*.yaml")))
        if d["kind"] == "ClusterJobFlowTemplate"
    ]
    template["metadata"]["name"] = f"scan-{secrets.token_hex(4)}"
    yield template
    kubectl("delete", "cjft", template["metadata"]["name"], "--ignore-not-found", check=False)


def test_a_flow_naming_a_cluster_template_is_stored_expanded_and_labelled(
    webhook: Webhook, kubectl: Kubectl, namespace: str, cluster_template: dict[str, Any]
) -> None:
    name = cluster_template["metadata"]["name"]
    kubectl("apply", "-f", "-", input=json.dumps(cluster_template))
    assert name in kubectl("get", "cjft").stdout  # the short name, no namespace
    # A JobFlowTemplate of the same name in the flow's namespace is not the one clusterScope names.
    [namespaced] = [d for d in map(load, sorted(TEMPLATES.glob("*.yaml"))) if d["kind"] == "JobFlowTemplate"]
    namespaced["metadata"]["name"] = name
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(namespaced))
    made = flow("made", namespace, [])
    made["spec"] = {
        "templateRef": {"name": name, "clusterScope": True},
        "arguments": {"parameters": [{"name": "image", "value": "nginx:1.27"}]},
    }
    done = apply(kubectl, made)
    assert done.returncode == 0, done.stderr
    stored = get_flow(kubectl, namespace, "made")
    assert stored["spec"]["steps"] == cluster_template["spec"]["steps"]
    assert "templateRef" not in stored["spec"]
    labels = stored["metadata"]["labels"]
    assert (labels[LABEL_TEMPLATE], labels[LABEL_CLUSTER_TEMPLATE]) == (name, "true")
    assert [(p["name"], p["value"]) for p in stored["spec"]["arguments"]["parameters"]] == [
        ("image", "nginx:1.27"),
        ("severity", "HIGH"),
    ]
    assert stored["spec"]["executionPolicy"]["backoffLimit"] == 1  # the cluster template's
    listed = kubectl(
        "get",
        "jf",
        "-n",
        namespace,
        "-l",
        f"{LABEL_TEMPLATE}={name},{LABEL_CLUSTER_TEMPLATE}=true",
        "-o",
        "name",
    )
    assert listed.stdout.split() == ["jobflow.workflow.kube-zen.io/made"]


def test_a_cluster_template_is_checked_with_the_jobflow_rules_when_written(
    webhook: Webhook, kubectl: Kubectl, cluster_template: dict[str, Any]
) -> None:
    cluster_template["spec"]["steps"][1]["dependencies"] = ["ghost"]
    done = kubectl("apply", "-f", "-", input=json.dumps(cluster_template), check=False)
    assert done.returncode != 0
    assert 'spec.steps[1].dependencies[0]: Not found: "ghost"' in done.stderr
    assert "ClusterJobFlowTemplate" in done.stderr
