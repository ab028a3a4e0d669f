"""The controller end to end on the full local cluster: real Jobs, real pods (kwok), real failures.

Each test runs its own `zen-flow run` process watching only the test's namespace.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from zen_flow.testing.controller import StartController
from zen_flow.testing.crd import UPSTREAM_EXAMPLES
from zen_flow.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow.testing.flows import chain, flow_manifest, job_step, job_template

EXAMPLES = UPSTREAM_EXAMPLES


def _jobs_by_step(jobs: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for job in jobs:
        labels = job["metadata"].get("labels", {})
        out.setdefault(labels.get("workflow.kube-zen.io/step", "?"), []).append(job["metadata"]["name"])
    return out


@pytest.mark.parametrize("example", ["dag-flow.yaml", "simple-linear-flow.yaml"])
async def test_upstream_examples_succeed(
    example: str, namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    manifest = yaml.safe_load((EXAMPLES / example).read_text())
    manifest["metadata"]["namespace"] = namespace  # the only change: run it in the test's namespace
    start_controller()
    await driver.create(manifest)
    name = manifest["metadata"]["name"]
    flow = await driver.wait_phase(namespace, name, timeout=90)
    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    assert set(step_phases(flow).values()) == {"Succeeded"}
    progress = flow["status"]["progress"]
    assert progress["completedSteps"] == progress["totalSteps"] == len(manifest["spec"]["steps"])
    assert {c["type"]: c["status"] for c in flow["status"]["conditions"]}["Complete"] == "True"
    jobs = _jobs_by_step(await driver.jobs(namespace))
    assert sorted(jobs) == sorted(s["name"] for s in manifest["spec"]["steps"])
    assert all(len(names) == 1 for names in jobs.values())


async def test_failing_step_fails_the_flow_and_skips_dependents(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    steps = [
        job_step("extract"),
        job_step("transform", "extract", template=job_template(exit_code=3)),
        job_step("load", "transform"),
        job_step("report", "load"),
    ]
    start_controller()
    await driver.create(flow_manifest("etl", namespace, steps))
    flow = await driver.wait_phase(namespace, "etl", timeout=60)
    assert flow["status"]["phase"] == "Failed"
    assert step_phases(flow) == {
        "extract": "Succeeded",
        "transform": "Failed",
        "load": "Skipped",
        "report": "Skipped",
    }
    assert sorted(_jobs_by_step(await driver.jobs(namespace))) == ["extract", "transform"]


async def test_continue_on_failure_lets_dependents_run(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    steps = [
        job_step("flaky", template=job_template(exit_code=1), continueOnFailure=True),
        job_step("after", "flaky"),
    ]
    start_controller()
    await driver.create(flow_manifest("tolerant", namespace, steps))
    flow = await driver.wait_phase(namespace, "tolerant", timeout=60)
    assert step_phases(flow) == {"flaky": "Failed", "after": "Succeeded"}
    # The original's meaning is kept: a failed step fails the flow even when its dependents ran.
    assert flow["status"]["phase"] == "Failed"


async def test_retry_creates_a_new_job_and_succeeds_on_a_later_attempt(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    retry = {"limit": 3, "backoff": {"type": "Fixed", "duration": "1s"}}
    steps = [job_step("flaky", template=job_template(exit_code=2, fail_attempts=2), retryPolicy=retry)]
    start_controller()
    await driver.create(flow_manifest("retrying", namespace, steps))
    flow = await driver.wait_phase(namespace, "retrying", timeout=90)
    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    step = flow["status"]["steps"][0]
    assert step["retryCount"] == 2
    names = _jobs_by_step(await driver.jobs(namespace))["flaky"]
    assert len(set(names)) == 3  # one Job per attempt, old attempts kept for logs
    assert step["jobRef"]["name"] in names


async def test_step_timeout_stops_its_job(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    steps = [
        job_step("slow", template=job_template(run_seconds=300), timeoutSeconds=2),
        job_step("next", "slow"),
    ]
    start_controller()
    await driver.create(flow_manifest("deadline", namespace, steps))
    flow = await driver.wait_phase(namespace, "deadline", timeout=60)
    assert step_phases(flow) == {"slow": "Failed", "next": "Skipped"}
    assert "timed out" in flow["status"]["steps"][0]["message"]

    async def job_gone_or_stopped() -> bool:
        jobs = await driver.jobs(namespace)
        return all(
            j["metadata"].get("deletionTimestamp")
            or any(
                c["type"] == "Failed" and c["status"] == "True"
                for c in j.get("status", {}).get("conditions", [])
            )
            for j in jobs
        )

    await wait_until(job_gone_or_stopped, 30, what="the timed-out Job stopped")


async def test_ttl_deletes_a_finished_flow_and_its_jobs(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    await driver.create(chain("short-lived", namespace, 2, executionPolicy={"ttlSecondsAfterFinished": 2}))
    await driver.wait_phase(namespace, "short-lived", timeout=60)
    await driver.wait_gone(namespace, "short-lived", timeout=30)

    async def no_jobs() -> bool:
        return not await driver.jobs(namespace)

    await wait_until(no_jobs, 60, what="the flow's Jobs garbage-collected")


async def test_sigkill_mid_flow_then_restart_completes_without_duplicates(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    length = 20
    first = start_controller()
    await driver.create(chain("long", namespace, length))

    async def some_progress() -> bool:
        flow = await driver.get(namespace, "long")
        done = ((flow or {}).get("status") or {}).get("progress", {}).get("completedSteps", 0)
        return 4 <= done < length

    await wait_until(some_progress, 60, interval=0.05, what="a few steps done")
    first.kill()
    start_controller()
    flow = await driver.wait_phase(namespace, "long", timeout=120)
    assert flow["status"]["phase"] == "Succeeded"
    jobs = _jobs_by_step(await driver.jobs(namespace))
    assert sorted(jobs) == sorted(f"s{i}" for i in range(length))  # no lost step
    assert all(len(names) == 1 for names in jobs.values()), jobs  # no duplicate Job


async def test_leader_election_one_acts_and_the_other_takes_over(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    fast_lease = ["--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "1"]
    common = {"leader_elect": True, "lease_namespace": namespace, "extra_args": fast_lease}
    a = start_controller(identity="replica-a", **common)

    async def a_leads() -> bool:
        return a.metric("leader_election_master_status") == 1

    await wait_until(a_leads, 30, what="replica-a leads")
    b = start_controller(identity="replica-b", **common)
    await driver.create(chain("first", namespace, 3))
    await driver.wait_phase(namespace, "first", timeout=60)
    assert b.metric("leader_election_master_status") == 0
    assert b.metric("zen_flow_job_creates_total") == 0  # the standby never acted

    a.kill()  # no release: b must wait for the lease to expire, then take over
    second = copy.deepcopy(chain("second", namespace, 3))
    await driver.create(second)
    flow = await driver.wait_phase(namespace, "second", timeout=60)
    assert flow["status"]["phase"] == "Succeeded"
    assert b.metric("leader_election_master_status") == 1
    assert b.metric("zen_flow_job_creates_total") == 3
