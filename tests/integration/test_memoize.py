"""Step memoization against a real kube-apiserver (the test plays the Job controller): two flows with the
same key; the second runs no Job for the memoized step, gets its outputs from the cache ConfigMap the
first one created, and its dependent reads them. A full cache is refused by the apiserver's own 1 MiB
rule and evicts its oldest half; a ConfigMap without the cache label is never written."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from controller_steps import finish, job_of, jobs_by_step, wait_steps

from zen_flow.kube.objects import CONFIG_MAPS
from zen_flow.planner.memoization import MEMO_CACHE_LABEL, MemoEntry, data_key, encode_entry
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.jobstatus import complete_job

pytestmark = pytest.mark.integration

CACHE = "build-cache"


def steps(cache: str = CACHE) -> list[dict[str, Any]]:
    build = job_step(
        "build",
        inputs={"parameters": [{"name": "version", "value": "v1"}]},
        outputs={"parameters": [{"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}}]},
        memoize={
            "key": "build-{{inputs.parameters.version}}",
            "maxAge": "1h",
            "cache": {"configMap": {"name": cache}},
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


async def config_map(
    driver: FlowDriver, namespace: str, name: str, labels: dict[str, str], data: dict[str, str]
) -> None:
    body = {"metadata": {"name": name, "labels": labels}}
    await driver.kube.request("POST", CONFIG_MAPS.path(namespace), body=body)
    # Filled by patches of ~100 KB: the HTTP client refuses to send a body of 1 MiB at once.
    items = list(data.items())
    for at in range(0, len(items), 10):
        await driver.kube.request(
            "PATCH",
            CONFIG_MAPS.path(namespace, name),
            body={"data": dict(items[at : at + 10])},
            content_type="application/merge-patch+json",
        )


async def test_a_full_cache_evicts_its_oldest_half_and_an_unlabelled_configmap_is_never_written(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    # ~10 KB entries up to 50 bytes short of the ConfigMap limit: the apiserver refuses the next one.
    start = datetime.now(UTC) - timedelta(days=200)
    full: dict[str, str] = {}
    for i in range(100):
        entry = MemoEntry(
            f"k{i}", {"count": "x" * 10_000}, f"{namespace}/old", "build", start + timedelta(days=i)
        )
        full[data_key(entry.key)] = encode_entry(entry)
    room = 1_048_576 - sum(len(v) for v in full.values())  # the apiserver counts the values' bytes
    full["pad"] = "p" * (room - 50)
    await config_map(driver, namespace, CACHE, {MEMO_CACHE_LABEL: "true"}, full)
    settings = {"settings.yaml": "x: 1"}
    await config_map(driver, namespace, "app-settings", {"app": "payments"}, settings)
    start_controller()

    await driver.create(flow_manifest("first", namespace, steps()))
    await driver.create(flow_manifest("author", namespace, steps("app-settings")))
    await wait_steps(driver, namespace, "first", {"build": "Running"})
    await wait_steps(driver, namespace, "author", {"build": "Running"})  # no hit from an unlabelled one
    for flow in ("first", "author"):
        job = await job_of(driver, namespace, "build", flow=flow)
        await complete_job(driver.kube, namespace, job["metadata"]["name"])
    await wait_steps(driver, namespace, "first", {"build": "Succeeded", "use": "Running"})
    await wait_steps(driver, namespace, "author", {"build": "Succeeded", "use": "Running"})

    cache = await driver.kube.request("GET", CONFIG_MAPS.path(namespace, CACHE))
    kept = set(cache["data"])
    assert data_key("build-v1") in kept
    assert "pad" in kept  # not an entry: never touched
    assert kept - {"pad", data_key("build-v1")} == {data_key(f"k{i}") for i in range(50, 100)}
    other = await driver.kube.request("GET", CONFIG_MAPS.path(namespace, "app-settings"))
    assert other["data"] == settings
    assert other["metadata"]["labels"] == {"app": "payments"}
