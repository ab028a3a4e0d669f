"""The state one plan works on: the flow's steps as mutable work items, the Jobs it owns, what the
plan has decided so far (actions, wake-ups, approvals), and the facts every pass asks (the retry budget,
the first failure, the deadline, whether steps may start)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from operator import attrgetter

from zen_flow.api.constants import API_VERSION, KIND, StepPhase
from zen_flow.api.flow_status import Approval, ArtifactRef, ObjectRef
from zen_flow.api.job import Job
from zen_flow.api.jobflow import JobFlow
from zen_flow.core.expressions import Evaluator, WhenContext, flow_view
from zen_flow.core.naming import job_name
from zen_flow.planner.actions import Action, CreateResource, MemoAnswer, MemoLookup
from zen_flow.planner.artifacts import ArtifactOptions
from zen_flow.planner.backoff import retry_budget
from zen_flow.planner.concurrency import NO_GROUP, Peer
from zen_flow.planner.grace import closing
from zen_flow.planner.interventions import runs_finally, stop_request, stopped_by_request
from zen_flow.planner.lineage import TOP_LEVEL, Lineage
from zen_flow.planner.locks import NO_LOCKS, LockView, Wait, flow_needs, flow_wait, holds_own, lock_waiting
from zen_flow.planner.memo import MEMO_STEPS, IdentityMemo
from zen_flow.planner.outputs import PodMessages
from zen_flow.planner.parallelism import item_limits, parallelism_of
from zen_flow.planner.parameters import Resolved, resolve_inputs
from zen_flow.planner.pending_pods import PendingJob
from zen_flow.planner.readiness import producer
from zen_flow.planner.shape import Shape
from zen_flow.planner.steps import JOB_NAME, PHASE, SETTLED, StepViews, StepWork, Works
from zen_flow.planner.timing import after

_name = lru_cache(maxsize=65536)(job_name)
# flow name -> {the first attempt's Job name: step}, by the identity of the spec's step tuple.
_first: IdentityMemo[tuple[str, Mapping[str, str]]] = IdentityMemo(MEMO_STEPS)


def first_attempts(flow: JobFlow) -> Mapping[str, str]:
    """Each step's first Job name -> the step."""
    flow_name, steps = flow.metadata.name, flow.spec.steps

    def derive() -> tuple[str, Mapping[str, str]]:
        return flow_name, {_name(flow_name, s.name, 0): s.name for s in steps}

    found = _first.get(steps, derive)
    return found[1] if found[0] == flow_name else derive()[1]


_RETRIES = attrgetter("retry_count")


# What a step the flow deadline ended says.
DEADLINE_EXCEEDED = "flow deadline exceeded"


def failure_message(step: str, final: bool, message: str | None) -> str:
    """The flow's failure message for the first step that failed for good."""
    return f"{'finally step' if final else 'step'} {step} failed: {message or 'failed'}"


class PlanState:
    """What the three passes of one plan share; built once per plan, then mutated by the passes."""

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
        memos: Mapping[str, MemoAnswer],
        slot: str | None = None,
        lineage: Lineage = TOP_LEVEL,
        locks: LockView = NO_LOCKS,
        pods: Mapping[str, PendingJob] | None = None,
    ) -> None:
        self.flow = flow
        # What the controller knows of each pending Job and its last read of its pods, by Job name
        # (planner.pod_watch).
        self.pods: Mapping[str, PendingJob] = pods or {}
        # What the namespace's other flows hold and wait for of the locks its steps declare (planner.locks).
        self.locks = locks
        # step -> who keeps it from its locks (planner.locks): its StepWaitingForLock event says it.
        self.lock_blockers: dict[str, str] = {}
        # The flow's own locks (spec.synchronization): those it holds after this plan, or why it waits
        # for them (nothing starts meanwhile: `blocked`).
        self.held_locks: tuple[str, ...] = ()
        self.lock_wait: Wait | None = None
        # Its place among child flows (planner.lineage): the depth and family room its Flow steps heed.
        self.lineage = lineage
        self.children_made = 0  # child flows this plan creates: they take room in the family too
        # Why the flow may not start for a limit on running flows (planner.slots; None: it may), heeded
        # only while it has not started and its group does not hold it back (`_Planner.run`).
        self.slot = slot
        self.progress_deadline = progress_deadline
        self.transfers = transfers
        self.peers = peers
        self.evaluate = evaluate
        self.messages = messages
        # The cache entries the controller read for memoized steps (by step), and those this plan lacks.
        self.memos = memos
        self.lookups: list[MemoLookup] = []
        self.group = NO_GROUP
        self.now = now
        self.order = shape.order
        self.specs = shape.specs  # by step name: a spec read without loading the step's work
        self.jobs = dict(zip(map(JOB_NAME, jobs), jobs, strict=True))
        self.works = Works(shape.specs, flow.status.steps)
        if self.works.dormant and self.jobs and (unrecorded := self._created_unrecorded()):
            self.works.wake_in_order(unrecorded)
        # The steps that can move in this plan; the passes walk only these (see `Works`).
        self.moving = self.works.moving
        self.dependents = shape.dependents
        self.actions: list[Action] = []
        self.wakeups: list[datetime] = []
        self.substituted = 0  # bytes of parameter values this plan's Jobs hold (planner.starts)
        self.approvals: list[Approval] = []
        self.suspended = bool(flow.spec.suspend)
        # A stop request: why the flow must fail. `stopped`: now, everything at once; `stopping`: a graceful
        # stop (RunFinally), the other steps now and the finally steps run first (planner.finale). A flow
        # with no finally step has nothing to run first: its graceful stop is a stop now.
        self.stop_reason = stop_request(flow)
        graceful = self.stop_reason is not None and bool(shape.final) and runs_finally(flow)
        self.stopped = None if graceful else self.stop_reason
        self.stopping = self.stop_reason if graceful else None
        self.stop_acted = False  # did this plan end a step for the stop?
        self.main_stop_acted = False  # ... one that is not finally (`flow.outcome`: planner.finale)?
        # Steps this plan found with their Job gone and ended for what deleted it (`own_delete`), and how
        # the flow ends when that was a replacement or the deadline (message, reason).
        self.cut_short: set[str] = set()
        self.ended_for: tuple[str, str] | None = None
        # What a graceful stop (True) or the finally grace (False) said when it ended a step of this run
        # before this plan (all of them, or only those that are not finally), read once from the stored
        # status, all three in one scan (planner.finale: `said_before`).
        self._said: dict[tuple[bool, bool], str | None] = {}
        self._main_ended_before: bool | None = None
        # Steps this plan ended by their timeout (a gate's wait, a Job's run) or decided at their gate, and
        # the steps it ended on their account: none of their dependents starts in this plan
        # (`Observation.after_timeout`).
        self.timed_out: set[str] = set()
        self.budget = retry_budget(flow)
        # Retrying steps are never settled nor dormant: they are all in `moving`.
        self.budget_used = sum(1 for w in self.moving.values() if w.phase == StepPhase.RETRYING)
        initial = self.works.initial
        if any(map(_RETRIES, initial.values())):  # rare: a pass in C decides whether the Python one is needed
            self.budget_used += sum(
                s.retry_count for name, s in initial.items() if s.retry_count > 0 and name in shape.specs
            )
        # The first step that is not finally to fail for good (fail-fast: no other such step starts).
        self.failure: str | None = None
        # The first finally step to fail for good: it fails the flow, but stops nothing (finally steps do
        # not fail-fast each other, and never stop the others: their decisions stay theirs).
        self.final_failure: str | None = None
        self.final = shape.final  # the finally steps
        # Did a step that is not finally fail, continueOnFailure or not (allowFailure's is tolerated)? The
        # flow then ends Failed: `flow.outcome` of the finally steps' `when`.
        self.main_failed = False
        # Objects of spec.resourceTemplates created by this plan: no step starts before they are recorded.
        self.creating: tuple[CreateResource, ...] = ()
        self.parallelism = parallelism_of(flow)
        self.item_limits = item_limits(flow)  # the items of matrix steps with maxParallel
        # Under a parallelism limit: the Job steps (and attempts) this plan would start, started in spec
        # order once all are known (`_Planner.start_ready`).
        self.ready: list[tuple[StepWork, int]] = []
        self.when_held: set[str] = set()  # ready steps whose `when` waits for a slot to be decided
        # Held memoized steps whose cache an earlier plan read, without a result (parallelism.missed): read
        # again only at their slot, their `when` decided then already.
        self.memo_missed: set[str] = set()
        if StepPhase.FAILED in map(PHASE, initial.values()):
            for s in self.works.settled():
                if s.phase != StepPhase.FAILED:
                    continue
                final = s.name in self.final
                spec = shape.specs[s.name]
                self.main_failed |= not final and not spec.allow_failure
                if spec.goes_on_after_failure:
                    continue
                if not final and self.failure is None:
                    self.failure = failure_message(s.name, False, s.message)
                elif final and self.final_failure is None and not stopped_by_request(s):
                    # A finally step a stop ended (`own_delete`) is said by the stop's message alone.
                    self.final_failure = failure_message(s.name, True, s.message)
        policy = flow.spec.execution_policy
        self.active_deadline = policy.active_deadline_seconds if policy is not None else None
        self.start_time = flow.status.start_time
        self.deadline_passed = self._deadline_passed()
        # Why the steps that are not finally end now, the flow's finally grace having come (planner.grace:
        # as under a graceful stop), in a flow with finally steps; did this plan end one for it?
        self.closing = closing(policy, self.start_time, now) if shape.final else None
        self.grace_acted = False
        # The earliest start of the Jobs this plan adopted (`Observation.adopt`): the flow's start when
        # its status has none (a lost write's plan started it).
        self.adopted_since: datetime | None = None
        # Does a Flow step run on for the grace, its child stopping gracefully (planner.child_stops)? For a
        # graceful stop: the stop a step's child is stopping (or ended stopped in this plan) for, recorded
        # in the step's message (`interventions.stop_held`); the flow's message and reason say it.
        self.grace_held = False
        self.child_stop: str | None = None
        arguments = flow.spec.arguments.parameters if flow.spec.arguments is not None else ()
        self.arguments = {a.name: a.value for a in arguments}
        self.when_context = WhenContext(StepViews(self.works), flow_view(flow))

    def _created_unrecorded(self) -> list[str]:
        """Dormant steps whose Job exists: a plan created it, and its status write was lost (a 409 after
        an edit of the flow, a leader change). They must move, so that `adopt` takes the Job over before
        anything skips them (a stop, a failure, the deadline) and leaves it running untracked. A dormant
        step has never run (its first attempt's Job is the one to look for), and the flow's Jobs are
        looked up by name, not its dormant steps: a plan's cost follows what is happening."""
        steps = first_attempts(self.flow)
        dormant = self.works.dormant
        found = [step for job in self.jobs if (step := steps.get(job)) is not None and step in dormant]
        audit = self.flow.status.audit
        if audit is not None and audit.retries:
            # A rerun leaves its steps dormant at a later attempt (their dependencies back to Pending, the
            # first attempt's Job perhaps gone: jobRetention, a Job's own TTL): looked up by that name.
            initial = self.works.initial
            for name in dormant:
                s = initial.get(name)
                if s is not None and s.retry_count and self.job_name(name, s.retry_count) in self.jobs:
                    found.append(name)
        return found

    def stored(self, step: str, artifact: str) -> ArtifactRef | None:
        """What step `step` stored as `artifact` (from its status outputs)."""
        w = self.works.get(step)
        found = w.outputs.artifacts if w is not None and w.outputs is not None else ()
        return next((a for a in found if a.name == artifact), None)

    def began_at(self, start: datetime) -> None:
        """The flow started at `start`: its deadline and finally grace count from there."""
        self.start_time = start
        self.deadline_passed = self._deadline_passed()
        if self.final:
            self.closing = closing(self.flow.spec.execution_policy, start, self.now)

    def _deadline(self) -> datetime | None:
        if self.active_deadline is None or self.active_deadline <= 0 or self.start_time is None:
            return None
        return after(self.start_time, self.active_deadline)

    def _deadline_passed(self) -> bool:
        deadline = self._deadline()
        return deadline is not None and self.now >= deadline

    def deadline_message(self) -> str:
        return f"flow deadline of {self.active_deadline}s exceeded"

    def resolved(self, w: StepWork) -> tuple[Resolved, ...]:
        """The inputs of `w`, read from its producers and the flow's arguments (JobBuildError when one
        cannot be)."""
        groups = self.flow.spec.matrix_groups
        return resolve_inputs(
            w.spec, lambda name: producer(name, self.works, self.jobs, groups), self.arguments
        )

    def job_name(self, step: str, attempt: int) -> str:
        return _name(self.flow.metadata.name, step, attempt)

    def job_ref(self, name: str, job: Job | None, *, child: bool = False) -> ObjectRef:
        """The step's `jobRef`: its Job, or (`child`) a Flow step's child JobFlow."""
        return ObjectRef(
            api_version=API_VERSION if child else "batch/v1",
            kind=KIND if child else "Job",
            name=name,
            namespace=self.flow.metadata.namespace,
            uid=(job.metadata.uid or None) if job is not None else None,
        )

    def note_failure(self, w: StepWork) -> None:
        final = w.spec.is_finally
        self.main_failed |= not final and not w.spec.allow_failure
        if w.spec.goes_on_after_failure:
            return
        if not final and self.failure is None:
            self.failure = failure_message(w.name, False, w.message)
        elif final and self.final_failure is None:
            self.final_failure = failure_message(w.name, True, w.message)

    def end_now(self, w: StepWork, why: str) -> None:
        """`w` ends before its time (a stop, a replacement, the deadline): Failed if it had started,
        Skipped if not (a waiting gate: no decision)."""
        if w.phase == StepPhase.RUNNING:
            w.fail(self.now, why)
        elif w.phase == StepPhase.RETRYING:
            w.fail(self.now, f"{why}; {w.message or ''}")
        else:
            w.drop(self.now, why)
        self.main_failed |= not w.spec.is_finally

    def main_ended_before(self) -> bool:
        """Did the status this plan read, the one stored, have every step that is not finally ended? Only
        then may a finally step's Job be created or taken over (planner.finale): the plan that ends those
        steps writes that first. Read once, and only by a plan that would start a finally step."""
        if self._main_ended_before is None:
            initial, final = self.works.initial, self.final
            self._main_ended_before = all(
                (s := initial.get(name)) is not None and s.phase in SETTLED
                for name in self.order
                if name not in final
            )
        return self._main_ended_before

    def blocked(self, w: StepWork | None = None) -> bool:
        """May no step (or not `w`) start now? A failure, a graceful stop or the finally grace stops only
        the steps that are not finally: the finally steps run whatever the outcome, and do not
        fail-fast each other."""
        return (
            self.stopped is not None
            or self.suspended
            or (
                (self.failure is not None or self.stopping is not None or self.closing is not None)
                and (w is None or not w.spec.is_finally)
            )
            or self.deadline_passed
            or self.group.holds
            or self.slot is not None
            or self.lock_wait is not None
            or bool(self.creating)
        )

    def take_own_locks(self) -> None:
        """The flow's own locks (planner.locks): held on while its status says so, taken over by a run
        whose start's status write was lost (`runs_a_job`), else taken now, all or none, when nothing else
        holds the flow back (it would start now); otherwise it waits for them."""
        needs = flow_needs(self.flow)
        if not needs:
            return
        names = tuple(n.name for n in needs)
        if holds_own(self.flow) or self.runs_a_job():
            self.held_locks = names
        elif not self.blocked():
            self.lock_wait = flow_wait(self.flow.metadata.name, needs, self.locks)
            self.held_locks = () if self.lock_wait is not None else names

    def runs_a_job(self) -> bool:
        """Does a Job of this run run (observed, or taken over: its start's status write was lost)? Only
        that says the flow took its own locks when its status does not: the book counts such a Job as
        holding them, so none took them since. A start time does not (a rerun waiting for its locks may
        have skipped a step), nor a Job that ended (the book freed its locks then: another may hold them)."""
        return any(w.phase == StepPhase.RUNNING for w in self.moving.values())

    def begun(self) -> bool:
        """Has a step left Pending in this run, or does one wait for a lock (planner.locks: the flow runs,
        and holds its slot, while it waits, as under parallelism; a flow that took a slot and gave it back
        at every plan would wake the next flow in line, which would wake it: for ever)? Asked only while
        `start_time` is unset: before a flow's first step, or after a rerun reset it (its settled steps,
        kept from the run before, do not count). A flow that took its own locks has begun too: it holds
        them, and its slot, until it ends."""
        return bool(self.held_locks) or any(
            w.phase != StepPhase.PENDING or lock_waiting(w.message) for w in self.moving.values()
        )

    def held_back(self) -> bool:
        """Does its concurrency group, a limit on running flows or its own locks keep the flow from
        starting in this plan? Then it has not started, whatever its steps did: a rerun's step skipped for
        a dependency that failed before does not start it (its next plan would take that start for a lost
        write's, and go past the slot, the group or the locks it waits for)."""
        return self.group.holds or self.slot is not None or self.lock_wait is not None
