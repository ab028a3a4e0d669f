"""Step synchronization: named mutexes and semaphores a step takes when it would start (Argo's mutexes and
semaphores), shared by the flows of one namespace that one controller instance handles.

A step declares its locks in `synchronization` (a mutex is a semaphore of limit 1). It takes them all at
once, when it would start, or none (no step holds one lock while it waits for another, so no two steps
wait for each other), and holds them until it ends: Succeeded, Failed, Skipped, stopped, or its flow ended
or deleted. A step in retry backoff (Retrying) keeps them: its next attempt comes back to the work the lock
guards (a half-done migration), and no other step may slip in between its attempts; so does it while its
flow is suspended (its retry waits for the resume). A Flow step takes none (validation refuses it: it
would hold its locks while its child flow's steps wait for others, a deadlock): its child's steps do.

Who holds a lock is what the informer cache shows: the steps of the namespace's unfinished flows that are
Running or Retrying and declare it, plus the starts this controller made that the cache does not show yet
(planner/lock_book.py). Who waits for one is a Pending step whose message says so (`lock_waiting`). A step
takes its locks when, for each, the holders and the steps waiting ahead of it number fewer than its limit,
and fewer than the smallest limit a step waiting ahead of it declared for that name. Ahead means a higher
`spec.executionPolicy.priority` of its flow, then an older flow (creationTimestamp), then the flow's name,
then (one flow's steps) spec order: one order over every lock of the namespace, so the first waiter waits
for holders only, and holders end by themselves: every waiter gets its locks in turn, none starves (a
waiter of a smaller limit keeps the wider ones behind it waiting until it starts: they would otherwise
fill the places it waits for).

The waiting step's message names only its locks (`waiting for lock db`), so it does not change while the
step waits: no status write per change of holder. The `StepWaitingForLock` event names the first step
in its way.

A flow may take locks of its own (`spec.synchronization`, Argo's workflow-level synchronization): the
same names, limits and line as its namespace's step locks, taken all at once before its first step
starts (`flow_wait`) and held until the flow ends, its finally steps included. It stands in the book as a
step named `FLOW`; its status says it holds them (`status.heldLocks`), so a restart finds it. While it
waits it stays Pending, as a flow waiting for a running-flow slot does: condition Queued (reason
`WaitingForLock`), message `waiting for lock db`, one `FlowWaitingForLock` event naming who is in its
way. No holder ever waits for another lock (validation): a flow with a Flow step takes none (it would
hold them while its children wait for theirs), and the steps of a flow that takes its own take none (one
would wait while its flow holds its own: two flows taking two locks in opposite orders would wait for
each other for ever).

Pure: the controller hands the plan a `LockView` (what the other flows hold and wait for), and the plan
decides its own steps with `Claims`, in spec order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from zen_flow.api.constants import ConditionType, StepPhase
from zen_flow.api.jobflow import JobFlow, Step, Synchronization

LOCK_WAIT = "waiting for lock"  # a waiting step's message: "waiting for lock db", "waiting for locks db, gpu"
FLOW = ""  # the flow's own locks (spec.synchronization) in the book, beside its steps' (no step is named so)
# Condition Queued's reason while the flow waits for its own locks, and the event saying so once.
REASON_WAITING_FOR_LOCK = "WaitingForLock"
FLOW_LOCK_EVENT = "FlowWaitingForLock"
# Running steps, and those in retry backoff, hold their locks.
HOLDING_PHASES = frozenset({StepPhase.RUNNING, StepPhase.RETRYING})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Order = tuple[int, datetime, str]  # (-priority, creationTimestamp, flow name): a flow's place in line


@dataclass(frozen=True)
class Need:
    """One lock a step takes: its name and the limit the step heeds (1 for a mutex)."""

    name: str
    limit: int


def _needs(sync: Synchronization | None) -> tuple[Need, ...]:
    if sync is None:
        return ()
    return (
        *(Need(m.name, 1) for m in sync.mutexes),
        *(Need(s.name, max(1, s.limit)) for s in sync.semaphores),
    )


def needs_of(step: Step) -> tuple[Need, ...]:
    """The locks `step` declares, mutexes first; none on a Flow or Manual step (admission refuses them
    there: a flow stored past it runs its Flow step's child unlocked rather than deadlocked)."""
    if step.is_flow or step.is_manual:
        return ()
    return _needs(step.synchronization)


def flow_needs(flow: JobFlow) -> tuple[Need, ...]:
    """The locks the flow itself takes (`spec.synchronization`), mutexes first."""
    return _needs(flow.spec.synchronization)


def holds_own(flow: JobFlow) -> bool:
    """Does the flow's status say it holds its own locks (taken before its first step, kept to its end)?"""
    return bool(flow.status.held_locks)


def flow_queued(flow: JobFlow) -> bool:
    """Does the flow's status say it waits for its own locks (condition Queued, reason WaitingForLock)?"""
    return any(
        c.type == ConditionType.QUEUED and c.status == "True" and c.reason == REASON_WAITING_FOR_LOCK
        for c in flow.status.conditions
    )


def lock_waiting(message: str | None) -> bool:
    """Does a Pending step's message say it waits for a lock?"""
    return message is not None and message.startswith((f"{LOCK_WAIT} ", f"{LOCK_WAIT}s "))


def order_of(flow: JobFlow) -> Order:
    policy = flow.spec.execution_policy
    priority = policy.priority if policy is not None and policy.priority is not None else 0
    meta = flow.metadata
    return (-priority, meta.creation_timestamp or _EPOCH, meta.name)


def who(flow: str, step: str) -> str:
    """A step (or the flow itself: `FLOW`) as a message names it (`kubectl get jobflow/NAME` finds it)."""
    return f"jobflow/{flow}" if step == FLOW else f"jobflow/{flow} step {step}"


@dataclass(frozen=True)
class LockUse:
    """What the namespace's other flows do with one lock, as one flow's plan sees it: `held` steps hold
    it (or are being started with it), `ahead` wait for it ahead of the flow, the smallest limit they
    declared being `tightest` (None: none waits ahead); `holder` and `waiter` name the first of each for
    the StepWaitingForLock event (None: none)."""

    held: int = 0
    ahead: int = 0
    tightest: int | None = None
    holder: str | None = None
    waiter: str | None = None


@dataclass(frozen=True)
class LockView:
    """The other flows' use of the locks one flow's steps declare, by name (a name missing: unused)."""

    uses: Mapping[str, LockUse] = field(default_factory=dict)


NO_LOCKS = LockView()


def waiting_message(spec: Step) -> str:
    """Why a step waits: its locks, never who holds them, so that the message stays as it is while the
    step waits (a status write per change of holder would cost every waiter one per hand-over)."""
    return _waiting_for([n.name for n in needs_of(spec)])


def _waiting_for(names: list[str]) -> str:
    return f"{LOCK_WAIT} {names[0]}" if len(names) == 1 else f"{LOCK_WAIT}s {', '.join(names)}"


def in_the_way(name: str, held: int, holder: str | None, waiter: str | None) -> str:
    """Who keeps a step from lock `name`, for its StepWaitingForLock event."""
    if holder is not None:
        more = f" and {held - 1} more" if held > 1 else ""
        return f"{name} held by {holder}{more}"
    if waiter is not None:
        return f"{name} free, but {waiter} waits for it ahead"
    return f"{name} taken"


@dataclass(frozen=True)
class Wait:
    """A step that cannot take its locks now: its status message (stable) and who is in its way (the
    event's)."""

    message: str
    blocker: str


def flow_wait(flow: str, needs: Iterable[Need], view: LockView) -> Wait | None:
    """None when the flow `flow` may take its own locks (`needs`) now; else why it waits. Asked before any
    step of its run starts: the other flows' holders and waiters ahead (`view`) are all that count."""
    needs = tuple(needs)
    for need in needs:
        use = view.uses.get(need.name, LockUse())
        limit = min(need.limit, use.tightest) if use.tightest is not None else need.limit
        if use.held + use.ahead >= limit:
            return Wait(
                _waiting_for([n.name for n in needs]), in_the_way(need.name, use.held, use.holder, use.waiter)
            )
    return None


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
        self._tightest: dict[str, int] = {}
        self._waiter: dict[str, str] = {}
        for spec, phase in steps:
            if phase in HOLDING_PHASES:
                self._take(spec)

    def _take(self, spec: Step) -> None:
        for need in needs_of(spec):
            self._held[need.name] = self._held.get(need.name, 0) + 1
            self._holder.setdefault(need.name, who(self._flow, spec.name))

    def wait_for(self, spec: Step) -> Wait | None:
        """None when `spec` may take all its locks now (they are taken: `started` says whether it did
        start); else why it waits, and it counts as waiting ahead of the flow's later steps."""
        for need in needs_of(spec):
            use = self._view.uses.get(need.name, LockUse())
            held = use.held + self._held.get(need.name, 0)
            ahead = use.ahead + self._ahead.get(need.name, 0)
            limits = (need.limit, use.tightest, self._tightest.get(need.name))
            if held + ahead >= min(n for n in limits if n is not None):
                break
        else:
            return None
        blocker = in_the_way(
            need.name,
            held,
            self._holder.get(need.name) or use.holder,
            self._waiter.get(need.name) or use.waiter,
        )
        for n in needs_of(spec):
            self._ahead[n.name] = self._ahead.get(n.name, 0) + 1
            self._tightest[n.name] = min(n.limit, self._tightest.get(n.name, n.limit))
            self._waiter.setdefault(n.name, who(self._flow, spec.name))
        return Wait(waiting_message(spec), blocker)

    def started(self, spec: Step) -> None:
        """`spec`, allowed by `wait_for`, started: it holds its locks for the flow's later steps."""
        self._take(spec)
