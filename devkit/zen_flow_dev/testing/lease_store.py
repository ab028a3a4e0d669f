"""An in-memory `LeaseStore` with the apiserver's optimistic concurrency, plus failure injection.

Several `LeaderElector`s sharing one store behave like replicas sharing one Lease. Tests can make every
call fail (`fail_with`), or block until released (`hang()` / `unhang()`) to exercise per-call timeouts,
and can write the Lease directly as a third party (`put`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from dataclasses import replace

from zen_flow.machinery.leader import ConflictError, LeaseRecord


class InMemoryLeaseStore:
    def __init__(self) -> None:
        self._leases: dict[tuple[str, str], LeaseRecord] = {}
        self._versions = itertools.count(1)
        self._open = asyncio.Event()
        self._open.set()
        self.fail_with: Exception | None = None
        self.calls: list[str] = []  # "get", "create", "update", in call order

    # -- failure injection --------------------------------------------------------------------------
    def hang(self) -> None:
        """From now on every call blocks (until `unhang()`), like a black-holed TCP connection."""
        self._open.clear()

    def unhang(self) -> None:
        self._open.set()

    # -- direct access, as another writer -----------------------------------------------------------
    def read(self, name: str, namespace: str) -> LeaseRecord | None:
        return self._leases.get((namespace, name))

    def put(self, record: LeaseRecord) -> LeaseRecord:
        """Store `record` unconditionally (a write by someone else); returns it with a new version."""
        stored = replace(record, resource_version=str(next(self._versions)))
        self._leases[(record.namespace, record.name)] = stored
        return stored

    # -- the LeaseStore protocol --------------------------------------------------------------------
    async def get(self, name: str, namespace: str) -> LeaseRecord | None:
        await self._enter("get")
        return self._leases.get((namespace, name))

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        await self._enter("create")
        if (record.namespace, record.name) in self._leases:
            raise ConflictError(f"lease {record.namespace}/{record.name} already exists")
        return self.put(record)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        await self._enter("update")
        current = self._leases.get((record.namespace, record.name))
        if current is None:
            raise LookupError(f"lease {record.namespace}/{record.name} not found")
        if current.resource_version != record.resource_version:
            raise ConflictError(f"lease {record.namespace}/{record.name} was modified")
        return self.put(record)

    # -- the ShardLeaseStore additions (machinery/shard_elector.py) ---------------------------------
    async def list(self, namespace: str) -> list[LeaseRecord]:
        await self._enter("list")
        return [r for (ns, _), r in sorted(self._leases.items()) if ns == namespace]

    async def delete(self, record: LeaseRecord) -> None:
        await self._enter("delete")
        current = self._leases.get((record.namespace, record.name))
        if current is not None and current.resource_version == record.resource_version:
            del self._leases[(record.namespace, record.name)]

    async def _enter(self, verb: str) -> None:
        self.calls.append(verb)
        await self._open.wait()
        if self.fail_with is not None:
            raise self.fail_with


class LabelledLeases:
    """One replica's view of a shared `InMemoryLeaseStore`: what it creates carries `labels`, as
    `LeaseClient(labels=...)` does (the shard elector's member Leases announce the replica's --shards)."""

    def __init__(self, store: InMemoryLeaseStore, labels: Mapping[str, str]) -> None:
        self._store = store
        self._labels = tuple(sorted(labels.items()))

    async def get(self, name: str, namespace: str) -> LeaseRecord | None:
        return await self._store.get(name, namespace)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        return await self._store.create(replace(record, labels=self._labels))

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        return await self._store.update(record)

    async def list(self, namespace: str) -> list[LeaseRecord]:
        return await self._store.list(namespace)

    async def delete(self, record: LeaseRecord) -> None:
        await self._store.delete(record)
