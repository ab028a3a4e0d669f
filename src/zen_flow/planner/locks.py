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

Pure: the controller hands the plan a `LockView` (what the other flows hold and wait for), and the plan
decides its own steps with `Claims`, in spec order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from zen_flow.api.constants import StepPhase
from zen_flow.api.jobflow import JobFlow, Step

LOCK_WAIT = "waiting for lock"  # a waiting step's message: "waiting for lock db", "waiting for locks db, gpu"
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
    """The locks `step` declares, mutexes first; none on a Flow or Manual step (admission refuses them
    there: a flow stored past it runs its Flow step's child unlocked rather than deadlocked)."""
    sync = step.synchronization
    if sync is None or step.is_flow or step.is_manual:
        return ()
    return (
        *(Need(m.name, 1) for m in sync.mutexes),
        *(Need(s.name, max(1, s.limit)) for s in sync.semaphores),
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
    """A step as a message names it (`kubectl get jobflow/NAME` finds its flow)."""
    return f"jobflow/{flow} step {step}"


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
    names = [n.name for n in needs_of(spec)]
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
