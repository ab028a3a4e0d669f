"""Steps queued by a real Kueue (zen_flow_dev.testing.kueue): its webhook creates their Jobs suspended, its
manager resumes them when a ClusterQueue admits them and suspends them again to preempt them. zen-flow
must show such a step as held, not count its timeout while it waits, and leave the Job Kueue changed
alone (one Job per step, no restart)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from zen_flow_dev.cluster import find_kubectl
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases, wait_until
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template
from zen_flow_dev.testing.kubectl import Kubectl
from zen_flow_dev.testing.kueue import NAMESPACE_LABEL, Kueue, kueue_binary, unavailable

KUEUE = "kueue.x-k8s.io/v1beta2"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
HELD = "Job suspended"
TIMEOUT = 5  # as tests/e2e/test_engine.py: a short Job's pod runs well inside it once admitted


@pytest.fixture(scope="module")
def kueue(cluster: Any) -> Iterator[Kueue]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    binary = kueue_binary()
    assert binary is not None
    manager = Kueue(binary, cluster.kubeconfig, find_kubectl(getattr(cluster, "bin_dir", None)))
    try:
        yield manager.start()
    finally:
        manager.stop()


@pytest.fixture
def queue(kueue: Kueue, namespace: str, kubectl: Kubectl) -> Iterator[str]:
    """A LocalQueue in the test's namespace on a ClusterQueue of its own with 1 CPU of quota (a
    higher-priority workload may preempt a lower one); returns the LocalQueue's name."""
    kubectl("label", "namespace", namespace, "=".join(NAMESPACE_LABEL))
    only_here = {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
    kueue.apply(
        {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "zen-flow-tests"}},
        {"apiVersion": KUEUE, "kind": "WorkloadPriorityClass", "metadata": {"name": "zf-low"}, "value": 100},
        {
            "apiVersion": KUEUE,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": "zf-high"},
            "value": 1000,
        },
        {
            "apiVersion": KUEUE,
            "kind": "ClusterQueue",
            "metadata": {"name": namespace},
            "spec": {
                "namespaceSelector": only_here,
                "preemption": {"withinClusterQueue": "LowerPriority"},
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu"],
                        "flavors": [
                            {"name": "zen-flow-tests", "resources": [{"name": "cpu", "nominalQuota": 1}]}
                        ],
                    }
                ],
            },
        },
        {
            "apiVersion": KUEUE,
            "kind": "LocalQueue",
            "metadata": {"name": "team", "namespace": namespace},
            "spec": {"clusterQueue": namespace},
        },
    )
    yield "team"
    kubectl("delete", "clusterqueue", namespace, "--wait=false", "--ignore-not-found", check=False)


def queued_step(
    name: str, queue: str, *, run_seconds: float, priority: str = "", **fields: Any
) -> dict[str, Any]:
    """A step whose Job asks `queue` for the whole quota (1 CPU), so two such Jobs never run together."""
    template = job_template(run_seconds=run_seconds)
    template["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "1"}}
    labels = {QUEUE_LABEL: queue} | ({PRIORITY_LABEL: priority} if priority else {})
    return job_step(name, template=template, metadata={"labels": labels}, **fields)


async def step(driver: FlowDriver, namespace: str, flow: str, name: str) -> dict[str, Any]:
    found = await driver.get(namespace, flow)
    steps = ((found or {}).get("status") or {}).get("steps") or []
    return next((s for s in steps if s["name"] == name), {})


async def wait_step(
    driver: FlowDriver, namespace: str, flow: str, name: str, *, held: bool
) -> dict[str, Any]:
    """The step once it is Running, and held by the queue or not."""

    async def probe() -> dict[str, Any] | None:
        found = await step(driver, namespace, flow, name)
        is_held = (found.get("message") or "").startswith(HELD)
        return found if found.get("phase") == "Running" and is_held == held else None

    return await wait_until(probe, 60, what=f"step {flow}/{name} running{' and held' if held else ''}")


async def jobs_of(driver: FlowDriver, namespace: str, flow: str) -> list[dict[str, Any]]:
    return [
        job
        for job in await driver.jobs(namespace)
        if job["metadata"].get("labels", {}).get("workflow.kube-zen.io/flow") == flow
    ]


async def test_a_step_waits_in_the_queue_without_its_timeout_running(
    namespace: str, queue: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    # `hog` takes the queue's whole quota first.
    await driver.create(flow_manifest("hog", namespace, [queued_step("run", queue, run_seconds=600)]))
    await wait_step(driver, namespace, "hog", "run", held=False)
    waiting = queued_step("q", queue, run_seconds=1, timeoutSeconds=TIMEOUT)
    await driver.create(flow_manifest("queued", namespace, [waiting, job_step("next", "q")]))
    # Kueue's webhook created the Job suspended (zen-flow did not ask for it), and its queue holds it.
    await wait_step(driver, namespace, "queued", "q", held=True)
    (job,) = await jobs_of(driver, namespace, "queued")
    assert job["spec"]["suspend"] is True
    flow = await driver.get(namespace, "queued")
    assert flow is not None
    assert flow["status"]["message"] == "held (Job suspended): q"
    # A flow created after it, with the same timeout and no queue: once it timed out, so would `q` have
    # if its timeout ran while Kueue held it.
    await driver.create(
        flow_manifest(
            "witness",
            namespace,
            [job_step("slow", template=job_template(run_seconds=300), timeoutSeconds=TIMEOUT)],
        )
    )
    witness = await driver.wait_phase(namespace, "witness", timeout=60)
    assert witness["status"]["steps"][0]["message"] == f"timed out after {TIMEOUT}s"
    assert (await step(driver, namespace, "queued", "q"))["message"].startswith(HELD)
    # The quota comes back when `hog` goes: Kueue admits `q`, which runs and succeeds on the Job it held.
    await driver.delete(namespace, "hog")
    flow = await driver.wait_phase(namespace, "queued", timeout=90)
    assert step_phases(flow) == {"q": "Succeeded", "next": "Succeeded"}
    assert flow["status"]["steps"][0].get("retryCount", 0) == 0
    assert "message" not in flow["status"]["steps"][0]
    names = {j["metadata"]["name"] for j in await jobs_of(driver, namespace, "queued")}
    assert job["metadata"]["name"] in names
    assert len(names) == 2  # q's one Job, and next's


async def test_a_step_preempted_by_kueue_runs_again_when_readmitted(
    namespace: str, queue: str, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    batch = queued_step("long", queue, run_seconds=15, priority="zf-low")
    await driver.create(flow_manifest("batch", namespace, [batch, job_step("after", "long")]))
    await wait_step(driver, namespace, "batch", "long", held=False)
    (job,) = await jobs_of(driver, namespace, "batch")
    # A higher-priority workload needs the quota: Kueue suspends `long`'s Job (its pod is deleted) ...
    urgent = queued_step("now", queue, run_seconds=1, priority="zf-high")
    await driver.create(flow_manifest("urgent", namespace, [urgent]))
    held = await wait_step(driver, namespace, "batch", "long", held=True)
    assert held.get("retryCount", 0) == 0
    # ... and admits it again once the urgent flow is done; the same Job runs its pod again and succeeds.
    urgent_flow = await driver.wait_phase(namespace, "urgent", timeout=60)
    assert urgent_flow["status"]["phase"] == "Succeeded"
    flow = await driver.wait_phase(namespace, "batch", timeout=90)
    assert step_phases(flow) == {"long": "Succeeded", "after": "Succeeded"}
    assert flow["status"]["steps"][0].get("retryCount", 0) == 0
    jobs = await jobs_of(driver, namespace, "batch")
    # The same Job ran again: no retry, no new Job for `long`.
    assert job["metadata"]["name"] in {j["metadata"]["name"] for j in jobs}
    assert len(jobs) == 2
    events = (await driver.kube.request("GET", f"/api/v1/namespaces/{namespace}/events"))["items"]
    preempted = [
        e for e in events if e["reason"] == "Preempted" and e["involvedObject"]["kind"] == "Workload"
    ]
    assert preempted, "Kueue did not preempt the low-priority workload"
