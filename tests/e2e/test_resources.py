"""spec.resourceTemplates end to end: the flow's PVC and ConfigMap exist before its steps, are owned by
the flow and listed in status.resourceRefs, and go with the flow.

The step mounts the ConfigMap by its final name (`<flow>-<template name>`), as users write it. It does
not mount the PVC: the local cluster has no StorageClass and no PersistentVolume, so the claim stays
Pending, and the scheduler refuses a pod with an unbound claim (`test_unbound_claim_blocks_scheduling`
keeps that finding honest).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from zen_flow.kube.errors import NotFound
from zen_flow.kube.objects import CONFIG_MAPS, PERSISTENT_VOLUME_CLAIMS
from zen_flow_dev.testing.controller import ControllerProcess, StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template

CLAIM = {
    "metadata": {"name": "scratch", "labels": {"team": "data"}},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
}
SETTINGS = {"metadata": {"name": "settings"}, "data": {"mode": "fast"}}


@pytest.fixture
def controller(start_controller: StartController) -> ControllerProcess:
    return start_controller()


async def get_object(driver: FlowDriver, path: str) -> dict[str, Any] | None:
    try:
        return await driver.kube.request("GET", path)
    except NotFound:
        return None


def mounting_config_map(name: str) -> dict[str, Any]:
    template = job_template()
    pod = template["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "settings", "configMap": {"name": name}}]
    pod["containers"][0]["volumeMounts"] = [{"name": "settings", "mountPath": "/etc/settings"}]
    return template


async def test_templates_become_owned_objects_before_the_steps_and_go_with_the_flow(
    namespace: str, driver: FlowDriver, controller: ControllerProcess
) -> None:
    steps = [job_step("use", template=mounting_config_map("res-settings")), job_step("after", "use")]
    manifest = flow_manifest(
        "res",
        namespace,
        steps,
        resourceTemplates={"volumeClaimTemplates": [CLAIM], "configMapTemplates": [SETTINGS]},
        executionPolicy={"ttlSecondsAfterFinished": 3600},
    )
    created = await driver.create(manifest)
    flow = await driver.wait_phase(namespace, "res", timeout=90)
    assert flow["status"]["phase"] == "Succeeded", flow["status"]
    assert step_phases(flow) == {"use": "Succeeded", "after": "Succeeded"}

    claim = await get_object(driver, PERSISTENT_VOLUME_CLAIMS.path(namespace, "res-scratch"))
    config = await get_object(driver, CONFIG_MAPS.path(namespace, "res-settings"))
    assert claim is not None
    assert config is not None
    assert config["data"] == {"mode": "fast"}
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    for obj in (claim, config):
        meta = obj["metadata"]
        assert meta["labels"]["workflow.kube-zen.io/flow"] == "res"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "zen-flow"
        [owner] = meta["ownerReferences"]
        assert (owner["kind"], owner["name"], owner["uid"]) == ("JobFlow", "res", created["metadata"]["uid"])
        assert owner["controller"] is True
    assert claim["metadata"]["labels"]["team"] == "data"

    refs = {(r["kind"], r["name"]): r for r in flow["status"]["resourceRefs"]}
    assert set(refs) == {("PersistentVolumeClaim", "res-scratch"), ("ConfigMap", "res-settings")}
    assert refs[("PersistentVolumeClaim", "res-scratch")]["uid"] == claim["metadata"]["uid"]
    assert refs[("ConfigMap", "res-settings")]["uid"] == config["metadata"]["uid"]
    assert all(r["apiVersion"] == "v1" and r["namespace"] == namespace for r in refs.values())

    # Objects before steps: both were created before the first Job.
    [first_job] = [
        j
        for j in await driver.jobs(namespace)
        if j["metadata"]["labels"].get("workflow.kube-zen.io/step") == "use"
    ]
    job_created = first_job["metadata"]["creationTimestamp"]
    assert claim["metadata"]["creationTimestamp"] <= job_created
    assert config["metadata"]["creationTimestamp"] <= job_created

    await driver.delete(namespace, "res")
    await driver.wait_gone(namespace, "res")

    async def collected() -> bool:
        config_now = await get_object(driver, CONFIG_MAPS.path(namespace, "res-settings"))
        claim_now = await get_object(driver, PERSISTENT_VOLUME_CLAIMS.path(namespace, "res-scratch"))
        # The garbage collector deletes the claim; it may linger Terminating with only the
        # kubernetes.io/pvc-protection finalizer, whose controller the local cluster does not run.
        claim_deleted = claim_now is None or claim_now["metadata"].get("deletionTimestamp") is not None
        return config_now is None and claim_deleted

    await wait_until(collected, 60, what="the flow's ConfigMap and PVC garbage-collected")


async def test_a_name_taken_by_someone_else_fails_the_flow(
    namespace: str, driver: FlowDriver, controller: ControllerProcess
) -> None:
    foreign = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "taken-settings"}, "data": {}}
    await driver.kube.request("POST", CONFIG_MAPS.path(namespace), body=foreign)
    manifest = flow_manifest(
        "taken",
        namespace,
        [job_step("a")],
        resourceTemplates={"configMapTemplates": [copy.deepcopy(SETTINGS)]},
    )
    await driver.create(manifest)
    flow = await driver.wait_phase(namespace, "taken", timeout=60)
    assert flow["status"]["phase"] == "Failed"
    failed = next(c for c in flow["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "ResourceConflict"
    assert "ConfigMap taken-settings already exists and was not created by this flow" in failed["message"]
    assert await driver.jobs(namespace) == []
    untouched = await get_object(driver, CONFIG_MAPS.path(namespace, "taken-settings"))
    assert untouched is not None
    assert not untouched["metadata"].get("ownerReferences")


async def test_unbound_claim_blocks_scheduling(namespace: str, driver: FlowDriver) -> None:
    """Why the e2e flow does not mount its PVC: here a claim never binds, and its pod never schedules."""
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", **copy.deepcopy(CLAIM)}
    await driver.kube.request("POST", PERSISTENT_VOLUME_CLAIMS.path(namespace), body=claim)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "mounts-claim"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "busybox",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "scratch"}}],
        },
    }
    await driver.kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=pod)

    async def unschedulable() -> dict[str, Any] | None:
        got = await driver.kube.request("GET", f"/api/v1/namespaces/{namespace}/pods/mounts-claim")
        conditions = (got.get("status") or {}).get("conditions") or []
        scheduled = next((c for c in conditions if c.get("type") == "PodScheduled"), None)
        return scheduled if scheduled is not None and scheduled.get("status") == "False" else None

    scheduled = await wait_until(unschedulable, 30, what="the scheduler's verdict on the pod")
    assert "unbound" in scheduled.get("message", "").lower() or scheduled.get("reason") == "Unschedulable"
