"""Pods, read-only: the termination messages of a finished step's pod, how a failed one's containers
ended (exit code, reason), and why a pending one's containers do not run.

The controller lists the pods of one Job by label, once, when that Job has finished and its step needs
what the pod wrote: `outputs.parameters[].valueFrom.terminationMessage`, the artifact uploader's report,
or why the artifact downloader failed (planner.outputs.jobs_to_read). No watch, no cache: pods are many
and short-lived, and only their termination messages are read. The answer is decoded straight into a
small model (api/pod.py: phase, conditions, containers' and init containers' states), never kept. The
same list, now and then, for a Running step whose Job has had no ready pod for a while: why its pod
waits (planner/pod_waits.py; at most every half minute per Job, less often while nothing changes, most
from the apiserver's cache: controller/pod_reads.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from zen_flow.api.pod import Pod as _Pod
from zen_flow.api.pod import PodList as _PodList
from zen_flow.kube.client import KubeClient
from zen_flow.kube.resource import Resource
from zen_flow.planner.node_avoidance import FAILED_NODES, newest_last
from zen_flow.planner.reports import EXITED, INTERRUPTED

PODS = Resource("", "v1", "pods")
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# A pending Job's pod read is a hint for a message, read again later: short, so an apiserver that is
# slow to list pods does not hold a reconcile worker for long.
POD_WAIT_READ_TIMEOUT_SECONDS = 10.0


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
            # Sidecars last: the first failing container's exit code is retryPolicy.expression's
            # lastRetry.exitCode (planner/reports.py), and a sidecar killed at the pod's end is not it.
            sidecars = latest.sidecars
            for c in sorted(latest.status.all(), key=lambda c: c.name in sidecars):
                ended = c.state.terminated
                if ended is not None and ended.exit_code:
                    why = f" ({ended.reason})" if ended.reason and ended.reason != "Error" else ""
                    messages[EXITED + c.name] = f"exit code {ended.exit_code}{why}"
            if (cause := latest.interrupted) is not None:  # no exit of its own (retryPolicy.expression)
                messages[INTERRUPTED] = cause
            # Where its failed pods ran, oldest first (retryPolicy's nodeAntiAffinity): only those whose
            # node may be the cause (`Pod.blames_its_node`).
            nodes = newest_last(
                p.spec.node_name or "" for p in sorted(finished, key=_finished) if p.blames_its_node
            )
            if nodes:
                messages[FAILED_NODES] = " ".join(nodes)
        return messages

    async def pods_of(self, namespace: str, job: str, *, cached: bool = False) -> tuple[_Pod, ...]:
        """The pods that wear the Job's name label (whether the Job controls each is for the caller to
        ask: `Pod.owned_by`), read within POD_WAIT_READ_TIMEOUT_SECONDS. `cached`: from the apiserver's
        watch cache (`resourceVersion=0`: no etcd read, possibly a moment old), for a read that only
        words a message; a read that may fail a step is made from storage."""
        query = [("labelSelector", f"{JOB_NAME_LABEL}={job}")]
        if cached:
            query.append(("resourceVersion", "0"))
        pods = await self._client.request_model(
            _PodList, "GET", PODS.path(namespace), query=query, request_timeout=POD_WAIT_READ_TIMEOUT_SECONDS
        )
        return pods.items


@dataclass(frozen=True)
class JobPod:
    """A pod of a Job, as the log archive reads it: its name and its containers (not its init
    containers: `zen-flow logs` does not show those either)."""

    name: str
    containers: tuple[str, ...]


# A log read's bound (and its pod list's): the kubelet streams at most --archive-log-limit-bytes (8 MiB
# at most), seconds on a healthy node; a node that does not answer is given up on after this, and retried.
LOG_READ_TIMEOUT_SECONDS = 60.0
# A retried read's bound: its node already failed to answer once. Each retry holds one of the log
# archive's two read slots, every few minutes for up to --archive-max-delay-seconds: short, so a node that
# stays NotReady does not stall the other flows' logs.
RETRIED_LOG_READ_TIMEOUT_SECONDS = 10.0


class PodLogs:
    """The container logs of a Job's pods (`--archive-logs`, controller/log_archiver.py)."""

    def __init__(self, client: KubeClient, *, timeout: float = LOG_READ_TIMEOUT_SECONDS) -> None:
        self._client = client
        self._timeout = timeout

    async def job_pods(self, namespace: str, job: str, job_uid: str) -> list[JobPod]:
        """The pods the Job `job_uid` controls, oldest first (a pod that only wears its name label is
        not its own: anyone who may create pods in the namespace could put it there)."""
        pods = await self._client.request_model(
            _PodList,
            "GET",
            PODS.path(namespace),
            query=[("labelSelector", f"{JOB_NAME_LABEL}={job}")],
            request_timeout=self._timeout,
        )
        owned = [p for p in pods.items if p.owned_by(job_uid) and p.metadata.name]
        return [
            JobPod(p.metadata.name, tuple(c.name for c in p.spec.containers))
            for p in sorted(owned, key=lambda p: p.metadata.name)
        ]

    async def log(
        self, namespace: str, pod: str, container: str, limit: int, timeout: float | None = None
    ) -> bytes:
        """At most `limit` bytes of the container's log, its beginning (the apiserver cuts it), within
        `timeout` seconds (None: the reader's own). Not retried here: the log archive retries a failed
        read with its backoff (controller/log_archiver.py)."""
        return await self._client.request_raw(
            "GET",
            PODS.path(namespace, pod, "log"),
            query=[("container", container), ("limitBytes", str(limit))],
            retry=False,
            request_timeout=self._timeout if timeout is None else timeout,
            accept="*/*",
        )


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
