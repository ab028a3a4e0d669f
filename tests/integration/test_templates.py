"""JobFlowTemplates against a real kube-apiserver and controller: the CRD takes the shipped template and a
flow naming it; the flow, created with no steps (this tier runs no webhook, so the controller expands it),
gets the template's steps (in place of its templateRef), labels and merged arguments, and runs to
Succeeded (the test finishes its Jobs, as the Job controller would); an edit of the template afterwards
leaves the flow as it was. A flow naming a ClusterJobFlowTemplate (`templateRef.clusterScope`) is
expanded from it the same way, in its own namespace."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_steps import WAIT, finish, wait_steps

from zen_flow.api.constants import LABEL_CLUSTER_TEMPLATE, LABEL_TEMPLATE
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(kind: str, cluster: bool = False) -> dict[str, Any]:
    """The example of `kind`; of a JobFlow, the one naming a cluster template or (default) not."""
    folder = EXAMPLES / ("cluster-templates" if cluster or kind == "ClusterJobFlowTemplate" else "templates")
    for path in sorted(folder.glob("*.yaml")):
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        if doc["kind"] == kind and (
            kind != "JobFlow" or doc["spec"]["templateRef"].get("clusterScope", False) == cluster
        ):
            return doc
    raise AssertionError(f"no {kind} in {folder}")


async def test_a_flow_made_from_a_template_runs_its_steps_and_keeps_them_when_the_template_changes(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    template, flow = example("JobFlowTemplate"), example("JobFlow")
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    assert "build-and-test" in kubectl("get", "jft", "-n", namespace).stdout  # the short name
    flow["metadata"]["namespace"] = namespace
    await driver.create(flow)
    start_controller()
    name = flow["metadata"]["name"]
    await wait_steps(driver, namespace, name, {"build": "Running", "test": "Pending"})
    stored = await driver.get(namespace, name)
    assert stored is not None
    assert stored["metadata"]["labels"][LABEL_TEMPLATE] == "build-and-test"
    assert "templateRef" not in stored["spec"]  # replaced by the steps; the label says where from
    assert stored["spec"]["steps"] == template["spec"]["steps"]
    assert [(p["name"], p["value"]) for p in stored["spec"]["arguments"]["parameters"]] == [
        ("ref", "v2"),
        ("suite", "integration"),
    ]
    policy = stored["spec"]["executionPolicy"]
    assert (policy["backoffLimit"], policy["activeDeadlineSeconds"]) == (2, 1800)  # template's, flow's
    listed = kubectl("get", "jf", "-n", namespace, "-l", f"{LABEL_TEMPLATE}=build-and-test", "-o", "name")
    assert listed.stdout.split() == [f"jobflow.workflow.kube-zen.io/{name}"]

    # The template changes: the flow made from it does not.
    template["spec"]["steps"] = template["spec"]["steps"][:1]
    template["spec"]["steps"][0]["name"] = "only"
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    await finish(driver, namespace, "build")
    await wait_steps(driver, namespace, name, {"build": "Succeeded", "test": "Running"})
    await finish(driver, namespace, "test")
    done = await driver.wait_phase(namespace, name, ("Succeeded",), timeout=WAIT)
    assert [s["name"] for s in done["spec"]["steps"]] == ["build", "test"]


async def test_a_flow_naming_a_missing_template_fails_with_template_not_found(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    flow = example("JobFlow")
    flow["metadata"]["namespace"] = namespace
    flow["spec"]["templateRef"] = {"name": "ghost"}
    await driver.create(flow)
    start_controller()
    failed = await driver.wait_phase(namespace, flow["metadata"]["name"], ("Failed",), timeout=WAIT)
    valid = next(c for c in failed["status"]["conditions"] if c["type"] == "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "TemplateNotFound")
    assert f'JobFlowTemplate "ghost" not found in namespace "{namespace}"' in valid["message"]


# --- ClusterJobFlowTemplates ------------------------------------------------------------------------------


@pytest.fixture
def cluster_template(kubectl: Any) -> Iterator[dict[str, Any]]:
    """The example ClusterJobFlowTemplate under a name of this test's (cluster-scoped: shared by every
    test of the apiserver), deleted afterwards."""
    template = example("ClusterJobFlowTemplate")
    template["metadata"]["name"] = f"scan-{secrets.token_hex(4)}"
    yield template
    kubectl("delete", "cjft", template["metadata"]["name"], "--ignore-not-found", check=False)


async def test_a_flow_made_from_a_cluster_template_runs_its_steps_in_its_namespace(
    namespace: str,
    kubectl: Any,
    driver: FlowDriver,
    start_controller: StartController,
    cluster_template: dict[str, Any],
) -> None:
    name = cluster_template["metadata"]["name"]
    kubectl("apply", "-f", "-", input=json.dumps(cluster_template))
    assert name in kubectl("get", "cjft").stdout  # the short name, no namespace
    flow = example("JobFlow", cluster=True)
    flow["metadata"]["namespace"] = namespace
    flow["spec"]["templateRef"]["name"] = name
    await driver.create(flow)
    start_controller()
    flow_name = flow["metadata"]["name"]
    await wait_steps(driver, namespace, flow_name, {"scan": "Running", "report": "Pending"})
    stored = await driver.get(namespace, flow_name)
    assert stored is not None
    labels = stored["metadata"]["labels"]
    assert (labels[LABEL_TEMPLATE], labels[LABEL_CLUSTER_TEMPLATE]) == (name, "true")
    assert "templateRef" not in stored["spec"]
    assert stored["spec"]["steps"] == cluster_template["spec"]["steps"]
    assert [(p["name"], p["value"]) for p in stored["spec"]["arguments"]["parameters"]] == [
        ("image", "nginx:1.27"),
        ("severity", "HIGH"),
    ]
    await finish(driver, namespace, "scan")
    await wait_steps(driver, namespace, flow_name, {"scan": "Succeeded", "report": "Running"})
    await finish(driver, namespace, "report")
    await driver.wait_phase(namespace, flow_name, ("Succeeded",), timeout=WAIT)


async def test_a_flow_naming_a_missing_cluster_template_fails_with_template_not_found(
    namespace: str, kubectl: Any, driver: FlowDriver, start_controller: StartController
) -> None:
    # A JobFlowTemplate of that name in the flow's namespace is not the one clusterScope names.
    template = example("JobFlowTemplate")
    template["metadata"]["name"] = "ghost"
    kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(template))
    flow = example("JobFlow", cluster=True)
    flow["metadata"]["namespace"] = namespace
    flow["spec"]["templateRef"]["name"] = "ghost"
    await driver.create(flow)
    start_controller()
    failed = await driver.wait_phase(namespace, flow["metadata"]["name"], ("Failed",), timeout=WAIT)
    valid = next(c for c in failed["status"]["conditions"] if c["type"] == "Valid")
    assert (valid["status"], valid["reason"]) == ("False", "TemplateNotFound")
    assert valid["message"] == (
        'cannot expand the flow: spec.templateRef.name: Not found: "ghost": '
        'ClusterJobFlowTemplate "ghost" not found'
    )
