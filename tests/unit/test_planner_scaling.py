"""Planner: a plan's work follows the steps that can move, not the length of the flow; what it skips
(settled and dormant steps) still ends, cascades and is taken over exactly as before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from zen_flow.api.constants import ANNOTATION_STOP, APPROVE_PREFIX
from zen_flow.api.flow_status import StepStatus
from zen_flow.api.jobflow import Step
from zen_flow.planner import CreateJob, plan
from zen_flow.planner.memo import IdentityMemo
from zen_flow.planner.shape import Shape, _derive, shape_of
from zen_flow.planner.steps import StepWork
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def chain(length: int, **fields: Any) -> list[dict[str, Any]]:
    return [job_step(f"s{i}", *([f"s{i - 1}"] if i else []), **fields) for i in range(length)]


def phases(sim: Simulator) -> dict[str, str]:
    return {s.name: s.phase for s in sim.flow.status.steps}


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the steps whose working copies plans make."""
    seen: list[str] = []
    original = StepWork.load.__func__

    def counting(cls: type[StepWork], spec: Step, old: StepStatus | None) -> StepWork:
        seen.append(spec.name)
        return original(cls, spec, old)

    monkeypatch.setattr(StepWork, "load", classmethod(counting))
    return seen


@pytest.mark.parametrize("length", [20, 500])
def test_a_plan_of_a_long_chain_works_on_the_steps_that_can_move(length: int, loads: list[str]) -> None:
    sim = Simulator(make_flow(chain(length)), T0)
    for _ in range(length // 2):
        sim.reconcile()
        for job in sim.running():
            sim.complete(job)
        sim.advance(1)
    sim.reconcile()
    sim.reconcile()  # records the new Job's uid (the controller does it in the create's own write)
    running = sim.running()
    assert len(running) == 1
    loads.clear()
    quiet = sim.preview()
    assert quiet.status == sim.flow.status
    assert quiet.actions == ()
    # The running step and the next one (waiting on it); the settled half and the dormant rest are not
    # visited.
    assert sorted(loads) == sorted({f"s{length // 2}", f"s{length // 2 + 1}"})
    loads.clear()
    sim.complete(running[0])
    moved = sim.reconcile()
    assert [a.step for a in moved.actions if isinstance(a, CreateJob)] == [f"s{length // 2 + 1}"]
    assert len(loads) <= 3


def test_a_skip_cascades_through_dormant_steps_in_one_plan() -> None:
    steps = chain(6)
    steps[2]["when"] = "never"
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert phases(sim) == {
        "s0": "Succeeded",
        "s1": "Succeeded",
        "s2": "Skipped",
        "s3": "Skipped",
        "s4": "Skipped",
        "s5": "Skipped",
    }
    assert sim.phase == "Succeeded"


def test_a_failure_skips_the_dormant_steps_behind_it_while_another_branch_runs() -> None:
    steps = [*chain(4), job_step("side")]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.fail(next(job for job in sim.running() if sim.steps[job] == "s0"))
    sim.reconcile()
    assert phases(sim)["s0"] == "Failed"
    assert phases(sim)["side"] == "Running"
    assert [phases(sim)[f"s{i}"] for i in (1, 2, 3)] == ["Skipped"] * 3
    assert sim.phase == "Running"  # waiting for `side` to finish before it ends Failed


def test_jobs_of_lost_writes_are_taken_over_down_a_chain_never_created_twice() -> None:
    sim = Simulator(make_flow(chain(3)), T0)  # strict: a second create of one name raises
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile(write_status=False)  # s0 Succeeded and s1 created: the status write is lost
    sim.complete(sim.running()[0])
    sim.reconcile(write_status=False)  # again: s1 Succeeded and s2 created, lost
    sim.complete(sim.running()[0])
    assert phases(sim) == {"s0": "Running", "s1": "Pending", "s2": "Pending"}
    result = sim.reconcile()
    assert not [a for a in result.actions if isinstance(a, CreateJob)]
    assert phases(sim) == {"s0": "Succeeded", "s1": "Succeeded", "s2": "Succeeded"}
    assert sim.phase == "Succeeded"
    assert len(sim.created) == 3


@pytest.mark.parametrize("ending", ["stop", "failure"])
def test_no_job_a_lost_write_made_is_left_behind_a_dormant_step(ending: str) -> None:
    # A pre-approved gate settles in the same plan as the step before it; that plan's status write is
    # lost (a 409: the stop annotation itself is an edit of the flow). `deploy`, behind the gate, waits
    # for the gate's decision to be stored, so no Job of it runs untracked behind a gate the status still
    # has Pending: a stop or a failure elsewhere ends the flow with nothing left running.
    flow = make_flow(
        [job_step("build"), job_step("lint"), manual_step("gate", "build"), job_step("deploy", "gate")],
        annotations={APPROVE_PREFIX + "gate": "true"},
    )
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.complete(next(job for job in sim.running() if sim.steps[job] == "build"))
    created = sim.reconcile(write_status=False)
    assert [a.step for a in created.actions if isinstance(a, CreateJob)] == []
    assert phases(sim)["deploy"] == "Pending"
    if ending == "stop":
        sim.annotate(ANNOTATION_STOP, "no longer needed")
    else:
        sim.fail(next(job for job in sim.running() if sim.steps[job] == "lint"))
    sim.reconcile()
    sim.reconcile()
    assert sim.phase == "Failed"
    assert phases(sim)["deploy"] == "Skipped"
    assert "deploy" not in sim.steps.values()
    assert not sim.running()


def test_a_suspended_flow_still_ends_when_a_step_fails_and_skips_its_dormant_steps() -> None:
    sim = Simulator(make_flow(chain(5)), T0)
    sim.reconcile()
    sim.set_suspend(True)
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Failed"
    assert [phases(sim)[f"s{i}"] for i in range(1, 5)] == ["Skipped"] * 4


def test_the_shape_is_derived_once_per_spec_and_the_memo_stays_bounded() -> None:
    flow = make_flow(chain(30))
    assert shape_of(flow) is shape_of(flow.model_copy())  # the same spec object: remembered
    other = make_flow(chain(30))
    assert shape_of(other) is not shape_of(flow)
    assert shape_of(other) == shape_of(flow)

    memo: IdentityMemo[Shape] = IdentityMemo(budget=50)
    a, b, c = (make_flow(chain(20)).spec.steps for _ in range(3))
    first = memo.get(a, lambda: _derive(a))
    assert memo.get(a, lambda: _derive(a)) is first
    memo.get(b, lambda: _derive(b))
    memo.get(c, lambda: _derive(c))  # 60 steps > 50: the least recently planned (a) is dropped
    assert memo.get(a, lambda: _derive(a)) is not first
    assert memo.get(a, lambda: _derive(a)) == first
    assert memo.get(a, lambda: _derive(b), context="other") is not first  # another context: derived anew


def test_a_plan_of_an_invalid_spec_still_names_what_is_wrong() -> None:
    flow = make_flow([job_step("a", "b"), job_step("b", "a"), job_step("c", "ghost")])
    result = plan(flow, [], T0)
    assert result.status.phase == "Failed"
    assert "unknown step 'ghost'" in (result.status.message or "")
