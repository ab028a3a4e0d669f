"""Campaigning for shard Leases (`--shards N`): one loop, one tick per retry period.

Each tick renews what we hold (our member Lease and our shard Leases, concurrently, each attempt
bounded by its own timeout), lists the member and shard Leases, and acts on `shard_plan.plan`: acquire
free shards up to our quota, start handing extras over, release the shards whose handover drained,
delete dead replicas' member Leases. Every Lease is driven by a `LeaderElector` (machinery/leader.py),
so the timing rules are the leader's: a Lease counts as expired only when unchanged for its duration on
our own clock, writes are conditional on the resourceVersion, and a shard Lease we held but could not
renew within the renew deadline (or that shows another holder) is lost: `run` raises `LeadershipLost`
and the process exits, as a leader's does, since reconciles of that shard may still be in flight while
another replica already starts its own.

What the shards mean to the process is the `ShardHooks`' business: `granted` (start reconciling its
flows), `drain` (stop starting reconciles of them; return once those in flight ended), `released`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Protocol

from zen_flow.core.shards import member_lease_name, shard_lease_name
from zen_flow.logging import get_logger
from zen_flow.machinery.clock import Clock, timeout
from zen_flow.machinery.elector_thread import cancel_and_wait
from zen_flow.machinery.leader import LeaderElector, LeadershipLost, LeaseRecord, LeaseStore
from zen_flow.machinery.shard_plan import (
    ShardDecision,
    ShardView,
    Sightings,
    held_shards,
    leader_lease_held,
    plan,
)

log = get_logger(__name__)

# A handover whose reconciles in flight have not ended within this many lease durations (a reconcile
# hung) ends the process: meanwhile the shard is neither reconciled here nor handed over, and its Lease
# is renewed. A restart ends the hung reconcile, and the others take the shard once its Lease expires.
DRAIN_LIMIT_DURATIONS = 3


class ShardLeaseStore(LeaseStore, Protocol):
    async def list(self, namespace: str) -> list[LeaseRecord]:
        """This controller's member and shard Leases (by their label) in `namespace`."""
        ...

    async def delete(self, record: LeaseRecord) -> None:
        """Delete the Lease if its resourceVersion is still `record.resource_version` (else nothing)."""
        ...


class ShardHooks(Protocol):
    def granted(self, shard: int) -> None: ...

    async def drain(self, shard: int) -> None: ...

    def released(self, shard: int) -> None: ...


class ShardElector:
    def __init__(
        self,
        store: ShardLeaseStore,
        lease_name: str,
        namespace: str,
        identity: str,
        clock: Clock,
        shards: int,
        hooks: ShardHooks,
        *,
        lease_duration: int = 15,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        self.identity = identity
        self._store, self._clock, self._hooks = store, clock, hooks
        self._lease_name, self._namespace, self._shards = lease_name, namespace, shards
        self._retry_period = retry_period
        self._drain_limit = DRAIN_LIMIT_DURATIONS * lease_duration
        self._drain_started: dict[int, float] = {}
        self._lease_duration = lease_duration
        self._decided_at: float | None = None  # the last decision that listed the Leases
        self._joined_at: float | None = None  # the first member Lease write
        self._call_timeout = renew_deadline / 2
        rng = rng or random.Random()

        def elector(name: str) -> LeaderElector:
            return LeaderElector(
                store,
                name,
                namespace,
                identity,
                clock,
                lease_duration,
                renew_deadline,
                retry_period,
                rng=rng,
            )

        self._new_elector = elector
        self._member_name = member_lease_name(lease_name, identity)
        self._member = elector(self._member_name)
        self._electors = {i: elector(shard_lease_name(lease_name, i)) for i in range(shards)}
        self._locks = {i: asyncio.Lock() for i in range(shards)}
        self._sightings = Sightings()
        self._held: set[int] = set()
        self._drains: dict[int, asyncio.Future[None]] = {}
        self.last_decision: ShardDecision | None = None

    @property
    def held(self) -> frozenset[int]:
        return frozenset(self._held)

    async def run(self) -> None:
        """Renew and decide, each every retry period, until cancelled (then release every shard Lease
        and delete our member Lease: the caller has stopped reconciling first) or until a shard Lease is
        lost (`LeadershipLost`). Renewals have a loop of their own: a slow list or acquire never delays
        them past the renew deadline."""
        renewing = asyncio.ensure_future(self._every(self.renew))
        deciding = asyncio.ensure_future(self._every(self.decide))
        try:
            await asyncio.wait({renewing, deciding}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await cancel_and_wait(renewing)
            await cancel_and_wait(deciding)
            await self.leave()
            raise
        await cancel_and_wait(renewing)
        await cancel_and_wait(deciding)
        for task in (renewing, deciding):
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
        raise AssertionError("the shard loops only end by raising")

    async def tick(self) -> ShardDecision | None:
        """One renewal, then one decision (what `run` does on its two loops; for tests)."""
        await self.renew()
        return await self.decide()

    async def _every(self, step: Callable[[], Awaitable[object]]) -> None:
        while True:
            await step()
            await self._clock.sleep(self._retry_period)

    async def decide(self) -> ShardDecision | None:
        try:
            async with timeout(self._clock, self._call_timeout):
                records = await self._store.list(self._namespace)
                # `--shards 1`'s Lease, unlabelled: a leader of a rollout under way reconciles everything.
                leader = await self._store.get(self._lease_name, self._namespace)
        except Exception as exc:  # a failed list skips this decision; renewals go on
            log.warning("shard lease list failed", error=repr(exc))
            return None
        if leader is not None and all(r.name != leader.name for r in records):
            records = [*records, leader]
        now = self._clock.monotonic()
        self._decided_at = now
        self._check_drains(now)
        self._sightings.observe(records, now)
        drained = frozenset(i for i, d in self._drains.items() if d.done())
        decision = plan(
            ShardView(
                identity=self.identity,
                lease_name=self._lease_name,
                member_prefix=f"{self._lease_name}-member-",
                my_member=self._member_name,
                shards=self._shards,
                now=now,
                sightings=self._sightings.all(),
                held=frozenset(self._held),
                draining=frozenset(self._drains) - drained,
                drained=drained,
                leader_lease=self._lease_name,
                member_written=self._member.is_leader,
            )
        )
        if decision.waiting != (self.last_decision.waiting if self.last_decision else None):
            if decision.waiting is not None:
                log.warning("not taking shards", reason=decision.waiting, held=sorted(self._held))
            else:
                log.info("taking shards again", quota=decision.quota)
        self.last_decision = decision
        await self._act(decision)
        return decision

    def _check_drains(self, now: float) -> None:
        """A handover that failed, or did not drain within the limit, ends the campaign (and the
        process): its reconciles may still run, so the shard may not be released."""
        for shard, drain in self._drains.items():
            failed = drain.done() and (drain.cancelled() or drain.exception() is not None)
            if failed or now - self._drain_started.get(shard, now) >= self._drain_limit:
                reason = f"its handover did not drain within {self._drain_limit:g}s"
                log.error("shard handover hung", shard=shard, identity=self.identity, reason=reason)
                raise LeadershipLost(f"shard {shard}: {reason}")

    async def leave(self) -> None:
        """Release every shard Lease we hold and delete our member Lease (best effort, bounded)."""
        for drain in self._drains.values():
            drain.cancel()
        self._drains.clear()
        self._drain_started.clear()
        # Concurrently: each release is bounded by the renew deadline, and the pod's grace period must
        # cover them all.
        await asyncio.gather(*(self._release(shard, "shutdown") for shard in sorted(self._held)))
        member = self._member.observed
        if member is not None and member.holder_identity == self.identity:
            await self._delete(member)

    async def renew(self) -> None:
        held = sorted(self._held)
        results = await asyncio.gather(
            self._renew_member(), *(self._step(i, renewing=True) for i in held), return_exceptions=True
        )
        if isinstance(results[0], BaseException):
            # Our member Lease only tells the others we are alive; losing it costs a rebalance, not
            # safety. Start it afresh.
            log.warning("member lease lost; renewing afresh", error=repr(results[0]))
            self._member = self._new_elector(self._member_name)
        for shard, result in zip(held, results[1:], strict=True):
            if isinstance(result, LeadershipLost):
                log.error("shard lease lost", shard=shard, identity=self.identity, reason=str(result))
                raise LeadershipLost(f"shard {shard}: {result}")
            if isinstance(result, BaseException):
                raise result

    async def _renew_member(self) -> bool:
        """Our member Lease says we take our share: renewed only while a decision (its LIST) succeeded
        within a lease duration. One whose LIST keeps failing lets it expire, and the others stop
        counting it in their quotas (a share it could never take)."""
        now = self._clock.monotonic()
        if self._joined_at is None:
            self._joined_at = now
        last = max(self._joined_at, self._decided_at or self._joined_at)
        if now - last >= self._lease_duration:
            if self._member.is_leader:
                log.warning("no shard decision lately; releasing the member lease", since=now - last)
                await self._member.release()
                self._member = self._new_elector(self._member_name)
            return False
        return await self._member.step()

    async def _act(self, decision: ShardDecision) -> None:
        for shard in decision.release:
            self._drains.pop(shard, None)
            self._drain_started.pop(shard, None)
            await self._release(shard, "handed over", quota=decision.quota)
        for shard in decision.drain:
            log.info("handing shard over", shard=shard, quota=decision.quota, members=len(decision.members))
            self._drains[shard] = asyncio.ensure_future(self._hooks.drain(shard))
            self._drain_started[shard] = self._clock.monotonic()
        sightings = self._sightings.all()
        for shard in decision.acquire:
            seen = sightings.get(shard_lease_name(self._lease_name, shard))
            if seen is not None:
                self._electors[shard].saw(seen.record, seen.changed_at)
        won = await asyncio.gather(*(self._step(i) for i in decision.acquire), return_exceptions=True)
        won_shards = [shard for shard, result in zip(decision.acquire, won, strict=True) if result is True]
        if won_shards and not await self._leader_free():
            # Written, then read: a leader of `--shards 1` that took its Lease after our list either shows
            # here, or lists our shard Leases after taking it (it writes, then reads too) and waits.
            await asyncio.gather(*(self._give_back(shard) for shard in won_shards))
            won_shards = []
        for shard in won_shards:
            self._held.add(shard)
            self._hooks.granted(shard)
            log.info(
                "shard acquired",
                shard=shard,
                identity=self.identity,
                quota=decision.quota,
                members=len(decision.members),
            )
        for record in decision.delete_members:
            log.info(
                "deleting the member lease of a replica gone",
                lease=record.name,
                holder=record.holder_identity,
            )
            await self._delete(record)

    async def _leader_free(self) -> bool:
        """Re-read the leader Lease of `--shards 1` after winning shards: is nobody holding it?"""
        try:
            async with timeout(self._clock, self._call_timeout):
                record = await self._store.get(self._lease_name, self._namespace)
        except Exception as exc:  # unknown: do not reconcile what a leader may reconcile
            log.warning("leader lease read failed; giving the shards just won back", error=repr(exc))
            return False
        if leader_lease_held(self._sightings.all(), record, self._clock.monotonic()):
            holder = record.holder_identity if record is not None else ""
            log.warning("the leader lease is held; giving the shards just won back", holder=holder)
            return False
        return True

    async def _give_back(self, shard: int) -> None:
        """Release a shard Lease won but never granted: nothing of it was reconciled."""
        async with self._locks[shard]:
            await self._electors[shard].release()

    async def _release(self, shard: int, reason: str, **fields: object) -> None:
        async with self._locks[shard]:
            await self._electors[shard].release()
            self._held.discard(shard)
        self._hooks.released(shard)
        log.info("shard released", shard=shard, identity=self.identity, reason=reason, **fields)

    async def _step(self, shard: int, *, renewing: bool = False) -> bool:
        # One write at a time per Lease: a renewal landing after a release would claim it again.
        async with self._locks[shard]:
            if renewing and shard not in self._held:
                return False  # released meanwhile
            return await self._electors[shard].step()

    async def _delete(self, record: LeaseRecord) -> None:
        try:
            async with timeout(self._clock, self._call_timeout):
                await self._store.delete(record)
        except Exception as exc:  # retried at a later tick if it is still there
            log.warning("member lease delete failed", lease=record.name, error=repr(exc))


async def wait_for_unsharded(
    store: ShardLeaseStore,
    lease_name: str,
    namespace: str,
    clock: Clock,
    retry_period: float,
    *,
    forbidden: type[Exception] | None = None,
) -> None:
    """Return once no shard Lease of `lease_name` is held (unchanged for its duration counts as free):
    the leader of `--shards 1` waits for it before reconciling, as sharded replicas wait for the leader.
    A list refused with `forbidden` (a Role without `list` on Leases: nobody can shard then) returns at
    once; any other failure is retried."""
    sightings = Sightings()
    reported: list[str] | None = None
    while True:
        try:
            async with timeout(clock, retry_period * 5):
                records = await store.list(namespace)
        except Exception as exc:
            if forbidden is not None and isinstance(exc, forbidden):
                log.info("cannot list Leases; assuming no shards", error=repr(exc))
                return
            log.warning("shard lease list failed", error=repr(exc))
        else:
            sightings.observe(records, clock.monotonic())
            held = held_shards(sightings.all(), lease_name, clock.monotonic())
            if not held:
                if reported:
                    log.info("no shard Lease held any more; reconciling")
                return
            if held != reported:
                log.warning("leading, but waiting for shard Leases to be released", held=held)
                reported = held
        await clock.sleep(retry_period)
