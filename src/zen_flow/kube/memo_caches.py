"""The ConfigMaps that hold memoized steps' results (`spec.steps[].memoize`, planner/memoization.py).

Read by name when a memoized step is ready to start and before a result is stored (a GET: no informer,
no cache of ConfigMaps; its labels say whether it is a cache at all), and written with a JSON merge
patch of `data` (an entry set, expired or evicted ones removed with null): the apiserver applies it to
the stored object, so two flows storing different keys at once both keep theirs (no read-modify-write,
no resourceVersion to lose a race on). A cache that does not exist yet is created with the first entries,
labelled and owned by no flow: it outlives the flows that fill it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from zen_flow.api.constants import FIELD_MANAGER
from zen_flow.kube.client import KubeClient
from zen_flow.kube.objects import CONFIG_MAPS
from zen_flow.kube.transport import MERGE_PATCH


@dataclass(frozen=True)
class ConfigMapData:
    labels: Mapping[str, str]
    data: Mapping[str, str]


def _strings(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}


class MemoCacheClient:
    """One explicit request per verb: the RBAC test reads them from this code."""

    def __init__(self, client: KubeClient) -> None:
        self._client = client

    async def read(self, namespace: str, name: str) -> ConfigMapData:
        """The ConfigMap's labels and `data` (values that are not strings are left out). `NotFound` if
        absent."""
        raw = await self._client.request("GET", CONFIG_MAPS.path(namespace, name))
        meta = raw.get("metadata")
        return ConfigMapData(
            _strings(meta.get("labels") if isinstance(meta, dict) else None), _strings(raw.get("data"))
        )

    async def store(self, namespace: str, name: str, changes: Mapping[str, str | None]) -> None:
        """Set the keys of `changes` to their values in `data` (None: remove the key), leaving the other
        keys as they are. `NotFound` if the ConfigMap is absent."""
        await self._client.request(
            "PATCH",
            CONFIG_MAPS.path(namespace, name),
            query=[("fieldManager", FIELD_MANAGER)],
            body={"data": dict(changes)},
            content_type=MERGE_PATCH,
        )

    async def create(
        self, namespace: str, name: str, labels: Mapping[str, str], data: Mapping[str, str]
    ) -> None:
        """Create the ConfigMap holding `data`. `AlreadyExists` if another flow created it first."""
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
            "data": dict(data),
        }
        await self._client.request(
            "POST", CONFIG_MAPS.path(namespace), query=[("fieldManager", FIELD_MANAGER)], body=body
        )
