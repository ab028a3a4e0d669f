"""Planner: the DAG runs step by step, failures skip what depends on them, the flow always ends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from zen_flow.api import JobFlow
from zen_flow.api.constants import APPROVE_PREFIX
from zen_flow.core.matrix import effective_flow, expand_matrix
from zen_flow.planner import CreateJob, fail_invalid, plan
from zen_flow_dev.testing.examples import FAILING, ORIGINAL_FORMS, WRITTEN, all_flow_params, load
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator, run

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def phases(sim: Simulator) -> dict[str, str]:
    return {s.name: s.phase for s in sim.flow.status.steps}


def step_of(sim: Simulator, name: str) -> str:
    return phases(sim)[name]


def reasons(sim: Simulator) -> list[str]:
    return [e.reason for e in sim.last.events]


def test_linear_flow_runs_one_step_at_a_time() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a"), job_step("c", "b")]), T0)
    first = sim.reconcile()
    assert [a.step for a in first.actions if isinstance(a, CreateJob)] == ["a"]
    assert sim.phase == "Running"
    assert phases(sim) == {"a": "Running", "b": "Pending", "c": "Pending"}
    assert sim.flow.status.message == "running: a"
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert phases(sim) == {"a": "Succeeded", "b": "Running", "c": "Pending"}
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Succeeded"
    assert sim.flow.status.progress_summary == "3/3"
    assert sim.flow.status.completion_time == T0


@pytest.mark.parametrize("path", all_flow_params())
def test_every_example_runs_to_success_when_its_jobs_complete_and_gates_are_approved(path: Path) -> None:
    doc = load(path)
    doc["metadata"].setdefault("name", "generated-1")
    doc["metadata"].update(uid="u-1", generation=1)
    # A matrix step's items are the steps that run (the controller plans the effective flow), each
    # writing what the matrix step's containers write.
    expansion = expand_matrix(doc["spec"])
    steps = expansion.spec["steps"]
    written = WRITTEN.get(path.name, {})
    written = {
        **written,
        **{i: written[group] for group, items in expansion.groups.items() if group in written for i in items},
    }
    # The stored flow, expanded before each plan from its status as the controller does (a matrix over
    # an output expands once that output is in the status).
    sim = Simulator(JobFlow.model_validate(doc), T0, written=written, expand=True)
    # The steps that start first: those without dependencies, finally steps aside (they start last).
    roots = {s["name"] for s in steps if not s.get("dependencies") and not s.get("finally")}
    first = sim.reconcile()
    if not doc["spec"].get("resourceTemplates"):  # else the first reconcile creates those objects only
        assert {a.step for a in first.actions if isinstance(a, CreateJob)} == roots

    def approve(s: Simulator) -> bool:
        pending = [st.name for st in s.flow.status.steps if st.phase == "PendingApproval"]
        for name in pending:
            s.annotate(APPROVE_PREFIX + name, "true")
        return bool(pending)

    failing = FAILING.get(path.name, frozenset())  # their command fails; allowFailure tolerates it
    run(sim, lambda job: "fail" if sim.steps[job] in failing else "complete", on_idle=approve)
    assert sim.phase == "Succeeded"
    ran = {s.name for s in sim.flow.status.steps if s.phase == "Succeeded"}
    skipped = {s.name for s in sim.flow.status.steps if s.phase == "Skipped"}
    failed = {s.name for s in sim.flow.status.steps if s.phase == "Failed"}
    assert failed == failing
    steps = [s.model_dump(by_alias=True, exclude_none=True) for s in effective_flow(sim.flow).spec.steps]
    assert ran | skipped | failed == {s["name"] for s in steps}
    jobs = [sim.steps[j] for j in sim.created if sim.steps[j] not in failing]
    assert len(jobs) == len(ran - {s["name"] for s in steps if "template" not in s})
    if path.name == "matrix-from-output.yaml":  # gen writes ["a","b","c"]: work ran as its three items
        assert {"work-0", "work-1", "work-2"} <= ran
        assert "work" not in ran | skipped


def test_the_original_when_forms_choose_the_steps_that_run() -> None:
    doc = load(ORIGINAL_FORMS / "when-forms.yaml")
    doc["metadata"].update(uid="u-1", generation=1)
    sim = Simulator(JobFlow.model_validate(doc), T0)
    run(sim, lambda _: "complete")
    assert sim.phase == "Succeeded"
    assert {n for n, p in phases(sim).items() if p == "Skipped"} == {"never-runs", "false-runs", "on-failure"}
    status = sim.flow.status
    assert status.progress is not None
    assert status.progress.successful_steps == 5
    assert [s.name for s in status.steps] == [s.name for s in sim.flow.spec.steps]
    complete = next(c for c in status.conditions if c.type == "Complete")
    assert complete.status == "True"


def test_the_original_ttl_is_scheduled_not_polled() -> None:
    doc = load(ORIGINAL_FORMS / "linear.yaml")
    doc["metadata"].update(uid="u-1", generation=1)
    sim = Simulator(JobFlow.model_validate(doc), T0)
    run(sim, lambda _: "complete")
    assert sim.phase == "Succeeded"
    assert sim.last.requeue_after == 3600


def test_failure_skips_dependents_and_fails_the_flow() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a"), job_step("c", "b")]), T0)
    sim.reconcile()
    sim.fail(sim.running()[0], message="exit code 1")
    sim.reconcile()
    assert sim.phase == "Failed"
    assert phases(sim) == {"a": "Failed", "b": "Skipped", "c": "Skipped"}
    b = sim.flow.status.step("b")
    assert b is not None
    assert b.message == "dependency a failed"
    c = sim.flow.status.step("c")
    assert c is not None
    assert c.message == "dependency b was skipped"
    assert sim.flow.status.message is not None
    assert sim.flow.status.message.startswith("step a failed")
    failed = next(c for c in sim.flow.status.conditions if c.type == "Failed")
    assert (failed.status, failed.reason) == ("True", "StepFailed")
    assert "FlowFailed" in reasons(sim)
    assert reasons(sim).count("StepSkipped") == 2


def test_continue_on_failure_lets_dependents_run_but_flow_ends_failed() -> None:
    flow = make_flow([job_step("a", continueOnFailure=True), job_step("b", "a")])
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.fail(sim.running()[0])
    sim.reconcile()
    assert phases(sim) == {"a": "Failed", "b": "Running"}
    assert sim.phase == "Running"
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Failed"
    assert phases(sim) == {"a": "Failed", "b": "Succeeded"}


def test_fail_fast_lets_running_steps_finish_and_starts_nothing_new() -> None:
    flow = make_flow([job_step("a"), job_step("slow"), job_step("after-slow", "slow"), job_step("b", "a")])
    sim = Simulator(flow, T0)
    sim.reconcile()
    job_a = next(n for n in sim.running() if "-a-" in n)
    sim.fail(job_a)
    result = sim.reconcile()
    assert not result.actions  # running `slow` is not killed, nothing new starts
    assert sim.phase == "Running"
    assert phases(sim) == {"a": "Failed", "slow": "Running", "after-slow": "Pending", "b": "Skipped"}
    assert "step a failed" in (sim.flow.status.message or "")
    sim.complete(sim.running()[0])
    result = sim.reconcile()
    assert not any(isinstance(a, CreateJob) for a in result.actions)
    assert sim.phase == "Failed"
    assert phases(sim) == {"a": "Failed", "slow": "Succeeded", "after-slow": "Skipped", "b": "Skipped"}
    after_slow = sim.flow.status.step("after-slow")
    assert after_slow is not None
    assert after_slow.message == "not started: the flow failed"


def test_when_false_skips_the_step_and_propagates() -> None:
    flow = make_flow(
        [
            job_step("a"),
            job_step("only-on-failure", "a", when="steps.a.phase == 'Failed'"),
            job_step("after", "only-on-failure"),
            job_step("always", "a", when="Always"),
        ]
    )
    sim = Simulator(flow, T0)
    run(sim, lambda _: "complete")
    assert sim.phase == "Succeeded"
    assert phases(sim) == {
        "a": "Succeeded",
        "only-on-failure": "Skipped",
        "after": "Skipped",
        "always": "Succeeded",
    }
    skipped = sim.flow.status.step("only-on-failure")
    assert skipped is not None
    assert "is false" in (skipped.message or "")


def test_progress_counts_the_steps_the_flow_is_done_with_skipped_ones_included() -> None:
    # PROGRESS (status.progressSummary) is Succeeded + Failed + Skipped over all steps, as Argo's counts a
    # skipped node complete: a skipped step will not run, so an ended flow always shows N/N; -o wide's
    # SUCCEEDED and FAILED columns say how it ended (docs/API.md, "Printer columns").
    sim = Simulator(make_flow([job_step("a"), job_step("never", when="false"), job_step("b", "a")]), T0)
    sim.reconcile()
    progress = sim.flow.status.progress
    assert (sim.flow.status.progress_summary, progress.skipped_steps) == ("1/3", 1)
    sim.fail(sim.running()[0])
    sim.reconcile()
    progress = sim.flow.status.progress
    assert sim.phase == "Failed"
    assert sim.flow.status.progress_summary == "3/3"
    assert (progress.successful_steps, progress.failed_steps, progress.skipped_steps) == (0, 1, 2)


def test_when_that_errors_is_false_and_says_why() -> None:
    flow = make_flow([job_step("a"), job_step("b", "a", when="steps.a.outputs.parameters.rows == '3'")])
    sim = Simulator(flow, T0)
    run(sim, lambda _: "complete")
    b = sim.flow.status.step("b")
    assert b is not None
    assert b.phase == "Skipped"
    assert "failed: no such key 'rows'" in (b.message or "")


def test_when_sees_the_flow_labels() -> None:
    flow = make_flow([job_step("a", when="flow.labels.env == 'prod'")], labels={"env": "dev"})
    sim = Simulator(flow, T0)
    sim.reconcile()
    assert phases(sim) == {"a": "Skipped"}
    assert sim.phase == "Succeeded"  # every step Succeeded or Skipped


def test_unchanged_input_gives_the_same_status_and_nothing_to_do() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    sim.reconcile()  # picks up the Job's uid
    again = plan(sim.flow, list(sim.jobs.values()), T0.replace(hour=5))
    assert again.status == sim.flow.status
    assert again.status is sim.flow.status
    assert again.actions == ()
    assert again.events == ()
    assert again.requeue_after is None


def test_events_are_emitted_only_on_transitions() -> None:
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    assert reasons(sim) == ["StepStarted", "FlowStarted"]
    sim.reconcile()
    assert reasons(sim) == []
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert reasons(sim) == ["StepSucceeded", "FlowSucceeded"]
    sim.reconcile()
    assert reasons(sim) == []


def test_status_lists_steps_in_spec_order_even_when_topological_order_differs() -> None:
    flow = make_flow([job_step("z", "y"), job_step("y", "x"), job_step("x")])
    sim = Simulator(flow, T0)
    sim.reconcile()
    assert [s.name for s in sim.flow.status.steps] == ["z", "y", "x"]
    assert phases(sim) == {"z": "Pending", "y": "Pending", "x": "Running"}


def test_observed_generation_and_timestamps_are_set_once() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    status = sim.flow.status
    assert status.observed_generation == 1
    assert status.start_time == T0
    sim.advance(30)
    sim.complete(sim.running()[0])
    sim.reconcile()
    a = sim.flow.status.step("a")
    assert a is not None
    assert a.start_time == T0
    assert a.completion_time == T0.replace(second=30)
    assert sim.flow.status.start_time == T0


def test_conditions_keep_their_transition_time_until_they_flip() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    before = {c.type: c.last_transition_time for c in sim.flow.status.conditions}
    sim.advance(10)
    sim.complete(sim.running()[0])
    sim.reconcile()
    after = {c.type: c.last_transition_time for c in sim.flow.status.conditions}
    assert after == before  # still Running: nothing flipped
    sim.advance(10)
    sim.complete(sim.running()[0])
    sim.reconcile()
    final = {c.type: c for c in sim.flow.status.conditions}
    assert final["Complete"].status == "True"
    assert final["Complete"].last_transition_time == T0.replace(second=20)
    assert final["Ready"].last_transition_time == T0  # True while Running and while Succeeded
    assert [c.type for c in sim.flow.status.conditions] == [
        "Ready",
        "Running",
        "Complete",
        "Failed",
        "WaitingForApproval",
        "Suspended",
        "Valid",
        "Queued",
        "Progressing",
    ]


def test_a_condition_duplicated_by_hand_is_written_back_once() -> None:
    # status.conditions is an atomic list (cheaper status writes), so the apiserver no longer refuses two
    # conditions of one type: the hand edit wakes the flow, and its next status has one per type again.
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    status = sim.flow.status
    complete = next(c for c in status.conditions if c.type == "Complete")
    duplicated = (*status.conditions, complete.model_copy(update={"status": "True"}))
    sim.flow = sim.flow.model_copy(update={"status": status.model_copy(update={"conditions": duplicated})})
    sim.reconcile()
    types = [c.type for c in sim.flow.status.conditions]
    assert len(types) == len(set(types)) == 9
    assert next(c for c in sim.flow.status.conditions if c.type == "Complete").status == "False"


def test_lost_status_write_adopts_the_job_instead_of_creating_it_again() -> None:
    flow = make_flow([job_step("a"), job_step("b", "a")])
    sim = Simulator(flow, T0)
    first = sim.reconcile()
    # The Job was created but the status write was lost: plan again from the original status.
    again = plan(flow, list(sim.jobs.values()), T0)
    assert again.actions == ()
    a = again.status.step("a")
    assert a is not None
    assert a.phase == "Running"
    assert a.job_ref is not None
    assert a.job_ref.name == first.actions[0].body["metadata"]["name"]  # type: ignore[union-attr]
    assert a.job_ref.uid == "uid-1"


def test_adoption_follows_a_job_that_already_finished() -> None:
    flow = make_flow([job_step("a"), job_step("b", "a")])
    sim = Simulator(flow, T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    again = plan(flow, list(sim.jobs.values()), T0)
    assert [a.step for a in again.actions if isinstance(a, CreateJob)] == ["b"]
    assert {s.name: s.phase for s in again.status.steps} == {"a": "Succeeded", "b": "Running"}


@pytest.mark.parametrize("finished", [False, True])
def test_a_lost_writes_job_being_deleted_is_waited_for_unless_it_finished(finished: bool) -> None:
    # The status write after the create was lost, and the Job deleted since (a user, in the foreground):
    # adopted, it failed the step as "deleted outside zen-flow". A finished one (the TTL-after-finished
    # controller deletes in the foreground) keeps its outcome: it is adopted, and the step ends as it did.
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0, instant_delete=False)
    sim.reconcile(write_status=False)
    (name,) = sim.running()
    if finished:
        sim.complete(name)
    sim.delete(name)
    again = sim.reconcile()  # a second create of the name would raise DuplicateCreate
    phases = {s.name: s.phase for s in sim.flow.status.steps}
    if finished:
        assert phases == {"a": "Succeeded", "b": "Running"}
        return
    assert again.actions == ()
    assert phases == {"a": "Pending", "b": "Pending"}
    assert (
        sim.flow.status.steps[0].message
        == f"waiting for Job {name}, deleted before it finished, to go; then it starts again"
    )
    sim.collect()  # gone: the step's Job is created afresh
    sim.reconcile()
    assert sim.created == [name, name]
    assert sim.flow.status.steps[0].phase == "Running"


def test_running_step_whose_job_vanished_fails() -> None:
    sim = Simulator(make_flow([job_step("a")]), T0)
    sim.reconcile()
    sim.vanish(sim.running()[0])
    sim.reconcile()
    a = sim.flow.status.step("a")
    assert a is not None
    assert a.phase == "Failed"
    assert "not found" in (a.message or "")


@pytest.mark.parametrize(
    ("steps", "needle"),
    [
        ([], "must not be empty"),
        ([job_step("a"), job_step("a")], "duplicate step name"),
        ([job_step("a", "ghost")], "unknown step 'ghost'"),
        ([job_step("a", "b"), job_step("b", "a")], "dependency cycle"),
        ([job_step("a", "a")], "dependency cycle"),
    ],
)
def test_structurally_invalid_flows_fail_once_with_valid_false(
    steps: list[dict[str, object]], needle: str
) -> None:
    sim = Simulator(make_flow(steps), T0)
    result = sim.reconcile()
    assert result.actions == ()
    assert sim.phase == "Failed"
    conds = {c.type: c for c in sim.flow.status.conditions}
    assert (conds["Valid"].status, conds["Valid"].reason) == ("False", "InvalidSpec")
    assert (conds["Failed"].status, conds["Failed"].reason) == ("True", "InvalidSpec")
    assert needle in conds["Failed"].message
    assert [e.reason for e in result.events] == ["FlowFailed"]
    again = sim.reconcile()
    assert again.status is sim.flow.status
    assert again.events == ()


def test_fail_invalid_bounds_the_message_and_skips_steps() -> None:
    flow = make_flow([job_step("a"), job_step("b")])
    result = fail_invalid(flow, [f"error number {i}" for i in range(50)], T0)
    failed = next(c for c in result.status.conditions if c.type == "Failed")
    assert "(+40 more)" in failed.message
    assert len(result.status.message or "") <= 256
    assert {s.name: s.phase for s in result.status.steps} == {"a": "Skipped", "b": "Skipped"}
    assert result.requeue_after == 86400


def test_job_step_without_template_fails_cleanly() -> None:
    flow = make_flow([{"name": "a", "type": "Job"}, job_step("b", "a")])
    sim = Simulator(flow, T0)
    sim.reconcile()
    assert sim.phase == "Failed"
    a = sim.flow.status.step("a")
    assert a is not None
    assert "no Job template" in (a.message or "")


def test_a_spec_step_added_later_appears_and_removed_ones_vanish() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("old")]), T0)
    sim.reconcile()
    spec = make_flow([job_step("a"), job_step("new", "a")]).spec
    sim.flow = sim.flow.model_copy(update={"spec": spec})
    sim.reconcile()
    assert [s.name for s in sim.flow.status.steps] == ["a", "new"]


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([job_step("a")], "the step succeeded"),
        ([job_step("a"), job_step("b", "a")], "all 2 steps succeeded"),
        ([job_step("a"), job_step("b", "a", when="never")], "1 step succeeded, 1 skipped"),
    ],
)
def test_the_success_message_counts_in_plain_english(steps: list[dict[str, Any]], message: str) -> None:
    sim = Simulator(make_flow(steps), T0)
    run(sim, lambda _: "complete")
    assert sim.phase == "Succeeded"
    assert sim.flow.status.message == message


def test_a_finished_flow_acknowledges_a_spec_edited_since_in_observed_generation() -> None:
    # `zen-flow suspend` on a finished flow: the generation moves; tools that judge health by
    # observedGeneration (Argo CD, Flux) must not see it as never reconciled. Nothing else changes but
    # the conditions' observedGeneration (test_planner_condition_generation.py: `kubectl wait`).
    sim = Simulator(make_flow([job_step("a")]).model_copy(deep=True), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Succeeded"
    before = sim.flow.status
    edited = sim.flow.metadata.model_copy(update={"generation": (sim.flow.metadata.generation or 1) + 1})
    sim.flow = sim.flow.model_copy(update={"metadata": edited})
    plan = sim.reconcile()
    assert sim.flow.status.observed_generation == edited.generation
    unmoved = {"observed_generation": before.observed_generation, "conditions": before.conditions}
    assert sim.flow.status.model_copy(update=unmoved) == before
    assert plan.actions == ()
    assert sim.reconcile().status is sim.flow.status  # then quiet again


def test_a_failed_steps_message_says_how_its_containers_ended() -> None:
    # The Job's condition alone ("BackoffLimitExceeded") does not say why: the exit code and OOMKilled,
    # read from the failed pod, come first.
    sim = Simulator(make_flow([job_step("crunch")]), T0)
    sim.reconcile()
    (job,) = sim.running()
    sim.fail(
        job,
        message="Job has reached the specified backoff limit",
        messages={"exit:main": "exit code 137 (OOMKilled)"},
    )
    sim.reconcile()
    step = sim.flow.status.step("crunch")
    assert step is not None
    assert step.message == (
        "Job failed: main: exit code 137 (OOMKilled); "
        "BackoffLimitExceeded: Job has reached the specified backoff limit"
    )
