"""What a user asks of a flow through annotations, beyond approvals: stop it now, or rerun it from its
failed steps (`zen-flow stop`, `zen-flow retry`, or kubectl annotate).

**Stop**: `workflow.kube-zen.io/stop` (any non-empty value) fails a flow that has not ended: running
Jobs are deleted, nothing else starts, the Failed condition's reason is Stopped and the message names
who asked (`workflow.kube-zen.io/stopped-by`, written by the mutating webhook). An ended flow ignores it.
The value `RunFinally` (any case: `runfinally` typed by hand must not lose the cleanup it asks for) is a
graceful stop: the steps that are not finally are stopped the same way, then the finally steps run
(planner.finale); in a flow with no finally step, or one that has not started a step, it is the same
as any other value. What a stop wrote into a step's message in this run (`planner.steps.ended_in_run`)
is how later plans know that it took effect: the status is the only memory a plan has.

**Rerun**: the annotation `workflow.kube-zen.io/retry: <id>` (any new value is a new request),
optionally limited by `workflow.kube-zen.io/retry-steps: a,b` to some of the failed steps; the mutating
webhook records who set it in `workflow.kube-zen.io/retried-by`. Each id is honoured once and recorded
in `status.audit.retries` (id, user, time, the steps it reran):

- on a Failed flow: its failed Job steps in scope go back to Pending with their next attempt (a new Job
  name, so the old attempts' Jobs stay for their logs, but under jobRetention LastAttempt or
  FailedOnly: see planner.retention), and so do its Manual steps in scope that timed
  out (nobody decided: reached again, they wait for a decision with a fresh timeout; one with
  continueOnFailure or allowFailure only when named, as its dependents went on without it); every Skipped step
  goes back to Pending (it never ran), Succeeded steps and their outputs stay, a rejected Manual step
  stays rejected (its annotation decides it); every finally step that ran (Succeeded or Failed, in scope
  or not) goes back to Pending with its next attempt, as cleanup must run again after the rerun and see
  its outcome; the flow is Running again, its deadline counts from its
  first step's start, and in a concurrency group it waits for the others like a flow that has not
  started, keeping its rank (its creationTimestamp);
- on a flow that failed creating its resourceTemplates objects (reason ResourceConflict: a name taken
  by someone else's object, a template the apiserver refused) before any step failed, a request for the
  whole flow reruns it all the same: the objects not in `status.resourceRefs` are created again (the
  user freed the name, or fixed the template: `spec.resourceTemplates` stays editable) before the steps
  that never ran; a request limited to some
  steps is ignored, saying to rerun the whole flow;
- on a flow a stop, its deadline or a newer Replace flow ended with nothing failed (paused at a gate:
  the gate Skipped "no decision: ...", the steps after it "not started: ..."), the same: those steps go
  back to Pending (`unrun_steps`); a request naming steps must name one of them;
- otherwise (the flow is not Failed, the stop request is still set, nothing in scope can rerun, a
  failed step left out would fail the flow again at once, or a timed-out gate in scope carries a
  decision given after its timeout, which would decide the rerun at once): recorded with no steps, a
  RetryIgnored event says why, and nothing else happens, so a request can never fire later by surprise.

A decision annotation carries no time, so one given after the gate timed out cannot be told from one
given after the rerun: the rerun is refused until it is removed, rather than decided by it unasked. A
gate the flow's end left undecided is different: the end was not its outcome, so its annotations are
decisions on the gate as a pre-approval is, and count when the rerun reaches it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from datetime import datetime

from pydantic_core import to_json

from zen_flow.api.constants import (
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    AUDIT_RETRIES_BYTES,
    STOP_RUN_FINALLY,
    ConditionType,
    FlowPhase,
    StepPhase,
)
from zen_flow.api.flow_status import Audit, Retry, StepStatus
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.decision_values import deciding
from zen_flow.planner.actions import EventSpec
from zen_flow.planner.events import NO_DECISION_MARK, NORMAL, REJECT_MARK, WARNING
from zen_flow.planner.resources import REASON_RESOURCE_CONFLICT
from zen_flow.planner.status import REASON_DEADLINE, REASON_REPLACED, REASON_STOPPED, listing
from zen_flow.planner.steps import (
    HELD_PREFIXES,
    MAX_MESSAGE,
    NO_DECISION,
    NOT_STARTED,
    bound,
    ended_early,
    ended_in_run,
    unheld,
)

STOP_MARK = "stopped by "
# How the message of a step a stop ended begins (`ended_early`).
STOPPED_MESSAGES = ended_early(STOP_MARK)
# How the message of a Running Flow step whose child a graceful stop stopped ends, after the stop's own
# words (`stopping_child`): the stop is recorded in the stored status, so that every later plan (a
# restart, the request removed, the finally grace's point come) ends the step, and the flow, for it.
CHILD_STOPPING = " (its child flow is stopping: it runs its finally steps first)"
# The Failed reasons of a flow ended from outside its steps, and how the message of a step it left unrun
# begins (StepWork.drop): such a step never had its turn, and a rerun gives it (`unrun_steps`).
_ENDED_FROM_OUTSIDE = frozenset({REASON_STOPPED, REASON_DEADLINE, REASON_REPLACED})
_UNRUN_MESSAGES = (NOT_STARTED, NO_DECISION)


def stop_request(flow: JobFlow) -> str | None:
    """Why the flow must fail now (`workflow.kube-zen.io/stop`, any non-empty value), or None. The
    user's whitespace is collapsed as in a step message (`bound`): a blank stopped-by, written "stopped
    by" into the steps, would not be recognised as the stop's (`stopped_by_request`) by later plans."""
    annotations = flow.metadata.annotations
    if not (annotations.get(ANNOTATION_STOP) or "").strip():
        return None
    user = " ".join((annotations.get(ANNOTATION_STOPPED_BY) or "").split())
    return f"{STOP_MARK}{user or 'an unrecorded user'}"


def stopping_child(stop: str) -> str:
    """The message of a Running Flow step whose child `stop` (a graceful stop: `stop_request`) stopped.
    Who stopped it is cut so that the record fits a step's message whole, after a suspension's words
    (`held`): cut short, it would no longer be read back (`stop_held`), and the stop would be lost."""
    room = MAX_MESSAGE - max(map(len, HELD_PREFIXES)) - len("; ") - len(CHILD_STOPPING)
    return f"{bound(stop, room)}{CHILD_STOPPING}"


def child_gone(stop: str, name: str) -> str:
    """The message of a Flow step whose child `name` went (deleted outside zen-flow) while it stopped
    for the graceful stop `stop` its message recorded (`stopping_child`): the stop first, the cause
    (`steps.cause_of` reads it back), then what became of the child."""
    return f"{stop}; child flow {name} was deleted before it finished stopping"


def stop_held(message: str | None) -> str | None:
    """The stop a Running Flow step's message records (`stopping_child`), whatever a suspension said
    before it (`unheld`); None: no stop holds it."""
    said = unheld(message) or ""
    if said.startswith(STOP_MARK) and said.endswith(CHILD_STOPPING):
        return said.removesuffix(CHILD_STOPPING)
    return None


def runs_finally(flow: JobFlow) -> bool:
    """Does the stop request ask for the finally steps to run first (`RunFinally`, any case)?"""
    value = (flow.metadata.annotations.get(ANNOTATION_STOP) or "").strip()
    return value.casefold() == STOP_RUN_FINALLY.casefold()


def stopped_by_request(step: StepStatus) -> bool:
    """Did a stop end this step, in any run? No other message begins so: Job failures say `Job failed`
    or `attempt N failed`, skips say which dependency or condition."""
    return ended_in_run(step, None, STOPPED_MESSAGES)


# status.audit.retries[].id holds at most this many characters (the CRD's maxLength).
MAX_RETRY_ID = 253


def request_id(value: str) -> str:
    """The id a request is recorded under: the annotation's value, or for one longer than the status
    holds, its start and a digest of the whole (the apiserver would refuse the status write recording
    it, and the request would be tried again at every reconcile)."""
    rid = value.strip()
    if len(rid) <= MAX_RETRY_ID:
        return rid
    digest = hashlib.sha256(rid.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{rid[: MAX_RETRY_ID - len(digest) - 1]}~{digest}"


def rerun_scope(flow: JobFlow, wanted: Sequence[str]) -> tuple[str, ...]:
    """`wanted` with each matrix step it names replaced by that step's failed items (all its items when
    none failed: the unrun ones of a stopped flow): `--step build` reruns every failed item of `build`,
    which has no status entry of its own (core/matrix.py)."""
    groups = flow.spec.matrix_groups
    if not groups or not any(name in groups for name in wanted):
        return tuple(wanted)
    failed = {s.name for s in flow.status.steps if s.phase == StepPhase.FAILED}
    out: list[str] = []
    for name in wanted:
        items = groups.get(name)
        out.extend(([i for i in items if i in failed] or items) if items else (name,))
    return tuple(dict.fromkeys(out))


def request(flow: JobFlow) -> Retry | None:
    """The request the flow carries and has not honoured yet (steps: the ones it asks for, or all)."""
    annotations = flow.metadata.annotations
    rid = request_id(annotations.get(ANNOTATION_RETRY) or "")
    audit = flow.status.audit
    if not rid or (audit is not None and any(r.id == rid for r in audit.retries)):
        return None
    steps = tuple(s.strip() for s in (annotations.get(ANNOTATION_RETRY_STEPS) or "").split(",") if s.strip())
    steps = rerun_scope(flow, steps)
    return Retry(id=rid, user=annotations.get(ANNOTATION_RETRIED_BY) or None, steps=steps)


def recorded(flow: JobFlow, retry: Retry, now: datetime) -> Audit:
    """The audit with `retry` recorded: the newest request, and before it as many earlier ones as fit in
    AUDIT_RETRIES_BYTES of JSON (the admission size bound counts that much; requests are not bounded in
    number). An id dropped so would be honoured again if set again: only the annotation's current value
    is ever asked about, and it is the newest."""
    base = flow.status.audit or Audit()
    kept = [retry.model_copy(update={"time": now})]
    size = 0
    for earlier in reversed(base.retries):
        size += len(to_json(earlier.model_dump(by_alias=True, mode="json", exclude_none=True))) + 1  # ","
        if size > AUDIT_RETRIES_BYTES:
            break
        kept.append(earlier)
    return base.model_copy(update={"retries": tuple(reversed(kept))})


def timed_out(step: StepStatus) -> bool:
    """A Manual step that failed because nobody decided before its timeoutSeconds (not a rejection)."""
    return step.phase == StepPhase.FAILED and (step.message or "").startswith(NO_DECISION_MARK)


def rerunnable_steps(flow: JobFlow, wanted: Collection[str] = ()) -> list[str]:
    """The failed steps a rerun of `wanted` (empty: every failed step) would run again: Job steps, and
    Manual steps that timed out; a rejected Manual step is decided by its annotation and never reruns.
    A gate that timed out with `continueOnFailure` (or `allowFailure`, which implies it) reruns only when
    named: its dependents went on without it, and asked again unasked it would hold them for its whole
    timeout."""
    specs = {s.name: s for s in flow.spec.steps}

    def reruns(step: StepStatus) -> bool:
        spec = specs[step.name]
        if not spec.is_manual:
            return True
        return timed_out(step) and (not spec.goes_on_after_failure or step.name in wanted)

    return [
        s.name
        for s in flow.status.steps
        if s.phase == StepPhase.FAILED and s.name in specs and (not wanted or s.name in wanted) and reruns(s)
    ]


def _failed_reason(flow: JobFlow) -> str | None:
    failed = next((c for c in flow.status.conditions if c.type == ConditionType.FAILED), None)
    return failed.reason if failed is not None and failed.status == "True" else None


def resources_failed(flow: JobFlow) -> bool:
    """Did the flow fail creating its resourceTemplates objects (condition Failed, reason
    ResourceConflict)? A rerun then creates those not made yet (the engine's `missing`) before its steps."""
    return _failed_reason(flow) == REASON_RESOURCE_CONFLICT


def unrun_steps(flow: JobFlow, wanted: Collection[str] = ()) -> list[str]:
    """The steps in scope of `wanted` (empty: all) that a stop, the flow deadline or a newer Replace flow
    left Skipped before they ran (`not started: ...`), or while they waited for a decision (a gate: `no
    decision: ...`). A flow paused at a gate when it was stopped has no failed step, yet its rerun has
    work: those steps go back to Pending like any Skipped one. A gate reached again keeps its approve
    and reject annotations, as a gate not reached yet does (pre-approval): nobody decided it, and the
    end was not its outcome (unlike a timeout, `late_decisions`)."""
    if _failed_reason(flow) not in _ENDED_FROM_OUTSIDE:
        return []
    specs = {s.name for s in flow.spec.steps}
    return [
        s.name
        for s in flow.status.steps
        if s.phase == StepPhase.SKIPPED
        and s.name in specs
        and (s.message or "").startswith(_UNRUN_MESSAGES)
        and (not wanted or s.name in wanted)
    ]


def late_decisions(flow: JobFlow, wanted: Collection[str] = ()) -> list[str]:
    """The approve./reject. annotations that decide a timed-out Manual step a rerun of `wanted` would
    reset: given after it timed out, they would decide the rerun's wait at once."""
    specs = {s.name: s for s in flow.spec.steps}
    annotations = flow.metadata.annotations
    keys: list[str] = []
    for name in rerunnable_steps(flow, wanted):
        if specs[name].is_manual:
            keys += deciding(annotations, name, tallied=specs[name].approval is not None)
    return keys


def rerun_refusal(flow: JobFlow, wanted: Collection[str] = ()) -> str | None:
    """Why a rerun of `wanted` (empty: every failed step) would be ignored, the stop request aside (the
    CLI's request removes it), or None. `zen-flow retry` asks this before sending the request."""
    specs = {s.name: s for s in flow.spec.steps}
    failed = [s.name for s in flow.status.steps if s.phase == StepPhase.FAILED and s.name in specs]
    rerunnable = rerunnable_steps(flow, wanted)
    # Nothing failed that could rerun (a flow stopped while paused at a gate): the steps its end left
    # unrun are the rerun's work.
    unrun = [] if rerunnable else unrun_steps(flow, wanted)
    # A failed step left as it is fails the flow again at once, unless it may fail (continueOnFailure).
    # A finally step runs again whatever the scope (`rerun`): it blocks nothing.
    blocking = [
        n
        for n in failed
        if n not in rerunnable and not specs[n].goes_on_after_failure and not specs[n].is_finally
    ]
    if flow.status.phase != FlowPhase.FAILED:
        return f"the flow is {flow.status.phase or 'Pending'}, not Failed"
    if not rerunnable and not unrun and resources_failed(flow) and not blocking:
        if not wanted:
            return None  # its resources are created again, then the steps that never ran
        return (
            f"no failed Job step to rerun among {listing(sorted(wanted))}; the flow failed creating its "
            "resources: rerun it without naming steps to create them again"
        )
    if not rerunnable and not unrun:
        steps = {s.name: s for s in flow.status.steps}
        rejected = [
            n
            for n in failed
            if specs[n].is_manual
            and (steps[n].message or "").startswith(REJECT_MARK)
            and (not wanted or n in wanted)
        ]
        if rejected:
            return f"step {listing(rejected)} was rejected: a decision stays (resubmit the flow to ask again)"
        return "no failed Job step or timed-out gate to rerun" + (
            f" among {listing(sorted(wanted))}" if wanted else ""
        )
    if late := late_decisions(flow, wanted):
        return (
            f"a decision given after its gate timed out would decide the rerun at once: {listing(late)}; "
            f"remove it first (kubectl annotate jf {flow.metadata.name} -n {flow.metadata.namespace} "
            f"{' '.join(k + '-' for k in late)})"
        )
    if blocking:
        return f"step {listing(blocking)} failed too and would fail the flow again at once: rerun it as well"
    return None


def rerun(flow: JobFlow, retry: Retry, now: datetime) -> tuple[JobFlow, EventSpec]:
    """The flow to plan (reset for a rerun, or with the request only recorded) and the event saying
    which: FlowRetried, or RetryIgnored with the reason."""
    status = flow.status
    rerunnable = rerunnable_steps(flow, retry.steps)
    why = None
    if stop_request(flow) is not None:
        why = f"the stop request is still set (remove {ANNOTATION_STOP})"
    else:
        why = rerun_refusal(flow, retry.steps)
    if why is not None:
        void = retry.model_copy(update={"steps": ()})
        ignored = EventSpec(WARNING, "RetryIgnored", f"retry {retry.id} ignored: {why}")
        kept = status.model_copy(update={"audit": recorded(flow, void, now)})
        return flow.model_copy(update={"status": kept}), ignored
    who = retry.user or "an unrecorded user"
    specs = {s.name: s for s in flow.spec.steps}
    # The finally steps that ran run again at the rerun's end: cleanup must see its outcome.
    ran = {StepPhase.SUCCEEDED, StepPhase.FAILED}
    again = [s.name for s in status.steps if s.name in specs and specs[s.name].is_finally and s.phase in ran]
    # With no failed step but finally ones, the ones the flow's end left unrun are said too: the rerun is
    # for them (they go back to Pending as any Skipped step, never counted as an attempt).
    main = [n for n in rerunnable if not specs[n].is_finally]
    unrun = [] if main else unrun_steps(flow, retry.steps)
    rerunnable = [*rerunnable, *(n for n in again if n not in rerunnable)]
    steps = tuple(_reset(s, s.name in rerunnable, who) for s in status.steps)
    said = [*unrun, *rerunnable]
    update: dict[str, object] = {
        "phase": FlowPhase.RUNNING.value,
        "steps": steps,
        # Set again when the rerun's first step starts: the deadline is per run, and until then the rerun
        # has not started for its concurrency group either (a Forbid flow waits while another one runs).
        "start_time": None,
        "completion_time": None,
        "estimated_completion_time": None,
        "audit": recorded(flow, retry.model_copy(update={"steps": tuple(said)}), now),
    }
    what = [listing(said)] if said else []
    if resources_failed(flow):
        what.append("creating its resources again")
    event = EventSpec(NORMAL, "FlowRetried", f"rerun requested by {who}: {'; '.join(what)}")
    return flow.model_copy(update={"status": status.model_copy(update=update)}), event


def _reset(step: StepStatus, failed: bool, who: str) -> StepStatus:
    if failed:
        return StepStatus(
            name=step.name,
            # A Job step's next attempt: a new Job, the old one kept for its logs (but under jobRetention
            # LastAttempt or FailedOnly, planner.retention deletes it once the new one is recorded and
            # exists). A gate has no Job: its count stays; its cleared startTime makes its timeout count
            # from when the rerun reaches it.
            retry_count=step.retry_count + (0 if timed_out(step) else 1),
            message=f"rerun requested by {who}",
        )
    if step.phase == StepPhase.SKIPPED:
        return StepStatus(name=step.name, retry_count=step.retry_count)
    return step
