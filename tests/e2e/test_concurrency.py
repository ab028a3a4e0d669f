"""executionPolicy.concurrencyPolicy end to end: flows sharing the concurrency-key label.

Each test runs its own `zen-flow run` process watching only the test's namespace. The newer flow of
each test is created after the older one runs and has a later name, so it is the newer one even when
both carry the same creation second.
"""

from __future__ import annotations

from typing import Any

from zen_flow.api.constants import LABEL_CONCURRENCY_KEY, LABEL_FLOW
from zen_flow.api.meta import parse_time
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template

KEY = "nightly-report"
GROUP = {LABEL_CONCURRENCY_KEY: KEY}


def conditions(flow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (flow.get("status") or {}).get("conditions", [])}


async def flow_jobs(driver: FlowDriver, namespace: str, flow: str) -> list[dict[str, Any]]:
    return [
        j for j in await driver.jobs(namespace) if j["metadata"].get("labels", {}).get(LABEL_FLOW) == flow
    ]


async def event_reasons(driver: FlowDriver, namespace: str, flow: str) -> list[str]:
    events = await driver.kube.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/events",
        query=[("fieldSelector", f"involvedObject.name={flow}")],
    )
    return [e.get("reason", "") for e in events.get("items", [])]


async def wait_running(driver: FlowDriver, namespace: str, flow: str) -> dict[str, Any]:
    """The flow once it runs and its first Job exists."""

    async def probe() -> dict[str, Any] | None:
        obj = await driver.get(namespace, flow)
        if ((obj or {}).get("status") or {}).get("phase") != "Running":
            return None
        return obj if await flow_jobs(driver, namespace, flow) else None

    return await wait_until(probe, 30, what=f"{flow} running with a Job")


async def test_forbid_second_flow_waits_until_the_first_succeeded(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    slow = [
        job_step("extract", template=job_template(run_seconds=3)),
        job_step("load", "extract", template=job_template(run_seconds=1)),
    ]
    await driver.create(flow_manifest("first", namespace, slow, labels=GROUP))
    await wait_running(driver, namespace, "first")
    await driver.create(flow_manifest("second", namespace, [job_step("report")], labels=GROUP))

    async def queued() -> dict[str, Any] | None:
        obj = await driver.get(namespace, "second")
        return obj if obj and conditions(obj).get("Queued", {}).get("status") == "True" else None

    waiting = await wait_until(queued, 30, what="second queued")
    assert waiting["status"]["phase"] == "Pending"
    expected = f"waiting for first (concurrency group {KEY})"
    assert waiting["status"]["message"] == expected
    assert conditions(waiting)["Queued"]["reason"] == "ConcurrencyForbid"
    assert not await flow_jobs(driver, namespace, "second")

    first = await driver.wait_phase(namespace, "first", timeout=60)
    second = await driver.wait_phase(namespace, "second", timeout=60)
    assert first["status"]["phase"] == second["status"]["phase"] == "Succeeded"
    assert conditions(second)["Queued"]["status"] == "False"

    # They never overlapped: the second flow's Jobs came after the first flow finished, and the first
    # flow's steps had all finished before the second flow's step started.
    first_done = parse_time(first["status"]["completionTime"])
    assert parse_time(second["status"]["startTime"]) >= first_done
    jobs = await flow_jobs(driver, namespace, "second")
    assert len(jobs) == 1
    assert all(parse_time(j["metadata"]["creationTimestamp"]) >= first_done for j in jobs)
    last_first_step = max(parse_time(s["completionTime"]) for s in first["status"]["steps"])
    first_second_step = min(parse_time(s["startTime"]) for s in second["status"]["steps"])
    assert last_first_step <= first_second_step

    async def queued_event() -> bool:
        return "FlowQueued" in await event_reasons(driver, namespace, "second")

    await wait_until(queued_event, 30, what="a FlowQueued event for second")
    assert (await event_reasons(driver, namespace, "second")).count("FlowQueued") == 1


async def test_replace_stops_the_older_flow_and_deletes_its_job(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    long_running = [
        job_step("crunch", template=job_template(run_seconds=300)),
        job_step("publish", "crunch"),
    ]
    await driver.create(flow_manifest("v1-long", namespace, long_running, labels=GROUP))
    await wait_running(driver, namespace, "v1-long")
    old_jobs = {j["metadata"]["name"] for j in await flow_jobs(driver, namespace, "v1-long")}
    assert len(old_jobs) == 1

    replace = {"concurrencyPolicy": "Replace"}
    await driver.create(
        flow_manifest("v2-replace", namespace, [job_step("quick")], labels=GROUP, executionPolicy=replace)
    )
    old = await driver.wait_phase(namespace, "v1-long", timeout=60)
    assert old["status"]["phase"] == "Failed"
    message = f"replaced by newer flow v2-replace (concurrency group {KEY})"
    failed = conditions(old)["Failed"]
    assert (failed["status"], failed["reason"], failed["message"]) == ("True", "Replaced", message)
    assert old["status"]["message"] == message
    assert step_phases(old) == {"crunch": "Failed", "publish": "Skipped"}

    new = await driver.wait_phase(namespace, "v2-replace", timeout=60)
    assert new["status"]["phase"] == "Succeeded"

    async def old_job_deleted() -> bool:
        left = await flow_jobs(driver, namespace, "v1-long")
        return all(j["metadata"].get("deletionTimestamp") for j in left)

    await wait_until(old_job_deleted, 30, what="the replaced flow's Job deleted")

    async def replaced_event() -> bool:
        return "FlowReplaced" in await event_reasons(driver, namespace, "v1-long")

    await wait_until(replaced_event, 30, what="a FlowReplaced event for v1-long")
