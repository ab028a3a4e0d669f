"""Pods, read-only: the termination messages of a finished step's pods (its output parameters).

The controller lists the pods of one Job by label, once, when that Job has completed and its step
declares `outputs.parameters[].valueFrom.terminationMessage`. No watch, no cache: pods are many and
short-lived, and only their termination messages are read. The answer is decoded straight into a small
model (names, phase, containers' terminated state), never kept.
"""

from __future__ import annotations

from pydantic import Field

from zen_flow.api.meta import Model, Timestamp
from zen_flow.kube.client import KubeClient
from zen_flow.kube.resource import Resource

PODS = Resource("", "v1", "pods")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


class _Terminated(Model):
    message: str | None = None
    finished_at: Timestamp | None = None


class _State(Model):
    terminated: _Terminated | None = None


class _ContainerStatus(Model):
    name: str = ""
    state: _State = _State()


class _PodStatus(Model):
    phase: str | None = None
    container_statuses: tuple[_ContainerStatus, ...] = ()


class _Pod(Model):
    status: _PodStatus = _PodStatus()


class _PodList(Model):
    items: tuple[_Pod, ...] = Field(default=())


class PodClient:
    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def termination_messages(self, namespace: str, job: str) -> dict[str, str] | None:
        """{container: termination message} of the Job's succeeded pod (the latest to finish), or None
        when the Job has no succeeded pod left to read."""
        pods = await self._client.request_model(
            _PodList, "GET", PODS.path(namespace), query=[("labelSelector", f"{JOB_NAME_LABEL}={job}")]
        )
        succeeded = [p for p in pods.items if p.status.phase == "Succeeded"]
        if not succeeded:
            return None
        latest = max(succeeded, key=_finished)
        return {
            c.name: (c.state.terminated.message or "") if c.state.terminated is not None else ""
            for c in latest.status.container_statuses
        }


def _finished(pod: _Pod) -> float:
    """When the pod's last container finished (seconds since the epoch; 0 if none did)."""
    return max(
        (
            c.state.terminated.finished_at.timestamp()
            for c in pod.status.container_statuses
            if c.state.terminated is not None and c.state.terminated.finished_at is not None
        ),
        default=0.0,
    )
