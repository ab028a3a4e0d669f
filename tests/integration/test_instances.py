"""Several controllers in one cluster (`--instance-id`): each runs only its own flows, and relabelling a
running flow hands it over without its Jobs being deleted (docs/OPERATOR_GUIDE.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from controller_steps import WAIT, job_of, wait_steps

from zen_flow.api.constants import LABEL_INSTANCE
from zen_flow_dev.testing.controller import ControllerProcess, StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.jobstatus import complete_job

pytestmark = pytest.mark.integration


def _two_steps(name: str, namespace: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return flow_manifest(name, namespace, [job_step("first"), job_step("second", "first")], labels=labels)


def _creates(controller: ControllerProcess) -> float:
    return controller.metric("zen_flow_job_creates_total", result="created")


def _leads(controller: ControllerProcess) -> str:
    """The name of the Lease the controller leads on (its `leader_election_master_status` of 1)."""
    [lease] = [
        line.partition('name="')[2].partition('"')[0]
        for line in controller.get("/metrics")[1].splitlines()
        if line.startswith("leader_election_master_status{") and line.endswith(" 1.0")
    ]
    return lease


async def _cached(controller: ControllerProcess, count: int) -> None:
    async def probe() -> bool:
        return controller.metric("zen_flow_informer_cached_objects", resource="jobflows") == count

    await wait_until(probe, WAIT, what=f"{count} JobFlows in the cache of {controller.args}")


async def test_each_controller_runs_only_its_own_flows(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    # Both elect a leader in the test's namespace: each instance has its own Lease, so both lead.
    team_a = start_controller(
        leader_elect=True, lease_namespace=namespace, extra_args=["--instance-id", "team-a"]
    )
    default = start_controller(leader_elect=True, lease_namespace=namespace)
    await driver.create(_two_steps("of-a", namespace, {LABEL_INSTANCE: "team-a"}))
    await driver.create(_two_steps("of-default", namespace))
    await driver.create(_two_steps("of-nobody", namespace, {LABEL_INSTANCE: "team-b"}))

    for name in ("of-a", "of-default"):
        await wait_steps(driver, namespace, name, {"first": "Running"})
    assert _leads(team_a) == "zen-flow-controller-team-a"
    assert _leads(default) == "zen-flow-controller"
    assert team_a.metric("zen_flow_controller_info", instance_id="team-a") == 1
    assert default.metric("zen_flow_controller_info", instance_id="") == 1
    # Selected on the apiserver: each cache holds its own flow only (not team-b's, which nobody runs).
    await _cached(team_a, 1)
    await _cached(default, 1)

    first_of_a = await job_of(driver, namespace, "first", flow="of-a")
    assert first_of_a["metadata"]["labels"][LABEL_INSTANCE] == "team-a"
    first_of_default = await job_of(driver, namespace, "first", flow="of-default")
    assert LABEL_INSTANCE not in first_of_default["metadata"]["labels"]
    for job in (first_of_a, first_of_default):
        await complete_job(driver.kube, namespace, job["metadata"]["name"])
    for name in ("of-a", "of-default"):
        await wait_steps(driver, namespace, name, {"first": "Succeeded", "second": "Running"})
    for name in ("of-a", "of-default"):
        second = await job_of(driver, namespace, "second", flow=name)
        await complete_job(driver.kube, namespace, second["metadata"]["name"])
    for name in ("of-a", "of-default"):
        assert (await driver.wait_phase(namespace, name, timeout=WAIT))["status"]["phase"] == "Succeeded"
    # Each created exactly its own flow's two Jobs; the flow of an instance nobody runs never started.
    assert (_creates(team_a), _creates(default)) == (2, 2)
    nobody = await driver.get(namespace, "of-nobody")
    assert nobody is not None
    assert not (nobody.get("status") or {}).get("phase")


def _cron(name: str, namespace: str, labels: dict[str, str]) -> str:
    container = {"name": "main", "image": "busybox:1.36", "command": ["true"]}
    pod = {"restartPolicy": "Never", "containers": [container]}
    job = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}}}
    return json.dumps(
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "CronJobFlow",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            # Once a year: the test is about which controller takes it, not its runs.
            "spec": {
                "schedule": "0 0 1 1 *",
                "jobFlowTemplate": {"spec": {"steps": [{"name": "a", "template": job}]}},
            },
        }
    )


async def test_each_controller_runs_only_its_own_cronjobflows(
    namespace: str, kubectl: Any, start_controller: StartController, jobflow_crd: Any
) -> None:
    team_a = start_controller(extra_args=["--instance-id", "team-a"])
    default = start_controller()
    kubectl("create", "-f", "-", input=_cron("of-a", namespace, {LABEL_INSTANCE: "team-a"}))
    kubectl("create", "-f", "-", input=_cron("of-default", namespace, {}))
    kubectl("create", "-f", "-", input=_cron("of-nobody", namespace, {LABEL_INSTANCE: "team-b"}))

    def status(name: str) -> dict[str, Any]:
        got = json.loads(kubectl("get", "cjf", name, "-n", namespace, "-o", "json").stdout)
        return got.get("status") or {}

    async def both_written() -> bool:
        return all(status(name).get("conditions") for name in ("of-a", "of-default"))

    await wait_until(both_written, WAIT, what="the status of of-a and of-default")
    # Selected on the apiserver: each caches its own CronJobFlow only; team-b's is nobody's.
    for controller in (team_a, default):
        assert controller.metric("zen_flow_informer_cached_objects", resource="cronjobflows") == 1
    assert status("of-nobody") == {}


async def test_relabelling_a_running_flow_hands_it_over_with_its_jobs(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    team_a = start_controller(extra_args=["--instance-id", "team-a"])
    default = start_controller()
    await driver.create(_two_steps("moved", namespace, {LABEL_INSTANCE: "team-a"}))
    await wait_steps(driver, namespace, "moved", {"first": "Running"})
    first = await job_of(driver, namespace, "first", flow="moved")
    assert _creates(team_a) == 1

    # To the controller without an instance id: the label goes.
    await driver.patch(namespace, "moved", {"metadata": {"labels": {LABEL_INSTANCE: None}}})
    await _cached(team_a, 0)  # team-a's watch saw it leave, as if deleted
    await _cached(default, 1)

    await complete_job(driver.kube, namespace, first["metadata"]["name"])
    flow = await wait_steps(driver, namespace, "moved", {"first": "Succeeded", "second": "Running"})
    # The new controller took the flow over from its stored status: the first step kept its Job (the one
    # team-a made, not deleted, not made again), and it made the second step's Job.
    assert flow["status"]["steps"][0]["jobRef"]["uid"] == first["metadata"]["uid"]
    still = await job_of(driver, namespace, "first", flow="moved")
    assert still["metadata"]["uid"] == first["metadata"]["uid"]
    assert not still["metadata"].get("deletionTimestamp")
    second = await job_of(driver, namespace, "second", flow="moved")
    assert LABEL_INSTANCE not in second["metadata"]["labels"]
    assert (_creates(team_a), _creates(default)) == (1, 1)

    await complete_job(driver.kube, namespace, second["metadata"]["name"])
    done = await driver.wait_phase(namespace, "moved", timeout=WAIT)
    assert done["status"]["phase"] == "Succeeded"
    assert step_phases(done) == {"first": "Succeeded", "second": "Succeeded"}
    assert team_a.metric("zen_flow_job_deletes_total") == 0
