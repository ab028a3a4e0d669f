"""Where a waiting flow, or a waiting step, stands in line, as `zen-flow get` shows it: a flow's place among
its namespace's flows waiting for a running-flow slot (planner/slots.py), and, for a step waiting for step
locks and a flow waiting for its own (`spec.synchronization`, planner/locks.py), who holds each lock and
how many steps and flows wait for it ahead.

The controller writes neither: a place changes each time a flow ahead starts, a holder at each hand-over,
and writing them would cost every waiter a status write per change (slot_standing.waiting_message and
locks.waiting_message say why their messages name none). The CLI computes them from one LIST of the
namespace's flows instead, with the controller's own books (`SlotBook`, `LockBook`) fed with those flows
as its informer feeds them, so the order shown is the order the controller follows: what the list shows,
without the Jobs (a flow whose start's status write was lost counts as waiting) nor the starts in flight.

Pure: the flows come in as arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zen_flow.api.constants import ConditionType
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.children import parent_of
from zen_flow.planner.lineage import runs_under
from zen_flow.planner.lock_book import LockBook
from zen_flow.planner.lock_holders import flow_locks
from zen_flow.planner.locks import FLOW
from zen_flow.planner.slot_standing import NAMESPACE_FLAG
from zen_flow.planner.slots import SlotBook, SlotLimits
from zen_flow.planner.status import REASON_WAITING_FOR_SLOT

# A limit decides who gets a slot, never who is ahead of whom: any limit builds the same line.
_ANY_LIMIT = SlotLimits(per_namespace=1)


@dataclass(frozen=True)
class SlotPlace:
    """A flow's place among its namespace's flows waiting for a slot: `place` 1 is the first in line."""

    place: int
    waiting: int


@dataclass(frozen=True)
class LockPlace:
    """One lock a waiting step (or flow) waits for: the steps and flows holding it (as messages name them,
    `jobflow/F step S`, `jobflow/F`), and how many steps (`ahead`) and flows taking their own locks
    (`flows_ahead`) wait for it ahead of this one: one line holds both (planner/locks.py)."""

    lock: str
    holders: tuple[str, ...]
    ahead: int
    flows_ahead: int = 0


def slot_wait(flow: JobFlow) -> str | None:
    """Which line `flow` waits in for a slot, as its condition Queued (reason WaitingForSlot) says:
    "namespace" (`--namespace-max-running-flows`) or "controller" (`--max-running-flows`); None when it
    waits for none."""
    for cond in flow.status.conditions:
        if (
            cond.type == ConditionType.QUEUED
            and cond.status == "True"
            and cond.reason == REASON_WAITING_FOR_SLOT
        ):
            return "namespace" if NAMESPACE_FLAG in (cond.message or "") else "controller"
    return None


def _by_key(flow: JobFlow, flows: Iterable[JobFlow]) -> dict[str, JobFlow]:
    """The namespace's flows by key, `flow` as given (it may be newer than the list's copy)."""
    found = {f.metadata.key: f for f in flows if f.metadata.namespace == flow.metadata.namespace}
    found[flow.metadata.key] = flow
    return found


def slot_place(flow: JobFlow, flows: Iterable[JobFlow]) -> SlotPlace | None:
    """`flow`'s place in its namespace's line for a slot; None when it is not in it (it started, ended,
    or waits for its concurrency group). `flows`: the namespace's flows that the flow's controller
    instance runs (`flow` may be among them); with none, whether it may be in line at all: other flows
    decide its place, and may take it out of line (a verified child runs under its parent's slot), never
    put it in."""
    by_key = _by_key(flow, flows)

    def is_child(f: JobFlow) -> bool:
        # A child running under its started parent's slot waits for none (controller/child_flows.py).
        ref = parent_of(f)
        return ref is not None and runs_under(f, by_key.get(f"{f.metadata.namespace}/{ref.name}"))

    book = SlotBook(_ANY_LIMIT, None, is_child)
    for f in by_key.values():
        book.observe(None, f)
    line = book.waiting()
    key = flow.metadata.key
    return SlotPlace(line.index(key) + 1, len(line)) if key in line else None


def lock_places(flow: JobFlow, flows: Iterable[JobFlow]) -> Mapping[str, tuple[LockPlace, ...]]:
    """For each step of `flow` waiting for locks (by name), and for the flow itself waiting for its own
    (as `FLOW`, as the controller's book keeps it: its condition Queued says WaitingForLock): each of its
    locks' holders and the waiters ahead of it in that lock's line. `flows`: as for `slot_place` (with
    none: the steps, or the flow, waiting, whoever holds their locks)."""
    mine = flow_locks(flow)
    if mine is None or not mine.waiting:
        return {}
    book = LockBook()
    for f in _by_key(flow, flows).values():
        book.observe(None, f)
    ns, key = flow.metadata.namespace, flow.metadata.key
    places: dict[str, tuple[LockPlace, ...]] = {}
    for step, limits in mine.waiting.items():
        found = []
        for name in limits:
            line = book.line(ns, name)
            before = line[: line.index((key, step))] if (key, step) in line else []
            flows_ahead = sum(1 for _, s in before if s == FLOW)
            found.append(
                LockPlace(name, tuple(book.holders(ns, name)), len(before) - flows_ahead, flows_ahead)
            )
        places[step] = tuple(found)
    return places
