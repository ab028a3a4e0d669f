"""The step state machine: a mutable working copy of one step's status and its transitions.

    Pending ──start──▶ Running ──Job Complete──▶ Succeeded
       │                  │ Job Failed / timed out / Job gone
       │                  ├── retries left ──▶ Retrying ──due──▶ Running (attempt n+1, new Job)
       │                  └── none left ─────▶ Failed
       ├── dependency Failed (no continueOnFailure) or Skipped (dependencyPolicy: readiness.py),
       │   `when` false, flow ended ──▶ Skipped
       ├── memoize, a fresh cache entry for its key ──▶ Succeeded, no Job (memoization.py)
       └── Manual ──▶ PendingApproval ──approve──▶ Succeeded / ──reject──▶ Failed (no retry)
                            └── flow ended undecided ──▶ Skipped

Terminal phases (Succeeded, Failed, Skipped) never change; timestamps are set once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import compress, filterfalse
from operator import attrgetter
from typing import Any

from zen_flow.api.constants import StepPhase
from zen_flow.api.flow_status import ObjectRef, StepOutputValues, StepStatus
from zen_flow.api.jobflow import Step
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo

MAX_MESSAGE = 256
_PHASES = {phase.value: phase for phase in StepPhase}


def bound(text: str, limit: int = MAX_MESSAGE) -> str:
    """Status stays small (decision 14): messages are cut, never unbounded."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# A Running step whose Job is suspended (held by a queue such as Kueue until it admits or after it preempts
# the Job, or by a user) says so first in its message, and stops saying it once the Job is resumed; what the
# message said before (an earlier attempt's error) stays after it.
HELD = "Job suspended, waiting to be resumed (e.g. admitted by Kueue)"
# A Flow step's child flow suspended (by its parent's suspend, or by hand): no Kueue involved.
HELD_CHILD = "child flow suspended (its spec.suspend), waiting to be resumed"
HELD_PREFIXES = (HELD, HELD_CHILD)
# How the message of a step the flow's end left unrun begins (`StepWork.drop`): one that had not started,
# a gate that waited for a decision; interventions.py reads them back.
NOT_STARTED = "not started: "
NO_DECISION = "no decision: "


def ended_early(mark: str) -> tuple[str, ...]:
    """How the message of a step something ended early (a stop, the finally grace) begins when that
    cause's own message begins with `mark`: a running or retrying step (Failed), one that had not
    started, a gate that waited for a decision (Skipped: `StepWork.drop`)."""
    return mark, NOT_STARTED + mark, NO_DECISION + mark


def ended_in_run(step: StepStatus, run_start: datetime | None, prefixes: tuple[str, ...]) -> bool:
    """Did `step` end early (Failed or Skipped, its message beginning with one of `prefixes`: see
    `ended_early`) in the current run: no earlier than `run_start`, the status's startTime, which a rerun
    resets (None: whenever)? A step a partial rerun kept keeps what an earlier run wrote; it does not
    count. (An earlier end in the very second the rerun started its first step cannot be told apart:
    the times are whole seconds.)"""
    message = step.message
    return (
        message is not None
        and step.phase in (StepPhase.FAILED, StepPhase.SKIPPED)
        and message.startswith(prefixes)
        and (run_start is None or (step.completion_time is not None and step.completion_time >= run_start))
    )


def cause_of(message: str) -> str:
    """What ended a step early, read back from its message (`ended_in_run`): without the `not started: `
    or `no decision: ` before it, nor what a retrying step said after it (`; ...`)."""
    for prefix in (NOT_STARTED, NO_DECISION):
        message = message.removeprefix(prefix)
    return message.partition("; ")[0]


def held(message: str | None, child: bool = False) -> str:
    mark = HELD_CHILD if child else HELD
    if message is not None and message.startswith(mark):
        return message
    message = unheld(message)
    return bound(f"{mark}; {message}") if message else mark


def unheld(message: str | None) -> str | None:
    mark = next((m for m in HELD_PREFIXES if message is not None and message.startswith(m)), None)
    if message is None or mark is None:
        return message
    return message[len(mark) :].removeprefix(";").strip() or None


@dataclass(slots=True)
class StepWork:
    """A step's status while one plan is being made; turned back into a frozen StepStatus at the end."""

    spec: Step
    old: StepStatus | None
    phase: StepPhase
    start_time: datetime | None
    completion_time: datetime | None
    job_ref: ObjectRef | None
    retry_count: int
    message: str | None
    next_retry_time: datetime | None
    approved_by: str | None
    outputs: StepOutputValues | None
    attempt_start_time: datetime | None
    # The nodes its failed attempts ran on, with retryPolicy's nodeAntiAffinity (planner/node_avoidance).
    failed_nodes: tuple[str, ...] | None = None

    @classmethod
    def load(cls, spec: Step, old: StepStatus | None) -> StepWork:
        if old is None:
            return cls(spec, None, StepPhase.PENDING, None, None, None, 0, None, None, None, None, None)
        phase = _PHASES.get(old.phase, StepPhase.PENDING)
        return cls(
            spec,
            old,
            phase,
            old.start_time,
            old.completion_time,
            old.job_ref,
            max(0, old.retry_count),
            old.message,
            old.next_retry_time,
            old.approved_by,
            old.outputs,
            old.attempt_start_time,
            old.failed_nodes,
        )

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def terminal(self) -> bool:
        return self.phase.terminal

    def status(self) -> StepStatus:
        """The frozen status; the old object itself when nothing changed (cheap, and equal by identity)."""
        old = self.old
        # Tuples compare their items identity first: an untouched step (most of a long flow) holds the
        # old status's own objects, so this costs no model comparisons (`BaseModel.__eq__` does not
        # short-cut identity: it was 4 % of the controller's samples in a 500-step chain).
        if old is not None and (
            old.phase,
            old.start_time,
            old.completion_time,
            old.job_ref,
            old.retry_count,
            old.message,
            old.next_retry_time,
            old.approved_by,
            old.outputs,
            old.attempt_start_time,
            old.failed_nodes,
        ) == (
            self.phase,
            self.start_time,
            self.completion_time,
            self.job_ref,
            self.retry_count,
            self.message,
            self.next_retry_time,
            self.approved_by,
            self.outputs,
            self.attempt_start_time,
            self.failed_nodes,
        ):
            return old
        return StepStatus(
            name=self.name,
            phase=self.phase.value,
            start_time=self.start_time,
            completion_time=self.completion_time,
            job_ref=self.job_ref,
            outputs=self.outputs,
            retry_count=self.retry_count,
            message=self.message,
            next_retry_time=self.next_retry_time,
            approved_by=self.approved_by,
            attempt_start_time=self.attempt_start_time,
            failed_nodes=self.failed_nodes,
        )

    # --- transitions ---------------------------------------------------------------------------------

    def start(self, job_ref: ObjectRef, now: datetime, *, attempt: int, message: str | None = None) -> None:
        self.phase = StepPhase.RUNNING
        self.job_ref = job_ref
        self.retry_count = attempt
        self.next_retry_time = None
        self.message = message
        self.attempt_start_time = now
        if self.start_time is None:
            self.start_time = now

    def finish(self, phase: StepPhase, now: datetime, message: str | None) -> None:
        self.phase = phase
        self.next_retry_time = None
        self.attempt_start_time = None
        self.message = bound(message) if message is not None else None
        if self.completion_time is None:
            self.completion_time = now

    def succeed(self, now: datetime, message: str | None = None) -> None:
        self.finish(StepPhase.SUCCEEDED, now, message)

    def fail(self, now: datetime, message: str) -> None:
        self.finish(StepPhase.FAILED, now, message)

    def skip(self, now: datetime, message: str) -> None:
        self.finish(StepPhase.SKIPPED, now, message)

    def drop(self, now: datetime, reason: str) -> None:
        """The flow ends (`reason`) before this step ran, or before a decision on this reached Manual step:
        Skipped (so a rerun plans it again), saying which; a waiting gate keeps its startTime."""
        undecided = self.phase == StepPhase.PENDING_APPROVAL
        self.skip(now, f"{NO_DECISION if undecided else NOT_STARTED}{reason}")

    def retry_at(self, when: datetime, message: str) -> None:
        self.phase = StepPhase.RETRYING
        self.next_retry_time = when
        self.attempt_start_time = None
        self.message = bound(message)

    def await_approval(self, now: datetime, message: str) -> None:
        self.phase = StepPhase.PENDING_APPROVAL
        self.message = bound(message)
        if self.start_time is None:
            self.start_time = now


SETTLED = frozenset({StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.SKIPPED})
# The per-plan passes over every step of a long flow run in C (map, filter, zip): a Python loop over a
# 500-step status was a third of a quiet plan.
NAME = attrgetter("name")
PHASE = attrgetter("phase")
JOB_NAME = attrgetter("metadata.name")


@dataclass(frozen=True, slots=True)
class _Split:
    """A status's entries by name, and its unsettled steps split into dormant and moving (spec order)."""

    old: Mapping[str, StepStatus]
    dormant: frozenset[str]
    moving: tuple[str, ...]
    aligned: bool  # one entry per spec step, in spec order: a plan that changes none returns the tuple

    @staticmethod
    def of(specs: Mapping[str, Step], old_steps: Sequence[StepStatus]) -> _Split:
        names = list(map(NAME, old_steps))
        old = dict(zip(names, old_steps, strict=True))
        phases = list(map(PHASE, old.values()))
        pending = set(compress(old, map(StepPhase.PENDING.__eq__, phases)))
        settled = set(compress(old, map(SETTLED.__contains__, phases)))
        started = old.keys() - pending
        dormant: set[str] = set()
        moving: list[str] = []
        for name in filterfalse(settled.__contains__, specs):
            deps = specs[name].dependencies
            if deps and name not in started and started.isdisjoint(deps):
                dormant.add(name)
            else:
                moving.append(name)
        return _Split(old, frozenset(dormant), tuple(moving), names == list(specs))


_splits: IdentityMemo[_Split] = IdentityMemo(MEMO_STEPS)


class Works(Mapping[str, StepWork]):
    """Every step's working copy, in spec order, made on first use.

    A long flow is mostly steps no plan can move: settled ones (Succeeded, Failed, Skipped: they never
    change again) and dormant ones (Pending, and so is every dependency: nothing for them to wait on has
    even started). A plan's passes walk only the others (`moving`), so its cost follows what is
    happening, not how long the flow is. A dormant step wakes (joins `moving`) when one of its
    dependencies settles during the plan, or when the flow ends and every unsettled step must; the
    others are read (dependencies, `when`, inputs) through this mapping, loaded on first use.
    """

    __slots__ = ("_aligned", "_loaded", "_old", "_old_steps", "_specs", "dormant", "moving")

    def __init__(self, specs: Mapping[str, Step], old_steps: tuple[StepStatus, ...]) -> None:
        """`old_steps`: the status's step entries (those of steps no longer in `specs` are ignored)."""
        self._specs = specs
        self._old_steps = old_steps
        # Which steps are dormant depends only on the spec and the status: between two status writes, a
        # flow is planned again and again on the same two objects.
        split = _splits.get(old_steps, lambda: _Split.of(specs, old_steps), context=specs)
        self._old = old = split.old
        self._aligned = split.aligned
        self.dormant: set[str] = set(split.dormant)
        self._loaded: dict[str, StepWork] = {
            name: StepWork.load(specs[name], old.get(name)) for name in split.moving
        }
        self.moving: dict[str, StepWork] = dict(self._loaded)

    def __getitem__(self, name: str) -> StepWork:
        work = self._loaded.get(name)
        if work is None:
            work = self._loaded[name] = StepWork.load(self._specs[name], self._old.get(name))
        return work

    def get(self, name: str, default: None = None) -> StepWork | None:  # type: ignore[override]
        return self[name] if name in self._specs else None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def wake(self, names: Iterable[str]) -> None:
        """Dormant steps among `names` join `moving` (a dependency of theirs just settled)."""
        for name in names:
            if name in self.dormant:
                self.dormant.discard(name)
                self.moving[name] = self[name]

    def wake_in_order(self, names: Iterable[str]) -> None:
        """`wake`, keeping `moving` in spec order, as a plan that visits every step walks them: the
        order steps are observed in decides which failure the flow reports and which retry the budget
        goes to (used before the passes, for Jobs a lost write left unrecorded: rare)."""
        self.wake(names)
        merged = {n: self.moving[n] for n in self._specs if n in self.moving}
        self.moving.clear()
        self.moving.update(merged)

    def wake_all(self) -> None:
        """Every unsettled step joins `moving`, in spec order (the flow is ending)."""
        if self.dormant:
            merged = {n: self[n] for n in self._specs if n in self.moving or n in self.dormant}
            self.dormant.clear()
            self.moving.clear()
            self.moving.update(merged)

    @property
    def initial(self) -> Mapping[str, StepStatus]:
        """The status entries the plan began with, by step name."""
        return self._old

    def statuses(self) -> tuple[StepStatus, ...]:
        """Every step's frozen status in spec order; an untouched step's is its old object, and when no
        step changed, the old tuple itself (the status is then unchanged by identity, checked cheaply)."""
        loaded, old = self._loaded, self._old
        if self._aligned and all(work.status() is old.get(name) for name, work in loaded.items()):
            return self._old_steps
        out = []
        for name in self._specs:
            work = loaded.get(name)
            status = old.get(name) if work is None else work.status()
            out.append(status if status is not None else self[name].status())
        return tuple(out)

    def settled(self) -> Iterator[StepStatus]:
        """The statuses of the steps that were settled when the plan began, in spec order."""
        old = self._old
        return (s for s in map(old.get, self._specs) if s is not None and s.phase in SETTLED)


class StepViews(Mapping[str, Mapping[str, Any]]):
    """What `when` sees of each step, built on access: an expression names a few steps of many."""

    def __init__(self, works: Mapping[str, StepWork]) -> None:
        self._works = works

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        work = self._works[key]
        params = work.outputs.parameters if work.outputs is not None else ()
        return {"phase": work.phase.value, "outputs": {"parameters": {p.name: p.value for p in params}}}

    def __iter__(self) -> Iterator[str]:
        return iter(self._works)

    def __len__(self) -> int:
        return len(self._works)
