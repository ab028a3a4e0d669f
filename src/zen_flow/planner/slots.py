"""Limits on running flows: `--max-running-flows` (all the flows this controller runs) and
`--namespace-max-running-flows` (each namespace's), Argo's `parallelism` and `namespaceParallelism`.

A flow holds a slot from its start (a start time, or phase Running or Paused: what `concurrency.py`
calls started; or a Job of it running, when a lost write left the start unrecorded) until it finishes or
goes away; a suspended flow that started keeps its slot. A rerun of a Failed flow has not started (its
plan resets it) and contends at its creation-time rank. A flow that has not started takes one only when
both rules let it, in its namespace and controller-wide:

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
A `Replace` flow counts the older flows of its group it stops as gone: they hold no slot and no place
ahead of it (their stop follows its start).

Pure: `SlotBook` is an index the controller keeps from its informer's events (flows added, changed,
deleted), so a verdict costs O(log n) however many flows wait, and a freed slot wakes only the flows that
may take it (at most N per line), never the whole queue.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from zen_flow.api.constants import ConcurrencyPolicy, ConditionType, FlowPhase
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.children import is_child
from zen_flow.planner.concurrency import Peer, judge, policy_of
from zen_flow.planner.interventions import request, rerun, stop_request
from zen_flow.planner.status import REASON_QUEUED

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GLOBAL_FLAG = "--max-running-flows"
NAMESPACE_FLAG = "--namespace-max-running-flows"

Rank = tuple[datetime, str, str]  # (creationTimestamp, name, namespace)
JobsFor = Callable[[str], Iterable[Job]]  # a flow's cached Jobs, by its UID


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


def as_planned(flow: JobFlow) -> tuple[JobFlow, bool]:
    """The flow as its next plan sees it, and whether that is a rerun: a Failed flow carrying a rerun
    request it honours (`zen-flow retry`) is reset (no start time) and contends for a slot again, at its
    creation-time rank, as it does in its concurrency group; a refused request leaves it Failed."""
    retry = request(flow)
    if retry is None or flow.status.phase != FlowPhase.FAILED:
        return flow, False
    planned, _ = rerun(flow, retry, _EPOCH)
    return planned, planned.status.phase != FlowPhase.FAILED


def _ended(flow: JobFlow) -> bool:
    """Finished (and no rerun of it asked) or being deleted: it holds no slot and takes no place."""
    if flow.metadata.deletion_timestamp is not None:
        return True
    planned, _ = as_planned(flow)
    return planned.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)


def started(flow: JobFlow) -> bool:
    status = flow.status
    return status.start_time is not None or status.phase in (FlowPhase.RUNNING, FlowPhase.PAUSED)


def _running_jobs(flow: JobFlow, jobs_for: JobsFor | None) -> bool:
    """A Job of the flow runs though its status records no start: the controller stopped between its Job
    creates and the status write recording them (a crash, a failover, a lost write). It started all the
    same (concurrency.py's `peers_of`). Finished Jobs do not count: a failed flow waiting to rerun keeps
    its failed attempts' Jobs."""
    if jobs_for is None:
        return False
    return any(not job.finished and not job.deleting for job in jobs_for(flow.metadata.uid))


def standing(flow: JobFlow, jobs_for: JobsFor | None = None) -> Standing:
    """`jobs_for`: the flow's cached Jobs by its UID (none: its status alone decides)."""
    if _ended(flow) or is_child(flow):  # a child flow runs under its parent's slot (planner.children)
        return Standing.OUT
    planned, rerunning = as_planned(flow)
    # A rerun's reset status says phase Running with no start time: it has not started this run.
    if (not rerunning and started(flow)) or _running_jobs(flow, jobs_for):
        return Standing.HOLDING
    if planned.spec.suspend or _group_held(planned):
        return Standing.OUT
    return Standing.CONTENDING


def needs_slot(flow: JobFlow, peers: Sequence[Peer]) -> bool:
    """Would `flow` start now but for the limits: it has not started nor finished (or it is to rerun),
    and no suspend, stop request or concurrency group (`peers`) holds it back? Only such a flow asks
    `SlotBook.claim`, so one that could not start anyway reserves no slot while its plan runs."""
    if _ended(flow) or is_child(flow):
        return False
    planned, rerunning = as_planned(flow)
    if (not rerunning and started(flow)) or planned.spec.suspend:
        return False
    return stop_request(planned) is None and not judge(planned, peers, started=False).holds


def replacing(flow: JobFlow, peers: Sequence[Peer]) -> tuple[str, ...]:
    """Keys of the older flows of its group a `Replace` flow stops once it starts (none for another
    policy): their slots are as good as free to it. Counting them held would make it wait behind the very
    flows it replaces (Replace acting as Forbid) while the limit is full."""
    if not peers or policy_of(flow) != ConcurrencyPolicy.REPLACE:
        return ()
    planned, _ = as_planned(flow)
    ns = flow.metadata.namespace
    return tuple(f"{ns}/{name}" for name in judge(planned, peers, started=False).replacing)


def rank_of(flow: JobFlow) -> Rank:
    meta = flow.metadata
    return (meta.creation_timestamp or _EPOCH, meta.name, meta.namespace)


def _key(rank: Rank) -> str:
    return f"{rank[2]}/{rank[1]}"


def _has(line: _Line, rank: Rank) -> bool:
    i = bisect_left(line.ranks, rank)
    return i < len(line.ranks) and line.ranks[i] == rank


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
    `claim` before it plans a flow that would start and tells `settle` what the plan did. `jobs_for`: the
    flows' cached Jobs by UID, so that a flow with a Job running holds its slot though its status records
    no start (the controller calls `observe(flow, flow)` when a Job of a flow changes)."""

    def __init__(self, limits: SlotLimits, jobs_for: JobsFor | None = None) -> None:
        self.limits = limits
        self._jobs_for = jobs_for
        self._flows: dict[str, tuple[Rank, Standing]] = {}
        self._lines: dict[str, _Line] = {}
        self._all = _Line()
        # The UID of every flow in the cache that is not being deleted, by key: a plan's claim or settle
        # for a flow deleted (or relabelled to another instance) meanwhile reserves nothing.
        self._alive: dict[str, str] = {}
        # Flows whose plan started them (or is deciding to) while the cache does not show it yet, by key,
        # with their namespace and UID: they hold their slot already (read your own writes, as
        # concurrency.py's `starting`).
        self._reserved: dict[str, tuple[str, str]] = {}

    def observe(self, old: JobFlow | None, new: JobFlow | None) -> list[str]:
        """`old` became `new` (None: added or deleted; `observe(flow, flow)`: its Jobs changed); returns
        the keys of the flows to reconcile because a slot or a place in line may have freed for them."""
        flow = new if new is not None else old
        if not self.limits.any or flow is None:
            return []
        key, ns = flow.metadata.key, flow.metadata.namespace
        before = self._flows.get(key)
        after = (rank_of(new), standing(new, self._jobs_for)) if new is not None else None
        if new is not None and new.metadata.deletion_timestamp is None:
            self._alive[key] = new.metadata.uid
        else:
            self._alive.pop(key, None)
        # A reservation ends when the cache shows the flow holding its slot, finished or gone, and only
        # then: a change in between (an annotation, a label) shows the status from before the plan's
        # write (still queued for its group, suspended a moment ago), and dropping the reservation then
        # would let another flow take the slot the plan took. `settle(begun=False)` frees it otherwise.
        if key in self._reserved and (
            new is None
            or self._reserved[key][1] != new.metadata.uid
            or _ended(new)
            or (after is not None and after[1] == Standing.HOLDING)
        ):
            del self._reserved[key]
        if after is not None and after[1] == Standing.OUT:
            after = None
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

    def claim(self, flow: JobFlow, peers: Sequence[Peer] = ()) -> str | None:
        """None when `flow`, which has not started, may start now (its slot is reserved until `settle`);
        else why it waits (the flow's status message and condition Queued say it). `peers`: its
        concurrency group's other flows (a `Replace` flow counts the slots of those it stops as free)."""
        limits = self.limits
        if not limits.any:
            return None
        key, ns = flow.metadata.key, flow.metadata.namespace
        gone = replacing(flow, peers)
        line = self._lines.get(ns, _Line())
        if limits.per_namespace and self._full(line, limits.per_namespace, flow, gone):
            return waiting_message(limits.per_namespace, ns)
        if limits.total and self._full(self._all, limits.total, flow, gone):
            return waiting_message(limits.total, None)
        self._reserved[key] = (ns, flow.metadata.uid)
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
        if begun and self._alive.get(key) == uid:
            return []
        del self._reserved[key]
        return [k for k in self._next(reserved[0]) if k != key]

    def _full(self, line: _Line, limit: int, flow: JobFlow, gone: Collection[str]) -> bool:
        """May `flow` not start for `line` (its namespace's or the global one, by `line is self._all`)?"""
        ns = None if line is self._all else flow.metadata.namespace
        ahead = self._ahead(line, rank_of(flow), gone)
        return ahead >= limit or self._held(line, flow.metadata.key, ns, gone) >= limit

    def _ahead(self, line: _Line, rank: Rank, gone: Collection[str]) -> int:
        """Flows ranked before `rank` in `line`, not counting those in `gone` (a Replace flow's)."""
        ahead = bisect_left(line.ranks, rank)
        for k in gone:
            if (entry := self._flows.get(k)) is not None and entry[0] < rank and _has(line, entry[0]):
                ahead -= 1
        return ahead

    def _held(self, line: _Line, key: str, ns: str | None, gone: Collection[str] = ()) -> int:
        """Slots held in `line` (the namespace `ns`'s, or the global one): its holders and the
        reservations in it, not counting `key`'s own nor those of the flows in `gone`."""
        mine = {key, *gone}
        reserved = sum(
            1
            for k, (n, _) in self._reserved.items()
            if k not in mine and k not in line.holding and ns in (None, n)
        )
        return len(line.holding - mine) + reserved

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
