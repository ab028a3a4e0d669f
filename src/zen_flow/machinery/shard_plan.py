"""What a replica does with the shard Leases next: a pure function of what it has seen, and when.

The shard elector (machinery/shard_elector.py) lists its member and shard Leases every retry period and
feeds them to `Sightings`, which keeps, per Lease, the local monotonic time its record last *changed*
(the rule of machinery/leader.py: remote timestamps are never trusted, only a change is). From that,
`plan` decides:

* live members: member Leases seen changing within their lease duration (ours always counts; no shard is
  acquired until our member Lease is written, since the others count us only from then on);
* our quota (core/shards.py `quotas`);
* below quota: which shards to try for, those nobody holds (no Lease, holder "", or no change within
  its lease duration), in number up to the quota, `ACQUIRE_BATCH` at most per decision;
* above quota: which held shards to hand over. A handover is two-phase, so two replicas never reconcile
  one flow at once: first the shard is drained (no new reconcile of its flows starts, the ones in flight
  end), and only a drained shard is released;
* member Leases to delete: another replica's, unchanged for `STALE_MEMBER_DURATIONS` lease durations.

Two shard counts split the flows differently, and the leader of `--shards 1` reconciles them all: while
a live member announces another `--shards` (its Lease's label), or the leader's Lease is held, no shard
is acquired (a rollout that changes the count: the replicas of the old count keep the shards they hold,
and those of the new count take them once the old ones are gone). A leader Lease held means more: the
leader reconciles everything once no shard Lease is held, so every shard we hold is handed back (drained,
then released). Quotas count the members of our own shard count only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from zen_flow.core.shards import LABEL_SHARD_COUNT, MAX_SHARDS, quotas, shard_of_lease
from zen_flow.machinery.leader import LeaseRecord

# A member Lease unchanged this many of its lease durations belongs to a replica that is gone (it renews
# every retry period): any replica deletes it, so restarts (a new identity each) do not pile them up.
STALE_MEMBER_DURATIONS = 4
# Shards tried for in one decision, at most: acquisitions (a GET and a write each) never crowd the
# renewals out of the lease thread's request slots; a replica alone takes N shards in N / 8 retry periods.
ACQUIRE_BATCH = 8


@dataclass(frozen=True)
class Sighting:
    record: LeaseRecord
    changed_at: float  # local monotonic time the record was last seen to change (or first seen)

    def expired(self, now: float, *, factor: float = 1.0) -> bool:
        return now - self.changed_at >= factor * self.record.lease_duration_seconds

    @property
    def shard_count(self) -> str | None:
        """The `--shards` of the replica that created the Lease (None: not said)."""
        return dict(self.record.labels).get(LABEL_SHARD_COUNT)


class Sightings:
    """The Leases last listed, each with the local time it last changed; Leases not listed are gone."""

    def __init__(self) -> None:
        self._seen: dict[str, Sighting] = {}

    def observe(self, records: Iterable[LeaseRecord], now: float) -> None:
        seen: dict[str, Sighting] = {}
        for record in records:
            before = self._seen.get(record.name)
            if before is not None and before.record.same_claim(record):
                seen[record.name] = replace(before, record=record)  # same claim: keep when it changed
            else:
                seen[record.name] = Sighting(record, now)
        self._seen = seen

    def all(self) -> Mapping[str, Sighting]:
        return dict(self._seen)


@dataclass(frozen=True)
class ShardView:
    """Everything `plan` decides from."""

    identity: str
    lease_name: str
    member_prefix: str  # `<lease name>-member-`
    my_member: str  # our member Lease's name
    shards: int
    now: float
    sightings: Mapping[str, Sighting]
    held: frozenset[int]  # shard Leases we hold (draining ones included)
    draining: frozenset[int] = frozenset()  # handovers under way (no new reconciles start)
    drained: frozenset[int] = frozenset()  # handovers whose reconciles in flight have ended
    leader_lease: str = ""  # the name of `--shards 1`'s Lease, read beside the listed ones
    member_written: bool = True  # our member Lease is held: the others count us in their quotas


@dataclass(frozen=True)
class ShardDecision:
    quota: int
    members: tuple[str, ...]  # live members' identities, sorted
    acquire: tuple[int, ...] = ()  # try for these (free or expired), in this order
    drain: tuple[int, ...] = ()  # start handing these over
    release: tuple[int, ...] = ()  # drained: release their Leases now
    delete_members: tuple[LeaseRecord, ...] = field(default=())  # stale member Leases
    waiting: str | None = None  # why nothing is acquired now (another shard count, a leader), or None


def live_members(view: ShardView, *, other_counts: bool = False) -> tuple[str, ...]:
    """The live members of our shard count (or, `other_counts`, those of another)."""
    found = set() if other_counts else {view.identity}
    for name, seen in view.sightings.items():
        if name.startswith(view.member_prefix) and seen.record.holder_identity and not seen.expired(view.now):
            count = seen.shard_count
            if (count is not None and count != str(view.shards)) == other_counts:
                found.add(seen.record.holder_identity)
    return tuple(sorted(found))


def leader_holder(view: ShardView) -> str | None:
    """Who holds the leader Lease of `--shards 1` (changed within its duration), or None."""
    leader = view.sightings.get(view.leader_lease) if view.leader_lease else None
    if leader is not None and leader.record.holder_identity and not leader.expired(view.now):
        return leader.record.holder_identity
    return None


def leader_lease_held(sightings: Mapping[str, Sighting], record: LeaseRecord | None, now: float) -> bool:
    """Is the leader Lease `record`, just read, held? Unless it is the claim last listed and that one has
    not changed within its duration: a claim first seen now may be a leader that just took it."""
    if record is None or not record.holder_identity:
        return False
    seen = sightings.get(record.name)
    return not (seen is not None and seen.record.same_claim(record) and seen.expired(now))


def waiting_for(view: ShardView) -> str | None:
    """Why no shard may be acquired now, or None."""
    if not view.member_written:
        # The others do not count us: our quota would be theirs too (with member Leases refused, every
        # replica would count itself alone and take all N).
        return f"our member Lease {view.my_member} is not written"
    if others := live_members(view, other_counts=True):
        return f"live members with another --shards: {', '.join(others)}"
    if (holder := leader_holder(view)) is not None:
        return f"the leader Lease {view.leader_lease} is held by {holder}"
    return None


def free_shards(view: ShardView) -> list[int]:
    """Shards nobody (else) holds: no Lease listed, holder "", or no change within its duration."""
    taken: set[int] = set()
    for name, seen in view.sightings.items():
        shard = shard_of_lease(view.lease_name, name, view.shards)
        if shard is None:
            continue
        holder = seen.record.holder_identity
        if holder and holder != view.identity and not seen.expired(view.now):
            taken.add(shard)
    return [s for s in range(view.shards) if s not in taken and s not in view.held]


def plan(view: ShardView) -> ShardDecision:
    members = live_members(view)
    quota = quotas(members, view.shards)[view.identity]
    waiting = waiting_for(view)
    release = tuple(sorted(view.drained & view.held))
    keeping = view.held - view.draining - view.drained
    acquire: tuple[int, ...] = ()
    drain: tuple[int, ...] = ()
    if leader_holder(view) is not None:
        # A leader of `--shards 1` reconciles everything once no shard Lease is held: hand them all back.
        drain = tuple(sorted(keeping, reverse=True))
    elif len(keeping) > quota:
        # Hand over the highest-numbered extras; the lowest stay, so a steady state does not churn.
        drain = tuple(sorted(keeping, reverse=True)[: len(keeping) - quota])
    elif len(view.held) < quota and waiting is None:
        # Draining shards still count as held until released: never above quota, even for a moment.
        acquire = tuple(free_shards(view)[: min(quota - len(view.held), ACQUIRE_BATCH)])
    stale = tuple(
        seen.record
        for name, seen in sorted(view.sightings.items())
        if name.startswith(view.member_prefix)
        and name != view.my_member
        and seen.expired(view.now, factor=STALE_MEMBER_DURATIONS)
    )
    return ShardDecision(
        quota=quota,
        members=members,
        acquire=acquire,
        drain=drain,
        release=release,
        delete_members=stale,
        waiting=waiting,
    )


def held_shards(sightings: Mapping[str, Sighting], lease_name: str, now: float) -> list[str]:
    """The shard Leases of `lease_name` someone holds (of any shard count): a leader of `--shards 1`
    starts reconciling only once there are none (a rollout from N shards back to one)."""
    return sorted(
        name
        for name, seen in sightings.items()
        if shard_of_lease(lease_name, name, MAX_SHARDS) is not None
        and seen.record.holder_identity
        and not seen.expired(now)
    )
