"""Which flows this replica may reconcile under `--shards N`: those of the shards it holds.

The shard elector (on the lease thread) tells the gate what it won (`grant`: every cached flow and
CronJobFlow of the shard is queued) and what it hands over (`drain`: no reconcile of the shard starts
from then on; it returns once those in flight have ended, and only then is the Lease released, so the
next holder never overlaps with this one). The workers ask the gate before each reconcile (`admit`, then
`leave` when done); a key of a shard not held is dropped from the queue quietly: its holder queues it
from its own informer's events. A flow's shard is computed from what the cache shows now
(core/shards.py), so a change of its concurrency-key label moves it.

Everything here runs on the main event loop; the lease thread reaches it by `call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable

from zen_flow.api import JobFlow
from zen_flow.api.cronjobflow import CronJobFlow
from zen_flow.controller.flow_queue import priority
from zen_flow.controller.metrics import Metrics
from zen_flow.core.shards import flow_shard_key, shard_lease_name, shard_of
from zen_flow.logging import get_logger
from zen_flow.machinery.workqueue import WorkQueue

log = get_logger(__name__)


class ShardGate:
    def __init__(self, shards: int, lease_name: str, metrics: Metrics) -> None:
        self.shards = shards
        self._lease_name = lease_name
        self._metrics = metrics
        self._owned: set[int] = set()
        self._in_flight: Counter[int] = Counter()
        self._keys: dict[int, Counter[str]] = {}  # what is in flight per shard, for a drain that hangs
        self._idle: dict[int, asyncio.Event] = {}
        self._enqueuers: list[Callable[[int], None]] = []
        metrics.shards_owned.set(0)
        # Per shard Lease, as a leader exports it for its one Lease (0 while another replica holds it):
        # the "no leader" and "several leaders" alerts then watch every shard as they watch a leader.
        for shard in range(shards):
            self._leading(shard, False)

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(self._owned)

    def on_grant(self, enqueue: Callable[[int], None]) -> None:
        """`enqueue(shard)` queues every cached object of the shard; called on each grant."""
        self._enqueuers.append(enqueue)

    def flow_shard(self, flow: JobFlow) -> int:
        meta = flow.metadata
        return shard_of(flow_shard_key(meta.namespace, meta.name, meta.labels), self.shards)

    def key_shard(self, key: str) -> int:
        """The shard of a CronJobFlow (its `namespace/name`)."""
        return shard_of(key, self.shards)

    def held_flows(self, keys: Iterable[str], cached: Callable[[str], JobFlow | None]) -> list[str]:
        """The keys of `keys` whose flows, as cached, are of shards held."""
        owned = self._owned
        return [k for k in keys if (flow := cached(k)) is not None and self.flow_shard(flow) in owned]

    # -- the workers' side --------------------------------------------------------------------------
    def admit(self, shard: int, key: str = "") -> bool:
        """May a reconcile of `shard` (of `key`) start now? If so it counts as in flight until
        `leave(shard, key)`."""
        if shard not in self._owned:
            return False
        self._in_flight[shard] += 1
        self._keys.setdefault(shard, Counter())[key] += 1
        self._metrics.shard_reconciles.labels(str(shard)).inc()
        return True

    def leave(self, shard: int, key: str = "") -> None:
        keys = self._keys.get(shard)
        if keys is not None:
            keys[key] -= 1
            if keys[key] <= 0:
                del keys[key]
        self._in_flight[shard] -= 1
        if self._in_flight[shard] <= 0:
            del self._in_flight[shard]
            if (idle := self._idle.pop(shard, None)) is not None:
                idle.set()

    def in_flight(self, shard: int) -> list[str]:
        """The keys whose reconciles of `shard` are in flight."""
        return sorted(self._keys.get(shard, ()))

    # -- the elector's side -------------------------------------------------------------------------
    def _leading(self, shard: int, leading: bool) -> None:
        self._metrics.leader.labels(shard_lease_name(self._lease_name, shard)).set(1 if leading else 0)
        self._metrics.shards_owned.set(len(self._owned))

    def grant(self, shard: int) -> None:
        self._owned.add(shard)
        self._leading(shard, True)
        self._metrics.shard_changes.labels("acquired").inc()
        for enqueue in self._enqueuers:
            enqueue(shard)

    async def drain(self, shard: int) -> None:
        """Stop admitting reconciles of `shard`; return once none of them is in flight."""
        self._owned.discard(shard)
        self._leading(shard, False)
        while self._in_flight.get(shard, 0) > 0:
            idle = self._idle.setdefault(shard, asyncio.Event())
            await idle.wait()
        log.info("shard drained", shard=shard)

    def released(self, shard: int) -> None:
        """Its Lease is released (a handover, or the shutdown's)."""
        if shard in self._owned:  # released without a drain: the shutdown, after the workers stopped
            self._owned.discard(shard)
            self._leading(shard, False)
            return
        self._metrics.shard_changes.labels("handed_over").inc()


def cached_flow_shard(cached: Callable[[str], JobFlow | None]) -> Callable[[ShardGate, str], int | None]:
    """`shard_turn`'s `shard_of` for flows: a flow's shard as the cache shows it now (None: not cached,
    no shard's). CronJobFlows' is `ShardGate.key_shard`."""
    return lambda gate, key: gate.flow_shard(flow) if (flow := cached(key)) is not None else None


@contextlib.asynccontextmanager
async def shard_turn(
    gate: ShardGate | None,
    shard_of: Callable[[ShardGate, str], int | None],
    key: str,
    queue: WorkQueue[str],
    dropped: Callable[[str], None] | None = None,
) -> AsyncIterator[bool]:
    """A worker's turn with `key`, just taken from `queue`: yields whether to reconcile it. Without
    `--shards` (`gate` None), or for a key of no shard (`shard_of` None: a flow not cached, whose reconcile
    only forgets what this process remembered of it), always; a reconcile of a shard held counts as in
    flight (a handover waits for it) until the block ends. A key of a shard not held is dropped from the
    queue quietly, and `dropped(key)` forgets what this replica remembered of it: its holder queues it
    from its own informer's events."""
    shard = shard_of(gate, key) if gate is not None else None
    if gate is None or shard is None:
        yield True
        return
    if not gate.admit(shard, key):
        queue.forget(key)
        queue.done(key)
        if dropped is not None:
            dropped(key)
        yield False
        await asyncio.sleep(0)  # a grant's or handover's thousands of keys never hold the loop
        return
    try:
        yield True
    finally:
        gate.leave(shard, key)


def queue_shard(
    gate: ShardGate,
    flows: Callable[[], Iterable[JobFlow]],
    flow_queue: WorkQueue[str],
    crons: Callable[[], Iterable[CronJobFlow]],
    cron_queue: WorkQueue[str],
) -> Callable[[int], None]:
    """The `on_grant` callback: queue every cached flow and CronJobFlow of a shard just acquired."""

    def enqueue(shard: int) -> None:
        count = 0
        for flow in flows():
            if gate.flow_shard(flow) == shard:
                flow_queue.add(flow.key, priority(flow))
                count += 1
        for cron in crons():
            if gate.key_shard(cron.key) == shard:
                cron_queue.add(cron.key)
                count += 1
        log.info("shard acquired; queued its objects", shard=shard, queued=count)

    return enqueue
