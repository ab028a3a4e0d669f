"""batch/v1 Jobs that zen-flow manages: list/watch (label-selected), create, delete."""

from __future__ import annotations

from typing import Any, Literal

from zen_flow.api import Job
from zen_flow.api.constants import FIELD_MANAGER, JOB_SELECTOR
from zen_flow.api.job import LabelledJob
from zen_flow.kube.client import KubeClient
from zen_flow.kube.resource import Resource, ResourceLister
from zen_flow.kube.transport import MERGE_PATCH, METADATA_ONLY

JOBS = Resource("batch", "v1", "jobs")

Propagation = Literal["Background", "Foreground", "Orphan"]


class JobClient(ResourceLister):
    """Only Jobs labelled `app.kubernetes.io/managed-by=zen-flow` are listed or watched: caching every Job
    of the cluster is the classic operator memory blow-up."""

    def __init__(self, client: KubeClient, label_selector: str = JOB_SELECTOR) -> None:
        super().__init__(client, JOBS, label_selector)
        self._client = client

    async def create(self, namespace: str, body: dict[str, Any]) -> Job:
        """Create a Job. `AlreadyExists` (a `Conflict`) when the name is taken: the caller looks at the
        Job's owner (`get`) and adopts it when it is the flow's.

        Retried on transient errors like any call: if a lost answer hid a successful create, the retry
        gets AlreadyExists, and the Job it finds is the flow's (names are deterministic).
        """
        # Answered with the metadata only (the model keeps nothing else of a Job this new); an apiserver that
        # answers the whole Job (~3.5 KB of JSON with its pod template) is decoded straight from the bytes.
        return await self._client.request_model(
            Job,
            "POST",
            JOBS.path(namespace),
            query=[("fieldManager", FIELD_MANAGER)],
            body=body,
            accept=METADATA_ONLY,
        )

    async def get(self, namespace: str, name: str) -> LabelledJob:
        """One Job's metadata (its owners, whether it is being deleted, its labels: one the label-selected
        cache lacks may have lost its managed-by label); `NotFound` if there is none."""
        return await self._client.request_model(
            LabelledJob, "GET", JOBS.path(namespace, name), accept=METADATA_ONLY
        )

    async def label(self, namespace: str, name: str, labels: dict[str, str], uid: str) -> None:
        """Merge `labels` into the Job's (nothing else), only if the Job of that name is still the one
        with `uid` (`Conflict` otherwise); `NotFound` if there is none."""
        await self._client.request(
            "PATCH",
            JOBS.path(namespace, name),
            query=[("fieldManager", FIELD_MANAGER)],
            body={"metadata": {"uid": uid, "labels": labels}},
            content_type=MERGE_PATCH,
        )

    async def delete(
        self,
        namespace: str,
        name: str,
        *,
        propagation: Propagation = "Background",
        uid: str | None = None,
    ) -> None:
        """Delete a Job and (Background) its Pods; a plain DELETE of a Job orphans its Pods.

        Raises `NotFound` if it is already gone (callers use that to settle expectations) and `Conflict`
        if `uid` is given and the Job of that name is a different one.
        """
        body: dict[str, Any] = {"propagationPolicy": propagation}
        if uid:
            body["preconditions"] = {"uid": uid}
        await self._client.request("DELETE", JOBS.path(namespace, name), body=body)
