"""Step synchronization: named mutexes and semaphores a step takes when it would start (Argo's mutexes and
semaphores), shared by the flows of one namespace that one controller instance handles.

A step declares its locks in `synchronization` (a mutex is a semaphore of limit 1). It takes them all at
once, when it would start, or none (no step holds one lock while it waits for another, so no two steps
wait for each other), and holds them until it ends: Succeeded, Failed, Skipped, stopped, or its flow ended
or deleted. A step in retry backoff (Retrying) keeps them: its next attempt comes back to the work the lock
guards (a half-done migration), and no other step may slip in between its attempts.

Who holds a lock is what the informer cache shows: the steps of the namespace's unfinished flows that are
Running or Retrying and declare it, plus the starts this controller made that the cache does not show yet
(planner/lock_book.py). Who waits for one is a Pending step whose message says so (`LOCK_WAIT`). A step
takes its locks when, for each, the holders and the steps waiting ahead of it number fewer than its limit.
Ahead means a higher `spec.executionPolicy.priority` of its flow, then an older flow (creationTimestamp),
then the flow's name, then (one flow's steps) spec order: one order over every lock of the namespace, so
the first waiter waits for holders only, and holders end by themselves: every waiter gets its locks in
turn, none starves. Steps that declare one name with different limits each heed their own: a step of
limit 3 starts while fewer than 3 steps hold or wait ahead, whatever limit those declared.

Pure: the controller hands the plan a `LockView` (what the other flows hold and wait for), and the plan
decides its own steps with `Claims`, in spec order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from zen_flow.api.constants import StepPhase
from zen_flow.api.jobflow import JobFlow, Step

LOCK_WAIT = "waiting for lock "
# Running steps, and those in retry backoff, hold their locks.
HOLDING_PHASES = frozenset({StepPhase.RUNNING, StepPhase.RETRYING})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Order = tuple[int, datetime, str]  # (-priority, creationTimestamp, flow name): a flow's place in line


@dataclass(frozen=True)
class Need:
    """One lock a step takes: its name and the limit the step heeds (1 for a mutex)."""

    name: str
    limit: int


def needs_of(step: Step) -> tuple[Need, ...]:
    """The locks `step` declares, mutexes first."""
    sync = step.synchronization
    if sync is None:
        return ()
    return (
        *(Need(m.name, 1) for m in sync.mutexes),
        *(Need(s.name, max(1, s.limit)) for s in sync.semaphores),
    )


def lock_names(step: Step) -> frozenset[str]:
    return frozenset(n.name for n in needs_of(step))


def lock_waiting(message: str | None) -> bool:
    """Does a Pending step's message say it waits for a lock?"""
    return message is not None and message.startswith(LOCK_WAIT)


def order_of(flow: JobFlow) -> Order:
    policy = flow.spec.execution_policy
    priority = policy.priority if policy is not None and policy.priority is not None else 0
    meta = flow.metadata
    return (-priority, meta.creation_timestamp or _EPOCH, meta.name)


def who(flow: str, step: str) -> str:
    """A step as a message names it (`kubectl get jobflow/NAME` finds its flow)."""
    return f"jobflow/{flow} step {step}"


@dataclass(frozen=True)
class LockUse:
    """What the namespace's other flows do with one lock, as one flow's plan sees it: `held` steps hold
    it (or are being started with it), `ahead` wait for it ahead of the flow; `holder` and `waiter` name
    the first of each for the waiting message (None: none)."""

    held: int = 0
    ahead: int = 0
    holder: str | None = None
    waiter: str | None = None


@dataclass(frozen=True)
class LockView:
    """The other flows' use of the locks one flow's steps declare, by name (a name missing: unused)."""

    uses: Mapping[str, LockUse] = field(default_factory=dict)


NO_LOCKS = LockView()


def waiting_message(need: Need, use: LockUse, own_holder: str | None, own_ahead: str | None) -> str:
    """Why a step waits for `need`; it names the lock and the first step in its way (a holder, else the
    first waiter ahead), never a count that moves while it waits: a status write per change of holder,
    not per step that went ahead."""
    holder = own_holder or use.holder
    if holder is not None:
        return f"{LOCK_WAIT}{need.name} (held by {holder})"
    waiter = own_ahead or use.waiter
    if waiter is not None:
        return f"{LOCK_WAIT}{need.name} (behind {waiter}, waiting ahead of it)"
    return f"{LOCK_WAIT}{need.name} (limit {need.limit})"


class Claims:
    """One plan's decisions on its flow's steps that declare locks, made in spec order: the flow's own
    holders (Running or Retrying steps) and the steps this plan started or found waiting before count as
    the other flows' do (`view`)."""

    def __init__(self, flow: str, view: LockView, steps: Iterable[tuple[Step, StepPhase]]) -> None:
        self._flow = flow
        self._view = view
        self._held: dict[str, int] = {}
        self._holder: dict[str, str] = {}
        self._ahead: dict[str, int] = {}
        self._waiter: dict[str, str] = {}
        for spec, phase in steps:
            if phase in HOLDING_PHASES:
                self._take(spec)

    def _take(self, spec: Step) -> None:
        for need in needs_of(spec):
            self._held[need.name] = self._held.get(need.name, 0) + 1
            self._holder.setdefault(need.name, who(self._flow, spec.name))

    def wait_for(self, spec: Step) -> str | None:
        """None when `spec` may take all its locks now (they are taken: `started` says whether it did
        start); else why it waits, and it counts as waiting ahead of the flow's later steps."""
        for need in needs_of(spec):
            use = self._view.uses.get(need.name, LockUse())
            held = use.held + self._held.get(need.name, 0)
            ahead = use.ahead + self._ahead.get(need.name, 0)
            if held + ahead >= need.limit:
                break
        else:
            return None
        why = waiting_message(need, use, self._holder.get(need.name), self._waiter.get(need.name))
        for n in needs_of(spec):
            self._ahead[n.name] = self._ahead.get(n.name, 0) + 1
            self._waiter.setdefault(n.name, who(self._flow, spec.name))
        return why

    def started(self, spec: Step) -> None:
        """`spec`, allowed by `wait_for`, started: it holds its locks for the flow's later steps."""
        self._take(spec)
