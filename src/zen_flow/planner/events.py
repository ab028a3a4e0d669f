"""Events derived from the old → new status transition only, so planning the same state twice emits
nothing (level-based reconcile must not spam the event stream)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from zen_flow.api.constants import ConditionType, FlowPhase, StepPhase
from zen_flow.api.flow_status import JobFlowStatus, StepStatus
from zen_flow.api.jobflow import Step
from zen_flow.api.meta import format_time
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.backoff import retry_limit
from zen_flow.planner.locks import lock_waiting
from zen_flow.planner.pending_pods import PENDING_TIMEOUT_MARK
from zen_flow.planner.pod_waits import benign, wait_key, wait_part
from zen_flow.planner.progress import REASON_STALLED, stalled
from zen_flow.planner.status import REASON_DEADLINE, REASON_REPLACED, REASON_STOPPED, cut

NORMAL = "Normal"
WARNING = "Warning"
# Normal events that only restate a step's phase change, which status.steps records with its times: a
# controller sends them only with --step-events=all (they were half of its requests; docs/BENCHMARKS.md).
ROUTINE_STEP_EVENTS = frozenset({"StepStarted", "StepSucceeded"})
TIMEOUT_MARK = "timed out after"
TIMED_OUT = "StepTimedOut"  # the event reason, whoever noticed the timeout (we, or the Job's own deadline)
REJECT_MARK = "rejected"
# How a Manual step's message starts when its timeoutSeconds passed with no decision: nobody decided, so
# a rerun may ask again (planner.interventions), unlike a rejection.
NO_DECISION_MARK = f"{REJECT_MARK}: no decision within"
STOPPED_EVENT = "FlowStopped"
# After StepFailed (or StepRejected) of a step whose failure allowFailure tolerates (planner.tolerance:
# its own, not a stop's or the deadline's).
FAILURE_ALLOWED = "StepFailureAllowed"
FAILURE_ALLOWED_SAID = "its failure is allowed (allowFailure): it does not fail the flow"
# How the message of a step served from its memoize cache starts (planner.memoization).
MEMOIZED_MARK = "memoized"
MEMOIZED = "StepMemoized"
LOCK_WAIT_EVENT = "StepWaitingForLock"
QUEUED_EVENT = "FlowQueued"
# A Running step's pod waits for a cause to fix (a pull error, no node fits: planner/pod_waits.py), once
# per cause and attempt; and the attempt it ended after podPendingTimeoutSeconds.
POD_STUCK_EVENT = "StepPodStuck"
POD_PENDING_TIMEOUT_EVENT = PENDING_TIMEOUT_MARK


def _job(status: StepStatus) -> str:
    return status.job_ref.name if status.job_ref is not None else ""


def _newly_stuck(old: StepStatus | None, new: StepStatus) -> bool:
    """Does the Running step's message now name a cause its pod waits for that it did not name before
    (in this attempt)? A pod on its way (pulling its image: `benign`) is no news."""
    key = wait_key(new.message) if new.phase == StepPhase.RUNNING else None
    if key is None or benign(key):
        return False
    return (
        old is None
        or old.phase != new.phase
        or old.retry_count != new.retry_count
        or wait_key(old.message) != key
    )


def _step_events(
    old: StepStatus | None, new: StepStatus, spec: Step | None, *, allowed: bool = False
) -> list[EventSpec]:
    """`allowed`: `new` is a failure its allowFailure tolerates (planner.tolerance)."""
    before = old.phase if old is not None else StepPhase.PENDING
    before_retries = old.retry_count if old is not None else 0
    before_job = _job(old) if old is not None else ""
    name = new.name
    message = new.message or ""
    out: list[EventSpec] = []

    def step_event(type_: str, reason: str, text: str) -> EventSpec:
        return EventSpec(type_, reason, text, step=name)

    if new.phase == StepPhase.PENDING and lock_waiting(message) and not (old and lock_waiting(old.message)):
        out.append(step_event(NORMAL, LOCK_WAIT_EVENT, f"step {name}: {message}"))  # once per wait
    if _newly_stuck(old, new):
        out.append(step_event(WARNING, POD_STUCK_EVENT, f"step {name}: {wait_part(message)}"))
    if new.phase == before and new.retry_count == before_retries and _job(new) == before_job:
        return out
    limit = retry_limit(spec) if spec is not None else 0
    # Every retry shows Retrying first: its delay counts from the plan that sees the failure.
    if new.phase == StepPhase.RETRYING:
        if TIMEOUT_MARK in message:
            out.append(step_event(WARNING, TIMED_OUT, f"step {name}: {message}"))
        if PENDING_TIMEOUT_MARK in message:
            out.append(step_event(WARNING, POD_PENDING_TIMEOUT_EVENT, f"step {name}: {message}"))
        when = f" at {format_time(new.next_retry_time)}" if new.next_retry_time is not None else ""
        out.append(
            step_event(
                NORMAL, "StepRetrying", f"step {name}: {message}; retry {new.retry_count + 1}/{limit}{when}"
            )
        )
    if new.phase == StepPhase.RUNNING:
        attempt = f" (attempt {new.retry_count + 1})" if new.retry_count else ""
        out.append(step_event(NORMAL, "StepStarted", f"step {name}: created Job {_job(new)}{attempt}"))
    elif new.phase == StepPhase.SUCCEEDED:
        if spec is not None and spec.is_manual:
            out.append(step_event(NORMAL, "StepApproved", f"step {name}: {message or 'approved'}"))
        elif spec is not None and spec.memoize is not None and message.startswith(MEMOIZED_MARK):
            out.append(step_event(NORMAL, MEMOIZED, f"step {name}: {message}"))
        else:
            out.append(step_event(NORMAL, "StepSucceeded", f"step {name} succeeded"))
    elif new.phase == StepPhase.FAILED:
        if spec is not None and spec.is_manual and message.startswith(REJECT_MARK):
            out.append(step_event(WARNING, "StepRejected", f"step {name}: {message}"))
        else:
            if TIMEOUT_MARK in message and before != StepPhase.RETRYING:
                out.append(step_event(WARNING, TIMED_OUT, f"step {name}: {message}"))
            if PENDING_TIMEOUT_MARK in message and before != StepPhase.RETRYING:
                out.append(step_event(WARNING, POD_PENDING_TIMEOUT_EVENT, f"step {name}: {message}"))
            out.append(step_event(WARNING, "StepFailed", f"step {name} failed: {message}"))
        if allowed:
            out.append(step_event(NORMAL, FAILURE_ALLOWED, f"step {name}: {FAILURE_ALLOWED_SAID}"))
    elif new.phase == StepPhase.SKIPPED:
        out.append(step_event(NORMAL, "StepSkipped", f"step {name} skipped: {message}"))
    elif new.phase == StepPhase.PENDING_APPROVAL:
        out.append(step_event(NORMAL, "StepPendingApproval", f"step {name}: {message}"))
    return out


def _failed_reason(status: JobFlowStatus) -> str:
    cond = next((c for c in status.conditions if c.type == ConditionType.FAILED), None)
    return cond.reason if cond is not None else ""


def _queued(status: JobFlowStatus) -> bool:
    return any(c.type == ConditionType.QUEUED and c.status == "True" for c in status.conditions)


# A recorded user's name in an event is cut to this: the webhook writes whatever the apiserver's
# authenticator said, and an event's message is read on one line.
_USER_SAID = 253


def _by(user: str | None, verb: str) -> str:
    """`VERB by USER` ("suspended by bob") when the webhook recorded a user, else nothing."""
    name = cut(user or "", _USER_SAID)
    return f"{verb} by {name}" if name else ""


def _flow_events(
    old: JobFlowStatus, new: JobFlowStatus, suspended: bool, by: tuple[str | None, str | None]
) -> list[EventSpec]:
    out: list[EventSpec] = []
    message = new.message or ""
    if old.start_time is None and new.start_time is not None:
        out.append(EventSpec(NORMAL, "FlowStarted", "flow started"))
    now_stalled, was_stalled = stalled(new), stalled(old)
    if now_stalled is not None and was_stalled is None:
        out.append(EventSpec(WARNING, REASON_STALLED, now_stalled))
    elif was_stalled is not None and now_stalled is None and new.phase == FlowPhase.RUNNING:
        out.append(EventSpec(NORMAL, "FlowProgressing", "a step changed phase again: " + message))
    if _queued(new) and not _queued(old):  # once per wait, not once per flow that went ahead
        out.append(EventSpec(NORMAL, QUEUED_EVENT, message))
    if new.phase == old.phase:
        return out
    if old.phase == FlowPhase.SUSPENDED and new.phase != FlowPhase.SUSPENDED and not suspended:
        # Only a resume (spec.suspend false again): a flow that ends while suspended (its last Job, a
        # stop, a timeout) says how it ended, not that it resumed.
        resumer = _by(by[1], "resumed")
        out.append(EventSpec(NORMAL, "FlowResumed", f"flow {resumer}" if resumer else "flow resumed"))
    if new.phase == FlowPhase.SUSPENDED:
        suspender = _by(by[0], "suspended")
        said = message or "flow suspended"
        out.append(EventSpec(NORMAL, "FlowSuspended", f"{said} ({suspender})" if suspender else said))
    elif new.phase == FlowPhase.PAUSED:
        out.append(EventSpec(NORMAL, "FlowPaused", message))
    elif new.phase == FlowPhase.SUCCEEDED:
        out.append(EventSpec(NORMAL, "FlowSucceeded", message))
    elif new.phase == FlowPhase.FAILED:
        if _failed_reason(new) == REASON_DEADLINE:
            out.append(EventSpec(WARNING, "FlowDeadlineExceeded", message))
        elif _failed_reason(new) == REASON_REPLACED:
            out.append(EventSpec(WARNING, "FlowReplaced", message))
        elif _failed_reason(new) == REASON_STOPPED:
            out.append(EventSpec(WARNING, STOPPED_EVENT, message))
        out.append(EventSpec(WARNING, "FlowFailed", message))
    return out


def naming_blockers(events: tuple[EventSpec, ...], blockers: Mapping[str, str]) -> tuple[EventSpec, ...]:
    """The StepWaitingForLock events, naming who keeps each step from its locks (`blockers`, by step):
    the event is sent once per wait, so it may name the holder the stable status message does not."""
    return tuple(
        replace(e, message=f"{e.message} ({blocker})")
        if e.reason == LOCK_WAIT_EVENT and (blocker := blockers.get(e.step)) is not None
        else e
        for e in events
    )


def derive_events(
    old: JobFlowStatus,
    new: JobFlowStatus,
    specs: Mapping[str, Step],
    tolerated: Collection[str] = (),
    *,
    suspended: bool = False,
    by: tuple[str | None, str | None] = (None, None),
) -> tuple[EventSpec, ...]:
    """Step events in status order, then flow events; `tolerated`: the steps whose failure in `new`
    allowFailure tolerates (planner.tolerance, which the caller asks: it reads the stop's marks);
    `suspended`: the flow's spec.suspend (a flow leaving Suspended with it set did not resume); `by`:
    who last suspended it and who last resumed it, as the webhook recorded them (named in the events)."""
    if old is new:
        return ()
    previous = {s.name: s for s in old.steps}
    out: list[EventSpec] = []
    for step in new.steps:
        before = previous.get(step.name)
        if before is step:
            continue
        allowed = step.name in tolerated
        out.extend(_step_events(before, step, specs.get(step.name), allowed=allowed))
    out.extend(_flow_events(old, new, suspended, by))
    return tuple(out)
