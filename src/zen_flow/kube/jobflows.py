"""JobFlow custom objects: list/watch, get, merge-patch of /status, delete."""

from __future__ import annotations

from typing import Any

from zen_flow.api.constants import FIELD_MANAGER, GROUP, PLURAL, VERSION
from zen_flow.kube.client import KubeClient
from zen_flow.kube.resource import Resource, ResourceLister

JOBFLOWS = Resource(GROUP, VERSION, PLURAL)

# RFC 7386. Never let the content type be chosen for us: for a dict body on a custom resource a
# generated client (kubernetes_asyncio) picks application/json-patch+json, which the apiserver rejects
# (craft.md §2.3).
MERGE_PATCH = "application/merge-patch+json"


class JobFlowClient(ResourceLister):
    def __init__(self, client: KubeClient) -> None:
        super().__init__(client, JOBFLOWS)
        self._client = client

    async def get(self, namespace: str, name: str) -> dict[str, Any]:
        """The raw object (parsing is the caller's choice: a broken spec must not make `get` fail)."""
        return await self._client.request("GET", JOBFLOWS.path(namespace, name))

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the /status subresource; returns the updated raw object.

        `patch` is the merge patch itself, e.g. `{"status": {...}}`. Including
        `{"metadata": {"resourceVersion": rv}}` makes it conditional: `Conflict` if the object changed.
        Only `.status` is written through this endpoint; anything else in the patch is ignored.
        """
        return await self._client.request(
            "PATCH",
            JOBFLOWS.path(namespace, name, "status"),
            query=[("fieldManager", FIELD_MANAGER)],
            body=patch,
            content_type=MERGE_PATCH,
        )

    async def delete(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete (its Jobs go with it through ownerReferences). `NotFound` if gone; with `uid`, `Conflict`
        if the name now belongs to a different JobFlow (deleted and re-created meanwhile)."""
        body: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            body["preconditions"] = {"uid": uid}
        await self._client.request("DELETE", JOBFLOWS.path(namespace, name), body=body)
