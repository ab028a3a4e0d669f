"""Limits on running flows: `--max-running-flows` (all the flows this controller runs) and
`--namespace-max-running-flows` (each namespace's), Argo's `parallelism` and `namespaceParallelism`.

A flow holds a slot from its start (a start time, or phase Running or Paused: what `concurrency.py`
calls started) until it finishes or goes away; a suspended flow that started keeps its slot. A flow that
has not started takes one only when both rules let it, in its namespace and controller-wide:

1. it is among the first N contending flows ranked by (creationTimestamp, name, namespace), and
2. fewer than N flows hold a slot.

The first rule makes the wait first come, first served; the second keeps the bound when the cache
delivers flows out of rank order (equal timestamps, clock skew between apiservers), as in concurrency.py.
The first waiting flow always has only slot holders ahead of it, so when a slot frees it may take it:
nothing waits for a flow that waits itself, and the queue cannot deadlock. Neither rule needs any
coordination: every replica decides from its own informer cache, and each flow only changes its own status.

Contending are the unfinished flows that started or could start now: a flow suspended before its start,
or one its concurrency group holds back (its status says so: condition Queued, reason ConcurrencyForbid),
takes no place in the line, so it keeps no other flow waiting. Controller-wide, a flow its namespace's
limit holds back takes no place either: one namespace's thousand waiting flows must not keep another
namespace's first flow out of a free slot (each namespace puts at most its first N in the global line).

Pure: `SlotBook` is an index the controller keeps from its informer's events (flows added, changed,
deleted), so a verdict costs O(log n) however many flows wait, and a freed slot wakes only the flows that
may take it (at most N per line), never the whole queue.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from zen_flow.api.constants import ConditionType, FlowPhase
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.concurrency import Peer, judge
from zen_flow.planner.interventions import stop_request
from zen_flow.planner.status import REASON_QUEUED

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GLOBAL_FLAG = "--max-running-flows"
NAMESPACE_FLAG = "--namespace-max-running-flows"

Rank = tuple[datetime, str, str]  # (creationTimestamp, name, namespace)


@dataclass(frozen=True)
class SlotLimits:
    """0: no limit."""

    total: int = 0
    per_namespace: int = 0

    @property
    def any(self) -> bool:
        return self.total > 0 or self.per_namespace > 0


class Standing(Enum):
    HOLDING = "holding"  # started, not finished: holds a slot
    CONTENDING = "contending"  # not started, in the line for a slot
    OUT = "out"  # finished, being deleted, suspended before its start, or held by its group


def _group_held(flow: JobFlow) -> bool:
    return any(
        c.type == ConditionType.QUEUED and c.status == "True" and c.reason == REASON_QUEUED
        for c in flow.status.conditions
    )


def _gone(flow: JobFlow) -> bool:
    ended = flow.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
    return ended or flow.metadata.deletion_timestamp is not None


def started(flow: JobFlow) -> bool:
    status = flow.status
    return status.start_time is not None or status.phase in (FlowPhase.RUNNING, FlowPhase.PAUSED)


def standing(flow: JobFlow) -> Standing:
    if _gone(flow):
        return Standing.OUT
    if started(flow):
        return Standing.HOLDING
    if flow.spec.suspend or _group_held(flow):
        return Standing.OUT
    return Standing.CONTENDING


def needs_slot(flow: JobFlow, peers: Sequence[Peer]) -> bool:
    """Would `flow` start now but for the limits: it has not started nor finished, and no suspend, stop
    request or concurrency group (`peers`) holds it back? Only such a flow asks `SlotBook.claim`, so one
    that could not start anyway reserves no slot while its plan runs."""
    if _gone(flow) or started(flow) or flow.spec.suspend:
        return False
    return stop_request(flow) is None and not judge(flow, peers, started=False).holds


def rank_of(flow: JobFlow) -> Rank:
    meta = flow.metadata
    return (meta.creation_timestamp or _EPOCH, meta.name, meta.namespace)


def _key(rank: Rank) -> str:
    return f"{rank[2]}/{rank[1]}"


@dataclass
class _Line:
    """The contending and holding flows of one namespace (or of the controller), ranked."""

    ranks: list[Rank] = field(default_factory=list)
    holding: set[str] = field(default_factory=set)
    admitted: dict[str, Rank] = field(default_factory=dict)  # a namespace's flows in the global line

    def add(self, rank: Rank) -> None:
        insort(self.ranks, rank)

    def remove(self, rank: Rank) -> None:
        i = bisect_left(self.ranks, rank)
        if i < len(self.ranks) and self.ranks[i] == rank:
            del self.ranks[i]

    def waiting_ahead(self, n: int) -> list[str]:
        """The flows among the first `n` that hold no slot: those a freed slot may let start."""
        return [k for r in self.ranks[:n] if (k := _key(r)) not in self.holding]


class SlotBook:
    """The flows in line for slots, kept from the informer's events (`observe`); the controller asks
    `claim` before it plans a flow that would start and tells `settle` what the plan did."""

    def __init__(self, limits: SlotLimits) -> None:
        self.limits = limits
        self._flows: dict[str, tuple[Rank, Standing]] = {}
        self._lines: dict[str, _Line] = {}
        self._all = _Line()
        # Flows whose plan started them (or is deciding to) while the cache does not show it yet, by key,
        # with their namespace: they hold their slot already (read your own writes, as concurrency.py's
        # `starting`).
        self._reserved: dict[str, str] = {}

    def observe(self, old: JobFlow | None, new: JobFlow | None) -> list[str]:
        """`old` became `new` (None: added or deleted); returns the keys of the flows to reconcile
        because a slot or a place in line may have freed for them."""
        flow = new if new is not None else old
        if not self.limits.any or flow is None:
            return []
        key, ns = flow.metadata.key, flow.metadata.namespace
        before = self._flows.get(key)
        after = (rank_of(new), standing(new)) if new is not None else None
        if after is not None and after[1] == Standing.OUT:
            after = None
        if after is None or after[1] == Standing.HOLDING:
            self._reserved.pop(key, None)  # the cache shows it now (or it went)
        if before == after:
            return []
        line = self._lines.setdefault(ns, _Line())
        # Without a namespace limit the global line holds every flow of every namespace's line.
        lines = (line, self._all) if self.limits.total and not self.limits.per_namespace else (line,)
        if before is not None:
            del self._flows[key]
            for each in lines:
                each.remove(before[0])
                each.holding.discard(key)
        if after is not None:
            self._flows[key] = after
            for each in lines:
                each.add(after[0])
                if after[1] == Standing.HOLDING:
                    each.holding.add(key)
        if self.limits.total and self.limits.per_namespace:
            self._readmit(line)
        if not line.ranks:
            del self._lines[ns]
        # A flow that left the line, or stopped holding a slot, may let the next ones go.
        held = before is not None and before[1] == Standing.HOLDING
        freed = before is not None and (after is None or (held and after[1] != Standing.HOLDING))
        return [k for k in self._next(ns) if k != key] if freed else []

    def claim(self, flow: JobFlow) -> str | None:
        """None when `flow`, which has not started, may start now (its slot is reserved until `settle`);
        else why it waits (the flow's status message and condition Queued say it)."""
        limits = self.limits
        if not limits.any:
            return None
        key, ns, rank = flow.metadata.key, flow.metadata.namespace, rank_of(flow)
        if limits.per_namespace:
            line = self._lines.get(ns, _Line())
            ahead = bisect_left(line.ranks, rank)
            if ahead >= limits.per_namespace or self._held(line, key, ns) >= limits.per_namespace:
                return waiting_message(limits.per_namespace, ns)
        if limits.total:
            ahead = bisect_left(self._all.ranks, rank)
            if ahead >= limits.total or self._held(self._all, key, None) >= limits.total:
                return waiting_message(limits.total, None)
        self._reserved[key] = ns
        return None

    def settle(self, flow: JobFlow, begun: bool) -> list[str]:
        """The plan of `flow` started it (`begun`) or not; returns the keys to reconcile when a slot it
        had reserved is free again."""
        key = flow.metadata.key
        if begun:
            # Reserved only while the cache shows a flow that has not started: every plan of a running
            # or finished flow says it began, and a slot kept for one that finished would never free.
            if self.limits.any and not started(flow) and not _gone(flow):
                self._reserved[key] = flow.metadata.namespace
            return []
        if self._reserved.pop(key, None) is None:
            return []
        return [k for k in self._next(flow.metadata.namespace) if k != key]

    def _held(self, line: _Line, key: str, ns: str | None) -> int:
        """Slots held in `line` (the namespace `ns`'s, or the global one): its holders and the
        reservations in it, not counting `key`'s own."""
        reserved = sum(
            1 for k, n in self._reserved.items() if k != key and k not in line.holding and ns in (None, n)
        )
        return len(line.holding) - (key in line.holding) + reserved

    def _readmit(self, line: _Line) -> None:
        """Keep the global line to the holders and each namespace's first N (`per_namespace`): O(N)."""
        want = {_key(r): r for r in line.ranks[: self.limits.per_namespace]}
        want.update((k, self._flows[k][0]) for k in line.holding)
        for k, rank in line.admitted.items():
            if want.get(k) != rank:
                self._all.remove(rank)
                self._all.holding.discard(k)
        for k, rank in want.items():
            if line.admitted.get(k) != rank:
                self._all.add(rank)
            if k in line.holding:
                self._all.holding.add(k)
            else:
                self._all.holding.discard(k)
        line.admitted = want

    def _next(self, ns: str) -> list[str]:
        out: list[str] = []
        if self.limits.per_namespace and (line := self._lines.get(ns)) is not None:
            out.extend(line.waiting_ahead(self.limits.per_namespace))
        if self.limits.total:
            out.extend(k for k in self._all.waiting_ahead(self.limits.total) if k not in out)
        return out

    def waiting(self) -> list[str]:
        """Keys of the contending flows, ranked per namespace (tests and benchmarks read it)."""
        return [_key(r) for line in self._lines.values() for r in line.ranks if _key(r) not in line.holding]


def waiting_message(limit: int, namespace: str | None) -> str:
    """What a flow waiting for a slot says; it names the limit, not a count or a position, so that it
    does not change while the flow waits (one status write per wait, not one per flow that went ahead)."""
    if namespace is not None:
        return (
            f"waiting for a slot: at most {limit} flows run at once in namespace {namespace} "
            f"({NAMESPACE_FLAG} {limit})"
        )
    return f"waiting for a slot: at most {limit} flows run at once in this controller ({GLOBAL_FLAG} {limit})"
