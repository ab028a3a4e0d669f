"""jobRetention FailedOnly on random flows (test_planner_properties's, some of whose steps pass an output,
or their Job's own status, to the steps after them) in a random world: the same flow in the same world
ends exactly as under All (every step's phase, outputs, attempts and message), and no Job of a Failed
step's last attempt is deleted: only the Jobs of successes the stored status holds, and of superseded
attempts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_planner_properties import (
    MAX_ROUNDS,
    T0,
    ask_rerun,
    check_plan,
    meddle,
    perturb,
    random_flows,
)

from zen_flow.api import JobFlow
from zen_flow.api.constants import StepPhase
from zen_flow.api.job import Job
from zen_flow.planner import CreateJob, DeleteFlow, DeleteJob, Plan
from zen_flow.planner.interventions import request
from zen_flow.planner.retention import RELEASED_REASON, SUPERSEDED_FAILED_ONLY, SUPERSEDED_REASON
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

COUNT = {"parameters": [{"name": "count", "valueFrom": {"jsonPath": "$.succeeded"}}]}
# What a reader's input takes of the step it reads: a stored output, or the Job's own status.
PATHS = ["$.outputs.parameters.count", "$.succeeded"]


@st.composite
def passing_flows(draw: st.DrawFn) -> JobFlow:
    """A random flow whose Job steps may have an output, and may read one dependency, or (a finally step)
    any step that is not finally: its output, or its Job's status."""
    flow = draw(random_flows())
    doc = flow.model_dump(by_alias=True, exclude_none=True)
    main = [s["name"] for s in doc["spec"]["steps"] if not s.get("finally") and s.get("type") != "Manual"]
    for step in doc["spec"]["steps"]:
        if step.get("type") == "Manual":
            continue
        if draw(st.booleans()):
            step["outputs"] = COUNT
        sources = step.get("dependencies") or []
        if step.get("finally") and main and draw(st.booleans()):
            # A finally step reads any step that is not finally, and a rerun runs it again whatever its
            # outcome: the Job it reads stays while the flow may be rerun.
            sources = [*sources, *main]
        if sources and draw(st.integers(0, 3)):
            source = f"{draw(st.sampled_from(sources))}:{draw(st.sampled_from(PATHS))}"
            step["inputs"] = {"parameters": [{"name": "n", "valueFrom": {"jsonPath": source}}]}
    return JobFlow.model_validate(doc)


def with_retention(flow: JobFlow, retention: str) -> JobFlow:
    policy = flow.spec.execution_policy
    assert policy is not None
    spec = flow.spec.model_copy(
        update={"execution_policy": policy.model_copy(update={"job_retention": retention})}
    )
    return flow.model_copy(update={"spec": spec})


@dataclass
class Run:
    sim: Simulator
    released: int = 0
    deleted: bool = False  # the flow itself (its TTL)


def run(flow: JobFlow, seed: int) -> Run:
    """test_planner_properties's world: the same rolls for the same seed whatever the policy, as long as
    the plans decide the same (Jobs it deletes are finished ones: never among those the world rolls for)."""
    rng = random.Random(seed)
    skew = rng.choice([0.0, 0.0, -30.0, -1.5, 20.0])
    sim = Simulator(flow, T0, instant_delete=rng.random() < 0.5, skew=skew)
    out = Run(sim)
    reruns = rng.choice([0, 0, 1, 2])
    for _ in range(MAX_ROUNDS):
        before, jobs = sim.flow, dict(sim.jobs)
        lose_write = rng.random() < (0.5 if request(sim.flow) is not None else 0.1)
        result = sim.reconcile(write_status=not lose_write)
        check_plan(sim, before, result)
        for action in result.actions:
            if isinstance(action, DeleteJob) and action.reason == RELEASED_REASON:
                out.released += 1
                assert jobs[action.name].complete, f"{action.name}: a failed Job deleted"
            elif isinstance(action, DeleteJob) and action.reason == SUPERSEDED_FAILED_ONLY:
                assert superseded(jobs[action.name], action.step, result.status.steps)
        if sim.terminal and any(isinstance(a, DeleteFlow) for a in result.actions):
            out.deleted = True
            break
        if sim.terminal and not lose_write:
            if reruns and sim.phase == "Failed":
                reruns -= 1
                ask_rerun(sim, rng)
                perturb(sim, rng, result)
                continue
            ended = sim.reconcile()  # the plan of the ended flow: FailedOnly deletes its last successes' Jobs
            out.deleted = any(isinstance(a, DeleteFlow) for a in ended.actions)
            out.released += sum(
                isinstance(a, DeleteJob) and a.reason == RELEASED_REASON for a in ended.actions
            )
            break
        if lose_write and request(sim.flow) is not None and rng.random() < 0.7:
            meddle(sim, rng)
        perturb(sim, rng, result)
    else:
        raise AssertionError(f"flow did not finish: {sim.phase} {sim.flow.status.message}")
    return out


def superseded(job: Job, step: str, after: tuple[Any, ...]) -> bool:
    """Is `job` an earlier attempt of `step` than the one the plan's status records?"""
    recorded = next(s for s in after if s.name == step)
    ref = recorded.job_ref
    return job.finished and (ref is None or ref.name != job.metadata.name)


def kept_job(run: Run, step: Any) -> bool:
    """Is the Job `step` records still there (and not on its way out)?"""
    ref = step.job_ref
    job = run.sim.jobs.get(ref.name) if ref is not None else None
    return job is not None and not job.deleting


def outcome(sim: Simulator) -> list[tuple[Any, ...]]:
    return [
        (s.name, s.phase, s.outputs, s.retry_count, s.message, s.job_ref.name if s.job_ref else None)
        for s in sim.flow.status.steps
    ]


# A Succeeded flow whose only Job step failed, tolerated (allowFailure), its Job deleted by someone else:
# FailedOnly keeps a Failed step's Job, tolerated or not, so nothing is released (found by hypothesis).
TOLERATED_ONLY = make_flow(
    [
        job_step("s0", finally_=True, allowFailure=True),
        {"name": "s1", "type": "Manual", "when": "never", "allowFailure": True},
    ],
    execution_policy={"ttlSecondsAfterFinished": 60},
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(passing_flows(), st.integers(0, 2**32))
@example(TOLERATED_ONLY, 0)
def test_failed_only_ends_as_all_does_and_keeps_the_failures_jobs(flow: JobFlow, seed: int) -> None:
    kept = run(with_retention(flow, "All"), seed)
    lean = run(with_retention(flow, "FailedOnly"), seed)
    assert (lean.sim.phase, outcome(lean.sim)) == (kept.sim.phase, outcome(kept.sim))
    assert lean.sim.flow.status.message == kept.sim.flow.status.message
    for s in lean.sim.flow.status.steps:
        if s.phase == StepPhase.FAILED and s.job_ref is not None and s.job_ref.name in kept.sim.jobs:
            assert s.job_ref.name in lean.sim.jobs, f"step {s.name} failed and lost its Job"
    assert set(lean.sim.jobs) <= set(kept.sim.jobs)
    if lean.sim.phase == "Succeeded" and not lean.deleted:
        # Nothing reruns a Succeeded flow, so nothing needs its successes' Jobs: all are deleted.
        left = [
            s.name for s in lean.sim.flow.status.steps if s.phase == StepPhase.SUCCEEDED and kept_job(lean, s)
        ]
        assert not left, f"steps {left} succeeded and kept their Jobs"
        # A Succeeded flow may hold Failed steps too (allowFailure tolerated them): their Jobs stay, so
        # only a Succeeded step with a Job says some Job was released; and only one whose Job the same
        # run under All still has at its end: the simulated world may delete a Job before FailedOnly
        # would have released it (then there is nothing left to release).
        steps = lean.sim.flow.status.steps
        survivors = [
            s
            for s in steps
            if s.phase == StepPhase.SUCCEEDED and s.job_ref and s.job_ref.name in kept.sim.jobs
        ]
        assert lean.released or not survivors


@pytest.mark.parametrize(
    ("retention", "reason"), [("FailedOnly", SUPERSEDED_FAILED_ONLY), ("LastAttempt", SUPERSEDED_REASON)]
)
def test_an_ended_flow_deletes_the_attempt_its_last_plan_superseded(retention: str, reason: str) -> None:
    # The shrunk failure of the property above (seed 36952303928400455441992780946806372936): the plan that
    # created a retry's Job lost its write, so the stored status first records that attempt in the plan
    # that sees it succeed and ends the flow; the earlier attempt is superseded only then, and the ended
    # flow's plan deletes its Job (planner.retention: "a flow that has ended does the same").
    retry = {"limit": 1, "backoff": {"type": "Fixed", "duration": "1s"}}
    flow = make_flow(
        [job_step("a", retryPolicy=retry)], name="f", execution_policy={"jobRetention": retention}
    )
    sim = Simulator(flow, T0)

    def reconcile(write_status: bool = True) -> Plan:
        before = sim.flow
        result = sim.reconcile(write_status=write_status)
        check_plan(sim, before, result)
        return result

    first = reconcile().actions[0]
    assert isinstance(first, CreateJob)
    sim.fail(first.name)
    reconcile()  # Retrying, stored
    sim.now += timedelta(seconds=2)
    second = reconcile(write_status=False).actions[0]  # the retry's Job, its status write lost
    assert isinstance(second, CreateJob)
    assert second.attempt == 1
    sim.complete(second.name)
    ended = reconcile()
    assert ended.status.phase == "Succeeded"
    assert not ended.actions  # the stored status held attempt 0: nothing superseded yet
    after = reconcile()  # the ended flow's plan
    assert [a.name for a in after.actions if isinstance(a, DeleteJob) and a.reason == reason] == [first.name]
    assert after.status == ended.status  # frozen: the step stays Succeeded at its last attempt
