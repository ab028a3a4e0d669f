"""Values supplied at a Manual gate against a real kube-apiserver and a controller reconciling (the test
plays the Job controller): the CRD takes `valueFrom.supplied` (its CEL rule allows exactly one source),
`zen-flow approve -p env=prod` writes the values and the approval, the gate records them in its status
outputs, and the downstream step's Job receives them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from controller_steps import job_of, wait_steps

from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step

pytestmark = pytest.mark.integration


def cli(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "zen_flow", *args, "--kubeconfig", str(kubeconfig)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def rollout(namespace: str) -> dict[str, Any]:
    params = [
        {"name": "env", "valueFrom": {"supplied": {"enum": ["staging", "prod"], "description": "where"}}},
        {"name": "version", "valueFrom": {"supplied": {"default": "1.0"}}},
    ]
    reads = [
        {"name": "env", "valueFrom": {"jsonPath": "gate:$.outputs.parameters.env"}},
        {"name": "version", "valueFrom": {"jsonPath": "gate:$.outputs.parameters.version"}},
    ]
    steps = [
        manual_step("gate", outputs={"parameters": params}),
        job_step(
            "deploy", "gate", inputs={"parameters": reads}, when="steps.gate.outputs.parameters.env == 'prod'"
        ),
    ]
    return flow_manifest("rollout", namespace, steps)


def env(job: dict[str, Any]) -> dict[str, str]:
    entries = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e["value"] for e in entries if "value" in e}


async def test_a_value_given_with_the_approval_reaches_the_downstream_job(
    namespace: str, kubeconfig: Path, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    created = await driver.create(rollout(namespace))
    assert created["spec"]["steps"][0]["outputs"]["parameters"][0]["valueFrom"]["supplied"]["enum"] == [
        "staging",
        "prod",
    ]  # the schema kept it (not pruned)
    await wait_steps(driver, namespace, "rollout", {"gate": "PendingApproval"})

    done = cli(kubeconfig, "approve", "rollout", "gate", "-n", namespace, "-p", "env=qa")
    assert done.returncode != 0
    assert "value 'qa' of parameter 'env' is not one of: staging, prod" in done.stderr

    done = cli(kubeconfig, "approve", "rollout", "gate", "-n", namespace, "-p", "env=prod")
    assert (done.returncode, done.stdout) == (0, f"jobflow {namespace}/rollout: step gate approved\n"), (
        done.stderr
    )
    stored = await driver.get(namespace, "rollout")
    assert stored is not None
    assert json.loads(stored["metadata"]["annotations"]["values.workflow.kube-zen.io/gate"]) == {
        "env": "prod"
    }

    flow = await wait_steps(driver, namespace, "rollout", {"gate": "Succeeded", "deploy": "Running"})
    gate = next(s for s in flow["status"]["steps"] if s["name"] == "gate")
    assert gate["outputs"]["parameters"] == [
        {"name": "env", "value": "prod"},
        {"name": "version", "value": "1.0"},
    ]
    job = await job_of(driver, namespace, "deploy", flow="rollout")
    assert env(job)["ZF_PARAM_ENV"] == "prod"
    assert env(job)["ZF_PARAM_VERSION"] == "1.0"


async def test_the_crd_refuses_an_output_with_two_sources(namespace: str, driver: FlowDriver) -> None:
    flow = rollout(namespace)
    flow["metadata"]["name"] = "two-sources"
    flow["spec"]["steps"][0]["outputs"]["parameters"][0]["valueFrom"]["jsonPath"] = "$.succeeded"
    with pytest.raises(Exception, match="exactly one of jsonPath and terminationMessage"):
        await driver.create(flow)
