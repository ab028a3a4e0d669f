"""Shard Leases on a FakeClock: replicas share the shards by quota, hand extras over only once drained,
take a dead replica's shards over, delete its member Lease, and crash on a shard Lease lost."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

import pytest

from zen_flow.controller.shard_keeper import shard_client_options
from zen_flow.core.shards import LABEL_SHARD_COUNT, member_lease_name, shard_lease_name
from zen_flow.kube.request_slots import RequestSlots
from zen_flow.machinery.leader import LeaderElector, LeadershipLost, LeaseRecord
from zen_flow.machinery.shard_elector import ShardElector, wait_for_unsharded
from zen_flow.machinery.shard_plan import STALE_MEMBER_DURATIONS
from zen_flow_dev.testing.clock import FakeClock, settle
from zen_flow_dev.testing.lease_store import InMemoryLeaseStore, LabelledLeases

NAME, NS, SHARDS = "zf", "zen-system", 4
LEASE, PERIOD = 15, 2.0


class Hooks:
    """Records what the elector told; a shard's drain waits while it is `busy` (a reconcile in flight)."""

    def __init__(self) -> None:
        self.owned: set[int] = set()
        self.busy: dict[int, asyncio.Event] = {}
        self.log: list[str] = []

    def granted(self, shard: int) -> None:
        self.owned.add(shard)
        self.log.append(f"granted {shard}")

    async def drain(self, shard: int) -> None:
        self.owned.discard(shard)
        self.log.append(f"draining {shard}")
        if (busy := self.busy.get(shard)) is not None:
            await busy.wait()
        self.log.append(f"drained {shard}")

    def released(self, shard: int) -> None:
        self.owned.discard(shard)
        self.log.append(f"released {shard}")


class Replica:
    def __init__(
        self, store: InMemoryLeaseStore, clock: FakeClock, identity: str, shards: int = SHARDS
    ) -> None:
        self.identity = identity
        self.hooks = Hooks()
        self.alive = True
        leases = LabelledLeases(store, {LABEL_SHARD_COUNT: str(shards)})
        self.elector = ShardElector(
            leases, NAME, NS, identity, clock, shards, self.hooks,
            lease_duration=LEASE, renew_deadline=10.0, retry_period=PERIOD, rng=random.Random(0),
        )  # fmt: skip


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> InMemoryLeaseStore:
    return InMemoryLeaseStore()


async def rounds(clock: FakeClock, replicas: list[Replica], count: int) -> None:
    """`count` retry periods, every live replica ticking once in each."""
    for _ in range(count):
        for replica in replicas:
            if replica.alive:
                await replica.elector.tick()
        await settle()
        await clock.advance(PERIOD)


def holders(store: InMemoryLeaseStore) -> dict[int, str]:
    found = {}
    for shard in range(SHARDS):
        record = store.read(shard_lease_name(NAME, shard), NS)
        found[shard] = record.holder_identity if record is not None else ""
    return found


def owned(store: InMemoryLeaseStore, identity: str) -> set[int]:
    return {shard for shard, holder in holders(store).items() if holder == identity}


async def test_two_replicas_share_four_shards_two_each(store: InMemoryLeaseStore, clock: FakeClock) -> None:
    a, b = Replica(store, clock, "a"), Replica(store, clock, "b")
    await rounds(clock, [a, b], 3)
    assert owned(store, "a") == a.hooks.owned
    assert len(a.hooks.owned) == 2
    assert owned(store, "b") == b.hooks.owned
    assert len(b.hooks.owned) == 2
    assert a.hooks.owned.isdisjoint(b.hooks.owned)
    # Both stay put: a steady state does not churn.
    before = holders(store)
    a.hooks.log.clear()
    b.hooks.log.clear()
    await rounds(clock, [a, b], 20)
    assert holders(store) == before
    assert a.hooks.log == b.hooks.log == []


async def test_extras_are_released_only_after_their_reconciles_ended(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    a = Replica(store, clock, "a")
    await rounds(clock, [a], 2)
    assert owned(store, "a") == {0, 1, 2, 3}
    # Shards 2 and 3 are the ones handed over (the highest); a reconcile of shard 3 is in flight.
    a.hooks.busy[3] = asyncio.Event()
    b = Replica(store, clock, "b")
    await rounds(clock, [a, b], 10)
    assert a.hooks.owned == {0, 1}  # neither extra admits new reconciles
    assert owned(store, "a") == {0, 1, 3}  # but shard 3's Lease stays until its reconcile ends
    assert owned(store, "b") == {2}
    a.hooks.busy[3].set()
    await rounds(clock, [a, b], 3)
    assert owned(store, "a") == {0, 1}
    assert owned(store, "b") == {2, 3}
    assert a.hooks.log.index("drained 3") < a.hooks.log.index("released 3")
    assert b.hooks.owned == {2, 3}


async def test_a_dead_replicas_shards_are_taken_over_and_its_member_lease_deleted(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    a, b = Replica(store, clock, "a"), Replica(store, clock, "b")
    await rounds(clock, [a, b], 3)
    b.alive = False  # SIGKILL: nothing released
    await rounds(clock, [a], 2)
    assert owned(store, "b") == {0, 1, 2, 3} - a.hooks.owned  # still held, not yet expired
    await rounds(clock, [a], LEASE // int(PERIOD) + 3)
    assert owned(store, "a") == a.hooks.owned == {0, 1, 2, 3}
    assert store.read(member_lease_name(NAME, "b"), NS) is not None  # dead for a while only
    await rounds(clock, [a], STALE_MEMBER_DURATIONS * LEASE // int(PERIOD) + 2)
    assert store.read(member_lease_name(NAME, "b"), NS) is None
    assert store.read(member_lease_name(NAME, "a"), NS) is not None
    # A restarted replica (a new identity) gets its share back within a few retry periods.
    c = Replica(store, clock, "c")
    await rounds(clock, [a, c], 4)
    assert len(owned(store, "a")) == len(owned(store, "c")) == 2


async def test_three_replicas_split_four_shards_two_one_one(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    replicas = [Replica(store, clock, name) for name in ("c", "a", "b")]
    await rounds(clock, replicas, 6)
    # Sorted by identity, the first takes the extra shard.
    assert {r.identity: len(owned(store, r.identity)) for r in replicas} == {"a": 2, "b": 1, "c": 1}


async def test_a_shard_lease_taken_by_another_holder_ends_the_campaign(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    a = Replica(store, clock, "a")
    await rounds(clock, [a], 2)
    record = store.read(shard_lease_name(NAME, 1), NS)
    assert record is not None
    store.put(LeaseRecord(record.name, NS, holder_identity="intruder", lease_duration_seconds=LEASE))
    await clock.advance(PERIOD)
    with pytest.raises(LeadershipLost, match="shard 1"):
        await a.elector.tick()


async def test_a_shard_lease_not_renewed_in_time_ends_the_campaign(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    a = Replica(store, clock, "a")
    await rounds(clock, [a], 2)
    store.fail_with = RuntimeError("apiserver down")
    with pytest.raises(LeadershipLost, match="no renewal succeeded"):
        await rounds(clock, [a], 10)


async def test_leaving_releases_the_shards_and_deletes_the_member_lease(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    a = Replica(store, clock, "a")
    await rounds(clock, [a], 2)
    await a.elector.leave()
    assert holders(store) == dict.fromkeys(range(SHARDS), "")
    assert store.read(member_lease_name(NAME, "a"), NS) is None
    b = Replica(store, clock, "b")
    await rounds(clock, [b], 1)  # released Leases are free at once, not after a lease duration
    assert owned(store, "b") == {0, 1, 2, 3}


async def test_a_replica_of_another_shard_count_waits_until_the_old_ones_are_gone(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    # A rollout from --shards 4 to --shards 8: shard 1 of 8 is not shard 1 of 4, so the new replica
    # takes nothing while an old one lives, and the old one keeps (and reconciles) what it holds.
    old = Replica(store, clock, "old")
    await rounds(clock, [old], 2)
    new = Replica(store, clock, "new", shards=8)
    await rounds(clock, [old, new], 10)
    assert new.hooks.owned == set()
    assert old.hooks.owned == {0, 1, 2, 3}
    assert new.elector.last_decision is not None
    assert new.elector.last_decision.waiting == "live members with another --shards: old"
    await old.elector.leave()  # its pod replaced: SIGTERM
    old.alive = False
    await rounds(clock, [new], 2)
    assert new.hooks.owned == set(range(8))


async def test_no_shard_is_taken_while_the_leader_lease_of_shards_1_is_held(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    a = Replica(store, clock, "a")
    leader = store.put(LeaseRecord(NAME, NS, "old-leader", LEASE, renew_time=clock.now()))
    for _ in range(10):  # the leader keeps renewing
        leader = store.put(replace(leader, renew_time=clock.now()))
        await rounds(clock, [a], 1)
    assert a.hooks.owned == set()
    # The leader is gone (killed: its Lease is left as it was): once expired, the shards are taken.
    await rounds(clock, [a], LEASE // int(PERIOD) + 2)
    assert a.hooks.owned == {0, 1, 2, 3}


async def test_the_leader_of_shards_1_waits_until_no_shard_lease_is_held(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    # A rollout from --shards 4 back to one: the new leader reconciles only once the sharded replicas
    # are gone (a Lease released, or unchanged for its duration).
    sharded = Replica(store, clock, "sharded")
    await rounds(clock, [sharded], 2)
    waiting = asyncio.ensure_future(wait_for_unsharded(store, NAME, NS, clock, PERIOD))
    await rounds(clock, [sharded], 10)
    assert not waiting.done()
    sharded.alive = False  # killed: its shard Leases expire
    for _ in range(LEASE // int(PERIOD) + 2):
        await clock.advance(PERIOD)
        await settle()
    assert waiting.done()
    await waiting


async def test_the_leader_does_not_wait_when_it_may_not_list_leases(clock: FakeClock) -> None:
    class Refused(Exception):
        pass

    store = InMemoryLeaseStore()
    store.fail_with = Refused("leases is forbidden")
    await asyncio.wait_for(wait_for_unsharded(store, NAME, NS, clock, PERIOD, forbidden=Refused), 1)


async def test_a_leader_taking_its_lease_during_an_acquisition_never_reconciles_beside_the_shards(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    # Both sides write, then read: the sharded replica re-reads the leader Lease after winning its shard
    # Leases, the leader lists the shard Leases after winning its own. Here the leader takes its Lease and
    # finds no shard held between the sharded replica's read and its writes.
    store.put(LeaseRecord(NAME, NS, "", 1))  # the old leader released it on SIGTERM
    leader = LeaderElector(store, NAME, NS, "leader", clock, LEASE, 10.0, PERIOD)
    leader_reconciles: list[bool] = []

    class Racing(LabelledLeases):
        async def get(self, name: str, namespace: str) -> LeaseRecord | None:
            record = await super().get(name, namespace)
            if name == NAME and not leader_reconciles:
                assert await leader.step()
                await wait_for_unsharded(store, NAME, NS, clock, PERIOD)
                leader_reconciles.append(True)
            return record

    sharded = Replica(store, clock, "sharded")
    sharded.elector = ShardElector(
        Racing(store, {LABEL_SHARD_COUNT: str(SHARDS)}), NAME, NS, "sharded", clock, SHARDS,
        sharded.hooks, lease_duration=LEASE, renew_deadline=10.0, retry_period=PERIOD,
        rng=random.Random(0),
    )  # fmt: skip
    await rounds(clock, [sharded], 1)
    for _ in range(5):
        assert await leader.step()
        await rounds(clock, [sharded], 1)
    assert leader_reconciles
    assert sharded.hooks.owned == set()
    assert "granted 0" not in sharded.hooks.log


async def test_a_leader_lease_taken_while_shards_are_held_makes_the_replica_hand_them_back(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    sharded = Replica(store, clock, "sharded")
    sharded.hooks.busy[2] = asyncio.Event()  # a reconcile of shard 2 in flight
    await rounds(clock, [sharded], 2)
    assert sharded.hooks.owned == {0, 1, 2, 3}
    leader = LeaderElector(store, NAME, NS, "leader", clock, LEASE, 10.0, PERIOD)
    assert await leader.step()
    waiting = asyncio.ensure_future(wait_for_unsharded(store, NAME, NS, clock, PERIOD))
    for _ in range(3):
        assert await leader.step()
        await rounds(clock, [sharded], 1)
    assert sharded.hooks.owned == set()  # no new reconcile of any shard starts
    assert "released 2" not in sharded.hooks.log  # drained first: its reconcile is still in flight
    assert not waiting.done()
    sharded.hooks.busy[2].set()
    for _ in range(3):
        assert await leader.step()
        await rounds(clock, [sharded], 1)
    assert {f"released {s}" for s in range(SHARDS)} <= set(sharded.hooks.log)
    assert waiting.done()
    await waiting


async def test_a_replica_alone_keeps_64_shards_on_an_apiserver_answering_in_400_ms(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    # The lease thread's client bounds its requests in flight (kube/request_slots.py; every Lease is in
    # one namespace, which holds its share of the slots): renewals of 64 shards must never queue behind
    # acquisitions and the LIST past the renew deadline.
    shards = 64
    slots = RequestSlots(shard_client_options(shards, PERIOD).max_concurrent_requests)
    path = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases"

    class Slow(LabelledLeases):
        async def _answer(self) -> None:
            slot = await slots.acquire(path)
            try:
                await clock.sleep(0.4)
            finally:
                slots.release(slot)

        async def get(self, name: str, namespace: str) -> LeaseRecord | None:
            await self._answer()
            return await super().get(name, namespace)

        async def create(self, record: LeaseRecord) -> LeaseRecord:
            await self._answer()
            return await super().create(record)

        async def update(self, record: LeaseRecord) -> LeaseRecord:
            await self._answer()
            return await super().update(record)

        async def list(self, namespace: str) -> list[LeaseRecord]:
            await self._answer()
            return await super().list(namespace)

    hooks = Hooks()
    elector = ShardElector(
        Slow(store, {LABEL_SHARD_COUNT: str(shards)}), NAME, NS, "alone", clock, shards, hooks,
        lease_duration=LEASE, renew_deadline=10.0, retry_period=PERIOD, rng=random.Random(0),
    )  # fmt: skip
    campaign = asyncio.ensure_future(elector.run())
    for _ in range(1200):  # two minutes
        await clock.advance(0.1)
        if campaign.done():
            break
    assert not campaign.done(), campaign.exception()
    assert elector.held == frozenset(range(shards))
    campaign.cancel()  # leaving releases the shards, at 0.4 s a request
    while not campaign.done():
        await clock.advance(0.1)


async def test_a_handover_that_never_drains_ends_the_campaign_without_releasing_the_shard(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    a = Replica(store, clock, "a")
    await rounds(clock, [a], 2)
    a.hooks.busy[3] = asyncio.Event()  # a reconcile of shard 3 never returns
    b = Replica(store, clock, "b")
    with pytest.raises(LeadershipLost, match="shard 3: its handover did not drain within 45s"):
        await rounds(clock, [a, b], 3 * LEASE // int(PERIOD) + 3)
    assert "draining 3" in a.hooks.log
    assert "released 3" not in a.hooks.log  # its reconcile may still run: the Lease just expires


class Refused(Exception):
    pass


async def test_a_replica_whose_list_keeps_failing_is_not_counted_and_its_share_is_taken(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    class NoList(LabelledLeases):
        async def list(self, namespace: str) -> list[LeaseRecord]:
            raise Refused("leases is forbidden: list")

    a, b = Replica(store, clock, "a"), Replica(store, clock, "b")
    c = Replica(store, clock, "c")
    c.elector = ShardElector(
        NoList(store, {LABEL_SHARD_COUNT: str(SHARDS)}), NAME, NS, "c", clock, SHARDS, c.hooks,
        lease_duration=LEASE, renew_deadline=10.0, retry_period=PERIOD, rng=random.Random(0),
    )  # fmt: skip
    await rounds(clock, [a, b, c], 30)
    assert a.elector.last_decision is not None
    assert a.elector.last_decision.members == ("a", "b")
    assert a.hooks.owned | b.hooks.owned == {0, 1, 2, 3}


async def test_no_shard_is_taken_while_our_member_lease_is_refused(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    # A Role limited to the shard Leases' names: the member Leases are refused. Each replica would count
    # itself alone and take all N; it takes none and says why.
    class NoMembers(LabelledLeases):
        async def create(self, record: LeaseRecord) -> LeaseRecord:
            if "-member-" in record.name:
                raise Refused("leases is forbidden: create")
            return await super().create(record)

    a = Replica(store, clock, "a")
    a.elector = ShardElector(
        NoMembers(store, {LABEL_SHARD_COUNT: str(SHARDS)}), NAME, NS, "a", clock, SHARDS, a.hooks,
        lease_duration=LEASE, renew_deadline=10.0, retry_period=PERIOD, rng=random.Random(0),
    )  # fmt: skip
    await rounds(clock, [a], 5)
    assert a.hooks.owned == set()
    assert a.elector.last_decision is not None
    assert (
        a.elector.last_decision.waiting == f"our member Lease {member_lease_name(NAME, 'a')} is not written"
    )
