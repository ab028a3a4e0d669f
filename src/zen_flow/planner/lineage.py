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
from zen_flow.planner.backoff import retry_limit
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


def is_verified_child(flow: JobFlow, parent: JobFlow | None) -> bool:
    """Is `flow` a child `parent` made (see the module's docstring)? False for a top-level flow."""
    ref = parent_of(flow)
    if ref is None or parent is None:
        return False
    pm, cm = parent.metadata, flow.metadata
    if pm.uid != ref.uid or pm.name != ref.name or pm.namespace != cm.namespace or not pm.uid:
        return False
    attempt = cm.labels.get(LABEL_ATTEMPT, "")
    if not attempt.isdigit() or len(attempt) > 6:
        return False
    n, step = int(attempt), cm.labels.get(LABEL_PARENT_STEP)
    recorded = {s.name: s.retry_count for s in parent.status.steps}
    for s in parent.spec.steps:
        if not s.is_flow or label_value(s.name) != step:
            continue
        if n <= max(retry_limit(s), recorded.get(s.name, 0)) + 1 and cm.name == job_name(pm.name, s.name, n):
            return True
    return False


def _child_names(parent: JobFlow) -> set[str]:
    """The names `parent`'s children may have (`is_verified_child`'s attempts)."""
    recorded = {s.name: s.retry_count for s in parent.status.steps}
    return {
        job_name(parent.metadata.name, s.name, n)
        for s in parent.spec.steps
        if s.is_flow
        for n in range(max(retry_limit(s), recorded.get(s.name, 0)) + 2)
    }


def verified_parent(flow: JobFlow, flow_by_key: FlowByKey) -> JobFlow | None:
    """The cached flow `flow` is a verified child of; None when it is none's."""
    ref = parent_of(flow)
    if ref is None:
        return None
    parent = flow_by_key(f"{flow.metadata.namespace}/{ref.name}")
    return parent if is_verified_child(flow, parent) else None


def verified_children(parent: JobFlow, children_of: ChildrenOf) -> list[JobFlow]:
    """The cached flows that are verified children of `parent`."""
    return [c for c in children_of(parent.metadata.uid) if is_verified_child(c, parent)]


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
                live += len(_child_names(member).intersection(made))
            for child in verified_children(member, children_of):
                if child.metadata.uid in visited:
                    continue
                visited.add(child.metadata.uid)
                live += _live(child)
                nxt.append(child)
        frontier = nxt
    return Lineage(depth=depth, child=depth > 0, room=max(0, MAX_DESCENDANTS - live))
