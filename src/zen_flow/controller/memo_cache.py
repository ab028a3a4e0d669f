"""Reading and writing memoized steps' cache entries for the reconciler (planner/memoization.py).

A plan names the entries it needs (`Plan.lookups`: memoized steps ready to start); they are read here,
one GET per ConfigMap, and the plan is made again with the answers (`MemoCache.plan`). A plan that
stores a result (`SaveMemo`) has it written here, before the status write: a lost status write stores
it again, which is harmless. The cache is an optimisation, never a reason to fail a flow: a ConfigMap
that cannot be read (403, a timeout) runs the step, and a save that fails (403, a 5xx) is logged and
said in a Warning event `MemoizeFailed`, the step's outcome unchanged.

Only ConfigMaps labelled `workflow.kube-zen.io/memo-cache: "true"` are caches (the controller labels the
ones it creates): `cache.configMap.name` is the flow author's to choose, and without the label anyone who
may create flows could have the controller patch keys into any ConfigMap of the namespace (an app's
settings), or read a hit from one. An existing ConfigMap without it is no cache: its steps run, and a
save says why in the event.

The entries one plan stores in one ConfigMap (the items of a memoized matrix step ending together) are
saved together: one read, one merge patch (or one create) with all of them.

A cache stays under the ConfigMap's 1 MiB: a save reads it first (its labels and entries), removes the
entries whose `expires` has passed (the maxAge of the step that stored each) in the same merge patch,
and when the apiserver still refuses it as too large, removes the oldest half of the other entries and
tries once more. Without that, ~3,300 entries filled it, then every save failed and every lookup
downloaded 1 MiB, for good.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Protocol

from zen_flow import planner
from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.api.constants import StepPhase
from zen_flow.controller.metrics import Metrics
from zen_flow.kube.errors import AlreadyExists, ApiError, KubeError, NotFound, describe
from zen_flow.kube.memo_caches import ConfigMapData
from zen_flow.logging import get_logger
from zen_flow.planner.events import WARNING
from zen_flow.planner.memoization import ENTRY_PREFIX, MemoEntry, parse_entry

log = get_logger(__name__)

MEMOIZE_FAILED = "MemoizeFailed"
# Plans one reconcile makes at most while each finds memoized steps ready whose entries it lacks (a
# chain of cached steps is served one step per plan); past that, the next reconcile goes on.
MEMO_READ_ROUNDS = 8
NOT_A_CACHE = (
    f'it lacks the label {planner.MEMO_CACHE_LABEL}: "true", so it is not a memoize cache (the controller '
    "reads and writes only ConfigMaps so labelled, and labels those it creates) and the step is never "
    "served from it either; name another ConfigMap, or label this one if it is meant to be a cache"
)


class MemoApi(Protocol):
    async def read_memo_cache(self, namespace: str, name: str) -> ConfigMapData: ...
    async def store_memo(self, namespace: str, name: str, changes: Mapping[str, str | None]) -> None: ...
    async def create_memo_cache(
        self, namespace: str, name: str, labels: Mapping[str, str], data: Mapping[str, str]
    ) -> None: ...


class EventSink(Protocol):
    def emit(self, flow: JobFlow, type_: str, reason: str, message: str) -> None: ...


def is_cache(found: ConfigMapData) -> bool:
    return found.labels.get(planner.MEMO_CACHE_LABEL) == "true"


class NotACache(Exception):
    """The ConfigMap a save would write to lacks the cache label."""


class MemoCache:
    def __init__(self, *, api: MemoApi, events: EventSink, metrics: Metrics) -> None:
        self._api = api
        self._events = events
        self._metrics = metrics

    async def plan(
        self,
        flow: JobFlow,
        make: Callable[[Mapping[str, planner.MemoAnswer]], Awaitable[planner.Plan | None]],
        *,
        hold: Callable[[], AbstractAsyncContextManager[object]],
        settle: Callable[[planner.Plan], None],
    ) -> planner.Plan | None:
        """The flow's plan, `make` with the entries read so far, under `hold` (the concurrency group's
        lock); None when `make` gives none. A plan that names memoized steps ready to start (`lookups`)
        is made again once their entries are read, outside the lock (a GET must not hold the group), so
        that a hit serves the step now. `settle` sees the final plan before the lock is let go."""
        memos: dict[str, planner.MemoAnswer] = {}
        unusable: set[str] = set()  # steps whose cache could not be read or is no cache
        for rounds in range(1, MEMO_READ_ROUNDS + 1):
            async with hold():
                planned = await make(memos)
                if planned is None:
                    return None
                if not planned.lookups or rounds == MEMO_READ_ROUNDS:
                    # The steps still waiting for their entries are planned again in a second
                    # (`planner.memoization.LOOKUP_RETRY_SECONDS`).
                    settle(planned)
                    self.count_lookups(memos, unusable, planned.status)
                    return planned
            answers, failed = await self.read(flow, planned.lookups)
            memos.update(answers)
            unusable |= failed
        raise AssertionError("unreachable: the last round returns")

    async def read(
        self, flow: JobFlow, lookups: Sequence[planner.MemoLookup]
    ) -> tuple[dict[str, planner.MemoAnswer], set[str]]:
        """An answer for every lookup: the entry's text, or None (no ConfigMap, no such key, a ConfigMap
        that is no cache or could not be read: then the step runs); and the steps whose ConfigMap was
        no cache or could not be read (their lookups count as errors, not misses)."""
        namespace = flow.metadata.namespace
        names = sorted({lookup.config_map for lookup in lookups})

        async def data(name: str) -> Mapping[str, str] | None:
            try:
                found = await self._api.read_memo_cache(namespace, name)
            except NotFound:
                return {}
            except KubeError as err:
                log.warning("memoize cache unreadable; its steps run", config_map=name, error=describe(err))
                return None
            if not is_cache(found):
                log.warning("memoize cache is not labelled as one; its steps run", config_map=name)
                return None
            return found.data

        found = dict(zip(names, await asyncio.gather(*map(data, names)), strict=True))
        answers = {
            lookup.step: planner.MemoAnswer(lookup.key, (found[lookup.config_map] or {}).get(lookup.data_key))
            for lookup in lookups
        }
        return answers, {lookup.step for lookup in lookups if found[lookup.config_map] is None}

    def count_lookups(
        self, answered: Mapping[str, planner.MemoAnswer], unusable: set[str], status: JobFlowStatus
    ) -> None:
        """`zen_flow_memoize_lookups_total` for the steps whose entries were read for the final plan
        `status`: served (Succeeded without a Job) is a hit."""
        for step in answered:
            if step in unusable:
                result = "error"
            else:
                found = status.step(step)
                result = "hit" if found is not None and found.phase == StepPhase.SUCCEEDED else "miss"
            self._metrics.memo_lookups.labels(result).inc()

    async def save(self, flow: JobFlow, actions: Sequence[planner.Action], now: datetime) -> None:
        """Store the plan's `SaveMemo` entries; a failure is logged and said in an event, never raised.
        The entries of one ConfigMap are written together: one read and one merge patch holding every
        entry (256 memoized items ending at once were 256 GETs of a growing ConfigMap and 255 PATCHes,
        one after another, before the status write their dependents wait for)."""
        groups: dict[str, list[planner.SaveMemo]] = {}
        for action in actions:
            if isinstance(action, planner.SaveMemo):
                groups.setdefault(action.config_map, []).append(action)
        for config_map, saves in groups.items():
            await self._save(flow, config_map, saves, now)

    async def _save(
        self, flow: JobFlow, config_map: str, saves: Sequence[planner.SaveMemo], now: datetime
    ) -> None:
        steps = [save.step for save in saves]
        try:
            removed = await self._store(flow.metadata.namespace, config_map, saves, now)
        except (KubeError, NotACache) as err:
            why = NOT_A_CACHE if isinstance(err, NotACache) else describe(err)
            log.warning("memoize result not stored", steps=steps, config_map=config_map, error=why)
            for save in saves:  # one event per step, as each step's result is lost
                self._metrics.memo_saves.labels("error").inc()
                self._events.emit(
                    flow,
                    WARNING,
                    MEMOIZE_FAILED,
                    f"step {save.step}: its result was not stored in ConfigMap {config_map} "
                    f"(the step's outcome is unchanged): {why}; key {save.key}",
                )
            return
        self._metrics.memo_saves.labels("ok").inc(len(saves))
        log.info("memoize result stored", steps=steps, config_map=config_map, removed=removed)

    async def _store(
        self, namespace: str, config_map: str, saves: Sequence[planner.SaveMemo], now: datetime
    ) -> int:
        """Write the entries, with the removals they need; the number of entries removed."""
        entries = {save.data_key: save.value for save in saves}  # the same key twice: the last wins
        try:
            found = await self._api.read_memo_cache(namespace, config_map)
        except NotFound:
            try:
                labels = {planner.MEMO_CACHE_LABEL: "true"}
                await self._api.create_memo_cache(namespace, config_map, labels, entries)
                return 0
            except AlreadyExists:  # another flow created it meanwhile: add ours to it
                found = await self._api.read_memo_cache(namespace, config_map)
        if not is_cache(found):
            raise NotACache(config_map)
        changes: dict[str, str | None] = dict.fromkeys(expired(found.data, now, entries))
        changes.update(entries)
        try:
            await self._api.store_memo(namespace, config_map, changes)
        except ApiError as err:
            if err.status != 422 and not err.too_large:
                raise
            log.info("memoize cache full; its oldest entries are evicted", config_map=config_map)
            changes.update(dict.fromkeys(oldest_half(found.data, changes)))
            await self._api.store_memo(namespace, config_map, changes)
        return len(changes) - len(entries)


def _entries(data: Mapping[str, str], keep: Collection[str]) -> dict[str, MemoEntry | None]:
    """The cache's entries but those of `keep`, parsed (None: one that does not parse)."""
    return {k: parse_entry(v) for k, v in data.items() if k.startswith(ENTRY_PREFIX) and k not in keep}


def expired(data: Mapping[str, str], now: datetime, keep: Collection[str]) -> list[str]:
    """The entries whose `expires` has passed: the step that stored each would not use it any more."""
    return [
        k
        for k, entry in _entries(data, keep).items()
        if entry is not None and entry.expires is not None and entry.expires <= now
    ]


def oldest_half(data: Mapping[str, str], changes: Mapping[str, str | None]) -> list[str]:
    """The older half of the entries `changes` does not touch already: those that do not parse first
    (nothing serves them), then by the time they were stored."""
    entries = _entries(data, changes)

    def age(key: str) -> tuple[int, datetime, str]:
        entry = entries[key]
        return (0, _EPOCH, key) if entry is None else (1, entry.time, key)

    ordered = sorted(entries, key=age)
    return ordered[: (len(ordered) + 1) // 2]


_EPOCH = datetime.min.replace(tzinfo=UTC)
