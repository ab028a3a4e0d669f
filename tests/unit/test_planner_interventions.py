"""What a user asks through annotations: stop a flow now (`workflow.kube-zen.io/stop`), rerun a Failed flow
from its failed steps (`workflow.kube-zen.io/retry: <id>`): what reruns, what stays, honoured once;
examples, then a property over random flows driven to their end."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_planner_properties import MAX_ROUNDS, perturb, random_flows

from zen_flow.api import JobFlow
from zen_flow.api.constants import (
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_RETRY_STEPS,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    APPROVE_PREFIX,
    REJECT_PREFIX,
)
from zen_flow.api.jobflow import ResourceTemplates
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob, CreateResource, DeleteJob, fail_resources
from zen_flow.planner.interventions import rerun_refusal
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def phases(sim: Simulator) -> dict[str, str]:
    return {s.name: s.phase for s in sim.flow.status.steps}


def ask(sim: Simulator, rid: str, user: str = "alice", steps: str | None = None) -> None:
    sim.annotate(ANNOTATION_RETRY, rid)
    sim.annotate(ANNOTATION_RETRIED_BY, user)  # what the mutating webhook writes
    sim.annotate(ANNOTATION_RETRY_STEPS, steps)


def failed_pipeline() -> Simulator:
    """extract, then load (fails) and report (succeeds) in parallel, then publish after both."""
    steps = [
        job_step("extract"),
        job_step("load", "extract"),
        job_step("report", "extract"),
        job_step("publish", "load", "report"),
    ]
    sim = Simulator(make_flow(steps, name="etl"), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    load, report = sim.running()
    sim.fail(load)
    sim.complete(report)
    sim.reconcile()
    assert sim.phase == "Failed"
    assert phases(sim) == {
        "extract": "Succeeded",
        "load": "Failed",
        "report": "Succeeded",
        "publish": "Skipped",
    }
    return sim


def test_a_rerun_starts_the_failed_step_again_and_keeps_what_succeeded() -> None:
    sim = failed_pipeline()
    kept = {n: sim.flow.status.step(n) for n in ("extract", "report")}
    before = set(sim.jobs)
    sim.advance(60)
    ask(sim, "r1")
    result = sim.reconcile()
    assert next((e.type, e.reason, e.message) for e in result.events) == (
        "Normal", "FlowRetried", "rerun requested by alice: load",
    )  # fmt: skip
    created = [a for a in result.actions if isinstance(a, CreateJob)]
    assert [(a.step, a.attempt) for a in created] == [("load", 1)]  # a new Job; the old one stays
    assert before <= set(sim.jobs)
    assert sim.phase == "Running"
    assert phases(sim) == {
        "extract": "Succeeded",
        "load": "Running",
        "report": "Succeeded",
        "publish": "Pending",
    }
    assert all(sim.flow.status.step(n) == step for n, step in kept.items())  # outputs and times kept
    assert sim.flow.status.start_time == sim.now  # the deadline counts from the rerun
    audit = sim.flow.status.audit
    assert audit is not None
    assert [(r.id, r.user, r.steps, r.time) for r in audit.retries] == [("r1", "alice", ("load",), sim.now)]
    failed = next(c for c in sim.flow.status.conditions if c.type == "Failed")
    assert failed.status == "False"

    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Succeeded"
    frozen = sim.flow.status
    assert sim.reconcile().status is frozen  # the same request is never honoured twice


def test_a_request_made_before_the_failure_never_fires_later() -> None:
    sim = Simulator(make_flow([job_step("a")]), T0)
    ask(sim, "early")
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Failed"
    audit = sim.flow.status.audit
    assert audit is not None
    assert [(r.id, r.steps) for r in audit.retries] == [("early", ())]  # recorded, ignored


def test_retry_steps_limits_the_rerun() -> None:
    steps = [
        job_step("x", continueOnFailure=True),
        job_step("y", continueOnFailure=True),
        job_step("z", "x", "y"),
    ]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    for name in sim.running():
        sim.fail(name)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert (sim.phase, phases(sim)) == ("Failed", {"x": "Failed", "y": "Failed", "z": "Succeeded"})
    ask(sim, "only-x", steps="x")
    result = sim.reconcile()
    assert [(a.step, a.attempt) for a in result.actions if isinstance(a, CreateJob)] == [("x", 1)]
    assert phases(sim) == {"x": "Running", "y": "Failed", "z": "Succeeded"}
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Failed"  # y still failed
    assert phases(sim)["x"] == "Succeeded"


@pytest.mark.parametrize(
    ("steps", "annotations", "scope", "why"),
    [
        ([manual_step("gate")], {f"{REJECT_PREFIX}gate": "true"}, None, "step gate was rejected: a decision"),
        ([job_step("x"), job_step("y")], {}, "x", "step y failed too and would fail the flow again at once"),
        ([job_step("x")], {}, "nope", "no failed Job step or timed-out gate to rerun among nope"),
    ],
)
def test_a_rerun_that_cannot_help_is_refused_with_the_reason(
    steps: list[dict[str, object]], annotations: dict[str, str], scope: str | None, why: str
) -> None:
    sim = Simulator(make_flow(steps, annotations=annotations), T0)
    sim.reconcile()
    for name in sim.running():
        sim.fail(name)
    sim.reconcile()
    assert sim.phase == "Failed"
    ask(sim, "r", steps=scope)
    result = sim.reconcile()
    assert [a for a in result.actions if isinstance(a, CreateJob)] == []
    assert sim.phase == "Failed"
    (event,) = [e for e in result.events if e.reason == "RetryIgnored"]
    assert event.type == "Warning"
    assert event.message.startswith(f"retry r ignored: {why}")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_flows(), st.integers(0, 2**32))
def test_a_rerun_never_repeats_what_succeeded_and_never_reuses_a_job(flow: JobFlow, seed: int) -> None:
    rng = random.Random(seed)
    sim = Simulator(flow, T0)
    for _ in range(MAX_ROUNDS):  # run it to its end (no lost writes: the rerun is the subject here)
        result = sim.reconcile()
        if sim.terminal:
            break
        perturb(sim, rng, result)
    else:
        raise AssertionError("flow did not finish")
    final = {s.name for s in flow.spec.steps if s.is_finally}
    # Finally steps that ran run again at the rerun's end (cleanup sees the new outcome); nothing else
    # that succeeded does.
    ran = {s.name for s in sim.flow.status.steps if s.name in final and s.phase in ("Succeeded", "Failed")}
    succeeded = {s.name: s for s in sim.flow.status.steps if s.phase == "Succeeded" and s.name not in final}
    manual = {s.name for s in flow.spec.steps if s.is_manual}
    optional = {s.name for s in flow.spec.steps if s.goes_on_after_failure}  # allowFailure implies it
    # Failed Job steps rerun, and gates that timed out (nobody decided) unless optional (their dependents
    # went on: rerun only when named); a rejected gate never does.
    failed_jobs = {
        s.name
        for s in sim.flow.status.steps
        if s.phase == "Failed"
        and (
            s.name not in manual
            or ((s.message or "").startswith("rejected: no decision") and s.name not in optional)
        )
    }
    skipped = {s.name for s in sim.flow.status.steps if s.phase == "Skipped"}
    # A flow ended from outside (here its deadline) with no main step failed reruns the steps it left unrun.
    ended = next((c.reason for c in sim.flow.status.conditions if c.type == "Failed"), None)
    unrun = {
        s.name
        for s in sim.flow.status.steps
        if s.phase == "Skipped" and (s.message or "").startswith(("not started: ", "no decision: "))
    }
    if ended not in ("Stopped", "DeadlineExceeded", "Replaced") or failed_jobs - final:
        unrun = set()
    was = sim.phase
    ask(sim, "again")
    result = sim.reconcile()  # DuplicateCreate if a rerun reused a Job name
    audit = sim.flow.status.audit
    assert audit is not None
    assert audit.retries[-1].id == "again"
    created = {a.step for a in result.actions if isinstance(a, CreateJob)}
    assert not created & set(succeeded)
    reasons = {e.reason for e in result.events}
    if "FlowRetried" in reasons:  # every failed Job step and timed-out gate reruns (no scope was given)
        assert was == "Failed"
        assert set(audit.retries[-1].steps) == failed_jobs | ran | unrun
        assert created <= failed_jobs | skipped | ran  # skipped steps never ran: they may start now
        assert not {n for n, p in phases(sim).items() if n in ran and p == "Succeeded"}
    else:  # refused, and it says why
        assert "RetryIgnored" in reasons
        assert audit.retries[-1].steps == ()
        assert not any(isinstance(a, CreateJob | DeleteJob) for a in result.actions)
        assert sim.phase == was
    assert all(sim.flow.status.step(n) == s for n, s in succeeded.items())
    again = sim.reconcile()
    assert not any(e.reason == "FlowRetried" for e in again.events)  # honoured once


# --- a gate that timed out ----------------------------------------------------------------------------


def timed_out_gate() -> Simulator:
    """build, then a gate with a 60 s timeout (reached at T0+10, timed out at T0+70), then ship."""
    steps = [job_step("build"), manual_step("gate", "build", timeoutSeconds=60), job_step("ship", "gate")]
    sim = Simulator(make_flow(steps, name="release"), T0)
    sim.reconcile()
    sim.advance(10)
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.advance(60)
    sim.reconcile()
    assert (sim.phase, phases(sim)) == ("Failed", {"build": "Succeeded", "gate": "Failed", "ship": "Skipped"})
    return sim


@pytest.mark.parametrize("scope", [None, "gate"])
def test_a_rerun_of_a_gate_that_timed_out_waits_for_a_decision_again_with_a_fresh_timeout(
    scope: str | None,
) -> None:
    sim = timed_out_gate()
    built = sim.flow.status.step("build")
    sim.advance(3600)  # rerun an hour later
    rerun_at = sim.now
    ask(sim, "r1", steps=scope)
    result = sim.reconcile()
    assert next((e.type, e.reason, e.message) for e in result.events) == (
        "Normal", "FlowRetried", "rerun requested by alice: gate",
    )  # fmt: skip
    assert [a for a in result.actions if isinstance(a, CreateJob)] == []
    assert (sim.phase, phases(sim)) == (
        "Paused",
        {"build": "Succeeded", "gate": "PendingApproval", "ship": "Pending"},
    )
    gate = sim.flow.status.step("gate")
    assert gate is not None
    assert (gate.start_time, gate.completion_time, gate.retry_count) == (rerun_at, None, 0)
    assert sim.flow.status.step("build") == built
    assert result.requeue_after == 60  # the wait counts from the rerun, not from the first time
    sim.advance(59)
    sim.reconcile()
    assert phases(sim)["gate"] == "PendingApproval"
    sim.annotate(f"{APPROVE_PREFIX}gate", "true")  # decided after the rerun: it counts
    sim.reconcile()
    sim.reconcile()  # ship starts once the approval is written
    assert phases(sim) == {"build": "Succeeded", "gate": "Succeeded", "ship": "Running"}
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Succeeded"


def test_an_optional_gate_that_timed_out_reruns_only_when_named() -> None:
    # Its dependents went on without it: a rerun of the flow's failures must not hold them again for the
    # gate's whole timeout; named, it waits for a decision again.
    steps = [
        job_step("build"),
        manual_step("gate", "build", timeoutSeconds=3600, continueOnFailure=True),
        job_step("deploy", "gate"),
    ]
    sim = Simulator(make_flow(steps, name="release"), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.advance(3600)
    sim.reconcile()
    sim.reconcile()  # the timeout stored: its dependents start (planner/observation.py `after_timeout`)
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert (sim.phase, phases(sim)) == (
        "Failed",
        {"build": "Succeeded", "gate": "Failed", "deploy": "Failed"},
    )
    sim.annotate(f"{APPROVE_PREFIX}gate", "true")  # late: ignored, as the gate is not rerun
    ask(sim, "r1")
    result = sim.reconcile()
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["deploy"]
    assert phases(sim) == {"build": "Succeeded", "gate": "Failed", "deploy": "Running"}
    sim.fail(sim.running()[0])
    sim.reconcile()
    sim.annotate(f"{APPROVE_PREFIX}gate", None)
    ask(sim, "r2", steps="gate,deploy")
    sim.reconcile()
    assert (sim.phase, phases(sim)) == (
        "Paused",
        {"build": "Succeeded", "gate": "PendingApproval", "deploy": "Pending"},
    )


def test_a_gate_that_times_out_again_can_be_rerun_again() -> None:
    sim = timed_out_gate()
    for rid in ("r1", "r2"):
        ask(sim, rid)
        sim.reconcile()
        assert phases(sim)["gate"] == "PendingApproval"
        sim.advance(60)
        sim.reconcile()
        gate = sim.flow.status.step("gate")
        assert gate is not None
        assert (sim.phase, gate.message) == ("Failed", "rejected: no decision within 60s (timeoutSeconds)")
    audit = sim.flow.status.audit
    assert audit is not None
    assert [(r.id, r.steps) for r in audit.retries] == [("r1", ("gate",)), ("r2", ("gate",))]


@pytest.mark.parametrize("prefix", [APPROVE_PREFIX, REJECT_PREFIX])
def test_a_decision_given_after_the_gate_timed_out_never_decides_its_rerun(prefix: str) -> None:
    """An annotation carries no time: a decision set after the timeout (`kubectl annotate`; zen-flow
    approve refuses it) cannot be told from one given after the rerun, so the rerun is refused, saying
    which annotation to remove, rather than decided by it at once."""
    sim = timed_out_gate()
    sim.annotate(f"{prefix}gate", "true")
    sim.reconcile()
    assert phases(sim)["gate"] == "Failed"  # too late for the gate that timed out
    ask(sim, "r1")
    result = sim.reconcile()
    (event,) = [e for e in result.events if e.reason == "RetryIgnored"]
    assert event.message == (
        f"retry r1 ignored: a decision given after its gate timed out would decide the rerun at once: "
        f"{prefix}gate; remove it first (kubectl annotate jf release -n default {prefix}gate-)"
    )
    assert (sim.phase, phases(sim)["gate"]) == ("Failed", "Failed")
    sim.annotate(f"{prefix}gate", None)
    ask(sim, "r2")
    sim.reconcile()
    assert (sim.phase, phases(sim)["gate"]) == ("Paused", "PendingApproval")


def test_a_rejected_gate_stays_rejected_whatever_the_rerun_asks() -> None:
    sim = timed_out_gate()
    ask(sim, "r1")
    sim.reconcile()
    sim.annotate(f"{REJECT_PREFIX}gate", "true")  # decided on the rerun's wait: a decision
    sim.reconcile()
    assert (sim.phase, phases(sim)["gate"]) == ("Failed", "Failed")
    for rid, scope in (("r2", None), ("r3", "gate")):
        ask(sim, rid, steps=scope)
        result = sim.reconcile()
        (event,) = [e for e in result.events if e.reason == "RetryIgnored"]
        assert event.message.startswith(f"retry {rid} ignored: step gate was rejected: a decision stays")
        assert phases(sim)["gate"] == "Failed"


# --- stop ----------------------------------------------------------------------------------------------


def test_stop_fails_the_flow_now_and_deletes_its_running_jobs() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b"), job_step("c", "a", "b")], name="big"), T0)
    sim.reconcile()
    running = sim.running()
    sim.annotate(ANNOTATION_STOP, "true")
    sim.annotate(ANNOTATION_STOPPED_BY, "alice")
    result = sim.reconcile()
    assert sorted(a.name for a in result.actions if isinstance(a, DeleteJob)) == running
    assert sim.phase == "Failed"
    assert phases(sim) == {"a": "Failed", "b": "Failed", "c": "Skipped"}
    failed = next(c for c in sim.flow.status.conditions if c.type == "Failed")
    assert (failed.reason, failed.message) == ("Stopped", "stopped by alice")
    assert "FlowStopped" in [e.reason for e in result.events]

    ask(sim, "after-stop")  # a rerun while the stop request is set would be stopped again at once
    refused = sim.reconcile()
    assert [e.message for e in refused.events if e.reason == "RetryIgnored"] == [
        "retry after-stop ignored: the stop request is still set (remove workflow.kube-zen.io/stop)"
    ]
    sim.annotate(ANNOTATION_STOP, None)
    ask(sim, "then-rerun")
    sim.reconcile()
    assert phases(sim) == {"a": "Running", "b": "Running", "c": "Pending"}


def test_a_stop_that_comes_after_the_last_step_finished_leaves_the_flow_succeeded() -> None:
    # The last Job completed; the stop arrives before the controller has looked: nothing is left to stop.
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.annotate(ANNOTATION_STOP, "true")
    result = sim.reconcile()
    assert sim.phase == "Succeeded"
    assert not any(isinstance(a, DeleteJob) for a in result.actions)
    assert "FlowStopped" not in [e.reason for e in result.events]


def test_stop_leaves_an_ended_flow_alone() -> None:
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    frozen = sim.flow.status
    sim.annotate(ANNOTATION_STOP, "true")
    assert sim.reconcile().status is frozen


def test_a_rerun_that_fails_again_says_its_retries_and_reruns_not_more_retries_than_allowed() -> None:
    sim = Simulator(
        make_flow(
            [job_step("load", retryPolicy={"limit": 1, "backoff": {"type": "Fixed", "duration": "1s"}})]
        ),
        T0,
    )
    sim.reconcile()
    for _ in range(2):  # the first attempt and its one retry fail
        sim.fail(sim.running()[0])
        sim.reconcile()
        sim.advance(2)
        sim.reconcile()
    assert sim.phase == "Failed"
    step = sim.flow.status.step("load")
    assert step is not None
    assert (step.message or "").endswith("(retries exhausted: 1/1)")
    ask(sim, "r1")
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    step = sim.flow.status.step("load")
    assert step is not None
    assert (step.message or "").startswith("attempt 3 failed: ")
    assert (step.message or "").endswith("(retries exhausted: 1/1, reruns: 1)")


def failed_creating_resources() -> Simulator:
    """A flow whose ConfigMap template could not be created (a name taken by someone else): Failed,
    reason ResourceConflict, before any step ran."""
    flow = make_flow([job_step("a"), job_step("b", "a")], name="etl")
    templates = ResourceTemplates(config_map_templates=({"metadata": {"name": "settings"}},))
    sim = Simulator(
        flow.model_copy(update={"spec": flow.spec.model_copy(update={"resource_templates": templates})}), T0
    )
    # What the controller does when a create is refused (controller/provisioning.py).
    sim.apply(fail_resources(sim.flow, ["ConfigMap etl-settings already exists"], T0, planned=sim.preview()))
    assert sim.phase == "Failed"
    assert phases(sim) == {"a": "Skipped", "b": "Skipped"}
    return sim


def test_a_rerun_of_a_flow_that_failed_creating_its_resources_creates_them_then_runs_its_steps() -> None:
    sim = failed_creating_resources()
    ask(sim, "r")
    result = sim.reconcile()
    assert [(a.kind, a.name) for a in result.actions if isinstance(a, CreateResource)] == [
        ("ConfigMap", "etl-settings")
    ]
    assert sim.phase == "Pending"
    assert phases(sim) == {"a": "Pending", "b": "Pending"}
    (event,) = [e for e in result.events if e.reason == "FlowRetried"]
    assert event.message == "rerun requested by alice: creating its resources again"
    assert sim.flow.status.audit is not None
    assert [(r.id, r.steps) for r in sim.flow.status.audit.retries] == [("r", ())]
    sim.reconcile()
    assert phases(sim)["a"] == "Running"


def test_a_rerun_of_some_steps_of_a_flow_that_failed_creating_its_resources_says_to_rerun_it_all() -> None:
    sim = failed_creating_resources()
    assert rerun_refusal(sim.flow) is None  # what `zen-flow retry` asks first
    ask(sim, "r", steps="a")
    result = sim.reconcile()
    assert [a for a in result.actions if isinstance(a, CreateResource)] == []
    assert sim.phase == "Failed"
    (event,) = [e for e in result.events if e.reason == "RetryIgnored"]
    assert event.message == (
        "retry r ignored: no failed Job step to rerun among a; the flow failed creating its resources: "
        "rerun it without naming steps to create them again"
    )


def test_a_rerun_replayed_after_lost_writes_reports_the_failures_in_spec_order() -> None:
    # b's Job was created by a rerun's plan whose status write was lost (b then dormant again: its
    # dependency a back to Pending in the stored status). When b and c fail in one plan, the flow's
    # failure is b's, the first in spec order, as a plan that visits every step reports it.
    steps = [job_step("a"), job_step("b", "a"), job_step("x"), job_step("c", "x")]
    sim = Simulator(make_flow(steps, name="etl"), T0)
    sim.reconcile()
    sim.complete(job_name("etl", "x", 0))
    sim.reconcile()
    sim.fail(job_name("etl", "a", 0))
    sim.fail(job_name("etl", "c", 0))
    sim.reconcile()
    assert sim.phase == "Failed"
    ask(sim, "r1")
    sim.reconcile(write_status=False)  # creates a-r1 and c-r1
    sim.complete(job_name("etl", "a", 1))
    sim.reconcile(write_status=False)  # the rerun again: a succeeded, b's Job created
    assert job_name("etl", "b", 0) in sim.running()
    sim.fail(job_name("etl", "b", 0))
    sim.fail(job_name("etl", "c", 1))
    sim.reconcile()
    assert sim.phase == "Failed"
    assert (sim.flow.status.message or "").startswith("step b failed")
