"""Which flows are really a flow's children, and where a flow sits in its family (planner/children.py).

A JobFlow's controlling ownerReference is written by whoever creates it: anyone who may create JobFlows
in a namespace can name another flow of it as its parent. So an ownerReference alone earns nothing. A
flow is a *verified child* of a cached flow P when its controlling ownerReference names P by UID in the
same namespace, and P's spec has a step `s` of type Flow such that the child is labelled `parent-step`
`s` and is named as P's child of `s` would be for its attempt (`core.naming.job_name`), an attempt no
later than P could have reached (the step's retry limit, or the attempt P's status records, plus one for
a create whose status write is still on its way). Only a verified child is treated as one: shown to its
parent as its step's Job, exempt from the limits on running flows (it runs under its parent's slot), its
own TTL ignored (it goes with its parent). A forged one is an ordinary flow: it waits for a slot and is
never taken for a Job of the flow it names.

Depth and the size of a family are read from the chain of verified parents in the cache, never from the
editable `depth` label (informational only): `lineage` walks up at most MAX_FLOW_DEPTH + 1 parents, and
counts the live children under the root flow, at most MAX_DESCENDANTS + 1 of them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from zen_flow.api.constants import LABEL_ATTEMPT, LABEL_PARENT_STEP, MAX_FLOW_DEPTH, FlowPhase
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.naming import job_name, label_value
from zen_flow.planner.children import parent_of

# Live (unfinished, not being deleted) child flows under one root flow, all generations: a template that
# runs itself three times per level would otherwise make 3 + 9 + 27 + 81 flows before the depth limit.
MAX_DESCENDANTS = 100

FlowByKey = Callable[[str], JobFlow | None]  # a cached flow by `namespace/name`
ChildrenOf = Callable[[str], Sequence[JobFlow]]  # the cached flows whose controller is the flow of a UID


@dataclass(frozen=True)
class Lineage:
    """Where a flow sits in its family. `depth`: 0 for a top-level flow (or an unverified child), its
    verified parent's + 1 otherwise; `child`: it is a verified child; `room`: how many more child flows
    its root flow's family may have (Flow steps past it fail, naming MAX_DESCENDANTS)."""

    depth: int = 0
    child: bool = False
    room: int = MAX_DESCENDANTS


TOP_LEVEL = Lineage()


class _FlowSteps:
    """`parent`'s Flow steps by their `parent-step` label value, each with the last attempt a child of it
    may be: the attempt the parent's status records, plus one for a create whose status write is still on
    its way. Built once per parent and looked up per child, never by listing every attempt's name (a
    step's retry limit may be 2^31)."""

    def __init__(self, parent: JobFlow) -> None:
        recorded = {s.name: s for s in parent.status.steps}
        self.parent = parent
        self.steps: dict[str, tuple[str, int]] = {}
        for s in parent.spec.steps:
            if s.is_flow:
                status = recorded.get(s.name)
                self.steps[label_value(s.name)] = (s.name, (status.retry_count if status else 0) + 1)

    def names(self, flow: JobFlow) -> bool:
        """Is `flow` named, labelled and owned as one of the parent's children?"""
        ref = parent_of(flow)
        pm, cm = self.parent.metadata, flow.metadata
        if (
            ref is None
            or not pm.uid
            or pm.uid != ref.uid
            or pm.name != ref.name
            or pm.namespace != cm.namespace
        ):
            return False
        attempt = cm.labels.get(LABEL_ATTEMPT, "")
        # isascii(): str.isdigit() takes a superscript (int() refuses it) and other scripts' digits.
        if not (attempt.isascii() and attempt.isdigit()) or len(attempt) > 6:
            return False
        step = self.steps.get(cm.labels.get(LABEL_PARENT_STEP, ""))
        if step is None or int(attempt) > step[1]:
            return False
        return cm.name == job_name(pm.name, step[0], int(attempt))

    def pending(self, made: Collection[str]) -> int:
        """How many of the names the parent is creating (`made`) are its children: only a step's current
        attempt or the next one can be on its way."""
        pm = self.parent.metadata.name
        names = {job_name(pm, name, n) for name, last in self.steps.values() for n in (last - 1, last)}
        return len(names.intersection(made))


def is_verified_child(flow: JobFlow, parent: JobFlow | None) -> bool:
    """Is `flow` a child `parent` made (see the module's docstring)? False for a top-level flow."""
    return parent is not None and parent_of(flow) is not None and _FlowSteps(parent).names(flow)


def _hosting(parent: JobFlow) -> bool:
    """Has `parent` started (its status says so) and not ended: its children may run under its slot."""
    status = parent.status
    if parent.metadata.deletion_timestamp is not None or status.phase in (
        FlowPhase.SUCCEEDED,
        FlowPhase.FAILED,
    ):
        return False
    return status.start_time is not None or status.phase in (FlowPhase.RUNNING, FlowPhase.PAUSED)


def runs_under(flow: JobFlow, parent: JobFlow | None, pending: Collection[str] = ()) -> bool:
    """Does `flow` run under `parent`'s slot (the limits on running flows pass it by)? Only when the
    controller made it so, never from facts its creator can write (labels, name, ownerReference): it is a
    verified child, its parent has started and not ended, and the parent's status names it as a step's
    child (its jobRef) or the controller created it for that parent (`pending`: the parent's pending
    creates and those seen arrive, for the moment before the parent's status write names it)."""
    if parent is None or not _hosting(parent) or not is_verified_child(flow, parent):
        return False
    name = flow.metadata.name
    return name in pending or any(
        s.job_ref is not None and s.job_ref.name == name for s in parent.status.steps
    )


def hosted(flow: JobFlow) -> tuple[bool, frozenset[str]]:
    """What `runs_under` reads of a parent: whether it hosts children and the children its status names.
    The controller re-decides a parent's children when this changes (never on its other updates)."""
    if not any(s.is_flow for s in flow.spec.steps):
        return False, frozenset()
    return _hosting(flow), frozenset(s.job_ref.name for s in flow.status.steps if s.job_ref is not None)


def verified_parent(flow: JobFlow, flow_by_key: FlowByKey) -> JobFlow | None:
    """The cached flow `flow` is a verified child of; None when it is none's."""
    ref = parent_of(flow)
    if ref is None:
        return None
    parent = flow_by_key(f"{flow.metadata.namespace}/{ref.name}")
    return parent if is_verified_child(flow, parent) else None


def verified_children(parent: JobFlow, children_of: ChildrenOf) -> list[JobFlow]:
    """The cached flows that are verified children of `parent` (its Flow steps indexed once: a parent of
    400 children checks each in constant time)."""
    children = children_of(parent.metadata.uid)
    if not children:
        return []
    steps = _FlowSteps(parent)
    return [c for c in children if steps.names(c)]


def _live(flow: JobFlow) -> bool:
    return flow.metadata.deletion_timestamp is None and flow.status.phase not in (
        FlowPhase.SUCCEEDED,
        FlowPhase.FAILED,
    )


def lineage(
    flow: JobFlow,
    flow_by_key: FlowByKey,
    children_of: ChildrenOf,
    pending: Callable[[str], Collection[str]] | None = None,
) -> Lineage:
    """`flow`'s place in its family, from the cache: its depth (the verified parents above it, at most
    MAX_FLOW_DEPTH + 1 looked at: a deeper one fails its Flow steps anyway), whether it is a child, and
    the room left under its root (its live descendants counted up to MAX_DESCENDANTS). `pending`: the
    names a flow (by UID) created that the cache does not show yet: the children other members of the
    family created moments ago count too, else each member planning from the same cache would take the
    same room."""
    depth, root = 0, flow
    seen = {flow.metadata.uid}
    while depth <= MAX_FLOW_DEPTH and (parent := verified_parent(root, flow_by_key)) is not None:
        if parent.metadata.uid in seen:  # a cycle of forged references: no family to speak of
            break
        seen.add(parent.metadata.uid)
        depth, root = depth + 1, parent
    if not any(s.is_flow for s in flow.spec.steps):  # it makes no child: its room is never read
        return Lineage(depth=depth, child=depth > 0)
    live, frontier, visited = 0, [root], {root.metadata.uid}
    while frontier and live <= MAX_DESCENDANTS:
        nxt: list[JobFlow] = []
        for member in frontier:
            if pending is not None and (made := pending(member.metadata.uid)):
                live += _FlowSteps(member).pending(made)
            for child in verified_children(member, children_of):
                if child.metadata.uid in visited:
                    continue
                visited.add(child.metadata.uid)
                live += _live(child)
                nxt.append(child)
        frontier = nxt
    return Lineage(depth=depth, child=depth > 0, room=max(0, MAX_DESCENDANTS - live))
