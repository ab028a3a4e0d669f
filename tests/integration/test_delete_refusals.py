"""A ValidatingAdmissionPolicy of the real apiserver denies DELETE of the namespace's Jobs: the controller's
delete of a timed-out step's Job is refused with 403. The timeout is recorded all the same, the other
step runs on, condition JobDeleteFailing and a `DeleteForbidden` Warning name the Job and the policy's
answer, and once the policy is lifted the delete that the controller keeps sending passes. The same for a
flow's TTL deletion refused by a policy denying DELETE of JobFlows: a Warning `DeleteForbidden` names the
flow (told once, not at each retry), the controller runs the namespace's other flows meanwhile, and the
flow goes once the policy is lifted."""

from __future__ import annotations

import json
from typing import Any

import pytest
from controller_steps import WAIT, conditions, wait_steps

from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step
from zen_flow_dev.testing.jobstatus import complete_job

pytestmark = pytest.mark.integration

FROZEN = "Jobs are not deleted during the freeze"
PROBE = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "probe"},
    "spec": {
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}
    },
}


def freeze(namespace: str, group: str = "batch", resource: str = "jobs") -> list[dict[str, Any]]:
    """A policy denying every DELETE of a Job (or of `group`'s `resource`), bound to `namespace` only."""
    name = f"freeze-{resource}-{namespace}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [group],
                        "apiVersions": ["*"],
                        "operations": ["DELETE"],
                        "resources": [resource],
                    }
                ]
            },
            "validations": [{"expression": "false", "message": FROZEN}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
            },
        },
    }
    return [policy, binding]


async def test_a_refused_delete_of_a_timed_out_job_is_recorded_told_and_sent_again(
    namespace: str, driver: FlowDriver, start_controller: StartController, kubectl: Any
) -> None:
    objects = freeze(namespace)
    for obj in objects:
        kubectl("apply", "-f", "-", input=json.dumps(obj))
    try:
        # The policy takes effect once the apiserver has compiled it: a probe Job's delete says when.
        async def frozen() -> bool | None:
            kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(PROBE))
            deleted = kubectl("delete", "job", "probe", "-n", namespace, "--wait=false", check=False)
            return True if deleted.returncode != 0 and FROZEN in deleted.stderr else None

        await wait_until(frozen, WAIT, what="the freeze policy denying Job deletes")
        start_controller()
        steps = [job_step("slow", timeoutSeconds=2), job_step("other")]
        await driver.create(flow_manifest("frozen", namespace, steps))

        async def refused() -> dict[str, Any] | None:
            flow = await driver.get(namespace, "frozen")
            cond = conditions(flow).get("JobDeleteFailing") if flow and flow.get("status") else None
            return flow if cond is not None and cond["status"] == "True" else None

        flow = await wait_until(refused, WAIT, what="condition JobDeleteFailing")
        steps_now = {s["name"]: s for s in flow["status"]["steps"]}
        slow = steps_now["slow"]
        assert slow["phase"] == "Failed"
        assert "timed out after 2s" in slow["message"]
        assert steps_now["other"]["phase"] == "Running"
        job = slow["jobRef"]["name"]
        cond = conditions(flow)["JobDeleteFailing"]
        assert cond["reason"] == "DeleteForbidden"
        assert job in cond["message"]
        assert FROZEN in cond["message"]
        jobs = {j["metadata"]["name"]: j for j in await driver.jobs(namespace)}
        assert job in jobs
        assert not jobs[job]["metadata"].get("deletionTimestamp")

        async def told() -> list[dict[str, Any]] | None:
            listed = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
            found = [e for e in listed if e.get("reason") == "DeleteForbidden"]
            return found or None

        events = await wait_until(told, WAIT, what="a DeleteForbidden event")
        assert all(job in e["message"] and FROZEN in e["message"] for e in events)
        assert all(e["type"] == "Warning" for e in events)
    finally:
        for obj in reversed(objects):
            kubectl("delete", obj["kind"], obj["metadata"]["name"], "--ignore-not-found", check=False)

    async def deleted() -> dict[str, Any] | None:
        flow = await driver.get(namespace, "frozen")
        cond = conditions(flow).get("JobDeleteFailing") if flow and flow.get("status") else None
        names = {
            j["metadata"]["name"]
            for j in await driver.jobs(namespace)
            if not j["metadata"].get("deletionTimestamp")
        }
        return flow if cond is not None and cond["status"] == "False" and job not in names else None

    flow = await wait_until(deleted, WAIT * 2, what="the timed-out Job deleted, JobDeleteFailing False")
    assert conditions(flow)["JobDeleteFailing"]["reason"] == "JobsDeleted"
    await wait_steps(driver, namespace, "frozen", {"slow": "Failed", "other": "Running"})


async def test_a_refused_ttl_deletion_is_told_once_and_other_flows_run_on(
    namespace: str, driver: FlowDriver, start_controller: StartController, kubectl: Any
) -> None:
    objects = freeze(namespace, "workflow.kube-zen.io", "jobflows")
    for obj in objects:
        kubectl("apply", "-f", "-", input=json.dumps(obj))
    try:
        # A suspended flow nobody runs, deleted until the policy denies it (compiled, in effect).
        probe = flow_manifest("probe", namespace, [job_step("p")], suspend=True)
        kubectl("apply", "-f", "-", input=json.dumps(probe))

        async def frozen() -> bool | None:
            deleted = kubectl("delete", "jobflow", "probe", "-n", namespace, "--wait=false", check=False)
            if deleted.returncode == 0:
                kubectl("apply", "-f", "-", input=json.dumps(probe))
            return True if deleted.returncode != 0 and FROZEN in deleted.stderr else None

        await wait_until(frozen, WAIT, what="the freeze policy denying JobFlow deletes")
        start_controller()
        ttl = {"ttlSecondsAfterFinished": 1}
        await driver.create(flow_manifest("kept", namespace, [job_step("a")], executionPolicy=ttl))
        job = await wait_until(lambda: first_job(driver, namespace, "kept-"), WAIT, what="flow kept's Job")
        await complete_job(driver.kube, namespace, job)
        await driver.wait_phase(namespace, "kept", ["Succeeded"], timeout=WAIT)

        async def told() -> list[dict[str, Any]] | None:
            listed = json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
            found = [e for e in listed if e.get("reason") == "DeleteForbidden"]
            return found or None

        [event] = await wait_until(told, WAIT, what="a DeleteForbidden event")
        assert event["type"] == "Warning"
        assert event["involvedObject"]["name"] == "kept"
        assert event["message"].startswith(
            "JobFlow kept (ttlSecondsAfterFinished=1s expired) delete refused: "
        )
        assert FROZEN in event["message"]
        # The controller runs the namespace's other flows meanwhile, retrying the deletion with backoff.
        await driver.create(flow_manifest("other", namespace, [job_step("b")]))
        job = await wait_until(lambda: first_job(driver, namespace, "other-"), WAIT, what="flow other's Job")
        await complete_job(driver.kube, namespace, job)
        await driver.wait_phase(namespace, "other", ["Succeeded"], timeout=WAIT)
        assert await driver.get(namespace, "kept") is not None
        # Told once: the retries since added no Event and no count to it.
        [again] = await wait_until(told, WAIT, what="the DeleteForbidden event")
        assert (again["metadata"]["name"], again.get("count", 1)) == (event["metadata"]["name"], 1)
        assert not [
            e
            for e in json.loads(kubectl("get", "events", "-n", namespace, "-o", "json").stdout)["items"]
            if e.get("reason") in ("CreateForbidden", "CreateFailed")
        ]
    finally:
        for obj in reversed(objects):
            kubectl("delete", obj["kind"], obj["metadata"]["name"], "--ignore-not-found", check=False)
    # The next retry deletes it: the backoff doubles with each failure, so it comes about as long after the
    # lift as the refusals lasted.
    await driver.wait_gone(namespace, "kept", timeout=WAIT * 4)


async def first_job(driver: FlowDriver, namespace: str, prefix: str) -> str | None:
    """The name of the namespace's first Job whose name starts with `prefix`, if any."""
    return next(
        (
            j["metadata"]["name"]
            for j in await driver.jobs(namespace)
            if j["metadata"]["name"].startswith(prefix)
        ),
        None,
    )
