"""The e2e tier's cluster really runs Jobs: kube-controller-manager creates pods, kube-scheduler binds
them to kwok-node-0, and kwok (with zen-flow's own stages) plays the kubelet."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kubernetes_asyncio import client

from zen_flow_dev.cluster import EXIT_CODE_ANNOTATION, NODE_NAME, RUN_SECONDS_ANNOTATION

T = TypeVar("T")
DEADLINE = 30.0


async def _eventually(probe: Callable[[], Awaitable[T | None]], what: str, within: float = DEADLINE) -> T:
    """Poll `probe` every 100 ms until it returns a value other than None; fail after `within` seconds."""
    try:
        async with asyncio.timeout(within):
            while True:
                value = await probe()
                if value is not None:
                    return value
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out after {within}s waiting for {what}") from None


def _job(name: str, annotations: dict[str, str] | None = None) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=0,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(annotations=annotations),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="main", image="busybox", command=["true"])],
                ),
            ),
        ),
    )


def _condition(job: client.V1Job, condition_type: str) -> bool:
    return any(c.type == condition_type and c.status == "True" for c in job.status.conditions or [])


async def _finished(batch: client.BatchV1Api, namespace: str, name: str) -> str:
    async def probe() -> str | None:
        job = await batch.read_namespaced_job_status(name, namespace)
        for condition_type in ("Complete", "Failed"):
            if _condition(job, condition_type):
                return condition_type
        return None

    return await _eventually(probe, f"Job {namespace}/{name} to finish")


async def _pods(core: client.CoreV1Api, namespace: str, job: str) -> list[client.V1Pod]:
    pods = await core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}")
    return list(pods.items)


async def test_plain_job_completes_on_the_fake_node(api_client: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    await batch.create_namespaced_job(namespace, _job("plain"))

    assert await _finished(batch, namespace, "plain") == "Complete"
    [pod] = await _pods(core, namespace, "plain")
    assert pod.spec.node_name == NODE_NAME
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


async def test_exit_code_annotation_fails_the_job_with_that_code(api_client: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    await batch.create_namespaced_job(namespace, _job("doomed", {EXIT_CODE_ANNOTATION: "3"}))

    assert await _finished(batch, namespace, "doomed") == "Failed"
    [pod] = await _pods(core, namespace, "doomed")
    assert pod.status.phase == "Failed"
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 3
    assert terminated.reason == "Error"
    assert terminated.message == "exit code 3"


async def test_run_seconds_annotation_keeps_the_pod_running_that_long(
    api_client: Any, namespace: str
) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    await batch.create_namespaced_job(namespace, _job("slow", {RUN_SECONDS_ANNOTATION: "3"}))

    async def running() -> client.V1Pod | None:
        pods = await _pods(core, namespace, "slow")
        return pods[0] if pods and pods[0].status.phase == "Running" else None

    await _eventually(running, "the pod of Job slow to be Running")
    assert await _finished(batch, namespace, "slow") == "Complete"
    [pod] = await _pods(core, namespace, "slow")
    terminated = pod.status.container_statuses[0].state.terminated
    ran: datetime.timedelta = terminated.finished_at - terminated.started_at
    # Timestamps have whole-second precision and are truncated, so a 3 s run shows as 3 or 4 s.
    assert 3 <= ran.total_seconds() <= 10


async def test_deleting_a_running_pod_makes_it_fail_and_go_away(api_client: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
    await batch.create_namespaced_job(namespace, _job("victim", {RUN_SECONDS_ANNOTATION: "600"}))

    async def running() -> client.V1Pod | None:
        pods = await _pods(core, namespace, "victim")
        return pods[0] if pods and pods[0].status.phase == "Running" else None

    pod = await _eventually(running, "the pod of Job victim to be Running")
    await core.delete_namespaced_pod(pod.metadata.name, namespace)

    # The fake kubelet marks the pod Failed (exit 137) so the Job controller counts it, then removes it.
    assert await _finished(batch, namespace, "victim") == "Failed"
    job = await batch.read_namespaced_job_status("victim", namespace)
    assert job.status.failed == 1

    async def gone() -> bool | None:
        return True if not await _pods(core, namespace, "victim") else None

    await _eventually(gone, "the deleted pod to disappear")
