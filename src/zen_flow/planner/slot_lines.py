"""The lines of the limits on running flows (planner/slots.py): one per namespace, and the controller's.

A namespace's waiting flows are ranked by `spec.executionPolicy.priority` (higher first), then
creationTimestamp, then name: their `Place`s. The controller-wide line is made of *seats*, creation ranks
(creationTimestamp, name, namespace): a flow that holds a slot sits in its own; a namespace's waiting
flows that may go to the controller's line (all of them, or under `--namespace-max-running-flows N`
the first N less its holders) bring their own creation ranks and sit in them in their namespace's order:
its first waiting flow takes the earliest. So priority decides which of a namespace's waiting flows fill
its seats, never where those seats are: a tenant that sets priority 1000 gets the seats its flows'
creation times give it, and no flow of another namespace has one more flow ahead of it.

Pure and incremental: a verdict is a few binary searches; an event moves one flow (under both limits the
namespace's seats are redone, O(N)).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Rank = tuple[datetime, str, str]  # (creationTimestamp, name, namespace): a seat in the controller's line
Place = tuple[int, datetime, str, str]  # (-priority, creationTimestamp, name, namespace): its namespace's


def rank_key(rank: Rank) -> str:
    return f"{rank[2]}/{rank[1]}"


def place_key(place: Place) -> str:
    return f"{place[3]}/{place[2]}"


def own_seat(place: Place) -> Rank:
    """The creation rank of the flow at `place`: the seat it brings to the controller's line."""
    return (place[1], place[2], place[3])


def _remove(items: list[Any], item: Any) -> None:
    i = bisect_left(items, item)
    if i < len(items) and items[i] == item:
        del items[i]


@dataclass
class NamespaceLine:
    """One namespace's flows: those that hold a slot (`holding`, keys), and those waiting, in its order
    (`waiting`). The first `len(seats)` waiting flows sit in the controller's line, `waiting[i]` in
    `seats[i]` (sorted): all of them (`seats` is then `created`, their creation ranks), or under both
    limits (`own_seats`) as many as `reseat` says."""

    own_seats: bool = False
    waiting: list[Place] = field(default_factory=list)
    created: list[Rank] = field(default_factory=list)
    holding: set[str] = field(default_factory=set)
    seats: list[Rank] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.own_seats:
            self.seats = self.created

    def add(self, place: Place) -> None:
        insort(self.waiting, place)
        insort(self.created, own_seat(place))

    def remove(self, place: Place) -> None:
        _remove(self.waiting, place)
        _remove(self.created, own_seat(place))

    def waiting_ahead(self, n: int) -> list[str]:
        """The first `n` waiting flows (none when `n` < 1): those a freed slot may let start."""
        return [place_key(p) for p in self.waiting[: max(0, n)]]

    def occupant(self, seat: Rank) -> str:
        """The key of the flow that sits in `seat`: a waiting flow of this line, or a holder (its own)."""
        i = bisect_left(self.seats, seat)
        return place_key(self.waiting[i]) if i < len(self.seats) and self.seats[i] == seat else rank_key(seat)

    def seat(self, place: Place) -> Rank | None:
        """The seat of the waiting flow at `place`; None when it has none."""
        i = bisect_left(self.waiting, place)
        found = i < len(self.waiting) and self.waiting[i] == place
        return self.seats[i] if found and i < len(self.seats) else None

    def would_sit(self, place: Place) -> Rank:
        """The seat of the flow at `place` if it sat in this line's seats (one the book does not count,
        asking all the same, sits in one of its own)."""
        if (seat := self.seat(place)) is not None:
            return seat
        own = own_seat(place)
        i, j = bisect_left(self.waiting, place), bisect_left(self.seats, own)
        if i > len(self.seats):
            return own
        return own if i == j else self.seats[i] if i < j else self.seats[i - 1]

    def reseat(self, n: int) -> tuple[set[Rank], set[Rank]]:
        """Under both limits: the first `n` waiting flows sit now; returns the seats left and taken."""
        seats = sorted(own_seat(p) for p in self.waiting[:n])
        old, new = set(self.seats), set(seats)
        self.seats = seats
        return old - new, new - old


@dataclass
class ControllerLine:
    """The seats of every namespace's holders and seated waiting flows, sorted; the holders' keys, and
    their seats apart, sorted (`held`), so that a verdict counts the holders ahead of a seat with a binary
    search, not a look at each."""

    seats: list[Rank] = field(default_factory=list)
    holding: set[str] = field(default_factory=set)
    held: list[Rank] = field(default_factory=list)

    def add(self, seat: Rank) -> None:
        insort(self.seats, seat)

    def remove(self, seat: Rank) -> None:
        _remove(self.seats, seat)

    def hold(self, key: str, seat: Rank) -> None:
        self.holding.add(key)
        self.add(seat)
        insort(self.held, seat)

    def release(self, key: str, seat: Rank) -> None:
        self.holding.discard(key)
        self.remove(seat)
        _remove(self.held, seat)

    def occupants(self, lines: dict[str, NamespaceLine], n: int) -> Iterator[str]:
        """The keys of the flows in the first `n` seats."""
        for seat in self.seats[:n]:
            line = lines.get(seat[2])
            yield line.occupant(seat) if line is not None else rank_key(seat)
