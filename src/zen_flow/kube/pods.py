"""Pods, read-only: the termination messages of a finished step's pod, and how a failed one's containers
ended (exit code, reason).

The controller lists the pods of one Job by label, once, when that Job has finished and its step needs
what the pod wrote: `outputs.parameters[].valueFrom.terminationMessage`, the artifact uploader's report,
or why the artifact downloader failed (planner.outputs.jobs_to_read). No watch, no cache: pods are many
and short-lived, and only their termination messages are read. The answer is decoded straight into a
small model (phase, containers' and init containers' terminated state), never kept.
"""

from __future__ import annotations

from pydantic import Field

from zen_flow.api.meta import Model, Timestamp
from zen_flow.kube.client import KubeClient
from zen_flow.kube.resource import Resource
from zen_flow.planner.reports import EXITED

PODS = Resource("", "v1", "pods")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


class _Terminated(Model):
    message: str | None = None
    finished_at: Timestamp | None = None
    exit_code: int | None = None
    reason: str | None = None


class _State(Model):
    terminated: _Terminated | None = None


class _ContainerStatus(Model):
    name: str = ""
    state: _State = _State()


class _PodStatus(Model):
    phase: str | None = None
    container_statuses: tuple[_ContainerStatus, ...] = ()
    init_container_statuses: tuple[_ContainerStatus, ...] = ()

    def all(self) -> tuple[_ContainerStatus, ...]:
        return (*self.init_container_statuses, *self.container_statuses)


class _Owner(Model):
    uid: str = ""
    controller: bool | None = None


class _PodMeta(Model):
    owner_references: tuple[_Owner, ...] = ()


class _Pod(Model):
    metadata: _PodMeta = _PodMeta()
    status: _PodStatus = _PodStatus()

    def owned_by(self, uid: str) -> bool:
        return any(o.controller and o.uid == uid for o in self.metadata.owner_references)


class _PodList(Model):
    items: tuple[_Pod, ...] = Field(default=())


class PodClient:
    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def termination_messages(
        self, namespace: str, job: str, *, job_uid: str, succeeded: bool
    ) -> dict[str, str] | None:
        """{container or init container: termination message} of the Job's pod that succeeded (or,
        with `succeeded=False`, failed) last; None when no such pod is left to read. Only pods the Job
        (`job_uid`) controls count: anyone who may create pods in the namespace can put the Job's name
        label on one (the name is predictable), and its "termination message" would become the step's
        outputs and artifact report."""
        pods = await self._client.request_model(
            _PodList, "GET", PODS.path(namespace), query=[("labelSelector", f"{JOB_NAME_LABEL}={job}")]
        )
        wanted = "Succeeded" if succeeded else "Failed"
        finished = [p for p in pods.items if p.status.phase == wanted and p.owned_by(job_uid)]
        if not finished:
            return None
        latest = max(finished, key=_finished)
        messages = {
            c.name: (c.state.terminated.message or "") if c.state.terminated is not None else ""
            for c in latest.status.all()
        }
        if not succeeded:  # how its containers failed: what a user debugging the step needs first
            for c in latest.status.all():
                ended = c.state.terminated
                if ended is not None and ended.exit_code:
                    why = f" ({ended.reason})" if ended.reason and ended.reason != "Error" else ""
                    messages[EXITED + c.name] = f"exit code {ended.exit_code}{why}"
        return messages


def _finished(pod: _Pod) -> float:
    """When the pod's last container finished (seconds since the epoch; 0 if none did)."""
    return max(
        (
            c.state.terminated.finished_at.timestamp()
            for c in pod.status.all()
            if c.state.terminated is not None and c.state.terminated.finished_at is not None
        ),
        default=0.0,
    )
