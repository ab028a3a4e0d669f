"""Concurrency groups (JOBFLOW_API.md decision 9): what `executionPolicy.concurrencyPolicy` decides.

Flows are in one group when they share a namespace and a non-empty value of the label
`workflow.kube-zen.io/concurrency-key`; a flow without it is in no group. Flows are ranked by
(creationTimestamp, name), and the policy of the newer flow decides how it treats the older active
(not finished) flows of its group:

- Allow: it runs alongside them.
- Forbid: it does not start while an older flow is active, nor while any other flow of the group
  is already running. The second rule keeps the group exclusive when the cache delivers flows out
  of rank order (equal timestamps, clock skew between apiservers); the first one makes the wait
  FIFO. A flow never waits for a newer flow that has not started, so the queue cannot deadlock.
- Replace: it starts at once; every older active flow, seeing a newer Replace flow that started,
  stops itself. Each flow only ever changes its own status and its own Jobs. A Replace flow waiting
  only for its own locks (planner/locks.py: nothing else holds it back) counts as started: an older flow
  of its group holding them would otherwise never be replaced (it is waited for), and flows made from
  one template share their locks. The older flows stop and free them, and it takes them then: a lock
  never has two holders, as a slot may for a moment (planner/slot_standing.replacing).

Pure: the controller summarises the group's other flows as `Peer`s from its informer cache.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from zen_flow.api.constants import LABEL_CONCURRENCY_KEY, ConcurrencyPolicy, FlowPhase
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.planner.locks import flow_queued
from zen_flow.planner.status import listing

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# DeleteJob reason (a metrics label, so it names no flow).
REPLACED_JOB_REASON = "replaced by a newer flow"
# How the failure message of a flow a newer Replace flow stops begins, and its steps' it ended.
REPLACED_MARK = "replaced by newer flow "


def concurrency_key(flow: JobFlow) -> str | None:
    return flow.metadata.labels.get(LABEL_CONCURRENCY_KEY) or None


def group_of(flow: JobFlow) -> str | None:
    """The group's identity, `namespace/key` (label values cannot contain `/`), or None."""
    key = concurrency_key(flow)
    return f"{flow.metadata.namespace}/{key}" if key is not None else None


def policy_of(flow: JobFlow) -> ConcurrencyPolicy:
    """The flow's policy; Forbid (the default) when unset or unknown (the validator reports those)."""
    policy = flow.spec.execution_policy
    value = policy.concurrency_policy if policy is not None else None
    try:
        return ConcurrencyPolicy(value) if value else ConcurrencyPolicy.FORBID
    except ValueError:
        return ConcurrencyPolicy.FORBID


def _started(flow: JobFlow) -> bool:
    status = flow.status
    return status.start_time is not None or status.phase in (FlowPhase.RUNNING, FlowPhase.PAUSED)


@dataclass(frozen=True)
class Peer:
    """What a flow needs to know about another flow of its group."""

    name: str
    created: datetime | None = None
    policy: ConcurrencyPolicy = ConcurrencyPolicy.FORBID
    started: bool = False
    finished: bool = False  # Succeeded, Failed, or being deleted
    # It waits for its own locks alone (condition Queued, reason WaitingForLock), not suspended.
    awaits_locks: bool = False

    @classmethod
    def of(cls, flow: JobFlow, *, started: bool = False) -> Peer:
        """`started=True` overrides the cache: the controller has just started the flow itself."""
        finished = flow.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED)
        return cls(
            name=flow.metadata.name,
            created=flow.metadata.creation_timestamp,
            policy=policy_of(flow),
            started=started or _started(flow),
            finished=finished or flow.metadata.deletion_timestamp is not None,
            awaits_locks=flow_queued(flow) and not flow.spec.suspend,
        )

    @property
    def replaces(self) -> bool:
        """Does it stop the older active flows of its group: a Replace flow that started, or that waits
        for its own locks alone (an older one may hold them: it frees them as it stops)?"""
        return self.policy == ConcurrencyPolicy.REPLACE and (self.started or self.awaits_locks)

    @property
    def rank(self) -> tuple[datetime, str]:
        return (self.created or _EPOCH, self.name)


@dataclass(frozen=True)
class Verdict:
    """The group's effect on one flow: at most one of `waiting` (the status message while it is
    held back) and `replaced` (the failure message: stop now); `replacing` names the older active
    flows a starting Replace flow stops."""

    key: str | None = None
    waiting: str | None = None
    replaced: str | None = None
    replacing: tuple[str, ...] = ()

    @property
    def holds(self) -> bool:
        return self.waiting is not None or self.replaced is not None

    def replacing_message(self) -> str:
        return f"replacing older flows of concurrency group {self.key}: {listing(self.replacing)}"


NO_GROUP = Verdict()


def judge(flow: JobFlow, peers: Sequence[Peer], *, started: bool) -> Verdict:
    """How the other flows of its group (`peers`) constrain `flow`; `started`: it already started."""
    key = concurrency_key(flow)
    if key is None:
        return NO_GROUP
    me = Peer.of(flow)
    others = [p for p in peers if p.name != me.name and not p.finished]
    older = sorted((p for p in others if p.rank < me.rank), key=lambda p: p.rank)
    replacers = [p for p in others if p.rank > me.rank and p.replaces]
    if replacers:
        newest = max(replacers, key=lambda p: p.rank)
        return Verdict(key, replaced=f"{REPLACED_MARK}{newest.name} (concurrency group {key})")
    if me.policy == ConcurrencyPolicy.REPLACE:
        return Verdict(key, replacing=tuple(p.name for p in older))
    if me.policy == ConcurrencyPolicy.FORBID and not started:
        # Name the flow directly ahead: its name only changes when that flow goes away, so a long
        # queue costs one status write per departure, not one per waiting flow.
        running = sorted((p for p in others if p.started), key=lambda p: p.rank)
        ahead = older[-1] if older else (running[0] if running else None)
        if ahead is not None:
            return Verdict(key, waiting=f"waiting for {ahead.name} (concurrency group {key})")
    return Verdict(key)


def peers_of(
    flow: JobFlow,
    members: Iterable[JobFlow],
    starting: Collection[str] = (),
    jobs_for: Callable[[str], Iterable[Job]] | None = None,
) -> tuple[Peer, ...]:
    """The group's other flows as peers; `starting`: UIDs of flows the controller just started whose
    status the cache does not show yet (read your own writes); `jobs_for`: a flow's cached Jobs.

    A peer whose status shows no start but that has a Job running started all the same: a controller
    that stopped between its Job creates and the status write recording them (a crash, a restart after
    a lost write) left it so, and what it remembered in `starting` went with it. A Forbid flow must
    not start beside it. Finished Jobs do not count: a failed flow waiting to rerun keeps its failed
    attempts' Jobs, and counting them would make two such flows wait for each other.
    """
    uid, name = flow.metadata.uid, flow.metadata.name

    def running(member: JobFlow) -> bool:
        if jobs_for is None or _started(member):
            return False
        return any(not job.finished and not job.deleting for job in jobs_for(member.metadata.uid))

    return tuple(
        Peer.of(m, started=m.metadata.uid in starting or running(m))
        for m in members
        if m.metadata.name != name and (not uid or m.metadata.uid != uid)
    )


def groups_to_wake(old: JobFlow | None, new: JobFlow | None) -> tuple[str, ...]:
    """The groups whose other flows must be reconciled after `old` became `new` (None: added or
    deleted). Only changes that can alter a peer's verdict count, so a waiting flow rewriting its
    own message does not wake its whole group."""
    before = group_of(old) if old is not None else None
    after = group_of(new) if new is not None else None
    if old is not None and new is not None and before is not None and before == after:
        return (before,) if Peer.of(old) != Peer.of(new) else ()
    out: list[str] = []
    if old is not None and before is not None and not Peer.of(old).finished:
        out.append(before)  # an active flow left: whoever queued behind it may go
    if new is not None and after is not None:
        joined = Peer.of(new)
        if joined.started and not joined.finished:
            out.append(after)  # a running flow arrived: Forbid flows wait, older flows may be replaced
    return tuple(out)


def keys_to_wake(
    old: JobFlow | None, new: JobFlow | None, members: Callable[[str], Iterable[JobFlow]]
) -> list[str]:
    """`namespace/name` of the unfinished flows to reconcile because `old` became `new`."""
    changed = new if new is not None else old
    own = changed.metadata.key if changed is not None else ""
    keys: list[str] = []
    for group in groups_to_wake(old, new):
        keys.extend(
            m.metadata.key for m in members(group) if m.metadata.key != own and not Peer.of(m).finished
        )
    return keys
