"""Limits on running flows: `--max-running-flows` (all the flows this controller runs) and
`--namespace-max-running-flows` (each namespace's), Argo's `parallelism` and `namespaceParallelism`.

A flow holds a slot from its start (a start time, or phase Running or Paused: what `concurrency.py`
calls started; or a Job of it running, when a lost write left the start unrecorded) until it finishes or
goes away; a suspended flow that started keeps its slot. A rerun of a Failed flow has not started (its
plan resets it) and contends at its place in line again. A flow that has not started takes one only
when there is a slot for it and for every flow waiting ahead of it, in its namespace and controller-wide:
the flows that hold a slot and those waiting ahead of it are fewer than N.

Ahead of it in its namespace are the flows of a higher `spec.executionPolicy.priority` (0 when unset;
Argo's queued-workflow priority), then at an equal priority the older ones (creationTimestamp, then name):
first come, first served among equals. An edit of the priority of a waiting flow moves it in line; a
flow that holds a slot keeps it (no preemption). Controller-wide, priority never reaches across
namespaces: each namespace's flows take the seats their creation times give them, and only the order in
which its own flows fill them follows priority (planner/slot_lines.py), so a tenant's priority 1000 puts
its flow ahead of its own older flows, never ahead of another namespace's.

Counting the holders whatever their place keeps the bound when the cache delivers flows out of rank order
(equal timestamps, clock skew between apiservers), as in concurrency.py. The first waiting flow has no
waiting flow ahead of it, so when a slot frees it may take it: nothing waits for a flow that waits
itself, and the queue cannot deadlock. No rule needs any coordination: every replica decides from its
own informer cache, and each flow only changes its own status.

Contending are the unfinished flows that started or could start now: a flow suspended before its start,
or one its concurrency group holds back (its status says so: condition Queued, reason ConcurrencyForbid),
takes no place in the line, so it keeps no other flow waiting. Controller-wide, a flow its namespace's
limit holds back takes no place either: one namespace's thousand waiting flows must not keep another
namespace's first flow out of a free slot (each namespace puts in the global line its holders and at
most as many of its first waiting flows as it has slots free). A `Replace` flow counts the older flows
of its group it stops as gone: they hold no slot and no place ahead of it (their stop follows its start).

Pure: `SlotBook` is an index the controller keeps from its informer's events (flows added, changed,
deleted), so a verdict costs O(log n + N) however many flows wait, and a freed slot wakes only the flows
that may take it (at most N per line), never the whole queue.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Sequence
from itertools import islice

from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.concurrency import Peer
from zen_flow.planner.slot_lines import (
    ControllerLine,
    NamespaceLine,
    Place,
    Rank,
    own_seat,
    place_key,
)
from zen_flow.planner.slot_standing import (
    HOLDERS,
    IsChild,
    JobsFor,
    SlotLimits,
    Standing,
    ended,
    needs_slot,
    place_of,
    replacing,
    standing,
    waiting_message,
)

__all__ = ["SlotBook", "SlotLimits", "Standing", "needs_slot", "standing", "waiting_message"]


class SlotBook:
    """The flows in line for slots, kept from the informer's events (`observe`); the controller asks
    `claim` before it plans a flow that would start and tells `settle` what the plan did. `jobs_for`: the
    flows' cached Jobs by UID, so that a flow with a Job running holds its slot though its status records
    no start (the controller calls `observe(flow, flow)` when a Job of a flow changes)."""

    def __init__(
        self, limits: SlotLimits, jobs_for: JobsFor | None = None, child: IsChild | None = None
    ) -> None:
        self.limits = limits
        self._jobs_for = jobs_for
        self._child = child
        self._flows: dict[str, tuple[Place, Standing]] = {}
        self._lines: dict[str, NamespaceLine] = {}
        self._all = ControllerLine()
        # Under both limits a namespace sends only its first N and its holders to the controller's line;
        # under the global one alone, every flow of its line (`shared`: its seats are all its flows').
        self._own_seats = bool(limits.total and limits.per_namespace)
        self._shared = bool(limits.total and not limits.per_namespace)
        # The UID of every flow in the cache that is not being deleted, by key: a plan's claim or settle
        # for a flow deleted (or relabelled to another instance) meanwhile reserves nothing.
        self._alive: dict[str, str] = {}
        # Flows whose plan started them (or is deciding to) while the cache does not show it yet, by key,
        # with their namespace and UID: they hold their slot already (read your own writes, as
        # concurrency.py's `starting`).
        self._reserved: dict[str, tuple[str, str]] = {}
        # The keys whose plan claimed a slot and has not settled: their reservation stands until `settle`
        # whatever the cache shows (a flow deleted meanwhile: its plan may still create its Jobs).
        self._planning: set[str] = set()

    def observe(self, old: JobFlow | None, new: JobFlow | None) -> list[str]:
        """`old` became `new` (None: added or deleted; `observe(flow, flow)`: its Jobs changed); returns
        the keys of the flows to reconcile because a slot or a place in line may have freed for them."""
        flow = new if new is not None else old
        if not self.limits.any or flow is None:
            return []
        key, ns = flow.metadata.key, flow.metadata.namespace
        before = self._flows.get(key)
        after = (place_of(new), standing(new, self._jobs_for, self._child)) if new is not None else None
        if new is not None and new.metadata.deletion_timestamp is None:
            self._alive[key] = new.metadata.uid
        else:
            self._alive.pop(key, None)
        # A reservation ends when the cache shows the flow holding its slot, finished or gone, and only
        # then: a change in between (an annotation, a label) shows the status from before the plan's
        # write (still queued for its group, suspended a moment ago), and dropping the reservation then
        # would let another flow take the slot the plan took. `settle(begun=False)` frees it otherwise.
        dropped = None
        if (
            key in self._reserved
            and key not in self._planning
            and (
                new is None
                or self._reserved[key][1] != new.metadata.uid
                or ended(new)
                or (after is not None and after[1] in HOLDERS)
            )
        ):
            ns_reserved = self._reserved.pop(key)[0]
            # Its slot frees unless the cache shows the flow holding it.
            dropped = None if after is not None and after[1] in HOLDERS else ns_reserved
        if after is not None and after[1] == Standing.OUT:
            after = None
        if before == after:
            # A reservation dropped for a flow out of line (finished or deleted before the cache showed
            # its start) frees its slot all the same.
            return [k for k in self._next(dropped) if k != key] if dropped is not None else []
        line = self._lines.get(ns) or self._lines.setdefault(ns, NamespaceLine(self._own_seats))
        moved = before is not None and self._moves_seats(line, before, after)
        if before is not None:
            del self._flows[key]
            self._leave(line, key, *before)
        if after is not None:
            self._flows[key] = after
            self._join(line, key, *after)
        unseated = self._own_seats and self._reseat(line)
        if not line.waiting and not line.holding:
            del self._lines[ns]
        # A flow that left the line, stopped holding a slot, moved in it (its priority edited) or let its
        # namespace's next flows move up into earlier seats may let the next ones go; so may a reservation
        # dropped.
        held = before is not None and before[1] in HOLDERS
        freed = (
            moved
            or unseated
            or dropped is not None
            or (
                before is not None
                and (after is None or (held and after[1] != before[1]) or after[0] != before[0])
            )
        )
        return [k for k in self._next(ns) if k != key] if freed else []

    def _moves_seats(
        self, line: NamespaceLine, before: tuple[Place, Standing], after: tuple[Place, Standing] | None
    ) -> bool:
        """Does a waiting flow that starts (or turns out a child) let its namespace's next waiting flows
        move up in the controller's line? A waiting flow sits in the seat its place in its namespace's
        order gives it, a holder in its own; when the two differ (a higher priority put it in an older
        flow's seat), the flows behind it move up one seat each as it leaves, and one refused a moment ago
        may start now. A child leaves the controller's line altogether."""
        place, at = before
        if not self.limits.total or at != Standing.CONTENDING or after is None:
            return False
        return after[1] == Standing.CHILD or line.seat(place) != own_seat(place)

    def claim(self, flow: JobFlow, peers: Sequence[Peer] = ()) -> str | None:
        """None when `flow`, which has not started, may start now (its slot is reserved until `settle`);
        else why it waits (the flow's status message and condition Queued say it). `peers`: its
        concurrency group's other flows (a `Replace` flow counts the slots of those it stops as free)."""
        limits = self.limits
        if not limits.any:
            return None
        key, ns = flow.metadata.key, flow.metadata.namespace
        gone = replacing(flow, peers)
        place = place_of(flow)
        line = self._lines.get(ns) or NamespaceLine(self._own_seats)
        if limits.per_namespace and self._full(limits.per_namespace, key, gone, ns, place, line):
            return waiting_message(limits.per_namespace, ns, -place[0])
        if limits.total and self._full(limits.total, key, gone, None, place, line):
            return waiting_message(limits.total, None, -place[0])
        self._reserved[key] = (ns, flow.metadata.uid)
        self._planning.add(key)
        return None

    def settle(self, flow: JobFlow, begun: bool) -> list[str]:
        """The plan of `flow` started it (`begun`) or not; returns the keys to reconcile when a slot it
        had reserved is free again. A start keeps the reservation its claim made, until the cache shows
        the start (`observe`), and only that: none is made here from the plan's copy of the flow, which
        may be stale (the flow deleted meanwhile would keep a slot forever)."""
        key, uid = flow.metadata.key, flow.metadata.uid
        reserved = self._reserved.get(key)
        if reserved is None or reserved[1] != uid:
            return []
        self._planning.discard(key)
        if begun and self._alive.get(key) == uid:
            return []
        del self._reserved[key]
        return [k for k in self._next(reserved[0]) if k != key]

    def _join(self, line: NamespaceLine, key: str, place: Place, at: Standing) -> None:
        if at == Standing.CHILD:
            line.holding.add(key)
            return
        if at == Standing.HOLDING:
            line.holding.add(key)
            self._all.hold(key, own_seat(place))  # a holder sits in its own seat
            return
        line.add(place)
        if self._shared:
            self._all.add(own_seat(place))

    def _leave(self, line: NamespaceLine, key: str, place: Place, at: Standing) -> None:
        if at == Standing.CHILD:
            line.holding.discard(key)
            return
        if at == Standing.HOLDING:
            line.holding.discard(key)
            self._all.release(key, own_seat(place))
            return
        line.remove(place)
        if self._shared:
            self._all.remove(own_seat(place))

    def _full(
        self, limit: int, key: str, gone: Collection[str], ns: str | None, place: Place, line: NamespaceLine
    ) -> bool:
        """May the flow `key` at `place` not start for the line of namespace `ns` (None: the controller's
        line, where it sits in `line.would_sit(place)`)? It may when there is a slot for it and for every
        flow waiting ahead of it: the flows that hold a slot (or reserved one) and those waiting ahead are
        fewer than `limit`. The flows in `gone` (those a Replace flow stops) count neither way."""
        mine = {key, *gone}
        holders = self._all.holding if ns is None else line.holding
        # The reserved flows that hold no slot in the cache yet: few, the plans in flight.
        extra = [
            k
            for k, (n, _) in self._reserved.items()
            if k not in mine and k not in holders and ns in (None, n)
        ]
        counted = len(holders) - sum(1 for k in mine if k in holders) + len(extra)
        position = self._position(ns)
        me = line.would_sit(place) if ns is None else place
        ahead = bisect_left(self._all.seats if ns is None else line.waiting, me)
        # Those ahead that hold a slot, reserved one or go away are not waiting: each counts once. A holder
        # sits in its own seat in the controller's line (one binary search counts those ahead), in none of
        # its namespace's waiting flows.
        if ns is None:
            ahead -= bisect_left(self._all.held, me)
            if key in holders and own_seat(self._flows[key][0]) < me:
                ahead += 1  # the flow itself holds no slot ahead of itself
        others = (k for k in (*extra, *gone) if k not in holders)
        ahead -= sum(1 for k in others if (p := position(k)) is not None and p < me)
        return ahead + counted >= limit

    def _position(self, ns: str | None) -> Callable[[str], Place | Rank | None]:
        """Where a flow is in namespace `ns`'s waiting flows (its place) or in the controller's line (its
        seat); None when it is not there."""

        def position(key: str) -> Place | Rank | None:
            entry = self._flows.get(key)
            if entry is None:
                return None
            place, at = entry
            if ns is not None:
                return place if place[3] == ns and at not in HOLDERS else None
            if at == Standing.CHILD:
                return None
            if at == Standing.HOLDING:
                return own_seat(place)
            return self._lines[place[3]].seat(place)

        return position

    def _reseat(self, line: NamespaceLine) -> bool:
        """Under both limits: the namespace's first N waiting flows less its holders (those that could
        take a slot of its own) sit in the controller's line. O(N). Whether a seat was left: the flows
        behind it in the controller's line move up."""
        left, taken = line.reseat(max(0, self.limits.per_namespace - len(line.holding)))
        for seat in left:
            self._all.remove(seat)
        for seat in taken:
            self._all.add(seat)
        return bool(left)

    def _next(self, ns: str) -> list[str]:
        """The flows a freed slot may let start: as many of the first waiting flows as there are slots
        not held, in the namespace's line and in the controller's."""
        out: list[str] = []
        limits = self.limits
        if limits.per_namespace and (line := self._lines.get(ns)) is not None:
            out.extend(line.waiting_ahead(limits.per_namespace - len(line.holding)))
        if limits.total and (free := limits.total - len(self._all.holding)) > 0:
            occupants = self._all.occupants(self._lines, limits.total)
            seen = set(out)
            out.extend(
                k for k in islice((k for k in occupants if k not in self._all.holding), free) if k not in seen
            )
        return out

    def waiting(self) -> list[str]:
        """Keys of the contending flows, in their namespace's order (tests and benchmarks read it)."""
        return [place_key(p) for line in self._lines.values() for p in line.waiting]
