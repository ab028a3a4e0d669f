"""JobFlowTemplates against a real kube-apiserver and controller: the CRD takes the shipped template and a
flow naming it; the flow, created with no steps (this tier runs no webhook, so the controller expands it),
gets the template's steps (in place of its templateRef), labels and merged arguments, and runs to
Succeeded (the test finishes its Jobs, as the Job controller would); an edit of the template afterwards
leaves the flow as it was."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_steps import WAIT, finish, wait_steps

from zen_flow.api.constants import LABEL_TEMPLATE
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "templates"


def example(kind: str) -> dict[str, Any]:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        doc: dict[str, Any] = yaml.safe_load(path.read_text())
        if doc["kind"] == kind:
            return doc
    raise AssertionError(f"no {kind} in {EXAMPLES}")


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
