"""Lease leader election on a FakeClock: acquire, follow, take over, renew, lose, release, races."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from zen_flow.machinery.leader import ConflictError, LeaderElector, LeadershipLost, LeaseRecord, make_identity
from zen_flow_dev.testing.clock import FakeClock, settle
from zen_flow_dev.testing.lease_store import InMemoryLeaseStore

NAME, NS = "zen-flow", "zen-system"
T0 = 1000.0  # FakeClock's start


class Lead:
    """A `lead()` callable that runs until cancelled and records what it saw."""

    def __init__(self, store: InMemoryLeaseStore) -> None:
        self.store = store
        self.started = asyncio.Event()
        self.cancelled = False
        self.holder_when_stopped: str | None = None

    async def __call__(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            record = self.store.read(NAME, NS)
            self.holder_when_stopped = record.holder_identity if record else None
            raise


class Candidate:
    def __init__(self, store: InMemoryLeaseStore, clock: FakeClock, identity: str, seed: int = 0) -> None:
        self.elector = LeaderElector(store, NAME, NS, identity, clock, rng=random.Random(seed))
        self.lead = Lead(store)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.elector.run(self.lead))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> InMemoryLeaseStore:
    return InMemoryLeaseStore()


@pytest.fixture
async def candidates(store: InMemoryLeaseStore, clock: FakeClock) -> AsyncIterator[list[Candidate]]:
    made: list[Candidate] = []
    yield made
    store.unhang()
    for c in made:
        if c.task is not None:
            c.task.cancel()
    await asyncio.gather(*(c.task for c in made if c.task is not None), return_exceptions=True)


def candidate(made: list[Candidate], store: InMemoryLeaseStore, clock: FakeClock, identity: str) -> Candidate:
    c = Candidate(store, clock, identity, seed=len(made))
    made.append(c)
    c.start()
    return c


def leads(c: Candidate) -> bool:
    return c.elector.is_leader


def finished(c: Candidate) -> bool:
    return c.task is not None and c.task.done()


def lease(store: InMemoryLeaseStore) -> LeaseRecord:
    record = store.read(NAME, NS)
    assert record is not None
    return record


async def test_acquires_a_lease_that_does_not_exist(
    store: InMemoryLeaseStore, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = candidate(candidates, store, clock, "a")
    await settle()
    assert leads(a)
    assert a.lead.started.is_set()
    await asyncio.wait_for(a.elector.wait_for_leadership(), timeout=5)
    record = lease(store)
    assert record.holder_identity == "a"
    assert record.lease_duration_seconds == 15
    assert record.acquire_time == record.renew_time == clock.now()
    assert record.lease_transitions == 0


async def test_follows_while_another_holder_renews(
    store: InMemoryLeaseStore, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = candidate(candidates, store, clock, "a")
    await settle()
    b = candidate(candidates, store, clock, "b")
    await clock.advance(120.0)
    assert leads(a)
    assert not leads(b)
    assert not b.lead.started.is_set()
    assert b.elector.observed_holder == "a"
    record = lease(store)
    assert record.holder_identity == "a"
    assert record.acquire_time == clock.now() - timedelta(seconds=120)  # kept while held
    assert record.renew_time is not None
    assert record.renew_time >= clock.now() - timedelta(seconds=2)  # renewed every retry period
    assert record.lease_transitions == 0


async def test_takes_over_an_expired_lease_by_local_time_despite_a_future_renew_time(
    store: InMemoryLeaseStore, clock: FakeClock, candidates: list[Candidate]
) -> None:
    # The dead holder's clock ran an hour ahead: its renewTime is in our future. Only our own
    # observation time counts, so the lease expires 15 s after we first saw it.
    skewed = clock.now() + timedelta(hours=1)
    store.put(LeaseRecord(NAME, NS, "dead", 15, skewed, skewed, lease_transitions=4))
    a = candidate(candidates, store, clock, "a")
    await clock.advance(14.9)
    assert not leads(a)
    assert a.elector.observed_holder == "dead"
    await clock.advance(2.0 * 2.2)  # expired at 15 s; the next retry is at most 2 s * (1 + 1.2) away
    assert leads(a)
    record = lease(store)
    assert record.holder_identity == "a"
    assert record.lease_transitions == 5
    assert record.acquire_time is not None
    assert clock.now() - record.acquire_time <= timedelta(seconds=4.4)


async def test_a_holder_that_renews_is_never_taken_over(
    store: InMemoryLeaseStore, clock: FakeClock, candidates: list[Candidate]
) -> None:
    store.put(LeaseRecord(NAME, NS, "b", 15, clock.now(), clock.now()))
    a = candidate(candidates, store, clock, "a")
    for _ in range(30):  # b renews every 5 s (with whatever timestamps): the record keeps changing
        await clock.advance(5.0)
        current = lease(store)
        store.put(LeaseRecord(NAME, NS, "b", 15, current.acquire_time, current.renew_time, 0, ""))
    assert not leads(a)
    assert lease(store).holder_identity == "b"


async def test_loses_leadership_when_renewals_fail_past_the_renew_deadline(
    store: InMemoryLeaseStore, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = candidate(candidates, store, clock, "a")
    await settle()
    assert leads(a)
    store.fail_with = RuntimeError("apiserver unavailable")
    await clock.advance(9.9)
    assert leads(a)
    assert a.task is not None
    assert not finished(a)
    await clock.advance(0.1)
    assert not leads(a)
    assert finished(a)
    with pytest.raises(LeadershipLost, match=r"within 10\.0s"):
        a.task.result()
    assert a.lead.cancelled
    assert store.calls.count("update") >= 4  # it kept trying until the deadline


async def test_a_hung_api_call_times_out_and_leadership_is_lost_by_the_deadline(
    store: InMemoryLeaseStore, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = candidate(candidates, store, clock, "a")
    await settle()
    store.hang()
    await clock.advance(7.0)
    # The first renewal (t=2) hung and was abandoned after its 5 s per-call timeout.
    assert store.calls.count("update") == 1
    assert a.task is not None
    assert not finished(a)
    await clock.advance(3.0)
    assert store.calls.count("update") == 2  # one retry at t=9, bounded by the 1 s left
    assert finished(a)
    with pytest.raises(LeadershipLost):
        a.task.result()
    assert not leads(a)


async def test_notices_at_once_when_someone_else_took_the_lease(
    store: InMemoryLeaseStore, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = candidate(candidates, store, clock, "a")
    await settle()
    current = lease(store)
    store.put(LeaseRecord(NAME, NS, "usurper", 15, clock.now(), clock.now(), current.lease_transitions + 1))
    await clock.advance(2.0)  # next renewal: conflict on the fast path, then the GET shows the usurper
    assert a.task is not None
    assert finished(a)
    with pytest.raises(LeadershipLost, match="held by usurper"):
        a.task.result()
    assert lease(store).holder_identity == "usurper"


async def test_a_conflicting_update_is_a_lost_race_not_a_failure(
    store: InMemoryLeaseStore, clock: FakeClock, candidates: list[Candidate]
) -> None:
    store.put(LeaseRecord(NAME, NS, "", 1, clock.now(), clock.now()))  # released: free for the taking

    original_update = store.update
    conflicts = iter([True])

    async def update_once_conflicting(record: LeaseRecord) -> LeaseRecord:
        if next(conflicts, False):
            store.put(lease(store))  # someone wrote between our GET and our UPDATE
            raise ConflictError("the object has been modified")
        return await original_update(record)

    store.update = update_once_conflicting  # type: ignore[method-assign]
    a = candidate(candidates, store, clock, "a")
    await settle()
    assert not leads(a)
    await clock.advance(4.4)  # the next retry wins
    assert leads(a)
    assert lease(store).lease_transitions == 1


async def test_two_candidates_racing_to_create_yield_exactly_one_leader(
    store: InMemoryLeaseStore, clock: FakeClock, candidates: list[Candidate]
) -> None:
    original_get = store.get

    async def slow_get(name: str, namespace: str) -> LeaseRecord | None:
        result = await original_get(name, namespace)
        await asyncio.sleep(0)  # both GETs see "no lease" before either CREATE lands
        return result

    store.get = slow_get  # type: ignore[method-assign]
    a = candidate(candidates, store, clock, "a")
    b = candidate(candidates, store, clock, "b")
    await settle()
    assert store.calls.count("create") == 2
    assert [leads(a), leads(b)].count(True) == 1
    await clock.advance(60.0)
    assert [leads(a), leads(b)].count(True) == 1


async def test_release_on_shutdown_lets_a_successor_take_over_within_seconds(
    store: InMemoryLeaseStore, clock: FakeClock, candidates: list[Candidate]
) -> None:
    a = candidate(candidates, store, clock, "a")
    await settle()
    b = candidate(candidates, store, clock, "b")
    await clock.advance(3.0)
    assert a.task is not None
    a.task.cancel()  # SIGTERM
    with pytest.raises(asyncio.CancelledError):
        await a.task
    # Workers stopped while we still held the lease; only then was it released.
    assert a.lead.holder_when_stopped == "a"
    released = lease(store)
    assert (released.holder_identity, released.lease_duration_seconds) == ("", 1)
    assert not leads(a)
    await clock.advance(2.0 * 2.2)  # one jittered retry period, not a 15 s lease duration
    assert leads(b)
    assert lease(store).holder_identity == "b"
    assert lease(store).lease_transitions == 1


async def test_when_lead_returns_the_lease_is_released_and_run_returns(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    elector = LeaderElector(store, NAME, NS, "a", clock)

    async def lead() -> None:
        await clock.sleep(30.0)

    run = asyncio.create_task(elector.run(lead))
    await clock.advance(30.0)
    await asyncio.wait_for(run, timeout=5)
    assert lease(store).holder_identity == ""
    assert await elector.release()  # idempotent: nothing held any more


async def test_an_error_in_lead_is_propagated_after_releasing(
    store: InMemoryLeaseStore, clock: FakeClock
) -> None:
    elector = LeaderElector(store, NAME, NS, "a", clock)

    async def lead() -> None:
        raise RuntimeError("worker crashed")

    with pytest.raises(RuntimeError, match="worker crashed"):
        await elector.run(lead)
    assert lease(store).holder_identity == ""


async def test_a_failed_release_reports_false(store: InMemoryLeaseStore, clock: FakeClock) -> None:
    elector = LeaderElector(store, NAME, NS, "a", clock)
    ready = asyncio.Event()

    async def lead() -> None:
        ready.set()
        await asyncio.Event().wait()

    run = asyncio.create_task(elector.run(lead))
    await ready.wait()
    store.fail_with = RuntimeError("boom")
    run.cancel()
    await asyncio.gather(run, return_exceptions=True)
    assert lease(store).holder_identity == "a"  # it will simply expire
    assert not elector.is_leader
    assert not await elector.release()
    store.fail_with = None
    assert await elector.release()
    assert lease(store).holder_identity == ""


def test_timings_must_leave_room_for_retries(store: InMemoryLeaseStore, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        LeaderElector(store, NAME, NS, "a", clock, lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="renew_deadline > jitter_factor"):
        LeaderElector(store, NAME, NS, "a", clock, renew_deadline=2.0, retry_period=2.0)
    with pytest.raises(ValueError, match="identity"):
        LeaderElector(store, NAME, NS, "", clock)


def test_identity_is_pod_name_or_hostname_plus_a_unique_suffix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "zen-flow-7d9f-abcde")
    first, second = make_identity(), make_identity()
    assert first.startswith("zen-flow-7d9f-abcde_")
    assert len(first.rsplit("_", 1)[1]) == 8
    assert first != second
    monkeypatch.delenv("POD_NAME")
    assert make_identity().rsplit("_", 1)[0]
