"""Planner properties on random DAGs driven by a fake cluster: termination, dependency order, no
duplicate Jobs, terminal flows frozen (but for a rerun request) with nothing of theirs running, status in
spec order, steps that all succeeded make a Succeeded flow, no timeout or retry early whatever the
cluster's clock says, and `plan` never raising."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zen_flow.api import JobFlow
from zen_flow.api.constants import (
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    APPROVE_PREFIX,
    REJECT_PREFIX,
    StepPhase,
)
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.jobflow import Step
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob, DeleteFlow, DeleteJob, Plan, plan, plan_state, retry_delay
from zen_flow.planner.events import TIMEOUT_MARK
from zen_flow.planner.grace import GRACE_MESSAGES
from zen_flow.planner.interventions import STOPPED_MESSAGES, request, rerun
from zen_flow.planner.lifecycle import ENDED_REASON, STRAY_EVENT
from zen_flow.planner.retention import (
    RELEASED_REASON,
    RETENTION_REASONS,
    SUPERSEDED_FAILED_ONLY,
    SUPERSEDED_REASON,
)
from zen_flow.planner.steps import Works, ended_in_run
from zen_flow.planner.timing import normalize
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
MAX_ROUNDS = 3000
SUPERSEDED_REASONS = (SUPERSEDED_REASON, SUPERSEDED_FAILED_ONLY)

WHENS = [
    None,
    "always",
    "never",
    "TRUE",
    "{dep}.phase == 'Succeeded'",
    "{dep}.phase != 'Failed'",
    "steps.exists(s, steps[s].phase == 'Failed')",
    "steps.unknown.phase == 'x'",
    "1 +",
    "'not a bool'",
]


# A finally step's `when` on `flow.outcome` (`check_outcome`).
OUTCOME_WHENS = ("flow.outcome == 'Failed'", "flow.outcome != 'Failed'")
DEPENDENCY_POLICIES = ["AllSucceeded", "SucceededOrSkipped", "AnySucceeded"]


@st.composite
def random_flows(draw: st.DrawFn) -> JobFlow:
    count = draw(st.integers(1, 10))
    steps: list[dict[str, Any]] = []
    names: list[str] = []
    finals: list[str] = []  # finally steps depend only on finally steps, the others only on the others
    for i in range(count):
        name = draw(st.sampled_from(["s", "step-", "extract-", "a.b-"])) + str(i)
        final = draw(st.integers(0, 3)) == 0
        pool = finals if final else [n for n in names if n not in finals]
        deps = draw(st.lists(st.sampled_from(pool), unique=True, max_size=3)) if pool else []
        fields: dict[str, Any] = {"finally": True} if final else {}
        if draw(st.booleans()):
            fields["continueOnFailure"] = True
        if draw(st.integers(0, 3)) == 0:
            fields["allowFailure"] = True
        if draw(st.integers(0, 2)) == 0:
            fields["retryPolicy"] = {
                "limit": draw(st.one_of(st.none(), st.integers(0, 3))),
                "backoff": {
                    "type": draw(st.sampled_from(["Exponential", "Linear", "Fixed", "Bogus"])),
                    "duration": draw(st.sampled_from(["1s", "5s", "500ms", "2m", "garbage"])),
                },
            }
        if draw(st.integers(0, 3)) == 0:
            fields["timeoutSeconds"] = draw(st.integers(1, 120))
        if draw(st.integers(0, 2)) == 0:  # joins: a Skipped dependency may let the step run
            fields["dependencyPolicy"] = draw(st.sampled_from(DEPENDENCY_POLICIES))
        when = draw(st.sampled_from(WHENS)) if draw(st.integers(0, 3)) == 0 else None
        if final and draw(st.booleans()):
            when = draw(st.sampled_from(OUTCOME_WHENS))  # often: what `flow.outcome` is (check_outcome)
        if when is not None:
            dep = f'steps["{deps[0]}"]' if deps else "steps.missing"
            fields["when"] = when.format(dep=dep)
        manual = not final and draw(st.integers(0, 5)) == 0
        steps.append(manual_step(name, *deps, **fields) if manual else job_step(name, *deps, **fields))
        names.append(name)
        if final:
            finals.append(name)
    policy: dict[str, Any] = {}
    if draw(st.booleans()):
        policy["backoffLimit"] = draw(st.integers(0, 6))
    if draw(st.integers(0, 3)) == 0:
        policy["activeDeadlineSeconds"] = draw(st.integers(30, 3000))
    policy["ttlSecondsAfterFinished"] = draw(st.sampled_from([0, 60, 86400]))
    return make_flow(
        steps, name=draw(st.sampled_from(["f", "flow-with-a-much-longer-name-" * 3])), execution_policy=policy
    )


def dependencies_allow(flow: JobFlow, status_phases: dict[str, str], step: str) -> bool:
    """The documented dependencyPolicy rules, stated again independently of the planner's code."""
    spec = {s.name: s for s in flow.spec.steps}
    policy = spec[step].dependency_policy or "AllSucceeded"
    succeeded = False
    for dep in spec[step].dependencies:
        phase = status_phases[dep]
        if phase == StepPhase.SUCCEEDED:
            succeeded = True
            continue
        tolerated = spec[dep].continue_on_failure or spec[dep].allow_failure
        if phase == StepPhase.FAILED and (tolerated or spec[dep].is_finally):
            continue  # finally steps do not fail-fast each other
        if phase == StepPhase.SKIPPED and policy != "AllSucceeded":
            continue
        return False
    return succeeded or policy != "AnySucceeded" or not spec[step].dependencies


def check_plan(sim: Simulator, before: JobFlow, result: Plan) -> None:
    if (retry := request(before)) is not None:
        # The flow this plan started from: reset for the rerun, or with the request only recorded.
        before, _ = rerun(before, retry, normalize(sim.now))
    flow = before
    spec_names = [s.name for s in flow.spec.steps]
    assert [s.name for s in result.status.steps] == spec_names
    # Every condition at the generation planned: `kubectl wait` reads a condition's own.
    generation = flow.metadata.generation
    assert all(c.observed_generation == generation for c in result.status.conditions) or not generation
    new = {s.name: s.phase for s in result.status.steps}
    old = {s.name: s.phase for s in before.status.steps}
    final = {s.name for s in flow.spec.steps if s.is_finally}
    for action in result.actions:
        if isinstance(action, CreateJob) and action.attempt == 0:
            assert dependencies_allow(flow, new, action.step), f"{action.step} started too early"
        if isinstance(action, CreateJob) and action.step in final:
            # A finally step starts only once every other step has ended.
            unended = [n for n, p in new.items() if n not in final and not StepPhase(p).terminal]
            assert not unended, f"finally step {action.step} started before {unended} ended"
        elif isinstance(action, CreateJob):
            # ... so no other step ever starts once a finally step has.
            begun = [n for n in final if old.get(n, StepPhase.PENDING) != StepPhase.PENDING]
            assert not begun, f"step {action.step} started after finally steps {begun}"
    for action in result.actions:
        if isinstance(action, DeleteJob) and action.reason == RELEASED_REASON:
            # Only a success the stored status holds, with the Job it records (never a lost write's).
            stored = before.status.step(action.step)
            assert stored is not None
            assert stored.phase == StepPhase.SUCCEEDED
            assert stored.job_ref is not None
            assert stored.job_ref.name == action.name
    for name, phase in new.items():
        if phase == StepPhase.PENDING_APPROVAL and old.get(name) != phase:
            assert dependencies_allow(flow, new, name)
        if old.get(name) in (StepPhase.SUCCEEDED, StepPhase.FAILED, StepPhase.SKIPPED):
            assert phase == old[name], f"terminal step {name} changed"
    if before.status.phase in ("Succeeded", "Failed"):
        kept = before.status
        generation = before.metadata.generation
        if generation:  # a spec edit acknowledged, by the status and each condition (`kubectl wait`)
            conditions = tuple(
                c.model_copy(update={"observed_generation": generation}) for c in kept.conditions
            )
            if kept.observed_generation != generation or conditions != kept.conditions:
                kept = kept.model_copy(update={"observed_generation": generation, "conditions": conditions})
        assert result.status == kept
        if retry is None and kept is before.status:
            assert result.status is kept
        # Only a Job of its own still running is deleted (one a lost write of a rerun's plan created), and
        # jobRetention's (planner.retention): under FailedOnly the Jobs of its Succeeded steps, and under
        # LastAttempt or FailedOnly those of attempts the stored status supersedes (one whose successor was
        # first recorded by the plan that ended the flow, the plan that created it having lost its write).
        for action in result.actions:
            if isinstance(action, DeleteJob) and action.reason in SUPERSEDED_REASONS:
                stored = before.status.step(action.step)
                assert stored is not None
                earlier = {job_name(flow.metadata.name, stored.name, n) for n in range(stored.retry_count)}
                current = stored.job_ref.name if stored.job_ref is not None else None
                assert action.name in earlier - {current}, f"{action.name}: not a superseded attempt"
        stray = [a for a in result.actions if isinstance(a, DeleteJob) and a.reason not in RETENTION_REASONS]
        assert all(a.reason == ENDED_REASON for a in stray)
        assert all(isinstance(a, DeleteFlow | DeleteJob) for a in result.actions)
        said = [e.reason for e in result.events if e.reason != STRAY_EVENT]  # one per stray deleted
        assert said == ([] if retry is None else ["RetryIgnored"])
        assert len(result.events) - len(said) == len(stray)
    if before.status.audit is None or not before.status.audit.retries:  # a rerun counts as an attempt
        budget = flow.spec.execution_policy.backoff_limit if flow.spec.execution_policy else None
        budget = 6 if budget is None else budget
        assert sum(s.retry_count for s in result.status.steps) <= budget
    assert result.requeue_after is None or result.requeue_after >= 0
    if result.status.phase in ("Succeeded", "Failed"):
        assert all(StepPhase(s.phase).terminal for s in result.status.steps)
    if all(phase == StepPhase.SUCCEEDED for phase in new.values()):
        # Work that all succeeded is a success, also when a late plan finds the deadline passed.
        assert result.status.phase == "Succeeded", result.status.message
    specs = {s.name: s for s in flow.spec.steps}
    steps = {s.name: s for s in result.status.steps}
    allowed = {s.name for s in flow.spec.steps if s.allow_failure}
    failed = {n for n, p in new.items() if p == StepPhase.FAILED}
    if result.status.phase == "Succeeded":
        # Only failures allowFailure tolerates let a flow succeed; Complete then says there were some.
        assert failed <= allowed, failed - allowed
        complete = next(c for c in result.status.conditions if c.type == "Complete")
        assert (complete.reason == "SucceededWithFailures") == bool(failed)
        # ... and nothing was skipped for a failure: no fail-fast, no dependent of a tolerated one.
        cut = [n for n, s in steps.items() if (s.message or "").endswith(FLOW_FAILED) and new[n] == "Skipped"]
        assert not cut, cut
    elif result.status.phase == "Failed" and failed_reason(result) in ("StepFailed", "FinallyStepFailed"):
        # A flow failed by its steps has a failure allowFailure does not tolerate.
        assert failed - allowed, result.status.message
    for name, step in steps.items():
        if step.phase == StepPhase.SKIPPED and old.get(name) != step.phase:
            # A step is skipped for a dependency that failed only when that one fails the flow.
            dep = (step.message or "").removeprefix("dependency ").removesuffix(" failed")
            if step.message == f"dependency {dep} failed" and dep in specs:
                assert not specs[dep].goes_on_after_failure, step.message
                assert not specs[dep].is_finally, step.message
    check_outcome(flow, before, result)


# How the message of a step fail-fast left unrun ends (StepWork.drop).
FLOW_FAILED = "the flow failed"


def check_outcome(flow: JobFlow, before: JobFlow, result: Plan) -> None:
    """What a finally step's `when` reads as `flow.outcome`: Failed exactly when a step that is not
    finally failed without allowFailure, or a stop or the grace cut the others short (API.md "Finally
    steps")."""
    specs = {s.name: s for s in flow.spec.steps}
    status = result.status
    main = [s for s in status.steps if not specs[s.name].is_finally]
    failed = any(s.phase == StepPhase.FAILED and not specs[s.name].allow_failure for s in main)
    cut = STOPPED_MESSAGES + GRACE_MESSAGES  # a stop, the finally grace (test_planner_finally_grace)
    stopped = any(ended_in_run(s, status.start_time, cut) for s in main)
    expected = "Failed" if failed or stopped else "Succeeded"
    started = {a.step for a in result.actions if isinstance(a, CreateJob) and a.attempt == 0}
    for step in status.steps:
        when = specs[step.name].when
        was = before.status.step(step.name)
        if when not in OUTCOME_WHENS or (was is not None and was.phase != StepPhase.PENDING):
            continue
        if step.name in started:
            held = True
        elif step.phase == StepPhase.SKIPPED and step.message == f"when {when!r} is false":
            held = False
        else:
            continue  # not decided by its `when` in this plan
        assert held == ((expected == "Failed") == (when == OUTCOME_WHENS[0])), (step.name, expected)


def failed_reason(result: Plan) -> str:
    return next(c.reason or "" for c in result.status.conditions if c.type == "Failed")


@dataclass
class Times:
    """When each Job was really created and really failed, by the controller's (the test's) clock."""

    created: dict[str, datetime] = field(default_factory=dict)
    failed: dict[str, datetime] = field(default_factory=dict)
    attempts: dict[tuple[str, int], str] = field(default_factory=dict)  # (step, attempt) -> Job name
    reran: set[str] = field(default_factory=set)  # failed Jobs whose next attempt a rerun starts at once
    # Jobs whose creating plan's status write was lost: adopted later, their attempt begins at their
    # creationTimestamp (Observation.created), the cluster's clock, as the Job's own deadline counts.
    unrecorded: set[str] = field(default_factory=set)

    def check(
        self, flow: JobFlow, now: datetime, result: Plan, *, skew: float = 0.0, lost: bool = False
    ) -> None:
        """Neither a timeout nor a retry comes early, whatever the Jobs' timestamps say (`Simulator.skew`);
        but an attempt adopted after a lost write counts its timeout by the cluster's clock, so one behind
        ours by `-skew` seconds may end it that much early (plus the stamp's cut-off second), never more."""
        specs = {s.name: s for s in flow.spec.steps}
        behind = timedelta(seconds=max(-skew, 0.0) + 1)
        for action in result.actions:
            if isinstance(action, CreateJob):
                previous = self.attempts.get((action.step, action.attempt - 1), "")
                if previous in self.failed and previous not in self.reran:
                    delay = retry_delay(specs[action.step].retry_policy, action.attempt - 1)
                    assert now >= self.failed[previous] + timedelta(seconds=delay), f"{action.name} early"
                self.attempts[(action.step, action.attempt)] = action.name
                self.created[action.name] = now
                if lost:
                    self.unrecorded.add(action.name)
            elif isinstance(action, DeleteJob) and action.reason.startswith(TIMEOUT_MARK):
                limit = float(action.reason.removeprefix(TIMEOUT_MARK).strip().rstrip("s"))
                allowed = behind if action.name in self.unrecorded else timedelta(0)
                assert now >= self.created[action.name] + timedelta(seconds=limit) - allowed, (
                    f"{action.name} early"
                )

    def note_failures(self, sim: Simulator, at: datetime) -> None:
        for name, job in sim.jobs.items():
            if job.failed:
                self.failed.setdefault(name, at)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_flows(), st.integers(0, 2**32))
def test_random_flows_terminate_and_keep_the_invariants(flow: JobFlow, seed: int) -> None:
    # The world's behaviour comes from a seeded RNG: drawing every roll from Hypothesis would make
    # the smallest example huge.
    rng = random.Random(seed)
    # The cluster's clocks, which stamp the Jobs, may be behind the controller's or ahead of it.
    skew = rng.choice([0.0, 0.0, -30.0, -1.5, 20.0])
    sim = Simulator(flow, T0, instant_delete=rng.random() < 0.5, skew=skew)
    times = Times()
    reruns = rng.choice([0, 0, 1, 2])  # `zen-flow retry` of the Failed flow, this many times
    for _ in range(MAX_ROUNDS):
        before = sim.flow
        # Dormant steps (see planner.steps.Works) are not visited; a planner that visits every step
        # decides the same, also after lost writes (a dormant step with a Job is taken over on sight).
        assert sim.preview() == planned_eagerly(sim)
        # Often the write of a rerun's plan: what the next plan then makes of the request is the subject.
        lose_write = rng.random() < (0.5 if request(sim.flow) is not None else 0.1)
        now = sim.now
        result = sim.reconcile(write_status=not lose_write)
        check_plan(sim, before, result)
        times.check(before, now, result, skew=sim.skew, lost=lose_write)
        if before.status.phase in ("Succeeded", "Failed") and request(before) is None:
            assert sim.terminal, "an ended flow started again without a rerun request"
        if sim.terminal and any(isinstance(a, DeleteFlow) for a in result.actions):
            break  # an expired TTL deletes the flow alone: its Jobs go with it (garbage collection)
        if sim.terminal and not lose_write:
            # Nothing runs on behind a finished flow (a Job a lost write left unrecorded included: a
            # rerun's, whose request the plan after the lost write no longer honoured).
            assert not sim.running(), f"{sim.phase} flow left Jobs running: {sim.running()}"
            if reruns and sim.phase == "Failed":
                reruns -= 1
                ask_rerun(sim, rng)
                times.reran |= {name for name, job in sim.jobs.items() if job.failed}
                perturb(sim, rng, result)
                continue
            frozen = sim.flow.status
            sim.advance(10**6)
            final = sim.reconcile()
            assert final.status is frozen
            break
        if lose_write and request(sim.flow) is not None and rng.random() < 0.7:
            meddle(sim, rng)  # the rerun's write was lost: the next plan may no longer honour it
        perturb(sim, rng, result)
        times.note_failures(sim, now)  # perturb fails Jobs before it moves the clock
    else:
        raise AssertionError(f"flow did not finish: {sim.phase} {sim.flow.status.message}")
    # Never two attempts under one name (a lost status write plus a vanished Job may legitimately
    # create the same attempt again; a create of a name that still exists raises DuplicateCreate).
    owners: dict[str, set[tuple[str, int]]] = {}
    for past in sim.plans:
        for action in past.actions:
            if isinstance(action, CreateJob):
                owners.setdefault(action.name, set()).add((action.step, action.attempt))
    assert all(len(v) == 1 for v in owners.values()), "a Job name was reused across attempts"


class EagerWorks(Works):
    """Every unsettled step moving from the start: the planner before dormant steps were left alone."""

    def __init__(self, specs: Mapping[str, Step], old: tuple[StepStatus, ...]) -> None:
        super().__init__(specs, old)
        self.wake_all()


def planned_eagerly(sim: Simulator) -> Plan:
    with mock.patch.object(plan_state, "Works", EagerWorks):
        return sim.preview()


def ask_rerun(sim: Simulator, rng: random.Random, scope: str | None = None) -> None:
    """What `zen-flow retry` writes (a new id, a scope or none, the stop request removed), and the
    webhook's retried-by; the request may be refused (`rerun_refusal`): the controller says why."""
    sim.annotate(ANNOTATION_RETRY, f"retry-{rng.random()}")
    sim.annotate(ANNOTATION_RETRY_STEPS, scope)
    sim.annotate(ANNOTATION_RETRIED_BY, "bob")
    sim.annotate(ANNOTATION_STOP, None)


def meddle(sim: Simulator, rng: random.Random) -> None:
    """Someone changes the annotations while a rerun request waits to be recorded: a stop, the request
    taken back, or asked again for one failed step alone."""
    roll = rng.random()
    if roll < 0.3:
        sim.annotate(ANNOTATION_STOP, "true")
        sim.annotate(ANNOTATION_STOPPED_BY, "carol")
    elif roll < 0.6:
        sim.annotate(ANNOTATION_RETRY, None)
    else:
        failed = [s.name for s in sim.flow.status.steps if s.phase == StepPhase.FAILED]
        ask_rerun(sim, rng, rng.choice(failed) if failed else None)


def perturb(sim: Simulator, rng: random.Random, result: Plan) -> None:
    """What the world does between reconciles: Jobs finish, people approve, time passes."""
    for name in sim.running():
        roll = rng.random()
        if roll < 0.3:
            sim.fail(name)
        elif roll < 0.75:
            sim.complete(name)
        elif roll < 0.77:
            sim.vanish(name)
    if rng.random() < 0.3:
        sim.collect()
    manual = [s.name for s in sim.flow.spec.steps if s.is_manual]
    if manual and rng.random() < 0.3:
        prefix = APPROVE_PREFIX if rng.random() < 0.8 else REJECT_PREFIX
        sim.annotate(prefix + rng.choice(manual), "true")
    if rng.random() < 0.05:
        sim.set_suspend(not sim.flow.spec.suspend)
    elif sim.flow.spec.suspend and rng.random() < 0.3:
        sim.set_suspend(False)
    step = result.requeue_after if result.requeue_after and rng.random() < 0.7 else rng.choice([0, 1, 5, 30])
    sim.now += timedelta(seconds=step)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_plan_never_raises_on_garbage_status(data: st.DataObject) -> None:
    flow = data.draw(random_flows())
    phases = [p.value for p in StepPhase] + ["Bogus", ""]
    steps = [
        {
            "name": data.draw(st.sampled_from([s.name for s in flow.spec.steps] + ["ghost"])),
            "phase": data.draw(st.sampled_from(phases)),
            "retryCount": data.draw(st.integers(-2, 10**6)),
            "jobRef": data.draw(st.one_of(st.none(), st.fixed_dictionaries({"name": st.text(max_size=5)}))),
            "nextRetryTime": data.draw(st.one_of(st.none(), st.just("2024-12-31T00:00:00Z"))),
        }
        for _ in range(data.draw(st.integers(0, 6)))
    ]
    status = {
        "phase": data.draw(st.sampled_from(["Running", "Paused", "Suspended", "Pending", "Weird", None])),
        "startTime": data.draw(st.one_of(st.none(), st.just("2024-01-01T00:00:00Z"))),
        "steps": steps,
    }
    garbage = JobFlow.model_validate({**flow.model_dump(by_alias=True), "status": status})
    result = plan(garbage, [], T0)
    assert [s.name for s in result.status.steps] == [s.name for s in flow.spec.steps]
