"""Planner: durations and backoff, the flow deadline and TTL — all scheduled, not polled."""

from __future__ import annotations

import pytest
from planner_time_rig import T0, policy, reasons

from zen_flow.api.jobflow import RetryPolicy
from zen_flow.planner import DeleteFlow, DeleteJob, parse_duration, retry_delay
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

# --- durations and backoff ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("10s", 10),
        ("1m30s", 90),
        ("2h", 7200),
        ("1.5h", 5400),
        ("0", 0),
        ("1h2m3s4ms", 3723.004),
    ],
)
def test_parse_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "1m 30s", "abc"])
def test_reject_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("retry_policy", "expected"),
    [
        (policy("Exponential", duration="10s"), [10, 20, 40, 80]),
        (policy("Exponential", duration="1s", factor=3.0), [1, 3, 9, 27]),
        (policy("Linear", duration="5s"), [5, 10, 15, 20]),
        (policy("Fixed", duration="7s"), [7, 7, 7, 7]),
        (policy(), [10, 20, 40, 80]),
        (RetryPolicy(), [10, 20, 40, 80]),
        (policy("Exponential", duration="bogus"), [10, 20, 40, 80]),
    ],
)
def test_backoff_types(retry_policy: RetryPolicy, expected: list[float]) -> None:
    assert [retry_delay(retry_policy, n) for n in range(4)] == expected


def test_backoff_is_capped() -> None:
    assert retry_delay(policy("Exponential", duration="10s"), 20) == 3600
    assert retry_delay(policy("Linear", duration="10m"), 100) == 3600
    assert retry_delay(policy("Exponential", duration="10s", maxDuration="1m"), 5) == 60
    assert retry_delay(policy("Exponential", duration="10s"), 10**9) == 3600  # no overflow
    # A duration above the default cap is cut to it (API.md says so; nothing else warns).
    assert retry_delay(policy("Fixed", duration="2h"), 0) == 3600
    assert retry_delay(policy("Fixed", duration="2h", maxDuration="3h"), 0) == 7200


# --- flow deadline --------------------------------------------------------------------------------------


def test_flow_deadline_stops_everything() -> None:
    flow = make_flow(
        [
            job_step("a"),
            job_step("b"),
            job_step("c", "a"),
            job_step("d", retryPolicy={"limit": 3, "backoff": {"duration": "1h"}}),
        ],
        execution_policy={"activeDeadlineSeconds": 100},
    )
    sim = Simulator(flow, T0)
    first = sim.reconcile()
    assert first.requeue_after == 100
    job_d = next(n for n in sim.running() if "-d-" in n)
    sim.fail(job_d)
    sim.advance(50)
    sim.complete(next(n for n in sim.running() if "-a-" in n))
    result = sim.reconcile()
    assert result.requeue_after == 50
    sim.advance(50)
    result = sim.reconcile()
    deleted = sorted(a.step for a in result.actions if isinstance(a, DeleteJob))
    assert deleted == ["b", "c"]
    assert sim.phase == "Failed"
    assert {s.name: s.phase for s in sim.flow.status.steps} == {
        "a": "Succeeded",
        "b": "Failed",
        "c": "Failed",
        "d": "Failed",
    }
    failed = next(c for c in sim.flow.status.conditions if c.type == "Failed")
    assert failed.reason == "DeadlineExceeded"
    assert "FlowDeadlineExceeded" in reasons(sim)


def test_work_that_finished_before_the_deadline_keeps_its_outcome_when_seen_late() -> None:
    # The Jobs end at +90 s of a 100 s deadline; the controller (restarting, or behind) looks at +100 s.
    flow = make_flow(
        [job_step("a"), job_step("b", continueOnFailure=True)],
        execution_policy={"activeDeadlineSeconds": 100},
    )
    ok, failed = Simulator(flow, T0), Simulator(flow, T0)
    for sim in (ok, failed):
        sim.reconcile()
        sim.advance(90)
        a, b = sim.running()
        sim.complete(a)
        (sim.complete if sim is ok else sim.fail)(b)
        sim.advance(10)
        result = sim.reconcile()
        assert not any(isinstance(x, DeleteJob) for x in result.actions)
        assert "FlowDeadlineExceeded" not in reasons(sim)
        assert result.requeue_after == 86400  # the TTL, from now
    assert (ok.phase, ok.flow.status.message) == ("Succeeded", "all 2 steps succeeded")
    assert "FlowSucceeded" in reasons(ok)
    assert failed.phase == "Failed"
    assert next(c for c in failed.flow.status.conditions if c.type == "Failed").reason == "StepFailed"


def test_deadline_never_touches_a_finished_flow() -> None:
    sim = Simulator(make_flow([job_step("a")], execution_policy={"activeDeadlineSeconds": 10}), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Succeeded"
    sim.advance(1000)
    result = sim.reconcile()
    assert sim.phase == "Succeeded"
    assert result.status is sim.flow.status


# --- TTL ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("ttl", "expected"), [(None, 86400), (3600, 3600), (0, 0)])
def test_ttl_deletes_the_finished_flow(ttl: int | None, expected: int) -> None:
    policy = {} if ttl is None else {"ttlSecondsAfterFinished": ttl}
    sim = Simulator(make_flow([job_step("a")], execution_policy=policy), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    done = sim.reconcile()
    assert sim.phase == "Succeeded"
    assert done.requeue_after == expected
    assert not any(isinstance(a, DeleteFlow) for a in done.actions)
    if expected:
        sim.advance(expected - 1)
        waiting = sim.reconcile()
        assert waiting.actions == ()
        assert waiting.requeue_after == 1
        sim.advance(1)
    result = sim.reconcile()
    assert [type(a) for a in result.actions] == [DeleteFlow]
    assert result.requeue_after is None
    assert result.status is sim.flow.status
