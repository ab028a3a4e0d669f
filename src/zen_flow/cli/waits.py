"""What `zen-flow get` adds for a flow that waits: its place in line for a running-flow slot (`2nd of 5
flows waiting for a slot in namespace team-a`), and who holds the locks a waiting step waits for (`held
by jobflow/nightly step migrate`, `2 steps ahead in line`), or the flow itself, for its own locks
(`spec.synchronization`: `lock db held by jobflow/nightly, 1 flow ahead in line`).

The controller writes neither into the status (planner/places.py says why); they are computed here, with
the controller's own ordering, from one LIST of the namespace's JobFlows that the flow's controller
instance runs (paged by 1000 flows), made only when the flow, as read, stands in one of those lines (a
suspended flow, say, stands in none, whatever its condition still says). A user whom RBAC refuses that
LIST (403), or an apiserver that fails it, gets the flow all the same, with the place said to be unknown
and why: `get` never fails for it.

The LIST brings every flow of the namespace, most of them finished in a namespace that has run for a
while: only those that may stand in the lines read are made into models (cli/candidates.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from zen_flow.api import JobFlow
from zen_flow.api.constants import LABEL_INSTANCE
from zen_flow.cli.candidates import Candidates
from zen_flow.cli.render import few
from zen_flow.cli.session import Session
from zen_flow.core.instances import instance_selector
from zen_flow.kube.errors import ApiError, TransportError
from zen_flow.kube.jobflows import JOBFLOWS
from zen_flow.planner.locks import FLOW
from zen_flow.planner.places import LockPlace, SlotPlace, lock_places, slot_place, slot_wait

# One page holds a namespace's flows in all but the largest namespaces: one request, as promised.
_PAGE = 1000


@dataclass(frozen=True)
class Waits:
    """What `get` adds: lines under the flow's summary (`summary`: label, text) and, by step, a note
    after a waiting step's message (`steps`)."""

    summary: tuple[tuple[str, str], ...] = ()
    steps: Mapping[str, str] = field(default_factory=dict)


NO_WAITS = Waits()


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _held(place: LockPlace) -> str:
    """Who holds the lock and who waits for it ahead: `held by jobflow/a step s, 1 step and 2 flows ahead
    in line` (a flow in line waits for its own locks)."""
    held = f"held by {few(place.holders, shown=3)}" if place.holders else "free"
    ahead = [
        *([_count(place.ahead, "step")] if place.ahead else []),
        *([_count(place.flows_ahead, "flow")] if place.flows_ahead else []),
    ]
    return f"{held}, {' and '.join(ahead)} ahead in line" if ahead else held


def slot_line(place: SlotPlace, line: str, namespace: str) -> str:
    """The flow's place in line, for the summary's `Line:`; `line`: the limit it waits for (`slot_wait`)."""
    where = f"{ordinal(place.place)} of {place.waiting} flows waiting for a slot in namespace {namespace}"
    if line == "namespace":
        return where
    # The controller's line holds every namespace's flows, and only this namespace's can be read here.
    return f"{where}; other namespaces' flows share the controller's line, not counted here"


def lock_note(places: Sequence[LockPlace]) -> str:
    """Who keeps a step from its locks: each lock's holders, and the steps ahead of it in the lock's line
    (the lock named when the step waits for several)."""
    return "; ".join(f"{p.lock + ' ' if len(places) > 1 else ''}{_held(p)}" for p in places)


def own_lock_line(places: Sequence[LockPlace]) -> str:
    """Who keeps the flow from its own locks, for the summary's `Line:`: each lock named (the summary has
    no waiting step's message to name it), its holders and those ahead of the flow in its line."""
    return "; ".join(f"lock {p.lock} {_held(p)}" for p in places)


def waits_of(flow: JobFlow, flows: Sequence[JobFlow]) -> Waits:
    """What `get` adds for `flow`, from `flows` (the namespace's flows of its controller instance)."""
    summary: tuple[tuple[str, str], ...] = ()
    line = slot_wait(flow)
    if line is not None and (place := slot_place(flow, flows)) is not None:
        summary = (("Line", slot_line(place, line, flow.metadata.namespace)),)
    locks = dict(lock_places(flow, flows))
    if own := locks.pop(FLOW, ()):  # the flow waits for its own locks: no step of it waits for any
        summary += (("Line", own_lock_line(own)),)
    steps = {step: lock_note(places) for step, places in locks.items()}
    return Waits(summary, steps)


@dataclass(frozen=True)
class Lines:
    """The lines `flow` stands in, as its own copy shows: for a slot (`slot`: its condition says it waits
    for one and nothing of its own keeps it out, as being suspended or started does) and for a lock
    (`locks`: a step of it, or the flow itself, waits for one, and the flow is not suspended). Other
    flows can move it in a line, never put it in one, so when it stands in none no other flow needs
    reading."""

    slot: bool
    locks: bool


def lines_of(flow: JobFlow) -> Lines:
    return Lines(
        slot=slot_wait(flow) is not None and slot_place(flow, ()) is not None,
        locks=bool(lock_places(flow, ())),
    )


def unknown(lines: Lines, why: str) -> Waits:
    """The place, and the holders, cannot be read: said once, under the summary."""
    what = " and ".join(
        [*(["place in line"] if lines.slot else []), *(["lock holders"] if lines.locks else [])]
    )
    return Waits((("Line", f"{what} unknown: {why}"),))


async def read_waits(session: Session, flow: JobFlow) -> Waits:
    """What `get` adds for `flow` (as stored, not its effective flow): nothing, and no request, when it
    stands in no line for a slot nor a lock."""
    lines = lines_of(flow)
    if not (lines.slot or lines.locks):
        return NO_WAITS
    ns = flow.metadata.namespace
    instance = flow.metadata.labels.get(LABEL_INSTANCE, "")
    query = (("labelSelector", instance_selector(instance)),)
    try:
        listed = await session.client.list_all(
            JOBFLOWS.path(ns), query, page_size=_PAGE, decoder=Candidates(slot=lines.slot)
        )
    except ApiError as err:
        status = f"{err.status} {err.reason}".strip()
        if err.status == 403:
            return unknown(lines, f"you may not list JobFlows in namespace {ns} ({status})")
        return unknown(lines, f"the apiserver refused to list JobFlows in namespace {ns} ({status})")
    except TransportError as err:
        return unknown(lines, f"cannot reach the apiserver: {err}")
    return waits_of(flow, listed.items)
