"""Matrix fan-out against a real kube-apiserver (the test plays the Job controller): a 2x2 matrix step
runs as four item Jobs, each with its values as inputs and in its annotation; the fan-in step starts
once all four ended and gets their outputs as one JSON array; the stored spec keeps its matrix."""

from __future__ import annotations

import json
from typing import Any

import pytest
from controller_steps import finish, jobs_by_step, wait_steps

from zen_flow.api.constants import ANNOTATION_MATRIX
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import flow_manifest, job_step

pytestmark = pytest.mark.integration

ITEMS = ["build-0", "build-1", "build-2", "build-3"]


def env(job: dict[str, Any]) -> dict[str, str]:
    entries = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e["value"] for e in entries if "value" in e}


async def test_a_matrix_step_runs_one_job_per_item_and_its_fan_in_reads_every_output(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    build = job_step(
        "build",
        matrix={
            "parameters": [
                {"name": "os", "values": ["linux", "darwin"]},
                {"name": "region", "valueFrom": {"argument": "regions"}},
            ]
        },
        outputs={"parameters": [{"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}}]},
    )
    source = {"jsonPath": "build:$.outputs.parameters.count"}
    publish = job_step("publish", "build", inputs={"parameters": [{"name": "all", "valueFrom": source}]})
    manifest = flow_manifest("matrix", namespace, [build, publish])
    manifest["spec"]["arguments"] = {"parameters": [{"name": "regions", "value": '["eu","us"]'}]}
    start_controller()
    await driver.create(manifest)

    await wait_steps(driver, namespace, "matrix", dict.fromkeys(ITEMS, "Running"))
    jobs = await jobs_by_step(driver, namespace, "matrix")
    assert sorted(jobs) == ITEMS  # no Job for the fan-in yet, none for the matrix step itself
    values = {item: json.loads(jobs[item][0]["metadata"]["annotations"][ANNOTATION_MATRIX]) for item in ITEMS}
    assert values == {
        "build-0": {"os": "linux", "region": "eu"},
        "build-1": {"os": "linux", "region": "us"},
        "build-2": {"os": "darwin", "region": "eu"},
        "build-3": {"os": "darwin", "region": "us"},
    }
    assert env(jobs["build-3"][0])["ZF_PARAM_REGION"] == "us"

    for item in ITEMS:
        await finish(driver, namespace, item)
    await wait_steps(driver, namespace, "matrix", {**dict.fromkeys(ITEMS, "Succeeded"), "publish": "Running"})
    publish_job = (await jobs_by_step(driver, namespace, "matrix"))["publish"][0]
    assert env(publish_job)["ZF_PARAM_ALL"] == '["1","1","1","1"]'
    await finish(driver, namespace, "publish")
    flow = await driver.wait_phase(namespace, "matrix", timeout=30)
    assert flow["status"]["phase"] == "Succeeded"
    assert flow["status"]["progress"]["totalSteps"] == 5
    assert "matrix" in flow["spec"]["steps"][0]  # the stored spec is as written


async def test_max_parallel_runs_at_most_that_many_items_at_once_in_item_order(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    items = [f"shard-{i}" for i in range(6)]
    shard = job_step(
        "shard", matrix={"maxParallel": 2, "parameters": [{"name": "n", "values": list("abcdef")}]}
    )
    start_controller()
    await driver.create(flow_manifest("limited", namespace, [shard]))

    for k in range(len(items)):
        # Items k and k+1 run (the earlier ones finished); the later ones wait, no Job created for them.
        running = items[k : k + 2]
        await wait_steps(driver, namespace, "limited", dict.fromkeys(running, "Running"))
        jobs = await jobs_by_step(driver, namespace, "limited")
        unfinished = [
            step for step, found in jobs.items() if not found[0].get("status", {}).get("conditions")
        ]
        assert sorted(unfinished) == running
        assert sorted(jobs) == items[: k + 2]
        if k + 2 < len(items):
            flow = await driver.get(namespace, "limited")
            waiting = {s["name"]: s.get("message") for s in flow["status"]["steps"]}
            assert waiting[items[k + 2]] == "waiting for a slot: matrix shard maxParallel 2 reached"
        await finish(driver, namespace, items[k])
    flow = await driver.wait_phase(namespace, "limited", timeout=30)
    assert flow["status"]["phase"] == "Succeeded"
