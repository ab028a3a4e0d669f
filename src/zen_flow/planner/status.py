"""The flow-level parts of the status: progress, the one-line message and the conditions (put together
with the phase in status_assembly.py).

Conditions come in a fixed order, all of them always present, so `kubectl wait --for=condition=Complete`
and `--for=condition=Failed` work; `lastTransitionTime` changes only when a condition's status flips
(`next_condition`, which the planner's other conditions use as well).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from zen_flow.api.constants import ConditionType, FlowPhase, StepPhase
from zen_flow.api.flow_status import Progress, StepStatus
from zen_flow.api.meta import Condition, format_time
from zen_flow.planner.approvals import tally
from zen_flow.planner.locks import lock_waiting
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo
from zen_flow.planner.parallelism import flow_waiting
from zen_flow.planner.parallelism import waiting as waiting_for_slot
from zen_flow.planner.progress import REASON_PROGRESSING, REASON_STALLED
from zen_flow.planner.steps import HELD_PREFIXES, NAME, PHASE

MAX_FLOW_MESSAGE = 256
MAX_CONDITION_MESSAGE = 1024
_LISTED = 5

REASON_STEP_FAILED = "StepFailed"
# Condition Complete's reason when the flow succeeded with steps that failed with allowFailure.
REASON_SUCCEEDED_WITH_FAILURES = "SucceededWithFailures"
REASON_FINALLY_FAILED = "FinallyStepFailed"  # the other steps succeeded; a finally step failed
REASON_DEADLINE = "DeadlineExceeded"
REASON_INVALID = "InvalidSpec"
# Condition Valid's reason when it is True.
REASON_SPEC_VALID = "SpecValid"
# A flow naming a JobFlowTemplate that does not exist (controller/templates.py): invalid as well.
REASON_TEMPLATE_NOT_FOUND = "TemplateNotFound"
# A flow whose template the controller may not read (403, RBAC), after its retries: invalid as well.
REASON_TEMPLATE_FORBIDDEN = "TemplateForbidden"
# The reasons a Failed flow's condition Valid is False with.
INVALID_REASONS = frozenset({REASON_INVALID, REASON_TEMPLATE_NOT_FOUND, REASON_TEMPLATE_FORBIDDEN})
REASON_REPLACED = "Replaced"
REASON_STOPPED = "Stopped"
REASON_QUEUED = "ConcurrencyForbid"
# Condition Queued's reason while a limit on running flows holds the flow back (planner.slots).
REASON_WAITING_FOR_SLOT = "WaitingForSlot"
REASON_JOB_REJECTED = "JobRejected"
REASON_STATUS_REJECTED = "StatusRejected"
# Running steps whose Job is held suspended, grouped beside the phases (`by_phase`).
_HELD_KEY = "Running/held"
# Ready steps held back by executionPolicy.parallelism or a matrix's maxParallel (Pending, or Retrying
# with their retry due).
_SLOT_KEY = "Ready/held"
# How a Retrying step's message begins (observation.attempt_failed); the flow's message says the attempt.
_ATTEMPT_FAILED = re.compile(r"attempt \d+ failed: ")
# What a finally step says while the status that ends the other steps is written (planner.finale).
COMMIT_WAIT = "waiting for the status that ends the other steps to be written"


def by_phase(steps: Sequence[StepStatus]) -> Mapping[str, tuple[str, ...]]:
    """Step names by phase. Every plan asks (progress, message, conditions); a plan that changed no step
    hands back the status's own tuple, so the answer is remembered by its identity."""

    def derive() -> dict[str, tuple[str, ...]]:
        grouped: dict[str, list[str]] = {}
        for name, phase in zip(map(NAME, steps), map(PHASE, steps), strict=True):
            grouped.setdefault(phase, []).append(name)
        if StepPhase.PENDING in grouped or StepPhase.RETRYING in grouped:
            grouped[_SLOT_KEY] = [
                s.name
                for s in steps
                if s.phase in (StepPhase.PENDING, StepPhase.RETRYING) and waiting_for_slot(s.message)
            ]
        if StepPhase.RUNNING in grouped:
            grouped[_HELD_KEY] = [
                s.name
                for s in steps
                if s.phase == StepPhase.RUNNING
                and s.message is not None
                and s.message.startswith(HELD_PREFIXES)
            ]
        return {phase: tuple(names) for phase, names in grouped.items()}

    return _phases.get(steps, derive) if isinstance(steps, tuple) else derive()


_phases: IdentityMemo[Mapping[str, tuple[str, ...]]] = IdentityMemo(MEMO_STEPS)


def progress(steps: Sequence[StepStatus]) -> Progress:
    phases = by_phase(steps)
    ok, failed = len(phases.get(StepPhase.SUCCEEDED, ())), len(phases.get(StepPhase.FAILED, ()))
    skipped = len(phases.get(StepPhase.SKIPPED, ()))
    return Progress(
        completed_steps=ok + failed + skipped,
        total_steps=len(steps),
        successful_steps=ok,
        failed_steps=failed,
        skipped_steps=skipped,
    )


def summary(value: Progress) -> str:
    return f"{value.completed_steps}/{value.total_steps}"


def listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown} (+{len(names) - _LISTED} more)"


def cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def phase_names(steps: Sequence[StepStatus], phase: StepPhase) -> list[str]:
    return list(by_phase(steps).get(phase, ()))


def _retrying(steps: Sequence[StepStatus], names: Sequence[str], limit: Callable[[str], int]) -> str:
    """When the Retrying steps try again (`nextRetryTime`, shown by no printer column otherwise): one
    step with its attempt and why the last one failed, several with their times."""
    by_name = {s.name: s for s in steps if s.name in names}

    def due(step: StepStatus) -> str:
        return f" at {format_time(step.next_retry_time)}" if step.next_retry_time is not None else ""

    if len(names) > 1:
        return f"retrying: {listing([n + due(by_name[n]) for n in names])}"
    step = by_name[names[0]]
    allowed = limit(step.name)
    # Retrying means attempt retry_count + 1 failed (counted from 1) with retries left, out of limit + 1.
    attempt = f" (attempt {step.retry_count + 2} of {allowed + 1})" if allowed > step.retry_count else ""
    why = _ATTEMPT_FAILED.sub("", step.message or "", count=1)
    return f"step {step.name} retrying{due(step)}{attempt}{': ' + why if why else ''}"


def _waiting(steps: Sequence[StepStatus], names: Sequence[str], tallied: Collection[str]) -> str:
    """The gates waiting for a decision, with the approvals counted so far on a tallied one. `tallied`:
    the gates whose waiting message the controller begins with their count (`approval.required` > 1):
    only from those is it read, never from a message a user wrote."""
    wanted = set(names) & set(tallied)
    counts = {s.name: found for s in steps if s.name in wanted and (found := tally(s.message))}
    if len(names) == 1 and names[0] in counts:
        return f"waiting for approval of {names[0]}: {counts[names[0]][1]}"
    labels = [f"{n} ({counts[n][0]})" if n in counts else n for n in names]
    return f"waiting for approval of {listing(labels)}"


def flow_message(
    phase: FlowPhase,
    steps: Sequence[StepStatus],
    failure: str | None,
    queued: str | None = None,
    limit: Callable[[str], int] = lambda _: 0,
    parallelism: int | None = None,
    tallied: Collection[str] = (),
) -> str:
    """One short human line saying what the flow is doing or why it ended; `limit(step)` is a step's
    retryPolicy limit, `parallelism` the flow's executionPolicy.parallelism, `tallied` the gates that
    count their approvals (`_waiting`)."""
    held = by_phase(steps).get(_HELD_KEY, ())
    running = [n for n in phase_names(steps, StepPhase.RUNNING) if n not in held]
    slotless = by_phase(steps).get(_SLOT_KEY, ())
    retrying = [n for n in phase_names(steps, StepPhase.RETRYING) if n not in slotless]
    waiting = phase_names(steps, StepPhase.PENDING_APPROVAL)
    parts: list[str] = []
    if phase == FlowPhase.SUCCEEDED:
        counts = progress(steps)
        if counts.failed_steps:  # only allowFailure's failures let a flow with a failed step succeed
            skipped = f", {counts.skipped_steps} skipped" if counts.skipped_steps else ""
            names = listing(phase_names(steps, StepPhase.FAILED))
            failed = f"{counts.failed_steps} failed with allowFailure: {names}"
            said = f"{_count(counts.successful_steps, 'step')} succeeded{skipped}, {failed}"
            return cut(said, MAX_FLOW_MESSAGE)
        if counts.skipped_steps:
            return f"{_count(counts.successful_steps, 'step')} succeeded, {counts.skipped_steps} skipped"
        return (
            "the step succeeded" if counts.total_steps == 1 else f"all {counts.total_steps} steps succeeded"
        )

    if phase == FlowPhase.FAILED:
        return cut(failure or "failed", MAX_FLOW_MESSAGE)
    if phase == FlowPhase.PENDING and queued:
        return cut(queued, MAX_FLOW_MESSAGE)
    if phase == FlowPhase.SUSPENDED:
        parts.append("suspended")
    # Nothing else going on: the finally steps may be about to start (one status write after the rest).
    idle = not (running or held or waiting or slotless or retrying)
    starting = [s.name for s in steps if s.message == COMMIT_WAIT] if idle else ()
    if failure:
        parts.append(failure if starting else f"{failure}; waiting for running steps to finish")
    if starting:
        parts.append(f"the finally steps start next: {listing(starting)}")
    if running:
        parts.append(f"running: {listing(running)}")
    if held:
        parts.append(f"held (Job suspended): {listing(held)}")
    if waiting:
        parts.append(_waiting(steps, waiting, tallied))
    if slotless:  # held by the flow's parallelism, or by a matrix's maxParallel (planner.parallelism)
        slots = frozenset(slotless)
        by_flow = {s.name for s in steps if s.name in slots and flow_waiting(s.message)}
        if by_flow and parallelism is not None:
            flows = [n for n in slotless if n in by_flow]
            parts.append(f"parallelism {parallelism} reached, waiting: {listing(flows)}")
        if by_matrix := [n for n in slotless if n not in by_flow]:
            parts.append(f"matrix maxParallel reached, waiting: {listing(by_matrix)}")
    if locked := [s for s in steps if s.phase == StepPhase.PENDING and lock_waiting(s.message)]:
        one = f"{locked[0].name} {locked[0].message}"  # which locks it waits for (planner.locks)
        parts.append(one if len(locked) == 1 else f"waiting for locks: {listing([s.name for s in locked])}")
    if retrying:  # last: why the attempt failed is the longest part, the one cut
        parts.append(_retrying(steps, retrying, limit))
    if not parts:
        parts.append("waiting to start")
    return cut("; ".join(parts), MAX_FLOW_MESSAGE)


@dataclass(frozen=True)
class _Want:
    type: ConditionType
    true: bool
    reason: str
    message: str = ""


def _wanted(
    phase: FlowPhase,
    message: str,
    failed_reason: str,
    waiting: Sequence[str],
    queued: str | None,
    stalled: str | None,
    queued_reason: str = REASON_QUEUED,
    tolerated: bool = False,
) -> list[_Want]:
    label = f"Flow{phase.value}"
    msg = cut(message, MAX_CONDITION_MESSAGE)
    healthy = phase in (FlowPhase.RUNNING, FlowPhase.SUCCEEDED)
    return [
        _Want(ConditionType.READY, healthy, label, msg if healthy else ""),
        _Want(
            ConditionType.RUNNING,
            phase == FlowPhase.RUNNING,
            label,
            msg if phase == FlowPhase.RUNNING else "",
        ),
        _Want(
            ConditionType.COMPLETE,
            phase == FlowPhase.SUCCEEDED,
            REASON_SUCCEEDED_WITH_FAILURES if tolerated and phase == FlowPhase.SUCCEEDED else label,
            msg if phase == FlowPhase.SUCCEEDED else "",
        ),
        _Want(
            ConditionType.FAILED,
            phase == FlowPhase.FAILED,
            failed_reason if phase == FlowPhase.FAILED else label,
            msg if phase == FlowPhase.FAILED else "",
        ),
        _Want(
            ConditionType.WAITING_FOR_APPROVAL,
            bool(waiting),
            "PendingApproval" if waiting else "NoPendingApproval",
            cut(f"waiting for approval of {listing(waiting)}", MAX_CONDITION_MESSAGE) if waiting else "",
        ),
        _Want(
            ConditionType.SUSPENDED,
            phase == FlowPhase.SUSPENDED,
            "SuspendedBySpec" if phase == FlowPhase.SUSPENDED else "NotSuspended",
        ),
        _Want(
            ConditionType.VALID,
            failed_reason not in INVALID_REASONS or phase != FlowPhase.FAILED,
            failed_reason
            if failed_reason in INVALID_REASONS and phase == FlowPhase.FAILED
            else REASON_SPEC_VALID,
            msg if failed_reason in INVALID_REASONS and phase == FlowPhase.FAILED else "",
        ),
        _Want(
            ConditionType.QUEUED,
            bool(queued),
            queued_reason if queued else "NotQueued",
            cut(queued, MAX_CONDITION_MESSAGE) if queued else "",
        ),
        _progressing(phase, label, stalled),
    ]


def _progressing(phase: FlowPhase, label: str, stalled: str | None) -> _Want:
    if phase != FlowPhase.RUNNING:
        return _Want(ConditionType.PROGRESSING, False, label)
    if stalled is not None:
        return _Want(ConditionType.PROGRESSING, False, REASON_STALLED, cut(stalled, MAX_CONDITION_MESSAGE))
    return _Want(ConditionType.PROGRESSING, True, REASON_PROGRESSING)


def conditions(
    old: Sequence[Condition],
    phase: FlowPhase,
    *,
    message: str,
    failed_reason: str,
    waiting: Sequence[str],
    generation: int | None,
    now: datetime,
    queued: str | None = None,
    stalled: str | None = None,
    queued_reason: str = REASON_QUEUED,
    tolerated: bool = False,
) -> tuple[Condition, ...]:
    """The full condition list; an unchanged condition is the old object itself. `tolerated`: a step
    failed with allowFailure (Complete's reason says so when the flow succeeded)."""
    previous = {c.type: c for c in old}
    wanted = _wanted(phase, message, failed_reason, waiting, queued, stalled, queued_reason, tolerated)
    return tuple(
        next_condition(w.type.value, w.true, w.reason, w.message, generation, now, previous.get(w.type))
        for w in wanted
    )


def next_condition(
    kind: str,
    true: bool | None,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
    before: Condition | None,
) -> Condition:
    """Condition `kind` as it is now, `before` being what it said (None: it was not there): `before`
    itself when it already says so. Its `lastTransitionTime` moves only when its status flips: a new
    reason, message or generation keeps it (every condition zen-flow writes, the flow's, a
    CronJobFlow's, Archived, JobCreateFailing, JobDeleteFailing). `true` None: Unknown (NewerSchema)."""
    status = "Unknown" if true is None else "True" if true else "False"
    since = before.last_transition_time if before is not None and before.status == status else None
    cond = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=since or now,
        observed_generation=generation,
    )
    return before if before is not None and before == cond else cond


def observed_at(cond: Condition, generation: int | None) -> Condition:
    """`cond` saying what it said (its lastTransitionTime too), observed at `generation`: for a condition
    a reconcile of an edited spec keeps as it is. `kubectl wait --for=condition=X` reads a condition's own
    observedGeneration before the status's and waits while it is below metadata.generation, so every
    condition kept moves with the status's (an ended flow's, a CronJobFlow's between run times)."""
    if generation is None or cond.observed_generation == generation:
        return cond
    return cond.model_copy(update={"observed_generation": generation})


def all_observed_at(conds: tuple[Condition, ...], generation: int | None) -> tuple[Condition, ...]:
    """Every condition of `conds` `observed_at` `generation`; `conds` itself when none moves."""
    moved = tuple(observed_at(c, generation) for c in conds)
    return conds if all(a is b for a, b in zip(moved, conds, strict=True)) else moved


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
