"""Where a flow stands for the limits on running flows (planner/slots.py): holding a slot, contending for
one, out of line, or a child running under its parent's; its place in its namespace's line (priority,
then creationTimestamp and name); and what a waiting flow says. Pure functions of one flow (and its
cached Jobs), which `SlotBook` keeps in its lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from zen_flow.api.constants import ANNOTATION_RETRY, ConcurrencyPolicy, ConditionType, FlowPhase
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.bystanders import out_of_line
from zen_flow.planner.concurrency import Peer, judge, policy_of
from zen_flow.planner.interventions import request, rerun, stop_request
from zen_flow.planner.locks import flow_queued
from zen_flow.planner.slot_lines import (
    Place,
)
from zen_flow.planner.status import REASON_QUEUED

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
GLOBAL_FLAG = "--max-running-flows"
NAMESPACE_FLAG = "--namespace-max-running-flows"

JobsFor = Callable[[str], Iterable[Job]]  # a flow's cached Jobs, by its UID
IsChild = Callable[[JobFlow], bool]  # is the flow a verified child flow (planner.lineage)?


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
    # A verified child flow (planner.lineage), unfinished: it never waits (its parent, which may hold the
    # last slot, waits for it), and it counts as a holder in its namespace's line only: a tenant's fan-out
    # makes its own namespace's flows wait, never another namespace's, nor the controller-wide count.
    CHILD = "child"


HOLDERS = (Standing.HOLDING, Standing.CHILD)


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


def ended(flow: JobFlow) -> bool:
    """Finished (and no rerun of it asked, or the one asked refused) or being deleted: it holds no slot
    and takes no place. `out_of_line` first: `zen-flow get` drops the flows it names unread."""
    meta = flow.metadata
    if out_of_line(
        flow.status.phase, meta.deletion_timestamp is not None, meta.annotations.get(ANNOTATION_RETRY)
    ):
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


def standing(flow: JobFlow, jobs_for: JobsFor | None = None, child: IsChild | None = None) -> Standing:
    """`jobs_for`: the flow's cached Jobs by its UID (none: its status alone decides); `child`: whether
    a flow is a verified child (none: no flow is)."""
    if ended(flow):
        return Standing.OUT
    if child is not None and child(flow):
        return Standing.CHILD
    planned, rerunning = as_planned(flow)
    # A rerun's reset status says phase Running with no start time: it has not started this run.
    if (not rerunning and started(flow)) or _running_jobs(flow, jobs_for):
        return Standing.HOLDING
    if planned.spec.suspend or _group_held(planned) or flow_queued(planned):
        # A flow waiting for its own locks (planner.locks) takes no place in line: the lock's holders end
        # by themselves, and its freed place wakes it, to ask for a slot again.
        return Standing.OUT
    return Standing.CONTENDING


def needs_slot(flow: JobFlow, peers: Sequence[Peer], child: bool = False) -> bool:
    """Would `flow` start now but for the limits: it has not started nor finished (or it is to rerun),
    and no suspend, stop request or concurrency group (`peers`) holds it back? Only such a flow asks
    `SlotBook.claim`, so one that could not start anyway reserves no slot while its plan runs. A
    verified child (`child`) never waits: it runs under its parent's slot."""
    if ended(flow) or child:
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


def priority_of(flow: JobFlow) -> int:
    """`spec.executionPolicy.priority`; 0 when unset."""
    policy = flow.spec.execution_policy
    return policy.priority if policy is not None and policy.priority is not None else 0


def place_of(flow: JobFlow) -> Place:
    meta = flow.metadata
    return (-priority_of(flow), meta.creation_timestamp or _EPOCH, meta.name, meta.namespace)


def waiting_message(limit: int, namespace: str | None, priority: int = 0) -> str:
    """What a flow waiting for a slot says; it names the limit (and a priority that is not 0), not a
    count or a position, so that it does not change while the flow waits: one status write per wait, not
    one per flow that went ahead (a freed slot wakes only the flows that may take it, so the others'
    positions could not be kept true without waking every waiting flow)."""
    ranked = f"; its priority {priority} ranks it in its namespace's line" if priority else ""
    if namespace is not None:
        return (
            f"waiting for a slot: at most {limit} flows run at once in namespace {namespace} "
            f"({NAMESPACE_FLAG} {limit}){ranked}"
        )
    return (
        f"waiting for a slot: at most {limit} flows run at once in this controller "
        f"({GLOBAL_FLAG} {limit}){ranked}"
    )
