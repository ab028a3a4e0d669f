"""Plans whose Job creates the apiserver refuses for now (planner.create_refusals), on random DAGs driven
by the simulated cluster: the status written never records a refused step as started nor names a Job
that was not created, a flow that nothing started stays Pending and unstarted, no StepStarted is told for
a start that did not happen, the condition says which step waits, and once the refusals stop the flow
runs to its end as if they had never been."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zen_flow.api import JobFlow
from zen_flow.api.constants import FlowPhase, StepPhase
from zen_flow.planner import CreateJob, CreateRefusal, refused_creates, with_create_condition
from zen_flow.planner.create_refusals import (
    JOB_CREATE_FAILING,
    REASON_CREATE_FAILED,
    REASON_CREATE_FORBIDDEN,
    REASON_NAME_TAKEN,
)
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
QUOTA = "exceeded quota: team-quota, requested: count/jobs.batch=1"


@st.composite
def dags(draw: st.DrawFn) -> JobFlow:
    steps: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 7))):
        deps = (
            draw(st.lists(st.sampled_from([f"s{j}" for j in range(i)]), unique=True, max_size=2)) if i else []
        )
        fields: dict[str, Any] = {}
        if draw(st.integers(0, 2)) == 0:
            fields["retryPolicy"] = {"limit": draw(st.integers(0, 2)), "backoff": {"duration": "5s"}}
        if draw(st.integers(0, 3)) == 0:
            fields["continueOnFailure"] = True
        steps.append(job_step(f"s{i}", *deps, **fields))
    policy: dict[str, Any] = {"ttlSecondsAfterFinished": 86400}
    if draw(st.booleans()):
        policy["parallelism"] = draw(st.integers(1, 3))
    return make_flow(steps, name="f", execution_policy=policy)


def refusal(step: str) -> CreateRefusal:
    return CreateRefusal(step, REASON_CREATE_FORBIDDEN, f"Job create refused: 403 {QUOTA}")


def taken(step: str) -> CreateRefusal:
    """`step`'s Job name held by a Job being deleted (controller/create_failures.py name_taken)."""
    return CreateRefusal(step, REASON_NAME_TAKEN, f"Job create waits: Job f-{step}-0 {GOING}")


def blip(step: str) -> CreateRefusal:
    return CreateRefusal(step, REASON_CREATE_FAILED, "Job create refused: 503 the server is shutting down")


GOING = "already exists and is on its way out (being deleted)"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flow=dags(), data=st.data())
def test_refused_creates_are_written_as_not_started_and_the_flow_ends_once_they_pass(
    flow: JobFlow, data: st.DataObject
) -> None:
    sim = Simulator(flow, T0)
    refusing_rounds = data.draw(st.integers(0, 12), label="rounds with refusals")
    for round_ in range(60):
        before = sim.flow.status
        planned = sim.preview()
        creates = [a for a in planned.actions if isinstance(a, CreateJob)]
        refused: list[CreateJob] = []
        if round_ < refusing_rounds and creates:
            picked = data.draw(st.sets(st.sampled_from(range(len(creates)))), label="refused")
            refused = [c for i, c in enumerate(creates) if i in picked]
        refusals = [refusal(c.step) for c in refused]
        result = refused_creates(sim.flow, planned, refusals, sim.now)
        status = with_create_condition(before, result.status, refusals, sim.now)
        actions = tuple(a for a in result.actions if not any(a is c for c in refused))
        sim.apply(replace(result, actions=actions, status=status))
        written = sim.flow.status
        held = {c.step for c in refused}
        for name in held:
            entry, old = written.step(name), before.step(name)
            assert entry is not None
            assert entry.message is not None
            assert QUOTA in entry.message
            # As it was: no start, no attempt, no Job recorded for it.
            assert entry.phase == (old.phase if old is not None else StepPhase.PENDING)
            assert entry.job_ref == (old.job_ref if old is not None else None)
            assert entry.retry_count == (old.retry_count if old is not None else 0)
        for entry in written.steps:  # every Job the status names was created
            if entry.job_ref is not None and entry.phase == StepPhase.RUNNING:
                assert entry.job_ref.name in sim.created
        assert not [e for e in result.events if e.reason == "StepStarted" and e.step in held]
        if written.start_time is None:
            assert written.phase in (None, FlowPhase.PENDING)
        if refused and not sim.created and before.start_time is None:
            assert written.start_time is None
            assert written.phase == FlowPhase.PENDING
            assert not [e for e in result.events if e.reason == "FlowStarted"]
        cond = next((c for c in written.conditions if c.type == JOB_CREATE_FAILING), None)
        if refused:
            assert cond is not None
            assert cond.status == "True"
            # Named first: a step refused now, its message as first written while it stays refused.
            leads = tuple(lead for c in refused for lead in (f"step {c.step}: ", f"steps {c.step}, "))
            assert cond.message.startswith(leads)
        elif cond is not None:
            assert cond.status == "False"
        if sim.terminal:
            break
        for name in sim.running():
            if data.draw(st.booleans(), label=f"{name} succeeds"):
                sim.complete(name)
            else:
                sim.fail(name)
        sim.advance(10)
    assert sim.terminal, [(s.name, s.phase, s.message) for s in sim.flow.status.steps]


def test_the_condition_keeps_its_transition_time_while_it_holds() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b")], name="f"), T0)
    first = with_create_condition(sim.flow.status, sim.flow.status, [refusal("b")], T0)
    later = datetime(2025, 1, 1, 1, tzinfo=UTC)
    again = with_create_condition(first, first, [refusal("b")], later)
    assert again is first  # nothing to write
    cleared = with_create_condition(again, again, [], later, created=True)
    (cond,) = [c for c in cleared.conditions if c.type == JOB_CREATE_FAILING]
    assert (cond.status, cond.reason, cond.last_transition_time) == ("False", "JobsCreated", later)
    # Said once: the next plans (creating something or not) keep it as it is.
    assert with_create_condition(cleared, cleared, [], later + timedelta(hours=1)) is cleared
    # Nothing refused, and nothing created either (a suspended flow): not "JobsCreated".
    idle = with_create_condition(again, again, [], later)
    (cond,) = [c for c in idle.conditions if c.type == JOB_CREATE_FAILING]
    assert (cond.status, cond.reason) == ("False", "NoCreatesRefused")
    # A flow none of whose creates ever failed gets no such condition.
    assert with_create_condition(sim.flow.status, sim.flow.status, [], later) is sim.flow.status


def test_the_conditions_message_stays_while_the_same_step_is_refused_for_the_same_reason() -> None:
    """A quota's answer says how much is used, a webhook's carries a request id: the same refusal of the
    same step is not written again (its write would bring the flow back at once, past the backoff)."""
    sim = Simulator(make_flow([job_step("a"), job_step("b"), job_step("c")], name="f"), T0)
    first = with_create_condition(sim.flow.status, sim.flow.status, [refusal("b")], T0)
    later = T0 + timedelta(minutes=1)
    varied = replace(refusal("b"), message=f"{refusal('b').message}, used: count/jobs.batch=7")
    assert with_create_condition(first, first, [varied, refusal("c")], later) is first
    # b passed, c is still refused: c is named now.
    moved = with_create_condition(first, first, [refusal("c")], later)
    (cond,) = [c for c in moved.conditions if c.type == JOB_CREATE_FAILING]
    assert cond.message is not None
    assert cond.message.startswith("step c: ")


def test_a_first_blip_on_one_step_does_not_hide_that_another_waits_for_its_job_name() -> None:
    # a's create got a first 503 (a blip, said nothing of yet); b's Job name is held by one being
    # deleted: b says so at once, the blip does not silence it.
    sim = Simulator(make_flow([job_step("a"), job_step("b")], name="f"), T0)
    planned = sim.preview()
    result = refused_creates(sim.flow, planned, [blip("a"), taken("b")], T0, quiet=True)
    status = with_create_condition(sim.flow.status, result.status, [blip("a")], T0, quiet=True, taken=["b"])
    a, b = status.step("a"), status.step("b")
    assert a is not None
    assert b is not None
    assert a.message is None
    assert b.message == f"Job create waits: Job f-b-0 {GOING}"
    assert (b.phase, b.job_ref) == (StepPhase.PENDING, None)
    assert "Job name taken by one being deleted: b" in (status.message or "")


def test_a_step_waiting_for_its_job_name_keeps_saying_so_while_another_s_create_is_refused() -> None:
    # Both creates are refused (403: JobCreateFailing True); then b's Job name turns out held by one
    # being deleted while a's is still refused. The notes of steps no longer refused are taken off, but
    # not b's: it still waits.
    sim = Simulator(make_flow([job_step("a"), job_step("b")], name="f"), T0)
    planned = sim.preview()  # a and b to start, each plan again while they wait
    first = refused_creates(sim.flow, planned, [refusal("a"), refusal("b")], T0)
    before = with_create_condition(sim.flow.status, first.status, [refusal("a"), refusal("b")], T0)
    assert any(c.type == JOB_CREATE_FAILING and c.status == "True" for c in before.conditions)
    flow = sim.flow.model_copy(update={"status": before})
    later = T0 + timedelta(seconds=10)
    for _ in range(3):  # every plan while both hold
        result = refused_creates(flow, planned, [refusal("a"), taken("b")], later)
        status = with_create_condition(flow.status, result.status, [refusal("a")], later, taken=["b"])
        b = status.step("b")
        assert b is not None
        assert b.message == f"Job create waits: Job f-b-0 {GOING}"
        assert (status.step("a") or b).message == f"Job create refused: 403 {QUOTA}"
        flow = flow.model_copy(update={"status": status})
        later += timedelta(seconds=10)
