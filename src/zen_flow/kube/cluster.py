"""The writes reconcile makes, in the shape `zen_flow.controller.cluster_access.ClusterApi` asks for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from zen_flow.api import Job
from zen_flow.api.constants import ANNOTATION_STOP, ANNOTATION_STOPPED_BY, STOP_RUN_FINALLY
from zen_flow.api.meta import ObjectMeta
from zen_flow.api.pod import Pod
from zen_flow.kube.errors import NotFound
from zen_flow.kube.jobflows import JobFlowClient
from zen_flow.kube.jobs import JobClient
from zen_flow.kube.memo_caches import ConfigMapData, MemoCacheClient
from zen_flow.kube.objects import ObjectClient
from zen_flow.kube.pods import PodClient


class Cluster:
    def __init__(
        self,
        jobs: JobClient,
        flows: JobFlowClient,
        objects: ObjectClient,
        pods: PodClient,
        memos: MemoCacheClient,
    ) -> None:
        self._jobs = jobs
        self._memos = memos
        self._flows = flows
        self._objects = objects
        self._pods = pods

    async def create_job(self, namespace: str, body: dict[str, Any]) -> Job:
        """`AlreadyExists` if the name is taken."""
        return await self._jobs.create(namespace, body)

    async def get_job(self, namespace: str, name: str) -> Job:
        """The Job's metadata; `NotFound` if there is none."""
        return await self._jobs.get(namespace, name)

    async def label_job(self, namespace: str, name: str, labels: Mapping[str, str], uid: str) -> None:
        """Merge `labels` into the Job's; `Conflict` if the Job of that name is not `uid`."""
        await self._jobs.label(namespace, name, dict(labels), uid)

    async def delete_job(self, namespace: str, name: str, uid: str = "") -> None:
        """Background propagation (the Pods go too). `NotFound` if already gone; with `uid`, `Conflict`
        if the Job of that name is another one."""
        await self._jobs.delete(namespace, name, propagation="Background", uid=uid or None)

    async def patch_flow_status(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> str:
        """JSON patch on /status; `Conflict` if the patch carries a stale resourceVersion.
        Returns the flow's new resourceVersion."""
        return await self._flows.patch_status(namespace, name, ops)

    async def get_flow(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The raw JobFlow as stored, None when it is gone."""
        try:
            return await self._flows.get(namespace, name)
        except NotFound:
            return None

    async def get_flow_template(
        self, namespace: str, name: str, *, cluster: bool = False
    ) -> Mapping[str, Any] | None:
        """The raw JobFlowTemplate, or (`cluster`) ClusterJobFlowTemplate, None when there is none of that
        name."""
        return await self._flows.templates.get(namespace, name, cluster=cluster)

    async def expand_flow(
        self,
        namespace: str,
        name: str,
        resource_version: str,
        spec: Mapping[str, Any],
        labels: Mapping[str, str | None],
    ) -> None:
        """Write a flow's expansion (a merge patch of its spec, its labels: null removes one);
        `Conflict` if it changed since `resource_version`."""
        body = {"metadata": {"labels": dict(labels)}, "spec": dict(spec)}
        await self._flows.merge(namespace, name, body, resource_version)

    async def create_child_flow(self, namespace: str, body: dict[str, Any]) -> str:
        """Create a JobFlow (a Flow step's child); returns its uid. `AlreadyExists` if the name is taken."""
        return await self._flows.create(namespace, body)

    async def suspend_flow(self, namespace: str, name: str, suspend: bool, uid: str) -> None:
        """Set a flow's spec.suspend (a merge patch). `NotFound` if it is gone, `Conflict` if the name now
        belongs to another JobFlow than `uid`'s."""
        await self._flows.set_suspend(namespace, name, suspend, uid)

    async def stop_flow(
        self, namespace: str, name: str, uid: str, by: str, resource_version: str = ""
    ) -> None:
        """Ask a flow to stop and run its finally steps: its stop annotation `RunFinally`, stopped-by `by`
        (a merge patch). `NotFound` if it is gone, `Conflict` if the name now belongs to another JobFlow
        than `uid`'s, or (`resource_version` given) if the flow changed since: a stop set meanwhile is
        never overwritten."""
        stop = {ANNOTATION_STOP: STOP_RUN_FINALLY, ANNOTATION_STOPPED_BY: by}
        await self._flows.annotate(namespace, name, stop, uid, resource_version)

    async def delete_flow(self, namespace: str, name: str, uid: str) -> None:
        """`NotFound` if gone, `Conflict` if the name now belongs to another JobFlow."""
        await self._flows.delete(namespace, name, uid)

    async def create_resource(self, namespace: str, kind: str, body: dict[str, Any]) -> ObjectMeta:
        """A PersistentVolumeClaim or ConfigMap of `spec.resourceTemplates`. `AlreadyExists` if the name
        is taken, `Invalid` if the apiserver refuses the manifest."""
        return await self._objects.create(namespace, kind, body)

    async def termination_messages(
        self, namespace: str, job: str, *, job_uid: str, succeeded: bool
    ) -> dict[str, str] | None:
        """{container: message} of the Job's last succeeded (or failed) pod, or None when none is left."""
        return await self._pods.termination_messages(namespace, job, job_uid=job_uid, succeeded=succeeded)

    async def pods_of(self, namespace: str, job: str, *, cached: bool = False) -> Sequence[Pod]:
        """The pods that wear the Job's name label, for why a pending step's pod waits (`cached`: from
        the apiserver's cache)."""
        return await self._pods.pods_of(namespace, job, cached=cached)

    async def get_resource(self, namespace: str, kind: str, name: str) -> ObjectMeta:
        """Metadata of such an object (who owns it). `NotFound` if it is gone."""
        return await self._objects.get(namespace, kind, name)

    async def read_memo_cache(self, namespace: str, name: str) -> ConfigMapData:
        """A memoize cache ConfigMap's labels and data. `NotFound` if it is absent."""
        return await self._memos.read(namespace, name)

    async def store_memo(self, namespace: str, name: str, changes: Mapping[str, str | None]) -> None:
        """Set (a value) or remove (None) entries of a memoize cache ConfigMap (a merge patch).
        `NotFound` if it is absent."""
        await self._memos.store(namespace, name, changes)

    async def create_memo_cache(
        self, namespace: str, name: str, labels: Mapping[str, str], data: Mapping[str, str]
    ) -> None:
        """Create a memoize cache ConfigMap with its first entries. `AlreadyExists` if it exists."""
        await self._memos.create(namespace, name, labels, data)
