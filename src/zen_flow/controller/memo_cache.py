"""Reading and writing memoized steps' cache entries for the reconciler (planner/memoization.py).

A plan names the entries it needs (`Plan.lookups`: memoized steps ready to start); they are read here,
one GET per ConfigMap, and the plan is made again with the answers. A plan that stores a result
(`SaveMemo`) has it written here, before the status write: a lost status write stores it again, which is
harmless. The cache is an optimisation, never a reason to fail a flow: a ConfigMap that cannot be read
(403, a timeout) runs the step, and a save that fails (403, the ConfigMap's 1 MiB limit: 422) is logged
and said in a Warning event `MemoizeFailed`, the step's outcome unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol

from zen_flow import planner
from zen_flow.api import JobFlow
from zen_flow.kube.errors import AlreadyExists, KubeError, NotFound, describe
from zen_flow.logging import get_logger
from zen_flow.planner.events import WARNING

log = get_logger(__name__)

MEMOIZE_FAILED = "MemoizeFailed"
# Plans one reconcile makes at most while each finds memoized steps ready whose entries it lacks (a
# chain of cached steps is served one step per plan); past that, the next reconcile goes on.
MEMO_READ_ROUNDS = 8


class MemoApi(Protocol):
    async def read_memo_cache(self, namespace: str, name: str) -> Mapping[str, str]: ...
    async def store_memo(self, namespace: str, name: str, key: str, value: str) -> None: ...
    async def create_memo_cache(
        self, namespace: str, name: str, labels: Mapping[str, str], key: str, value: str
    ) -> None: ...


class EventSink(Protocol):
    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None: ...


class MemoCache:
    def __init__(self, *, api: MemoApi, events: EventSink) -> None:
        self._api = api
        self._events = events

    async def read(
        self, flow: JobFlow, lookups: Sequence[planner.MemoLookup]
    ) -> dict[str, planner.MemoAnswer]:
        """An answer for every lookup: the entry's text, or None (no ConfigMap, no such key, or the
        ConfigMap could not be read: then the step runs)."""
        namespace = flow.metadata.namespace
        names = sorted({lookup.config_map for lookup in lookups})

        async def data(name: str) -> Mapping[str, str]:
            try:
                return await self._api.read_memo_cache(namespace, name)
            except NotFound:
                return {}
            except KubeError as err:
                log.warning("memoize cache unreadable; its steps run", config_map=name, error=describe(err))
                return {}

        found = dict(zip(names, await asyncio.gather(*map(data, names)), strict=True))
        return {
            lookup.step: planner.MemoAnswer(lookup.key, found[lookup.config_map].get(lookup.data_key))
            for lookup in lookups
        }

    async def save(self, flow: JobFlow, actions: Sequence[planner.Action]) -> None:
        """Store the plan's `SaveMemo` entries; a failure is logged and said in an event, never raised."""
        for action in actions:
            if isinstance(action, planner.SaveMemo):
                await self._save(flow, action)

    async def _save(self, flow: JobFlow, save: planner.SaveMemo) -> None:
        namespace = flow.metadata.namespace
        try:
            try:
                await self._api.store_memo(namespace, save.config_map, save.data_key, save.value)
            except NotFound:
                try:
                    labels = {planner.MEMO_CACHE_LABEL: "true"}
                    await self._api.create_memo_cache(
                        namespace, save.config_map, labels, save.data_key, save.value
                    )
                except AlreadyExists:  # another flow created it meanwhile: add ours to it
                    await self._api.store_memo(namespace, save.config_map, save.data_key, save.value)
        except KubeError as err:
            why = describe(err)
            log.warning("memoize result not stored", step=save.step, config_map=save.config_map, error=why)
            self._events.emit(
                flow,
                WARNING,
                MEMOIZE_FAILED,
                f"step {save.step}: its result was not stored in ConfigMap {save.config_map} "
                f"(the step's outcome is unchanged): {why}; key {save.key}",
            )
            return
        log.info("memoize result stored", step=save.step, config_map=save.config_map)
