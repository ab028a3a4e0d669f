"""What the controller keeps by flow UID between reconciles, and how all of it is forgotten together.

Each part of the controller keeps its own state by flow UID: validation verdicts, matrix expansions,
status writes the cache has yet to show, writes in doubt, pending Jobs and their pod reads, Jobs missing
from the cache, first Jobs of an unrecorded start, refused template reads and child flows, archive
records... The flow informer's delete event forgets them (InformerEvents.on_flow_deleted). But a reconcile
awaits the apiserver, and the delete event of its flow may be handled during any of those awaits: what the
reconcile writes afterwards would outlive the flow, for as long as the controller runs (a red team's months
of churn: a flow deleted by its TTL whose watch event came before the DELETE's answer, while its pending
pods were read, while its status write was in flight). So, in one place rather than at every write:

* a reconcile that ends with its flow gone from the cache forgets it (`settled`), whatever it wrote;
* every SWEEP_SECONDS, a sweep forgets every UID the cache does not hold (`sweep`): what a writer outside
  a reconcile (the archive's) or one added later without that care leaves goes within minutes. It logs
  what it finds: anything it finds is a writer to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from zen_flow.api import JobFlow
from zen_flow.api.meta import ObjectMeta
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock

log = get_logger(__name__)

SWEEP_SECONDS = 600.0


@runtime_checkable
class FlowUids(Protocol):
    """A part of the controller that keeps state by flow UID."""

    def uids(self) -> Iterable[str]:
        """The flows (by UID) it keeps anything of."""
        ...

    def forget(self, uid: str) -> None:
        """The flow is gone: keep nothing of it."""
        ...


class Keyed(Protocol):
    """A JobFlow or a CronJobFlow."""

    @property
    def key(self) -> str: ...

    @property
    def metadata(self) -> ObjectMeta: ...


K = TypeVar("K", bound=Keyed)


def cached_as(cached: Callable[[str], K | None], key: str, uid: str) -> K | None:
    """The cache's object of `key` when it is the one of `uid`: None when it is gone, or another one now
    (re-created under its name)."""
    now = cached(key)
    return now if now is not None and now.metadata.uid == uid else None


def holds(cached: Callable[[str], K | None], flow: K) -> bool:
    """Does the cache still hold `flow` (its key is not another flow's now, re-created under its name)?"""
    return cached_as(cached, flow.key, flow.metadata.uid) is not None


def current(cached: Callable[[str], JobFlow | None], flow: JobFlow) -> bool:
    """Is `flow` still the cache's flow of its key, not being deleted (else its plan is not applied)?"""
    now = cached(flow.key)
    return (
        now is not None and now.metadata.uid == flow.metadata.uid and now.metadata.deletion_timestamp is None
    )


class FlowMemory:
    def __init__(self, parts: Sequence[FlowUids], cached: Callable[[str], JobFlow | None]) -> None:
        """`parts`: every part that keeps state by flow UID; `cached`: the flow cache's lookup by key."""
        self._parts = tuple(parts)
        self._cached = cached

    def uids(self) -> set[str]:
        """The flows (by UID) some part keeps anything of."""
        return {uid for part in self._parts for uid in part.uids()}

    def forget(self, uid: str) -> None:
        for part in self._parts:
            part.forget(uid)

    def settled(self, flow: JobFlow) -> bool:
        """A reconcile of `flow` is over: if its delete event came meanwhile, what it wrote since goes
        (True)."""
        if holds(self._cached, flow):
            return False
        self.forget(flow.metadata.uid)
        return True

    def sweep(self, cached: Iterable[JobFlow]) -> int:
        """Forget every flow the cache (`cached`: all its flows) does not hold; how many there were."""
        live = {flow.metadata.uid for flow in cached}
        gone = [uid for uid in self.uids() if uid not in live]
        for uid in gone:
            self.forget(uid)
        return len(gone)

    async def run(
        self, flows: Callable[[], Iterable[JobFlow]], clock: Clock, period: float = SWEEP_SECONDS
    ) -> None:
        """Sweep every `period` seconds, with the flows of `flows()` (the cache); cancel to stop."""
        while True:
            await clock.sleep(period)
            if gone := self.sweep(flows()):
                log.info("forgot the state kept of flows no longer cached", flows=gone)
