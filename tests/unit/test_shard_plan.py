"""The shard plan as a pure function of the Leases seen and the local clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from zen_flow.core.shards import member_lease_name, shard_lease_name
from zen_flow.machinery.leader import LeaseRecord
from zen_flow.machinery.shard_plan import STALE_MEMBER_DURATIONS, ShardView, Sightings, plan

NAME, NS, SHARDS, LEASE = "zf", "ns", 4, 10
# Far in the future on purpose: the plan never compares remote timestamps with the local clock.
T0 = datetime(2099, 1, 1, tzinfo=UTC)


def member(identity: str, version: str = "1") -> LeaseRecord:
    """`version` also stands for its renewTime: a renewal changes both."""
    renewed = T0 + timedelta(seconds=int(version))
    return LeaseRecord(
        member_lease_name(NAME, identity), NS, identity, LEASE, renew_time=renewed, resource_version=version
    )


def shard(index: int, holder: str, version: str = "1") -> LeaseRecord:
    return LeaseRecord(shard_lease_name(NAME, index), NS, holder, LEASE, resource_version=version)


def view(sightings: Sightings, now: float, **fields: object) -> ShardView:
    return ShardView(
        identity="a", lease_name=NAME, member_prefix=f"{NAME}-member-",
        my_member=member_lease_name(NAME, "a"),
        shards=SHARDS, now=now, sightings=sightings.all(), **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_acquires_free_shards_up_to_its_quota_only() -> None:
    seen = Sightings()
    seen.observe([member("a"), member("b"), shard(0, "b")], now=0.0)
    decision = plan(view(seen, 1.0, held=frozenset()))
    assert decision.members == ("a", "b")
    assert decision.quota == 2
    assert decision.acquire == (1, 2)  # 0 is b's, and two is the quota


def test_remote_timestamps_are_ignored_only_a_change_on_the_local_clock_counts() -> None:
    seen = Sightings()
    seen.observe([member("a"), member("b"), shard(0, "b"), shard(1, "b")], now=0.0)
    # b's Leases keep their content (no renewal seen) for a whole lease duration: b is gone.
    seen.observe([member("a", "2"), member("b"), shard(0, "b"), shard(1, "b")], now=LEASE - 0.1)
    assert plan(view(seen, LEASE - 0.1, held=frozenset())).acquire == (2, 3)
    seen.observe([member("a", "3"), member("b"), shard(0, "b"), shard(1, "b")], now=LEASE)
    decision = plan(view(seen, LEASE, held=frozenset({2, 3})))
    assert decision.members == ("a",)
    assert decision.quota == 4
    assert decision.acquire == (0, 1)


def test_a_renewal_seen_keeps_a_member_alive() -> None:
    seen = Sightings()
    for step in range(10):
        seen.observe([member("a", str(step)), member("b", str(step))], now=step * 3.0)
    assert plan(view(seen, 27.0, held=frozenset({0, 1}))).members == ("a", "b")


def test_extras_drain_first_and_are_released_only_once_drained() -> None:
    seen = Sightings()
    seen.observe([member("a"), member("b")], now=0.0)
    held = frozenset({0, 1, 2, 3})
    first = plan(view(seen, 1.0, held=held))
    assert first.drain == (3, 2)
    assert first.release == ()
    # While draining: neither drained again nor released, and nothing acquired.
    waiting = plan(view(seen, 2.0, held=held, draining=frozenset({2, 3})))
    assert waiting.drain == waiting.release == waiting.acquire == ()
    done = plan(view(seen, 3.0, held=held, draining=frozenset({2}), drained=frozenset({3})))
    assert done.release == (3,)
    assert done.drain == ()


def test_dead_members_leases_are_deleted_after_some_lease_durations_never_our_own() -> None:
    seen = Sightings()
    seen.observe([member("a"), member("b")], now=0.0)
    later = STALE_MEMBER_DURATIONS * LEASE
    assert plan(view(seen, later - 1, held=frozenset())).delete_members == ()
    seen.observe([member("a"), member("b")], now=later)  # a's own is stale here too (never renewed)
    assert [r.name for r in plan(view(seen, later, held=frozenset())).delete_members] == [
        member_lease_name(NAME, "b")
    ]
