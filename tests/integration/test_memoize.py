"""Step memoization against a real kube-apiserver (the test plays the Job controller): two flows with the
same key; the second runs no Job for the memoized step, gets its outputs from the cache ConfigMap the
first one created, and its dependent reads them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from controller_steps import finish, jobs_by_step, wait_steps

from zen_flow.kube.objects import CONFIG_MAPS
from zen_flow.planner.memoization import data_key
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import flow_manifest, job_step

pytestmark = pytest.mark.integration

CACHE = "build-cache"


def steps() -> list[dict[str, Any]]:
    build = job_step(
        "build",
        inputs={"parameters": [{"name": "version", "value": "v1"}]},
        outputs={"parameters": [{"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}}]},
        memoize={
            "key": "build-{{inputs.parameters.version}}",
            "maxAge": "1h",
            "cache": {"configMap": {"name": CACHE}},
        },
    )
    source = {"jsonPath": "build:$.outputs.parameters.count"}
    use = job_step("use", "build", inputs={"parameters": [{"name": "n", "valueFrom": source}]})
    return [build, use]


def env(job: dict[str, Any]) -> dict[str, str]:
    entries = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e["value"] for e in entries if "value" in e}


async def test_a_second_flow_with_the_same_key_runs_no_job_for_the_memoized_step(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    await driver.create(flow_manifest("first", namespace, steps()))
    await wait_steps(driver, namespace, "first", {"build": "Running"})
    await finish(driver, namespace, "build")
    await wait_steps(driver, namespace, "first", {"build": "Succeeded", "use": "Running"})

    # The first flow stored its result: the ConfigMap exists, labelled, with the entry under the key's hash.
    cache = await driver.kube.request("GET", CONFIG_MAPS.path(namespace, CACHE))
    assert cache["metadata"]["labels"] == {"workflow.kube-zen.io/memo-cache": "true"}
    assert not cache["metadata"].get("ownerReferences")
    entry = json.loads(cache["data"][data_key("build-v1")])
    assert entry["key"] == "build-v1"
    assert entry["outputs"] == {"count": "1"}
    assert entry["flow"] == f"{namespace}/first"

    await driver.create(flow_manifest("second", namespace, steps()))
    flow = await wait_steps(driver, namespace, "second", {"build": "Succeeded", "use": "Running"})
    build = next(s for s in flow["status"]["steps"] if s["name"] == "build")
    assert "jobRef" not in build
    assert build["outputs"]["parameters"] == [{"name": "count", "value": "1"}]
    assert build["message"].startswith(f"memoized: the result flow {namespace}/first (step build)")
    second = await jobs_by_step(driver, namespace, "second")
    assert sorted(second) == ["use"]  # no Job for the memoized step
    assert env(second["use"][0])["ZF_PARAM_N"] == "1"
