"""The core/v1 objects a flow's `spec.resourceTemplates` describe: PersistentVolumeClaims and ConfigMaps.

Only create and get (to check who owns an object whose name was taken). No list or watch: the controller
keeps no cache of them (caching every ConfigMap of the cluster would cost memory and expose data); the
flow's `status.resourceRefs` is the record of what was created.
"""

from __future__ import annotations

from typing import Any

from zen_flow.api.constants import FIELD_MANAGER
from zen_flow.api.meta import ObjectMeta
from zen_flow.kube.client import KubeClient
from zen_flow.kube.resource import Resource

PERSISTENT_VOLUME_CLAIMS = Resource("", "v1", "persistentvolumeclaims")
CONFIG_MAPS = Resource("", "v1", "configmaps")

PVC_KIND = "PersistentVolumeClaim"
CONFIG_MAP_KIND = "ConfigMap"
KINDS = (PVC_KIND, CONFIG_MAP_KIND)


class UnsupportedKind(ValueError):
    """Not a kind `spec.resourceTemplates` can hold."""


def _meta(raw: dict[str, Any]) -> ObjectMeta:
    return ObjectMeta.model_validate(raw.get("metadata") or {})


class ObjectClient:
    """One explicit request per kind and verb: the RBAC test reads them from this code."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def create(self, namespace: str, kind: str, body: dict[str, Any]) -> ObjectMeta:
        """Create the object; its metadata (with the UID) comes back. `AlreadyExists` if the name is
        taken, `Invalid` if the apiserver refuses the manifest. A retry after a lost answer gets
        AlreadyExists, which the caller resolves by reading the owner (names are deterministic)."""
        query = [("fieldManager", FIELD_MANAGER)]
        if kind == PVC_KIND:
            raw = await self._client.request(
                "POST", PERSISTENT_VOLUME_CLAIMS.path(namespace), query=query, body=body
            )
        elif kind == CONFIG_MAP_KIND:
            raw = await self._client.request("POST", CONFIG_MAPS.path(namespace), query=query, body=body)
        else:
            raise UnsupportedKind(kind)
        return _meta(raw)

    async def get(self, namespace: str, kind: str, name: str) -> ObjectMeta:
        """The object's metadata (owner references, deletionTimestamp). `NotFound` if it is gone."""
        if kind == PVC_KIND:
            raw = await self._client.request("GET", PERSISTENT_VOLUME_CLAIMS.path(namespace, name))
        elif kind == CONFIG_MAP_KIND:
            raw = await self._client.request("GET", CONFIG_MAPS.path(namespace, name))
        else:
            raise UnsupportedKind(kind)
        return _meta(raw)
