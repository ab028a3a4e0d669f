"""The controller end to end on the full local cluster: real Jobs, real pods (kwok), real failures.

Each test runs its own `zen-flow run` process watching only the test's namespace.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zen_flow.api import JobFlow
from zen_flow.api.constants import APPROVE_PREFIX
from zen_flow.api.meta import parse_time
from zen_flow.core.matrix import effective_flow
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, jobs_by_step, step_phases, wait_until
from zen_flow_dev.testing.examples import (
    EXPECT_PHASE,
    FAILING,
    load,
    original_form_params,
    project_examples,
    simulate_messages,
    upstream_params,
)
from zen_flow_dev.testing.flows import chain, flow_manifest, job_step, job_template

# A step timeout long enough for a short Job's pod to be scheduled and run on the local cluster.
TIMEOUT = 5
# What an example ends in on the local cluster before anyone approves anything.
EXPECTED = {"approval-gate.yaml": "Paused"}


def _example_params() -> list[Any]:
    ours = [pytest.param(p, id=f"examples/{p.name}") for p in project_examples()]
    return (
        ours
        + original_form_params(upstream=False)
        + upstream_params("dag-flow.yaml", "simple-linear-flow.yaml")
    )


async def _provide_volume(driver: FlowDriver, manifest: dict[str, Any], namespace: str) -> None:
    """A PersistentVolume pre-bound to each claim the flow will create (the local cluster has no
    provisioner): what an administrator's storage class would do."""
    flow = manifest["metadata"]["name"]
    for template in (manifest["spec"].get("resourceTemplates") or {}).get("volumeClaimTemplates", []):
        claim = f"{flow}-{template['metadata']['name']}"
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": f"{namespace}-{claim}"[:253]},
            "spec": {
                "capacity": {"storage": template["spec"]["resources"]["requests"]["storage"]},
                "accessModes": template["spec"]["accessModes"],
                "hostPath": {"path": f"/tmp/{namespace}/{claim}"},
                "claimRef": {"namespace": namespace, "name": claim},
                "persistentVolumeReclaimPolicy": "Retain",
            },
        }
        await driver.kube.request("POST", "/api/v1/persistentvolumes", body=volume)


@pytest.mark.parametrize("path", _example_params())
async def test_every_example_runs_to_its_phase_and_gates_release_on_approval(
    path: Any, namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    # The only changes: run it in the test's namespace, and what its containers would write.
    manifest = simulate_messages(load(path), path)
    manifest["metadata"]["namespace"] = namespace
    manifest["metadata"].setdefault("name", manifest["metadata"].pop("generateName", "flow-").rstrip("-"))
    name = manifest["metadata"]["name"]
    await _provide_volume(driver, manifest, namespace)
    expected = (manifest["metadata"].get("annotations") or {}).get(EXPECT_PHASE) or EXPECTED.get(
        path.name, "Succeeded"
    )
    start_controller()
    await driver.create(manifest)
    terminal_or_paused = {"Succeeded", "Failed", "Paused"}
    flow = await driver.wait_phase(namespace, name, terminal_or_paused, timeout=90)
    assert flow["status"]["phase"] == expected, flow["status"]
    if expected == "Paused":
        gates = [s for s, phase in step_phases(flow).items() if phase == "PendingApproval"]
        assert gates
        await driver.patch(
            namespace, name, {"metadata": {"annotations": {APPROVE_PREFIX + g: "true" for g in gates}}}
        )
        flow = await driver.wait_phase(namespace, name, {"Succeeded", "Failed"}, timeout=90)
        assert flow["status"]["phase"] == "Succeeded", flow["status"]
    phases = step_phases(flow)
    # Only the steps whose command fails (`exit 1`) failed: allowFailure tolerated it.
    failing = FAILING.get(path.name, frozenset())
    assert {s for s, phase in phases.items() if phase not in ("Succeeded", "Skipped")} == failing
    progress = flow["status"]["progress"]
    # A matrix step's items are its steps (of a matrix over an output: as its final status gave them).
    effective = effective_flow(JobFlow.model_validate(flow)).spec.steps
    steps = [s.model_dump(by_alias=True, exclude_none=True) for s in effective]
    assert progress["completedSteps"] == progress["totalSteps"] == len(steps)
    assert {c["type"]: c["status"] for c in flow["status"]["conditions"]}["Complete"] == "True"
    jobs = jobs_by_step(await driver.jobs(namespace))
    ran = {s["name"] for s in steps if phases[s["name"]] == "Succeeded" and "template" in s}
    assert set(jobs) == ran | failing
    assert all(len(names) == 1 for step, names in jobs.items() if step not in failing)
    if path.name == "matrix-from-output.yaml":  # gen writes ["a","b","c"]: work ran as its three items
        assert {"work-0", "work-1", "work-2"} <= set(jobs)


async def test_step_timeout_stops_its_job(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    # Whoever stops the Job first, zen-flow (deleting it) or the Job controller (its activeDeadlineSeconds,
    # which zen-flow sets to the same timeout), the user sees one outcome: the step timed out after 2 s,
    # not earlier, its pod is stopped, its dependents are skipped, and a StepTimedOut event says so.
    steps = [
        job_step("slow", template=job_template(run_seconds=300), timeoutSeconds=2),
        job_step("next", "slow"),
    ]
    start_controller()
    await driver.create(flow_manifest("deadline", namespace, steps))
    flow = await driver.wait_phase(namespace, "deadline", timeout=60)
    assert step_phases(flow) == {"slow": "Failed", "next": "Skipped"}
    slow = flow["status"]["steps"][0]
    assert slow["message"] == "timed out after 2s"
    assert (parse_time(slow["completionTime"]) - parse_time(slow["startTime"])).total_seconds() >= 2

    async def timed_out_events() -> list[str] | None:  # events are sent after the status write
        reasons = [e["reason"] for e in await _events(driver, namespace, "deadline")]
        return reasons if "StepFailed" in reasons else None

    reasons = await wait_until(timed_out_events, 30, what="the step's events")
    assert reasons.count("StepTimedOut") == 1

    async def pods_stopped() -> bool:
        pods = (await driver.kube.request("GET", f"/api/v1/namespaces/{namespace}/pods"))["items"]
        return all(
            p["metadata"].get("deletionTimestamp") or p["status"].get("phase") != "Running" for p in pods
        )

    await wait_until(pods_stopped, 30, what="the timed-out step's pod stopped")


async def test_a_job_held_suspended_waits_without_its_timeout_running(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    # What a queue such as Kueue does: the Job is created suspended and resumed when the queue admits it.
    # The real Job controller sets the `Suspended` condition; the step says it is held, and its timeout
    # waits for the resume, as the Job's own activeDeadlineSeconds does.
    held = job_template(run_seconds=1)  # well inside the timeout once resumed
    held["spec"]["suspend"] = True
    start_controller()
    await driver.create(
        flow_manifest(
            "queued", namespace, [job_step("q", template=held, timeoutSeconds=TIMEOUT), job_step("next", "q")]
        )
    )
    # Created after it with the same timeout: once this one timed out, so would the held step have.
    await driver.create(
        flow_manifest(
            "witness",
            namespace,
            [job_step("slow", template=job_template(run_seconds=300), timeoutSeconds=TIMEOUT)],
        )
    )

    async def held_step() -> dict[str, Any] | None:
        flow = await driver.get(namespace, "queued")
        step = ((flow or {}).get("status") or {}).get("steps", [{}])[0]
        return flow if (step.get("message") or "").startswith("Job suspended") else None

    flow = await wait_until(held_step, 60, what="the held step's message")
    assert flow["status"]["message"] == "held (Job suspended): q"
    witness = await driver.wait_phase(namespace, "witness", timeout=60)
    assert witness["status"]["steps"][0]["message"] == f"timed out after {TIMEOUT}s"
    flow = await driver.get(namespace, "queued")
    assert flow is not None
    assert (flow["status"]["phase"], step_phases(flow)) == ("Running", {"q": "Running", "next": "Pending"})
    (job,) = jobs_by_step(await driver.jobs(namespace))["q"]
    await driver.kube.request(
        "PATCH",
        f"/apis/batch/v1/namespaces/{namespace}/jobs/{job}",
        body={"spec": {"suspend": False}},
        content_type="application/merge-patch+json",
    )
    flow = await driver.wait_phase(namespace, "queued", timeout=60)
    assert step_phases(flow) == {"q": "Succeeded", "next": "Succeeded"}
    assert "message" not in flow["status"]["steps"][0]
    assert flow["status"]["steps"][0].get("retryCount", 0) == 0


async def _events(driver: FlowDriver, namespace: str, flow: str) -> list[dict[str, Any]]:
    query = (("fieldSelector", f"involvedObject.name={flow}"),)
    events: list[dict[str, Any]] = (
        await driver.kube.request("GET", f"/api/v1/namespaces/{namespace}/events", query=query)
    )["items"]
    return events


async def test_ttl_deletes_a_finished_flow_and_its_jobs(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    controller = start_controller()
    await driver.create(chain("short-lived", namespace, 2, executionPolicy={"ttlSecondsAfterFinished": 2}))
    flow = await driver.wait_phase(namespace, "short-lived", timeout=60)
    assert flow["status"]["phase"] == "Succeeded"  # a flow that failed would be deleted by its TTL too
    finished = parse_time(flow["status"]["completionTime"])
    await driver.wait_gone(namespace, "short-lived", timeout=30)
    # Not before its TTL (counted from completionTime, a whole second like every status time), by zen-flow.
    assert datetime.now(UTC) - finished >= timedelta(seconds=2)

    async def logged() -> list[str] | None:  # the line follows the delete call's answer
        return [line for line in controller.log_lines() if '"deleted flow"' in line] or None

    deleted = await wait_until(logged, 30, what="the controller's log of the deletion")
    assert len(deleted) == 1
    assert "ttlSecondsAfterFinished=2s expired" in deleted[0]

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
    jobs = jobs_by_step(await driver.jobs(namespace))
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


async def test_sigterm_ends_a_leader_with_resync_and_a_standby_without_waiting_out_the_deadline(
    namespace: str, driver: FlowDriver, start_controller: StartController
) -> None:
    """With a 50 s renew deadline, a shutdown that waited for it would outlast stop()'s 20 s and end in
    SIGKILL (exit -9). Both must exit 0: the leader once its workers are done (resync included), the
    standby at once, and the lease must be released for a successor."""
    slow_deadline = ["--lease-duration", "60", "--renew-deadline", "50", "--retry-period", "1"]
    common = {"leader_elect": True, "lease_namespace": namespace}
    leader = start_controller(
        identity="leader", extra_args=[*slow_deadline, "--resync-seconds", "30"], **common
    )

    async def leads() -> bool:
        return leader.metric("leader_election_master_status") == 1

    await wait_until(leads, 30, what="the first replica leads")
    standby = start_controller(identity="standby", extra_args=slow_deadline, **common)
    await driver.create(chain("before-shutdown", namespace, 2))
    await driver.wait_phase(namespace, "before-shutdown", timeout=60)
    assert standby.stop(timeout=20) == 0
    assert leader.stop(timeout=20) == 0
    lease = await driver.kube.request(
        "GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/zen-flow-controller"
    )
    assert lease["spec"].get("holderIdentity", "") == ""  # released, not left to expire
