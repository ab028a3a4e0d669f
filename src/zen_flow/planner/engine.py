"""`plan(flow, jobs, now)`: one reconcile decision, as a pure function.

Three passes over the steps:
  1. observe: advance started steps from their Jobs (terminal conditions, timeouts, vanished Jobs),
     decide approvals, adopt Jobs a lost status write did not record; then ask the flow's concurrency
     group (`peers`) whether it must wait or has been replaced;
  2. schedule: in topological order, skip what can never run, evaluate `when`, start ready steps and
     due retries (unless suspended, failing fast, or past the deadline);
  3. conclude: enforce the flow deadline, end a failing flow once nothing runs, derive the phase.
An unchanged situation yields the input status object itself and no actions (a quiet flow costs no
API calls).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from operator import attrgetter

from zen_flow.api.constants import ANNOTATION_DECISION_MESSAGE_PREFIX, FlowPhase, StepPhase
from zen_flow.api.job import JOB_FAILED, Job
from zen_flow.api.jobflow import Approval, ArtifactRef, JobFlow, ObjectRef
from zen_flow.core.expressions import Evaluator, WhenContext, check_when, flow_view
from zen_flow.core.naming import job_name
from zen_flow.planner.actions import Action, CreateJob, CreateResource, DeleteJob, EventSpec, Plan
from zen_flow.planner.approvals import decision, with_approvals, with_origin
from zen_flow.planner.artifacts import ArtifactOptions, add_transfers
from zen_flow.planner.backoff import retry_budget, retry_delay, retry_limit
from zen_flow.planner.concurrency import NO_GROUP, REPLACED_JOB_REASON, Peer, judge
from zen_flow.planner.events import REJECT_MARK, TIMEOUT_MARK
from zen_flow.planner.interventions import request, rerun, stop_request
from zen_flow.planner.jobs import JobBuildError, build_job
from zen_flow.planner.lifecycle import fail_invalid, terminal_plan, ttl_expiry
from zen_flow.planner.outcome import outcome
from zen_flow.planner.outputs import (
    OutputError,
    PodMessages,
    capture_outputs,
    explains_failure,
    reads_messages,
)
from zen_flow.planner.parameters import apply_parameters, resolve_inputs
from zen_flow.planner.progress import judge as judge_progress
from zen_flow.planner.progress import last_progress
from zen_flow.planner.readiness import producer, uncommitted
from zen_flow.planner.reports import download_failure
from zen_flow.planner.resources import missing
from zen_flow.planner.shape import Shape, shape_of
from zen_flow.planner.status import REASON_DEADLINE, REASON_REPLACED, REASON_STEP_FAILED, REASON_STOPPED
from zen_flow.planner.steps import JOB_NAME, PHASE, StepViews, StepWork, Works, bound
from zen_flow.planner.timing import after, after_cut, normalize, until

_name = lru_cache(maxsize=65536)(job_name)
# The Job controller's reason when a Job's activeDeadlineSeconds passed.
JOB_DEADLINE_REASON = "DeadlineExceeded"
# How soon to look again at a completed Job whose pod's termination messages were not read yet.
MESSAGES_RETRY_SECONDS = 1.0
_RETRIES = attrgetter("retry_count")


class _Planner:
    def __init__(
        self,
        flow: JobFlow,
        jobs: Sequence[Job],
        now: datetime,
        shape: Shape,
        peers: Sequence[Peer],
        evaluate: Evaluator | None,
        messages: Mapping[str, PodMessages],
        transfers: ArtifactOptions,
        progress_deadline: float,
    ) -> None:
        self.flow = flow
        self.progress_deadline = progress_deadline
        self.transfers = transfers
        self.peers = peers
        self.evaluate = evaluate
        self.messages = messages
        self.group = NO_GROUP
        self.now = now
        self.order = shape.order
        self.jobs = dict(zip(map(JOB_NAME, jobs), jobs, strict=True))
        self.works = Works(shape.specs, flow.status.steps)
        # The steps that can move in this plan; the passes below walk only these (see `Works`).
        self.moving = self.works.moving
        self.dependents = shape.dependents
        self.actions: list[Action] = []
        self.wakeups: list[datetime] = []
        self.approvals: list[Approval] = []
        self.suspended = bool(flow.spec.suspend)
        self.stopped = stop_request(flow)  # why the flow must fail now, or None
        self.budget = retry_budget(flow)
        # Retrying steps are never settled nor dormant: they are all in `moving`.
        self.budget_used = sum(1 for w in self.moving.values() if w.phase == StepPhase.RETRYING)
        initial = self.works.initial
        if any(map(_RETRIES, initial.values())):  # rare: a pass in C decides whether the Python one is needed
            self.budget_used += sum(
                s.retry_count for name, s in initial.items() if s.retry_count > 0 and name in shape.specs
            )
        self.failure: str | None = None  # the first step that failed for good (fail-fast)
        # Objects of spec.resourceTemplates created by this plan: no step starts before they are recorded.
        self.creating: tuple[CreateResource, ...] = ()
        if StepPhase.FAILED in map(PHASE, initial.values()):
            for s in self.works.settled():
                if s.phase == StepPhase.FAILED and not shape.specs[s.name].continue_on_failure:
                    self.failure = f"step {s.name} failed: {s.message or 'failed'}"
                    break
        policy = flow.spec.execution_policy
        self.active_deadline = policy.active_deadline_seconds if policy is not None else None
        self.start_time = flow.status.start_time
        self.deadline_passed = self._deadline_passed()
        arguments = flow.spec.arguments.parameters if flow.spec.arguments is not None else ()
        self.arguments = {a.name: a.value for a in arguments}
        self.when_context = WhenContext(StepViews(self.works), flow_view(flow))

    def stored(self, step: str, artifact: str) -> ArtifactRef | None:
        """What step `step` stored as `artifact` (from its status outputs)."""
        w = self.works.get(step)
        found = w.outputs.artifacts if w is not None and w.outputs is not None else ()
        return next((a for a in found if a.name == artifact), None)

    def _deadline(self) -> datetime | None:
        if self.active_deadline is None or self.active_deadline <= 0 or self.start_time is None:
            return None
        return after(self.start_time, self.active_deadline)

    def _deadline_passed(self) -> bool:
        deadline = self._deadline()
        return deadline is not None and self.now >= deadline

    def job_name(self, step: str, attempt: int) -> str:
        return _name(self.flow.metadata.name, step, attempt)

    def job_ref(self, name: str, job: Job | None) -> ObjectRef:
        return ObjectRef(
            api_version="batch/v1",
            kind="Job",
            name=name,
            namespace=self.flow.metadata.namespace,
            uid=(job.metadata.uid or None) if job is not None else None,
        )

    # --- pass 1: observe ------------------------------------------------------------------------------

    def observe(self) -> None:
        for w in self.moving.values():
            if w.phase == StepPhase.PENDING_APPROVAL:
                self.observe_approval(w)
            elif w.phase == StepPhase.RUNNING:
                self.observe_running(w)
            self.adopt(w)
        self.works.wake(
            [d for w in self.moving.values() if w.terminal for d in self.dependents.get(w.name, ())]
        )

    def adopt(self, w: StepWork) -> None:
        """A Job of the next attempt exists although status does not know it: the status write after
        the create was lost. Take it over (never create it twice); repeat for several lost writes."""
        while not w.spec.is_manual and w.phase in (StepPhase.PENDING, StepPhase.RETRYING):
            attempt = w.retry_count + (1 if w.phase == StepPhase.RETRYING else 0)
            name = self.job_name(w.name, attempt)
            job = self.jobs.get(name)
            if job is None:
                return
            # The budget is unchanged: a Retrying step's reservation becomes its retry count.
            w.start(self.job_ref(name, job), self.now, attempt=attempt, message=w.message)
            self.observe_running(w)

    def observe_running(self, w: StepWork) -> None:
        ref = w.job_ref
        name = ref.name if ref is not None and ref.name else self.job_name(w.name, w.retry_count)
        job = self.jobs.get(name)
        if job is None or (ref is not None and ref.uid and job.metadata.uid and ref.uid != job.metadata.uid):
            self.attempt_failed(w, f"Job {name} not found (deleted outside zen-flow)", self.now)
            return
        if ref is None or ref.uid is None or ref.name != name:
            w.job_ref = self.job_ref(name, job)
        if job.complete:
            self.complete(w, job)
            return
        if job.failed:
            if explains_failure(w.spec) and name not in self.messages:
                self.wakeups.append(after(self.now, MESSAGES_RETRY_SECONDS))  # see `complete`
                return
            cond = job.condition(JOB_FAILED)
            timeout = w.spec.timeout_seconds
            if cond is not None and cond.reason == JOB_DEADLINE_REASON and timeout:
                # The Job's own activeDeadlineSeconds (our timeoutSeconds) stopped it before we did: the
                # same timeout, said the same way whoever noticed first.
                self.attempt_failed(w, f"{TIMEOUT_MARK} {timeout}s", cond.last_transition_time or self.now)
                return
            detail = ": ".join(x for x in (cond.reason, cond.message) if x) if cond is not None else ""
            if why := download_failure(self.messages.get(name)):
                detail = f"{why} ({detail})" if detail else why
            failed_at = cond.last_transition_time if cond is not None else None
            self.attempt_failed(w, f"Job failed{': ' + detail if detail else ''}", failed_at or self.now)
            return
        if job.deleting:
            self.attempt_failed(w, f"Job {name} was deleted outside zen-flow", self.now)
            return
        timeout = w.spec.timeout_seconds
        if timeout is not None and timeout > 0:
            began = job.metadata.creation_timestamp or job.status.start_time or w.start_time or self.now
            due = after_cut(began, timeout)
            if self.now >= due:
                self.actions.append(DeleteJob(name, w.name, f"{TIMEOUT_MARK} {timeout}s"))
                self.attempt_failed(w, f"{TIMEOUT_MARK} {timeout}s", self.now)
            else:
                self.wakeups.append(due)

    def complete(self, w: StepWork, job: Job) -> None:
        """The Job completed: capture the output parameters; they go out in the same status write that
        marks the step Succeeded. One that cannot be captured fails the step (retrying reruns the work)."""
        name = job.metadata.name
        if reads_messages(w.spec) and name not in self.messages:
            # Its pod's termination messages have not been read yet (the controller reads them before
            # planning, see outputs.jobs_to_read): stay Running and look again in a moment.
            self.wakeups.append(after(self.now, MESSAGES_RETRY_SECONDS))
            return
        try:
            w.outputs = capture_outputs(self.flow, w.spec, job, w.outputs, self.messages.get(name))
        except OutputError as err:
            w.fail(self.now, str(err))
            self.note_failure(w)
            return
        w.succeed(self.now, None)

    def attempt_failed(self, w: StepWork, error: str, failed_at: datetime) -> None:
        limit = retry_limit(w.spec)
        done = w.retry_count
        error = f"attempt {done + 1} failed: {error}" if limit else error
        if done < limit and self.budget_used < self.budget and self.failure is None:
            self.budget_used += 1
            # failed_at is a whole second (a Job condition, or the planner's now): the failure came up to a
            # second later, so the delay counts from the next second and is never shorter than asked.
            w.retry_at(after_cut(failed_at, retry_delay(w.spec.retry_policy, done)), error)
            return
        if limit and done >= limit:
            error += f" (retries exhausted: {done}/{limit})"
        elif limit and self.budget_used >= self.budget:
            error += f" (flow retry budget backoffLimit={self.budget} used up)"
        w.fail(self.now, error)
        self.note_failure(w)

    def note_failure(self, w: StepWork) -> None:
        if not w.spec.continue_on_failure and self.failure is None:
            self.failure = f"step {w.name} failed: {w.message or 'failed'}"

    def observe_approval(self, w: StepWork) -> None:
        decided = decision(self.flow.metadata.annotations, w.name)
        if decided is None:
            self.expire_approval(w)
            return
        verdict, user = decided
        w.approved_by = user
        why = self.flow.metadata.annotations.get(ANNOTATION_DECISION_MESSAGE_PREFIX + w.name) or None
        self.approvals.append(
            Approval(step=w.name, decision=verdict, user=user, time=self.now, message=why and why[:1024])
        )
        if verdict == "Approved":
            w.succeed(self.now, f"approved by {user}" if user else "approved")
        else:
            w.fail(self.now, f"rejected by {user}" if user else "rejected")
            self.note_failure(w)

    def expire_approval(self, w: StepWork) -> None:
        """A Manual step's `timeoutSeconds` bounds its wait for a decision, from when it was reached:
        then it is rejected (Failed), as if someone had said no."""
        timeout = w.spec.timeout_seconds
        if not timeout or w.start_time is None or w.phase != StepPhase.PENDING_APPROVAL:
            return
        due = after(w.start_time, timeout)
        if self.now < due:
            self.wakeups.append(due)
            return
        w.fail(self.now, f"{REJECT_MARK}: no decision within {timeout}s (timeoutSeconds)")
        self.note_failure(w)

    # --- pass 2: schedule -----------------------------------------------------------------------------

    def blocked(self) -> bool:
        return (
            self.stopped is not None
            or self.suspended
            or self.failure is not None
            or self.deadline_passed
            or self.group.holds
            or bool(self.creating)
        )

    def schedule(self) -> None:
        moving = self.moving
        for name in self.order:
            w = moving.get(name)
            if w is None:
                continue
            if w.phase == StepPhase.RETRYING:
                self.schedule_retry(w)
            elif w.phase == StepPhase.PENDING:
                self.schedule_pending(w)
            if w.terminal:
                self.works.wake(self.dependents.get(name, ()))

    def schedule_retry(self, w: StepWork) -> None:
        if self.blocked():
            return
        due = w.next_retry_time
        if due is not None and self.now < due:
            self.wakeups.append(due)
            return
        previous = w.message
        self.create(w, w.retry_count + 1)
        if w.phase == StepPhase.RUNNING and previous:
            w.message = bound(f"attempt {w.retry_count + 1}; {previous}")

    def dependency_verdict(self, w: StepWork) -> tuple[bool, str | None]:
        """(ready, why it can never run)."""
        ready = True
        for dep in w.spec.dependencies:
            d = self.works.get(dep)
            if d is None or d is w:
                continue  # unknown names are the validator's business; the plan's shape rejects them
            if d.phase == StepPhase.SKIPPED:
                return False, f"dependency {dep} was skipped"
            if d.phase == StepPhase.FAILED and not d.spec.continue_on_failure:
                return False, f"dependency {dep} failed"
            if d.phase not in (StepPhase.SUCCEEDED, StepPhase.FAILED):
                ready = False
        return ready, None

    def schedule_pending(self, w: StepWork) -> None:
        ready, never = self.dependency_verdict(w)
        if never is not None:
            w.skip(self.now, never)
            return
        if not ready or self.blocked() or uncommitted(w, self.works):
            return
        if w.spec.when is not None:
            verdict = check_when(w.spec.when, self.when_context, self.evaluate)
            if verdict.exceeded:
                w.fail(self.now, verdict.reason)
                self.note_failure(w)
                return
            if not verdict.value:
                w.skip(self.now, verdict.reason)
                return
        if w.spec.is_manual:
            self.start_manual(w)
        else:
            self.create(w, w.retry_count)

    def start_manual(self, w: StepWork) -> None:
        w.await_approval(self.now, w.spec.message or f"waiting for manual approval of step {w.name}")
        self.observe_approval(w)  # approved (or rejected) before the gate was reached

    def create(self, w: StepWork, attempt: int) -> None:
        name = self.job_name(w.name, attempt)
        existing = self.jobs.get(name)
        if existing is not None:  # only reachable when adoption was skipped; never create twice
            w.start(self.job_ref(name, existing), self.now, attempt=attempt)
            self.observe_running(w)
            return
        try:
            body = build_job(self.flow, w.spec, name, attempt)
            body = apply_parameters(
                body,
                w.name,
                resolve_inputs(w.spec, lambda name: producer(name, self.works, self.jobs), self.arguments),
            )
            body = add_transfers(body, self.flow, w.spec, self.stored, self.transfers)
        except JobBuildError as err:
            w.fail(self.now, f"cannot create Job: {err}")
            self.note_failure(w)
            return
        self.actions.append(CreateJob(w.name, attempt, body))
        w.start(self.job_ref(name, None), self.now, attempt=attempt)
        if w.spec.timeout_seconds is not None and w.spec.timeout_seconds > 0:
            self.wakeups.append(after_cut(self.now, w.spec.timeout_seconds))

    # --- pass 3: conclude -----------------------------------------------------------------------------

    def conclude(self) -> tuple[FlowPhase, str | None, str]:
        """(phase, failure message, Failed condition reason)."""
        works = self.moving.values()
        if self.stopped is not None:
            self.stop_all(self.stopped)
            return FlowPhase.FAILED, self.stopped, REASON_STOPPED
        if self.group.replaced is not None:
            self.stop_all(self.group.replaced, REPLACED_JOB_REASON)
            return FlowPhase.FAILED, self.group.replaced, REASON_REPLACED
        if self.deadline_passed:
            self.stop_all("flow deadline exceeded")
            return FlowPhase.FAILED, f"flow deadline of {self.active_deadline}s exceeded", REASON_DEADLINE
        if self.failure is not None:
            for w in works:
                if w.phase == StepPhase.RETRYING:
                    w.fail(self.now, f"not retried, the flow is failing; {w.message or ''}")
            if not any(w.phase == StepPhase.RUNNING for w in works):
                self.works.wake_all()
                for w in works:
                    if not w.terminal:
                        w.skip(self.now, "not started: the flow failed")
        if not self.works.dormant and all(w.terminal for w in works):
            failed = next((s for s in self.works.statuses() if s.phase == StepPhase.FAILED), None)
            if failed is None:
                return FlowPhase.SUCCEEDED, None, REASON_STEP_FAILED
            return (
                FlowPhase.FAILED,
                self.failure or f"step {failed.name} failed: {failed.message}",
                REASON_STEP_FAILED,
            )
        if self.suspended:
            phase = FlowPhase.SUSPENDED
        elif any(w.phase in (StepPhase.RUNNING, StepPhase.RETRYING) for w in works):
            phase = FlowPhase.RUNNING
        elif any(w.phase == StepPhase.PENDING_APPROVAL for w in works):
            phase = FlowPhase.PAUSED
        elif self.start_time is None and not self.begun():
            phase = FlowPhase.PENDING
        else:
            phase = FlowPhase.RUNNING
        return phase, self.failure, REASON_STEP_FAILED

    def stop_all(self, reason: str, job_reason: str | None = None) -> None:
        self.works.wake_all()
        for w in self.moving.values():
            if w.phase == StepPhase.RUNNING:
                name = w.job_ref.name if w.job_ref is not None else ""
                job = self.jobs.get(name)
                if job is not None and not job.finished and not job.deleting:
                    self.actions.append(DeleteJob(name, w.name, job_reason or reason))
                w.fail(self.now, reason)
            elif w.phase == StepPhase.RETRYING:
                w.fail(self.now, f"{reason}; {w.message or ''}")
            elif not w.terminal:
                w.skip(self.now, f"not started: {reason}")

    def begun(self) -> bool:
        """Has any step left Pending (a settled step has)?"""
        return len(self.moving) + len(self.works.dormant) < len(self.works) or any(
            w.phase != StepPhase.PENDING for w in self.moving.values()
        )

    def run(self) -> Plan:
        self.observe()
        started = self.start_time is not None or self.begun()
        self.group = judge(self.flow, self.peers, started=started)
        if not self.blocked():
            # Only a flow that may start steps now gets its objects (not a queued or suspended one).
            self.creating = missing(self.flow)
            self.actions.extend(self.creating)
        self.schedule()
        if self.start_time is None and self.begun():
            self.start_time = self.now
            deadline = self._deadline()
            if deadline is not None:
                self.wakeups.append(deadline)
        elif not self.deadline_passed and (deadline := self._deadline()) is not None:
            self.wakeups.append(deadline)
        phase, failure, reason = self.conclude()
        steps = self.works.statuses()
        stall, due = judge_progress(
            phase,
            steps,
            last_progress(self.flow.status, phase, steps, self.now),
            self.progress_deadline,
            self.now,
        )
        if due is not None:
            self.wakeups.append(due)
        status, events = outcome(
            self.flow,
            steps,
            phase,
            failure=failure,
            reason=reason,
            start_time=self.start_time,
            audit=with_approvals(
                with_origin(self.flow.status.audit, self.flow.metadata.annotations), self.approvals
            ),
            now=self.now,
            group=self.group,
            creating=self.creating,
            stall=stall,
        )
        if phase.terminal:
            # TTL counts from now; the deletion itself happens on a later reconcile, after the final
            # status (and its events) are written.
            self.wakeups = [ttl_expiry(self.flow, self.now)]
        requeue = [max(0.0, until(self.now, t)) for t in self.wakeups if t > self.now or phase.terminal]
        return Plan(
            actions=tuple(self.actions),
            status=status,
            events=events,
            requeue_after=min(requeue) if requeue else None,
        )


def uses_comprehensions(flow: JobFlow) -> bool:
    """Does a step's `when` use a comprehension? Evaluating those can take long (the controller bounds
    it in another process), so their flows are planned off the event loop."""
    return shape_of(flow).comprehensions


def plan(
    flow: JobFlow,
    jobs: Sequence[Job],
    now: datetime,
    *,
    peers: Sequence[Peer] = (),
    evaluate: Evaluator | None = None,
    messages: Mapping[str, PodMessages] | None = None,
    transfers: ArtifactOptions | None = None,
    progress_deadline: float = 0.0,
) -> Plan:
    """Decide what to do for `flow`, given the Jobs it owns (any attempt), the current time, and the
    other flows of its concurrency group (`peers`; none for a flow without the concurrency-key label).
    `evaluate` runs `when` expressions with comprehensions (the controller's is time-bounded);
    `messages` holds the termination messages of the Jobs `outputs.jobs_to_read` names; `transfers`
    shapes the artifact transfer containers (planner.artifacts); `progress_deadline` is how many seconds a
    Running flow may go without a step changing phase before it is marked not progressing (0: never)."""
    now = normalize(now)
    said: EventSpec | None = None  # what became of a rerun request
    if (retry := request(flow)) is not None:
        flow, said = rerun(flow, retry, now)
    if flow.status.phase in (FlowPhase.SUCCEEDED, FlowPhase.FAILED):
        ended = terminal_plan(flow, now)
        return replace(ended, events=(said, *ended.events)) if said is not None else ended
    shape = shape_of(flow)
    if shape.errors:
        return fail_invalid(flow, shape.errors, now)
    result = _Planner(
        flow,
        jobs,
        now,
        shape,
        peers,
        evaluate,
        messages or {},
        transfers or ArtifactOptions(),
        progress_deadline,
    ).run()
    return replace(result, events=(said, *result.events)) if said is not None else result
