"""`allowFailure` tolerates the step's own failure only (API.md "Tolerated failures"): a step with it
that a stop, the flow deadline or its finally grace, a newer Replace flow or fail-fast ended is no
tolerated failure. No StepFailureAllowed event says so, the CloudEvents carry no `allowed`, and `zen-flow
get` shows it plain `Failed`; its own failure says all three, whatever ends the flow after it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from zen_flow.api.constants import (
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    LABEL_CONCURRENCY_KEY,
    STOP_RUN_FINALLY,
    ConcurrencyPolicy,
)
from zen_flow.cli.render import step_table
from zen_flow.planner import EventSpec, Peer, fail_invalid, fail_resources
from zen_flow.planner.cloud_events import cloud_events
from zen_flow.planner.lifecycle import FLOW_FAILED_MARK
from zen_flow.planner.status import REASON_JOB_REJECTED
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ALLOW: dict[str, Any] = {"allowFailure": True}
RETRIED: dict[str, Any] = {
    **ALLOW,
    "retryPolicy": {"limit": 2, "backoff": {"type": "Fixed", "duration": "60s"}},
}


def events(sim: Simulator) -> list[EventSpec]:
    return [e for p in sim.plans for e in p.events]


def allowed_said(sim: Simulator) -> list[str]:
    """The steps a StepFailureAllowed event named."""
    return [e.step for e in events(sim) if e.reason == "StepFailureAllowed"]


def shown(sim: Simulator) -> dict[str, str]:
    """`zen-flow get`'s PHASE cell, by step."""
    table = step_table(sim.flow, sim.now)
    return {name: row[1] for name, row in zip(table.steps, table.rows, strict=True)}


def job_of(sim: Simulator, step: str) -> str:
    return next(j for j in sim.running() if sim.steps[j] == step)


def started(*steps: dict[str, Any], **policy: Any) -> Simulator:
    sim = Simulator(make_flow(list(steps), execution_policy=policy or None), T0)
    sim.reconcile()
    return sim


def stop(sim: Simulator, value: str = "true") -> None:
    sim.annotate(ANNOTATION_STOPPED_BY, "alice")
    sim.annotate(ANNOTATION_STOP, value)


def settle(sim: Simulator) -> None:
    for _ in range(10):
        sim.reconcile()
        if sim.terminal:
            return


def stopped(sim: Simulator) -> None:
    stop(sim)
    settle(sim)


def past_the_deadline(sim: Simulator) -> None:
    sim.advance(120)
    settle(sim)


def replaced(sim: Simulator) -> None:
    newer = Peer("newer", T0 + timedelta(seconds=5), ConcurrencyPolicy.REPLACE, started=True)
    sim.reconcile(peers=[newer])


def stopped_gracefully(sim: Simulator) -> None:
    stop(sim, STOP_RUN_FINALLY)
    settle(sim)
    for job in list(sim.running()):
        sim.complete(job)
    settle(sim)


def the_grace(sim: Simulator) -> None:
    sim.advance(100)  # past the grace point (120 - 30), before the deadline
    settle(sim)
    for job in list(sim.running()):
        sim.complete(job)
    settle(sim)


CUTS: dict[str, Callable[[Simulator], None]] = {
    "stop": stopped,
    "deadline": past_the_deadline,
    "replaced": replaced,
    "graceful stop": stopped_gracefully,
    "finally grace": the_grace,
}


@pytest.mark.parametrize("cut", CUTS)
def test_a_step_the_flow_cut_short_is_no_tolerated_failure(cut: str) -> None:
    labels = {LABEL_CONCURRENCY_KEY: "k"} if cut == "replaced" else None
    steps = [job_step("lint", **ALLOW), job_step("b"), job_step("cleanup", **{"finally": True})]
    policy = {"activeDeadlineSeconds": 120, "finallyGraceSeconds": 30}
    flow = make_flow(steps, labels=labels, execution_policy=policy, created=T0)
    sim = Simulator(flow, T0)
    sim.reconcile()
    assert sorted(sim.steps[j] for j in sim.running()) == ["b", "lint"]
    CUTS[cut](sim)
    assert sim.phase == "Failed"
    lint = sim.flow.status.step("lint")
    assert lint is not None
    assert lint.phase == "Failed", lint
    assert allowed_said(sim) == []
    assert shown(sim)["lint"] == "Failed"
    published = [c for p in sim.plans for c in cloud_events(sim.flow, p.status, p.events, sim.now)]
    assert all("allowed" not in json.loads(c.data) for c in published)


def test_a_step_a_flow_wide_failure_ended_is_no_tolerated_failure() -> None:
    sim = started(job_step("lint", **ALLOW), job_step("b"))
    sim.advance(5)
    refused = "the apiserver refused a step's Job"
    ended = fail_invalid(
        sim.flow, ["b: 422"], sim.now, reason=REASON_JOB_REJECTED, prefix=refused, base=sim.flow.status
    )
    sim.apply(ended)
    lint = sim.flow.status.step("lint")
    assert lint is not None
    assert (sim.phase, lint.phase, lint.message) == ("Failed", "Failed", f"{FLOW_FAILED_MARK}{refused}")
    assert shown(sim)["lint"] == "Failed"


def test_its_own_failure_in_the_write_a_flow_wide_failure_ends_the_flow_stays_tolerated() -> None:
    # lint's Job fails; the plan that records it asks for a resource the apiserver refuses, so the flow
    # fails flow-wide in that very write (one completionTime for lint, the flow, and b which it ends).
    sim = started(job_step("lint", **ALLOW), job_step("b", **ALLOW))
    sim.advance(5)
    sim.fail(job_of(sim, "lint"))
    planned = sim.preview()
    sim.apply(fail_resources(sim.flow, ["ConfigMap settings: 422"], sim.now, planned=planned))
    lint, b = sim.flow.status.step("lint"), sim.flow.status.step("b")
    assert lint is not None
    assert b is not None
    assert sim.phase == "Failed"
    assert lint.completion_time == b.completion_time == sim.flow.status.completion_time
    assert (b.message or "").startswith(FLOW_FAILED_MARK)
    assert allowed_said(sim) == ["lint"]
    assert shown(sim) == {"lint": "Failed (allowed)", "b": "Failed"}
    published = [c for p in sim.plans for c in cloud_events(sim.flow, p.status, p.events, sim.now)]
    said = {c.subject: json.loads(c.data) for c in published if c.type.endswith(".failed.v1")}
    assert said["lint"]["allowed"] is True


def test_a_flow_wide_failure_written_by_an_older_version_still_ends_its_steps_untolerated() -> None:
    # Before the mark, a step the flow-wide failure ended said only the cause: the equal completion times
    # and that cause tell it from a failure of its own.
    sim = started(job_step("lint", **ALLOW), job_step("b"))
    sim.advance(5)
    refused = "the apiserver refused a step's Job"
    ended = fail_invalid(
        sim.flow, ["b: 422"], sim.now, reason=REASON_JOB_REJECTED, prefix=refused, base=sim.flow.status
    )
    old = tuple(
        replace(s, message=(s.message or "").removeprefix(FLOW_FAILED_MARK)) for s in ended.status.steps
    )
    sim.apply(replace(ended, status=ended.status.model_copy(update={"steps": old})))
    lint = sim.flow.status.step("lint")
    assert lint is not None
    assert (lint.phase, lint.message) == ("Failed", refused)
    assert shown(sim)["lint"] == "Failed"


def test_an_older_status_reads_a_failure_of_the_steps_own_before_the_flow_wide_one_as_tolerated() -> None:
    # An older version's status again, but lint had failed on its own in an earlier write, its message
    # (its container's termination message) the very words of the cause: only its completionTime, not
    # the flow's, tells that the flow-wide failure did not end it.
    sim = started(job_step("lint", **ALLOW), job_step("b"))
    sim.advance(5)
    sim.fail(job_of(sim, "lint"))
    sim.reconcile()
    sim.advance(5)
    refused = "the apiserver refused a step's Job"
    ended = fail_invalid(
        sim.flow, ["b: 422"], sim.now, reason=REASON_JOB_REJECTED, prefix=refused, base=sim.flow.status
    )
    old = tuple(
        replace(s, message=refused if s.name == "lint" else (s.message or "").removeprefix(FLOW_FAILED_MARK))
        for s in ended.status.steps
    )
    sim.apply(replace(ended, status=ended.status.model_copy(update={"steps": old})))
    lint = sim.flow.status.step("lint")
    assert lint is not None
    assert lint.completion_time != sim.flow.status.completion_time
    assert shown(sim) == {"lint": "Failed (allowed)", "b": "Failed"}


def test_a_flow_wide_failure_says_so_apart_from_the_ordinary_end_of_a_failed_flow() -> None:
    # A step failing ends the flow once the running steps have ended, dropping the steps not started (here
    # after-slow); a flow-wide failure ends them too. A script must be able to tell the two ends apart.
    ordinary = started(job_step("a"), job_step("slow"), job_step("after-slow", "slow"))
    ordinary.fail(job_of(ordinary, "a"))
    ordinary.reconcile()
    ordinary.complete(job_of(ordinary, "slow"))
    settle(ordinary)
    dropped = ordinary.flow.status.step("after-slow")
    assert dropped is not None
    assert (ordinary.phase, dropped.phase) == ("Failed", "Skipped")
    assert dropped.message
    wide = started(job_step("a"), job_step("b", "a"), manual_step("gate"))
    ended = fail_invalid(
        wide.flow, ["b: 422"], wide.now, reason=REASON_JOB_REJECTED, prefix="refused", base=wide.flow.status
    )
    wide.apply(ended)
    by_name = {s.name: s.message or "" for s in wide.flow.status.steps}
    assert by_name["b"] == f"not started: {FLOW_FAILED_MARK}refused"
    assert by_name["gate"] == f"no decision: {FLOW_FAILED_MARK}refused"
    assert not by_name["b"].startswith(dropped.message or "")


def test_a_retry_fail_fast_cancelled_is_no_tolerated_failure() -> None:
    sim = started(job_step("lint", **RETRIED), job_step("test"))
    sim.fail(job_of(sim, "lint"))
    sim.reconcile()
    assert sim.flow.status.step("lint").phase == "Retrying"  # type: ignore[union-attr]
    sim.fail(job_of(sim, "test"))
    settle(sim)
    assert sim.phase == "Failed"
    lint = sim.flow.status.step("lint")
    assert lint is not None
    assert lint.phase == "Failed"
    assert (lint.message or "").startswith("not retried, the flow is failing; ")
    assert allowed_said(sim) == []
    assert shown(sim) == {"lint": "Failed", "test": "Failed"}


def test_its_own_failure_stays_tolerated_when_a_stop_ends_the_flow_after_it() -> None:
    sim = started(job_step("lint", **ALLOW), job_step("b"))
    sim.fail(job_of(sim, "lint"))
    sim.reconcile()
    stopped(sim)
    assert sim.phase == "Failed"
    assert allowed_said(sim) == ["lint"]
    assert shown(sim) == {"lint": "Failed (allowed)", "b": "Failed"}


def test_the_failed_and_rejected_cloud_events_of_a_tolerated_failure_say_allowed() -> None:
    sim = started(job_step("lint", **ALLOW), manual_step("gate", **ALLOW), job_step("strict"))
    sim.annotate("reject.workflow.kube-zen.io/gate", "true")
    sim.fail(job_of(sim, "lint"))
    sim.reconcile()
    published = {(c.type.rsplit(".", 2)[-2], c.subject): json.loads(c.data) for c in sent(sim)}
    assert published[("failed", "lint")]["allowed"] is True
    assert published[("rejected", "gate")]["allowed"] is True
    sim.fail(job_of(sim, "strict"))
    sim.reconcile()
    assert "allowed" not in next(json.loads(c.data) for c in sent(sim) if c.subject == "strict")


def sent(sim: Simulator) -> list[Any]:
    return list(cloud_events(sim.flow, sim.last.status, sim.last.events, sim.now))
