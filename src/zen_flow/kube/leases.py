"""coordination.k8s.io/v1 Leases for leader election: `zen_flow.machinery.leader.LeaseStore` over the API,
and for shards (`ShardLeaseStore`: the Leases it creates carry its labels, which `list` selects on)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from zen_flow.api.meta import parse_time
from zen_flow.kube.client import KubeClient
from zen_flow.kube.errors import Conflict, NotFound
from zen_flow.kube.resource import Resource
from zen_flow.kube.transport import MERGE_PATCH
from zen_flow.machinery.leader import ConflictError, LeaseRecord

LEASES = Resource("coordination.k8s.io", "v1", "leases")


def format_micro_time(value: datetime) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds and a `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseClient:
    """No retries here: the elector bounds each attempt with its own timeout and retries on its period."""

    def __init__(
        self, client: KubeClient, labels: Mapping[str, str] | None = None, selector: str = ""
    ) -> None:
        """`labels`: put on every Lease this client creates; `list` returns the Leases `selector` selects."""
        self._client = client
        self._labels = dict(labels or {})
        self._selector = selector

    async def list(self, namespace: str) -> list[LeaseRecord]:
        query = [("labelSelector", self._selector)] if self._selector else []
        leases = await self._client.request("GET", LEASES.path(namespace), query=query, retry=False)
        return [_record(item) for item in leases.get("items") or []]

    async def delete(self, record: LeaseRecord) -> None:
        """Delete the Lease if it is still at `record.resource_version` (a 409 or 404: someone else
        renewed or deleted it: nothing to do)."""
        body = {"preconditions": {"resourceVersion": record.resource_version}}
        try:
            await self._client.request(
                "DELETE", LEASES.path(record.namespace, record.name), body=body, retry=False
            )
        except (Conflict, NotFound):
            return

    async def get(self, name: str, namespace: str) -> LeaseRecord | None:
        try:
            lease = await self._client.request("GET", LEASES.path(namespace, name), retry=False)
        except NotFound:
            return None
        return _record(lease)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        metadata: dict[str, Any] = {"name": record.name, "namespace": record.namespace}
        if self._labels:
            metadata["labels"] = self._labels
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": _spec(record),
        }
        try:
            lease = await self._client.request("POST", LEASES.path(record.namespace), body=body, retry=False)
        except Conflict as err:
            raise ConflictError(str(err)) from err
        return _record(lease)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        """A merge patch made conditional by the resourceVersion: 409 if anyone wrote the Lease since we
        read it. Unlike a PUT it leaves fields we do not own (labels, annotations) alone."""
        if not record.resource_version:
            raise ValueError("update needs the resourceVersion the record was read at")
        patch = {"metadata": {"resourceVersion": record.resource_version}, "spec": _spec(record)}
        try:
            lease = await self._client.request(
                "PATCH",
                LEASES.path(record.namespace, record.name),
                body=patch,
                content_type=MERGE_PATCH,
                retry=False,
            )
        except Conflict as err:
            raise ConflictError(str(err)) from err
        return _record(lease)


def _spec(record: LeaseRecord) -> dict[str, Any]:
    # Explicit nulls: in a merge patch they delete a timestamp the record no longer has.
    return {
        "holderIdentity": record.holder_identity,
        "leaseDurationSeconds": record.lease_duration_seconds,
        "acquireTime": format_micro_time(record.acquire_time) if record.acquire_time else None,
        "renewTime": format_micro_time(record.renew_time) if record.renew_time else None,
        "leaseTransitions": record.lease_transitions,
    }


def _record(lease: dict[str, Any]) -> LeaseRecord:
    meta = lease.get("metadata") or {}
    spec = lease.get("spec") or {}
    acquire = spec.get("acquireTime")
    renew = spec.get("renewTime")
    return LeaseRecord(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        holder_identity=str(spec.get("holderIdentity") or ""),
        lease_duration_seconds=int(spec.get("leaseDurationSeconds") or LeaseRecord.lease_duration_seconds),
        acquire_time=parse_time(acquire) if acquire else None,
        renew_time=parse_time(renew) if renew else None,
        lease_transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str(meta.get("resourceVersion", "")),
        labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
    )
