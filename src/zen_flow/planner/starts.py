"""Starting a ready step: its `when` decided, a join that could never run failed at once, its Job built
and created, or taken over when a lost status write left it unrecorded; under
`executionPolicy.parallelism` or a matrix's `maxParallel`, only as many as the limits leave room for, in
spec order (planner.parallelism); a step that declares locks only once it can take them all
(planner.locks).
A memoized step served from its cache runs no Job: its cache is read before it waits for a slot.
"""

from __future__ import annotations

from zen_flow.api.constants import StepPhase
from zen_flow.api.jobflow import MatrixVerdict, Step
from zen_flow.core.expressions import Deferred, Unavailable, check_when
from zen_flow.planner.actions import CreateJob
from zen_flow.planner.artifacts import add_transfers
from zen_flow.planner.children import build_child
from zen_flow.planner.create_refusals import unnoted
from zen_flow.planner.finale import Finale
from zen_flow.planner.jobs import JobBuildError, adoptable, build_job
from zen_flow.planner.lineage import MAX_DESCENDANTS
from zen_flow.planner.locks import Claims
from zen_flow.planner.memoization import serving_cache
from zen_flow.planner.node_avoidance import avoid_nodes
from zen_flow.planner.parallelism import Holder, missed, running, wait
from zen_flow.planner.parameters import MAX_PLAN_SUBSTITUTED_BYTES, Meter, apply_parameters, flow_fields
from zen_flow.planner.readiness import skipped_input
from zen_flow.planner.steps import StepWork, bound
from zen_flow.planner.timing import DEFERRED_RETRY_SECONDS, UNAVAILABLE_RETRY_SECONDS, after, after_cut

# How the message of a ready step past its plan's budget of parameter values begins (Starts.create).
WAITING_TO_BE_CREATED = "waiting to be created: "


def retry_reason(w: StepWork) -> str | None:
    """A Retrying step's message (why its last attempt failed) without a deferral's or a refused create's
    note before it."""
    if w.phase != StepPhase.RETRYING or not w.message:
        return None
    if w.message.startswith(WAITING_TO_BE_CREATED):
        return w.message.partition("; ")[2] or None
    return unnoted(w.message)


class Starts(Finale):
    """The start of ready steps, for the schedule pass (planner.engine)."""

    def start(self, w: StepWork, attempt: int) -> None:
        """Start the Job step `w` now, or, under a parallelism limit, once every ready step is known. A
        Job of that attempt that exists already (a status write lost) is taken over at once: it runs, and
        takes its place before any other start is counted."""
        if not (self.limited(w) or self.locked(w)) or self.job_name(w.name, attempt) in self.jobs:
            self.create_attempt(w, attempt)
        else:
            self.ready.append((w, attempt))

    def locked(self, w: StepWork) -> bool:
        """Does `w` take locks when it starts (planner.locks)? A Retrying step holds them already."""
        return w.spec.synchronization is not None and w.phase == StepPhase.PENDING

    def limited(self, w: StepWork) -> bool:
        """Does a limit apply to `w`: the flow's parallelism, or its matrix step's maxParallel?"""
        return self.parallelism is not None or w.name in self.item_limits

    def start_ready(self) -> str | None:
        """Start the ready steps in spec order while the limits leave room (see planner.parallelism);
        the others wait, saying why, until a Job finishes (its event wakes the flow). Returns a step that
        ended here instead of starting (its `when`, decided at its slot), at once."""
        position = {name: i for i, name in enumerate(self.works)}
        self.ready.sort(key=lambda item: position[item[0].name])
        taken = running(self.moving.values(), self.jobs)
        in_group: dict[str, int] = {}  # a limited matrix step's running items, counted when first asked
        claims = None  # the locks the flow's steps hold and wait for, counted when first asked
        for w, attempt in self.ready:
            if self.blocked(w):  # a step failed at its Job's creation (fail-fast) just now
                continue
            holder = self.holder(w, taken, in_group)
            if holder is not None and not self.unread_cache(w):
                w.message = self.held(w, holder)
                continue
            if w.name in self.when_held and (not self.decide_when(w) or self.fails_on_skipped_input(w)):
                if w.terminal:
                    # Its dependents may be ready now and come before the rest in spec order: the plan
                    # schedules again before it hands out another slot.
                    return w.name
                continue
            if holder is not None:  # a memoized step whose cache no plan read yet: a hit needs no slot
                if not self.served(w, attempt):
                    self.memo_missed.add(w.name)
                    w.message = self.held(w, holder)
                elif w.terminal:  # served (or failed): its dependents may start
                    return w.name
                continue
            locked = self.locked(w)
            if locked:
                claims = claims or Claims(self.flow.metadata.name, self.locks, self.phases())
                if (why := claims.wait_for(w.spec)) is not None:
                    w.message = why.message
                    self.lock_blockers[w.name] = why.blocker
                    continue
            self.create_attempt(w, attempt)
            if w.phase == StepPhase.SUCCEEDED:  # served from its memoize cache: its dependents may start
                return w.name
            started = w.phase == StepPhase.RUNNING
            if started and claims is not None and locked:
                claims.started(w.spec)
            taken += started
            if (item := self.item_limits.get(w.name)) is not None and item.group is not None:
                in_group[item.group] += started
        return None

    def phases(self) -> list[tuple[Step, StepPhase]]:
        """The flow's steps that declare locks, with their phases now (its holders count for its own)."""
        return [(w.spec, w.phase) for w in self.moving.values() if w.spec.synchronization is not None]

    def holder(self, w: StepWork, taken: int, in_group: dict[str, int]) -> Holder | None:
        """The limit that leaves `w` no room now (the flow's first), None when both do."""
        if self.parallelism is not None and taken >= self.parallelism:
            return Holder(self.parallelism)
        item = self.item_limits.get(w.name)
        if item is None or item.group is None:
            return None
        if item.group not in in_group:
            items = self.flow.spec.matrix_groups.get(item.group, ())
            in_group[item.group] = running(
                (m for name in items if (m := self.moving.get(name)) is not None), self.jobs
            )
        return item if in_group[item.group] >= item.limit else None

    def note_missed(self, w: StepWork) -> None:
        """Remember what the held step's message says (`missed`), before it is said again."""
        if missed(w.message):
            self.memo_missed.add(w.name)

    def held(self, w: StepWork, holder: Holder) -> str:
        return wait(retry_reason(w), holder, w.name in self.memo_missed)

    def unread_cache(self, w: StepWork) -> bool:
        """Is `w` a memoized step whose cache no plan read since it became ready?"""
        return serving_cache(w.spec) is not None and w.name not in self.memo_missed

    def served(self, w: StepWork, attempt: int) -> bool:
        """Read the held step's cache before its slot: True when that settled it (served, or its inputs
        cannot be resolved: failed, as its slot would), or when the plan must ask for the entry first;
        False: no result, it waits for its slot."""
        try:
            resolved = self.resolved(w)
            return self.from_cache(w, resolved, attempt)
        except JobBuildError as err:
            w.fail(self.now, f"cannot create Job: {err}")
            self.note_failure(w)
            return True

    def settle_matrix(self, w: StepWork, verdict: MatrixVerdict) -> None:
        """A ready matrix step whose items come from an earlier step's output and that is not expanded
        (core/matrix_sources.py): Skipped (an empty array, the source did not succeed) or Failed (a value
        it cannot use) before any Job exists. Pending: not expanded from its source's output yet, which
        a step only reads once committed (readiness.uncommitted), so never expected here; it waits for
        the status write that brings the flow back expanded rather than run as a Job."""
        phase, why, _ = verdict
        if phase == StepPhase.SKIPPED:
            w.skip(self.now, why)
        elif phase == StepPhase.FAILED:
            w.fail(self.now, why)
            self.note_failure(w)
        else:
            w.message = bound(why)

    def create_attempt(self, w: StepWork, attempt: int) -> None:
        previous = retry_reason(w)
        self.create(w, attempt)
        if w.phase == StepPhase.RUNNING and previous:
            w.message = bound(f"attempt {attempt + 1}; {previous}")

    def decide_when(self, w: StepWork) -> bool:
        """Evaluate the step's `when`: True to go on and start it; False when it was skipped, failed, or
        must wait for the condition to be decided (its message and wakeup say so)."""
        assert w.spec.when is not None
        context = self.final_context if w.spec.is_finally else self.when_context
        try:
            verdict = check_when(w.spec.when, context, self.evaluate)
        except Unavailable as err:  # nothing is known of the condition: never a skip, decided later
            w.message = bound(f"waiting to evaluate when: {err}")
            self.wakeups.append(after(self.now, UNAVAILABLE_RETRY_SECONDS))
            return False
        except Deferred:  # decided by a later plan: the step stays Pending until then
            self.wakeups.append(after(self.now, DEFERRED_RETRY_SECONDS))
            return False
        if verdict.exceeded:
            w.fail(self.now, verdict.reason)
            self.note_failure(w)
            return False
        if not verdict.value:
            w.skip(self.now, verdict.reason)
            return False
        return True

    def fails_on_skipped_input(self, w: StepWork) -> bool:
        """A join that ran past a Skipped branch (dependencyPolicy) must not read that branch's outputs:
        they do not exist, and a Job built without them would run on something else. It fails before it
        waits for a slot: it could never run."""
        if (missing_input := skipped_input(w.spec, self.works)) is None:
            return False
        w.fail(self.now, missing_input)
        self.note_failure(w)
        return True

    def create(self, w: StepWork, attempt: int) -> None:
        name = self.job_name(w.name, attempt)
        existing = self.jobs.get(name)
        if existing is not None and not adoptable(existing):
            # The flow's own Job of that name, being deleted before it finished (a status write lost, and
            # the Job deleted since): the step waits, and its deletion wakes the flow to create it afresh.
            # Said in its message: a finalizer or a NotReady node can hold the deletion a long time.
            w.message = bound(
                f"waiting for Job {name}, deleted before it finished, to go; then it starts again"
            )
            return
        if existing is not None:  # only reachable when adoption was skipped; never create twice
            w.start(self.job_ref(name, existing, child=w.spec.is_flow), self.now, attempt=attempt)
            self.observe_running(w)
            return
        if self.substituted >= MAX_PLAN_SUBSTITUTED_BYTES:
            # Each Job (or child flow) is bounded (parameters.MAX_SUBSTITUTED_BYTES), and so is what one
            # plan builds: the rest start in the next plan, the Jobs made here first out of memory.
            waiting = f"{WAITING_TO_BE_CREATED}this plan built {self.substituted:,} bytes of parameter values"
            # A Retrying step goes on saying why its last attempt failed, after the note (an earlier plan's
            # note replaced, not stacked): create_attempt and held() read it without the note.
            kept = retry_reason(w)
            w.message = bound(f"{waiting}; {kept}" if kept else waiting)
            self.wakeups.append(after(self.now, 1))
            return
        if w.spec.is_flow:
            self.create_child(w, name, attempt)
            return
        try:
            body = build_job(self.flow, w.spec, name, attempt)
            if w.failed_nodes:  # kept only when it avoids them; from the status alone: any replica builds it
                avoid_nodes(body, w.failed_nodes)
            resolved = self.resolved(w)
            # After the adoption above: a step whose Job exists is never served from its cache.
            if w.spec.memoize is not None and self.from_cache(w, resolved, attempt):
                return
            meter = Meter()
            body = apply_parameters(body, w.name, resolved, flow_fields(self.flow), meter)
            self.substituted += meter.used
            body = add_transfers(body, self.flow, w.spec, self.stored, self.transfers)
        except JobBuildError as err:
            w.fail(self.now, f"cannot create Job: {err}")
            self.note_failure(w)
            return
        self.launch(w, CreateJob(w.name, attempt, body))

    def create_child(self, w: StepWork, name: str, attempt: int) -> None:
        """A Flow step's attempt: its child flow (planner.children), created as a Job would be."""
        try:
            if self.children_made >= self.lineage.room:
                raise JobBuildError(
                    f"at most {MAX_DESCENDANTS} child flows run at once under one top-level flow "
                    f"(all generations), and flow {self.flow.metadata.name}'s family has reached it"
                )
            meter = Meter()
            body = build_child(self.flow, w.spec, name, attempt, self.resolved(w), self.lineage.depth, meter)
            self.substituted += meter.used
            self.children_made += 1
        except JobBuildError as err:
            w.fail(self.now, f"cannot create child flow: {err}")
            self.note_failure(w)
            return
        self.launch(w, CreateJob(w.name, attempt, body))

    def launch(self, w: StepWork, create: CreateJob) -> None:
        self.actions.append(create)
        w.start(self.job_ref(create.name, None, child=w.spec.is_flow), self.now, attempt=create.attempt)
        if w.spec.timeout_seconds is not None and w.spec.timeout_seconds > 0:
            self.wakeups.append(after_cut(self.now, w.spec.timeout_seconds))
