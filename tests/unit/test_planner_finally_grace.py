"""Planner: `executionPolicy.finallyGraceSeconds`, the last seconds of `activeDeadlineSeconds` kept for the
finally steps. At startTime + deadline - grace the steps that are not finally end as a graceful stop ends
them and the finally steps start one status write later; at the deadline whatever runs stops now. The
flow ends Failed, reason DeadlineExceeded. The clock is the simulator's: every plan is made from the
stored status and the time, so a lost write or a restart decides the same."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_planner_finally import FINALLY, by_step, failed_condition, started
from test_planner_joins import message, phases
from test_planner_properties import MAX_ROUNDS, check_plan, random_flows

from zen_flow.api import JobFlow
from zen_flow.api.constants import (
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    StepPhase,
)
from zen_flow.planner import CreateJob, DeleteJob, Plan
from zen_flow.planner.grace import GRACE_MARK
from zen_flow.planner.interventions import stopped_by_request
from zen_flow.planner.status import COMMIT_WAIT
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run

T0 = datetime(2025, 1, 1, tzinfo=UTC)
DEADLINE, GRACE = 100, 30  # the grace point: T0 + 70 s
POLICY = {"activeDeadlineSeconds": DEADLINE, "finallyGraceSeconds": GRACE}
SAID = "flow deadline: the last 30s of activeDeadlineSeconds (100s) are kept for the finally steps"
ON_FAILURE: dict[str, Any] = {"when": "flow.outcome == 'Failed'", **FINALLY}


def flow(policy: dict[str, Any] | None = None, **spec: Any) -> Simulator:
    """build, then test; a gate; finally: cleanup when the flow failed, then notify."""
    steps = [
        job_step("build"),
        job_step("test", "build", retryPolicy={"limit": 3}),
        manual_step("gate"),
        job_step("cleanup", **ON_FAILURE),
        job_step("notify", "cleanup", **FINALLY),
    ]
    return Simulator(make_flow(steps, execution_policy=policy or POLICY, **spec), T0)


def job_of(sim: Simulator, step: str) -> str:
    return next(j for j in sim.running() if sim.steps[j] == step)


def deleted(result: Plan) -> list[tuple[str, str]]:
    return [(a.step, a.reason) for a in result.actions if isinstance(a, DeleteJob)]


def created(result: Plan) -> list[str]:
    return [a.step for a in result.actions if isinstance(a, CreateJob)]


def reasons(result: Plan) -> list[str]:
    return [e.reason for e in result.events]


def condition(sim: Simulator, kind: str) -> tuple[str, str]:
    found = next(c for c in sim.flow.status.conditions if c.type == kind)
    return found.status, found.reason


def at_the_grace_point(sim: Simulator, *, write: bool = True) -> Plan:
    """build succeeded at 10 s, test runs (the gate waits) when the grace point comes."""
    first = sim.reconcile()
    assert first.requeue_after == DEADLINE - GRACE  # woken for the grace point, before the deadline
    sim.advance(10)
    sim.complete(job_of(sim, "build"))
    sim.reconcile()
    sim.advance(DEADLINE - GRACE - 11)
    before = sim.reconcile()
    assert not deleted(before)  # a second before the point: nothing happens
    assert before.requeue_after == 1
    assert phases(sim)["test"] == "Running"
    sim.advance(1)
    return sim.reconcile(write_status=write)


def test_at_the_grace_point_the_other_steps_end_and_the_finally_steps_start_one_write_later() -> None:
    sim = flow()
    result = at_the_grace_point(sim)
    test = next(name for name, step in sim.steps.items() if step == "test")
    assert [(a.name, a.reason) for a in result.actions if isinstance(a, DeleteJob)] == [(test, SAID)]
    assert not created(result)
    assert phases(sim) == {
        "build": "Succeeded",
        "test": "Failed",
        "gate": "Skipped",
        "cleanup": "Pending",
        "notify": "Pending",
    }
    assert message(sim, "test") == SAID  # not retried: its retryPolicy does not apply
    assert message(sim, "gate") == "no decision: " + SAID
    assert message(sim, "cleanup") == COMMIT_WAIT
    assert sim.flow.status.message == SAID + "; the finally steps start next: cleanup"
    assert reasons(result).count("FlowDeadlineGrace") == 1
    assert "FlowFailed" not in reasons(result)
    assert result.requeue_after == GRACE  # the deadline's wake-up stays
    # The plan that write brings starts cleanup, whose `when` sees the flow Failed.
    second = sim.reconcile()
    assert created(second) == ["cleanup"]
    assert "FlowDeadlineGrace" not in reasons(second)  # said once
    assert sim.phase == "Running"
    assert condition(sim, "Running") == ("True", "FlowRunning")
    assert condition(sim, "Progressing")[0] == "True"
    assert condition(sim, "Failed")[0] == "False"  # `kubectl wait --for=condition=Failed` waits on
    sim.advance(5)
    sim.complete(job_of(sim, "cleanup"))
    sim.reconcile()
    sim.complete(job_of(sim, "notify"))
    end = sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)
    assert condition(sim, "Failed") == ("True", "DeadlineExceeded")
    assert condition(sim, "Progressing") == ("False", "FlowFailed")
    assert (phases(sim)["cleanup"], phases(sim)["notify"]) == ("Succeeded", "Succeeded")
    assert {"FlowDeadlineExceeded", "FlowFailed"} <= set(reasons(end))
    assert "FlowDeadlineGrace" not in reasons(end)
    assert started(sim).count("test") == 1


def test_at_the_deadline_the_finally_steps_still_running_stop_now() -> None:
    sim = flow()
    at_the_grace_point(sim)
    sim.reconcile()
    cleanup = job_of(sim, "cleanup")
    sim.advance(GRACE - 1)
    assert not deleted(sim.reconcile())
    sim.advance(1)
    result = sim.reconcile()
    assert [(a.name, a.reason) for a in result.actions if isinstance(a, DeleteJob)] == [
        (cleanup, "flow deadline exceeded")
    ]
    assert sim.phase == "Failed"
    assert failed_condition(sim) == ("DeadlineExceeded", "flow deadline of 100s exceeded")
    assert (phases(sim)["cleanup"], message(sim, "notify")) == (
        "Failed",
        "not started: flow deadline exceeded",
    )
    assert not sim.running()


def test_a_failed_finally_step_keeps_the_reason_and_is_named() -> None:
    sim = flow()
    at_the_grace_point(sim)
    sim.reconcile()
    sim.fail(job_of(sim, "cleanup"))
    run(sim, by_step(sim, {}))
    assert phases(sim)["notify"] == "Succeeded"  # finally steps do not fail-fast each other
    reason, text = failed_condition(sim)
    assert reason == "DeadlineExceeded"
    assert text.startswith(SAID + "; finally step cleanup failed: Job failed")


def ending(sim: Simulator) -> tuple[Any, ...]:
    steps = tuple((s.name, s.phase, s.message, s.retry_count) for s in sim.flow.status.steps)
    return sim.phase, failed_condition(sim), steps, sorted(started(sim))


@pytest.mark.parametrize("instant", [True, False])
def test_a_lost_write_or_a_restart_at_the_grace_point_ends_the_same_way(instant: bool) -> None:
    # The plan that deleted test's Job loses its status write (a 409, a restart), once or twice: the next
    # plan finds test Running with its Job gone or going. It ends it for the grace (not retried, not
    # "deleted outside zen-flow"), and creates cleanup only once that is stored.
    endings = []
    for lost in (0, 1, 2):
        sim = flow()
        sim.instant_delete = instant
        at_the_grace_point(sim, write=lost == 0)
        for _ in range(lost - 1):
            assert not created(sim.reconcile(write_status=False))
        if lost:
            assert not created(sim.reconcile())  # ends test, cleanup waits for that write
        run(sim, by_step(sim, {}))
        endings.append(ending(sim))
    assert endings[1] == endings[0]
    assert endings[2] == endings[0]
    assert endings[0][1] == ("DeadlineExceeded", SAID)


def test_the_same_stored_status_and_time_give_the_same_plan() -> None:
    # A restarted controller has nothing but the flow, its Jobs and the clock: its plan is the one the
    # previous controller made, at every moment of the run.
    sim = flow()
    sim.reconcile()
    for _ in range(40):
        again = Simulator(sim.flow, sim.now, jobs=dict(sim.jobs))
        assert again.preview() == sim.preview()
        result = sim.reconcile()
        for name in sim.running():
            if sim.steps[name] != "test":
                sim.complete(name)
        sim.advance(min(result.requeue_after or 5, 5))
        if sim.terminal:
            break
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)


def test_a_controller_down_over_the_grace_point_ends_the_steps_when_it_looks() -> None:
    sim = flow()
    sim.reconcile()
    sim.advance(DEADLINE - GRACE + 15)
    result = sim.reconcile()
    assert [step for step, _ in deleted(result)] == ["build"]
    assert message(sim, "test") == "not started: " + SAID
    assert result.requeue_after == GRACE - 15
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)
    assert started(sim) == ["build", "cleanup", "notify"]


def test_a_controller_down_past_the_deadline_stops_now_and_runs_no_finally_step() -> None:
    sim = flow()
    sim.reconcile()
    sim.advance(DEADLINE + 5)
    sim.reconcile()
    assert failed_condition(sim) == ("DeadlineExceeded", "flow deadline of 100s exceeded")
    assert message(sim, "cleanup") == "not started: flow deadline exceeded"
    assert started(sim) == ["build"]


def test_a_grace_point_after_the_other_steps_ended_stops_nothing() -> None:
    steps = [job_step("a"), job_step("cleanup", **FINALLY)]
    sim = Simulator(make_flow(steps, execution_policy=POLICY), T0)
    sim.reconcile()
    sim.advance(50)
    sim.complete(job_of(sim, "a"))
    sim.reconcile()
    sim.reconcile()
    assert phases(sim)["cleanup"] == "Running"
    sim.advance(30)  # past the grace point
    result = sim.reconcile()
    assert not deleted(result)
    assert "FlowDeadlineGrace" not in reasons(result)
    sim.complete(job_of(sim, "cleanup"))
    sim.reconcile()
    assert sim.phase == "Succeeded"


def test_without_a_finally_step_the_grace_changes_nothing() -> None:
    steps = [job_step("a"), job_step("b", "a"), manual_step("gate")]
    plans = []
    for policy in ({"activeDeadlineSeconds": DEADLINE}, POLICY):
        sim = Simulator(make_flow(steps, execution_policy=policy), T0)
        seen = [sim.reconcile()]
        for seconds in (50, 20, 1, 29, 1):
            sim.advance(seconds)
            seen.append(sim.reconcile())
        plans.append([(p.actions, p.events, p.requeue_after, p.status) for p in seen])
    assert plans[0] == plans[1]
    assert plans[1][-1][3].phase == "Failed"


def test_a_suspended_flow_ends_its_steps_and_runs_its_finally_steps_once_resumed() -> None:
    sim = flow()
    sim.reconcile()
    sim.advance(60)
    sim.set_suspend(True)
    sim.reconcile()
    sim.advance(10)
    result = sim.reconcile()
    assert [step for step, _ in deleted(result)] == ["build"]
    sim.reconcile()
    assert sim.phase == "Suspended"
    assert phases(sim)["cleanup"] == "Pending"  # held, as after a failure
    sim.advance(10)
    sim.set_suspend(False)
    sim.reconcile()
    assert started(sim) == ["build", "cleanup"]
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)


def test_the_outcome_stays_failed_for_finally_steps_decided_in_a_later_plan() -> None:
    # The grace only skipped steps (a waiting gate): no step failed. Under parallelism 1 the second
    # finally step's `when` is decided plans later: the status must still say the flow failed.
    steps = [
        manual_step("gate"),
        job_step("after", "gate"),
        job_step("first", **ON_FAILURE),
        job_step("second", **ON_FAILURE),
    ]
    sim = Simulator(make_flow(steps, execution_policy={**POLICY, "parallelism": 1}), T0)
    sim.reconcile()
    sim.advance(DEADLINE - GRACE)
    sim.reconcile()
    run(sim, by_step(sim, {}))
    assert phases(sim) == {"gate": "Skipped", "after": "Skipped", "first": "Succeeded", "second": "Succeeded"}
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)


def test_a_rerun_runs_what_the_grace_ended_and_counts_a_new_grace_point() -> None:
    sim = flow()
    at_the_grace_point(sim)
    run(sim, by_step(sim, {}))
    assert sim.phase == "Failed"
    sim.advance(600)
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.annotate(ANNOTATION_RETRIED_BY, "carol")
    result = sim.reconcile()
    assert "FlowRetried" in reasons(result)
    assert phases(sim) == {
        "build": "Succeeded",
        "test": "Running",
        "gate": "PendingApproval",
        "cleanup": "Pending",
        "notify": "Pending",
    }
    assert result.requeue_after == DEADLINE - GRACE  # the rerun's own grace point
    sim.advance(DEADLINE - GRACE)
    second = sim.reconcile()
    assert [step for step, _ in deleted(second)] == ["test"]
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)
    assert started(sim).count("cleanup") == 2


def test_a_graceful_stop_before_the_grace_point_keeps_its_reason() -> None:
    sim = flow()
    sim.reconcile()
    sim.advance(60)
    sim.annotate(ANNOTATION_STOP, "RunFinally")
    sim.annotate(ANNOTATION_STOPPED_BY, "alice")
    sim.reconcile()
    sim.reconcile()
    sim.advance(10)
    result = sim.reconcile()
    assert not deleted(result)
    assert "FlowDeadlineGrace" not in reasons(result)
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("Stopped", "stopped by alice")


def test_a_graceful_stop_after_the_grace_point_stops_nothing_more() -> None:
    sim = flow()
    at_the_grace_point(sim)
    sim.reconcile()
    sim.annotate(ANNOTATION_STOP, "RunFinally")
    sim.annotate(ANNOTATION_STOPPED_BY, "alice")
    result = sim.reconcile()
    assert not deleted(result)
    assert "FlowStopped" not in reasons(result)
    run(sim, by_step(sim, {}))
    assert failed_condition(sim) == ("DeadlineExceeded", SAID)


@pytest.mark.parametrize("slots", [{}, {"parallelism": 1}])
def test_the_estimate_expects_the_finally_steps_at_the_grace_point_and_the_end_by_the_deadline(
    slots: dict[str, int],
) -> None:
    # Under parallelism 1 too: b gives its slot back at the point, where cleanup takes it (before: cleanup
    # waited for b's expected end, 5 s past the point).
    steps = [job_step("a"), job_step("b", "a"), job_step("cleanup", **FINALLY)]
    estimates = []
    for policy in (
        {"activeDeadlineSeconds": 30},  # a takes 10 s: b until 20, cleanup until 30
        {"activeDeadlineSeconds": 30, "finallyGraceSeconds": 15},  # b cut at 15: cleanup until 25
        {"activeDeadlineSeconds": 22, "finallyGraceSeconds": 5},  # b cut at 17: the deadline at 22
    ):
        sim = Simulator(make_flow(steps, execution_policy={**policy, **slots}), T0)
        sim.reconcile()
        sim.advance(10)
        sim.complete(job_of(sim, "a"))
        sim.reconcile()
        estimates.append(sim.flow.status.estimated_completion_time)
    assert estimates == [T0 + timedelta(seconds=s) for s in (30, 25, 22)]


# --- properties -------------------------------------------------------------------------------------------


@st.composite
def graced_flows(draw: st.DrawFn) -> JobFlow:
    """A random flow (test_planner_properties) with a deadline and a finally grace."""
    flow = draw(random_flows())
    deadline = draw(st.integers(20, 400))
    policy = {
        **flow.spec.execution_policy.model_dump(by_alias=True, exclude_none=True),  # type: ignore[union-attr]
        "activeDeadlineSeconds": deadline,
        "finallyGraceSeconds": draw(st.integers(1, deadline - 1)),
    }
    return make_flow(
        [s.model_dump(by_alias=True, exclude_none=True) for s in flow.spec.steps],
        name=flow.metadata.name,
        execution_policy=policy,
    )


def world(sim: Simulator, rng: random.Random, result: Plan) -> None:
    """Jobs finish or run on, gates are approved, the clock moves (often to the wake-up asked for)."""
    for name in sim.running():
        roll = rng.random()
        if roll < 0.2:
            sim.fail(name)
        elif roll < 0.45:
            sim.complete(name)
    if rng.random() < 0.3:
        sim.collect()
    if rng.random() < 0.03:
        sim.set_suspend(not sim.flow.spec.suspend)
    wake = result.requeue_after
    sim.advance(wake if wake and rng.random() < 0.6 else rng.choice([0, 1, 7, 25]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graced_flows(), st.integers(0, 2**32))
def test_random_flows_keep_the_grace_amid_lost_writes(flow: JobFlow, seed: int) -> None:
    rng = random.Random(seed)
    sim = Simulator(flow, T0, instant_delete=rng.random() < 0.5)
    final = {s.name for s in flow.spec.steps if s.is_finally}
    lost_last = False
    policy = flow.spec.execution_policy
    assert policy is not None
    assert policy.active_deadline_seconds
    assert policy.finally_grace_seconds
    keep = policy.active_deadline_seconds - policy.finally_grace_seconds
    # In half the runs a graceful stop lands, now and then before the point, mostly once it has come: seen
    # by the plan that first sees the point, or after that plan's write was lost (the stop's annotation
    # is what refuses it: a 409).
    stop = rng.random() < 0.5
    for _ in range(MAX_ROUNDS):
        start = sim.flow.status.start_time
        point = start + timedelta(seconds=keep) if start is not None else None
        past = point is not None and sim.now >= point
        if stop and ((past and (lost_last or rng.random() < 0.3)) or rng.random() < 0.01):
            sim.annotate(ANNOTATION_STOP, "RunFinally")
            sim.annotate(ANNOTATION_STOPPED_BY, "alice")
            stop = False
        before = sim.flow
        deadline = start + timedelta(seconds=policy.active_deadline_seconds) if start is not None else None
        now = sim.now
        # A restarted controller decides the same from the stored flow, its Jobs and the clock.
        assert Simulator(before, now, jobs=dict(sim.jobs), instant_delete=sim.instant_delete).preview() == (
            sim.preview()
        )
        lose = lost_last = rng.random() < 0.2
        result = sim.reconcile(write_status=not lose)
        check_plan(sim, before, result)
        if final and point is not None:
            # Once the point has come, the graceful stop ends no step the grace would: with the grace's
            # write landed or lost, seen together with the point or after it, alike.
            late = [
                s.name
                for s in result.status.steps
                if s.name not in final
                and stopped_by_request(s)
                and s.completion_time is not None
                and s.completion_time >= point
            ]
            assert not late, f"{late} stopped past the grace point"
        if final and point is not None and now >= point:
            late = [step for step in created(result) if step not in final]
            assert not late, f"{late} started after the grace point"
            if deadline is not None and now < deadline and before.status.phase not in ("Succeeded", "Failed"):
                # Every other step has ended (as the graceful stop ends them), in this very plan.
                unended = [
                    s.name
                    for s in result.status.steps
                    if s.name not in final and not StepPhase(s.phase).terminal
                ]
                assert not unended, f"{unended} still going past the grace point"
        if sim.terminal and not lose:
            assert not sim.running(), f"{sim.phase} flow left Jobs running: {sim.running()}"
            break
        world(sim, rng, result)
    else:
        raise AssertionError(f"flow did not finish: {sim.phase} {sim.flow.status.message}")
    graced = [
        s.name for s in sim.flow.status.steps if GRACE_MARK in (s.message or "") and s.name not in final
    ]
    if graced:
        # What the grace ended, the flow ends for (the deadline's stop now, after it, says the same reason).
        assert failed_condition(sim)[0] == "DeadlineExceeded"
    owners: dict[str, set[tuple[str, int]]] = {}
    for past in sim.plans:
        for action in past.actions:
            if isinstance(action, CreateJob):
                owners.setdefault(action.name, set()).add((action.step, action.attempt))
    assert all(len(v) == 1 for v in owners.values()), "a Job name was reused across attempts"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_flows(), st.integers(1, 399), st.integers(0, 2**32))
def test_without_a_finally_step_the_grace_leaves_every_plan_as_it_was(
    flow: JobFlow, grace: int, seed: int
) -> None:
    steps = [s.model_dump(by_alias=True, exclude_none=True) for s in flow.spec.steps if not s.is_finally]
    if not steps:
        return
    plans = []
    for policy in (
        {"activeDeadlineSeconds": 400},
        {"activeDeadlineSeconds": 400, "finallyGraceSeconds": grace},
    ):
        rng = random.Random(seed)
        sim = Simulator(make_flow(steps, execution_policy=policy), T0)
        seen = []
        for _ in range(200):
            result = sim.reconcile()
            seen.append((result.actions, result.events, result.requeue_after, result.status))
            if sim.terminal:
                break
            world(sim, rng, result)
        plans.append(seen)
    assert plans[0] == plans[1]
