"""Planner: finally steps (`finally: true`) run once every other step has ended, whatever the outcome:
after a success, after a fail-fast failure, ordered among themselves by their dependencies, with
`flow.outcome` in their `when` (decided on values the status holds); a failed one fails the flow; a stop or
the flow deadline runs none; a rerun runs them again."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from test_planner_joins import message, phases

from zen_flow.api.constants import (
    ANNOTATION_RETRIED_BY,
    ANNOTATION_RETRY,
    ANNOTATION_STOP,
    ANNOTATION_STOPPED_BY,
    REJECT_PREFIX,
)
from zen_flow.planner import CreateJob, DeleteJob
from zen_flow.planner.memoization import MemoEntry, data_key, encode_entry
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run

T0 = datetime(2025, 1, 1, tzinfo=UTC)
FINALLY: dict[str, Any] = {"finally": True}


def failed_condition(sim: Simulator) -> tuple[str, str]:
    cond = next(c for c in sim.flow.status.conditions if c.type == "Failed")
    return cond.reason, cond.message


def started(sim: Simulator) -> list[str]:
    """The steps whose Jobs were created, in order."""
    return [sim.steps[name] for name in sim.created]


def by_step(sim: Simulator, verdicts: dict[str, str]) -> Any:
    return lambda job: verdicts.get(sim.steps[job], "complete")


def pipeline(*finals: dict[str, Any], **spec: Any) -> Simulator:
    """build -> test (in parallel with lint), then the finally steps."""
    steps = [job_step("build"), job_step("test", "build"), job_step("lint", "build"), *finals]
    return Simulator(make_flow(steps, **spec), T0)


def test_a_finally_step_runs_last_after_a_success_and_the_flow_succeeds() -> None:
    sim = pipeline(job_step("cleanup", **FINALLY))
    sim.reconcile()
    assert sim.running()
    assert started(sim) == ["build"]
    run(sim, by_step(sim, {}))
    assert sim.phase == "Succeeded"
    assert started(sim)[-1] == "cleanup"
    assert phases(sim)["cleanup"] == "Succeeded"
    assert sim.flow.status.progress_summary == "4/4"


def test_fail_fast_then_the_finally_step_runs_after_the_running_steps_finish() -> None:
    sim = pipeline(job_step("cleanup", **FINALLY))
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    test, lint = sorted(sim.running(), key=lambda j: sim.steps[j] != "test")
    sim.fail(test)
    sim.reconcile()
    assert "cleanup" not in started(sim)  # lint still runs: nothing new starts, not even the cleanup
    assert sim.phase == "Running"
    sim.complete(lint)
    sim.reconcile()
    assert "cleanup" not in started(sim)  # the plan that saw the last running step end writes that first
    assert phases(sim)["cleanup"] == "Pending"
    assert (
        sim.flow.status.message == "step test failed: Job failed: BackoffLimitExceeded: Job has failed; "
        "the finally steps start next: cleanup"
    )
    sim.reconcile()  # brought by that write
    assert started(sim)[-1] == "cleanup"
    sim.complete(sim.running()[0])
    sim.reconcile()
    assert sim.phase == "Failed"
    assert phases(sim) == {
        "build": "Succeeded",
        "test": "Failed",
        "lint": "Succeeded",
        "cleanup": "Succeeded",
    }
    assert failed_condition(sim)[0] == "StepFailed"
    assert failed_condition(sim)[1].startswith("step test failed")


def test_steps_fail_fast_skipped_before_the_finally_step_starts() -> None:
    steps = [job_step("a"), job_step("b", "a"), job_step("c", "b"), job_step("notify", **FINALLY)]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    assert started(sim) == ["a"]
    run(sim, by_step(sim, {"a": "fail"}))
    assert sim.phase == "Failed"
    assert phases(sim) == {"a": "Failed", "b": "Skipped", "c": "Skipped", "notify": "Succeeded"}


def test_a_failed_finally_step_fails_a_flow_whose_steps_succeeded() -> None:
    sim = pipeline(job_step("cleanup", **FINALLY))
    run(sim, by_step(sim, {"cleanup": "fail"}))
    assert sim.phase == "Failed"
    reason, text = failed_condition(sim)
    assert reason == "FinallyStepFailed"
    assert text.startswith("finally step cleanup failed")


def test_finally_steps_do_not_fail_fast_each_other_and_keep_their_order() -> None:
    sim = pipeline(
        job_step("teardown", **FINALLY),
        job_step("release", **FINALLY),
        job_step("notify", "teardown", "release", **FINALLY),
    )
    run(sim, by_step(sim, {"teardown": "fail"}))
    assert sim.phase == "Failed"
    assert phases(sim)["release"] == "Succeeded"  # started beside the failed teardown, not stopped
    assert phases(sim)["notify"] == "Succeeded"  # after both, the failed one too
    order = started(sim)
    assert order.index("notify") > max(order.index("teardown"), order.index("release"))
    assert failed_condition(sim)[0] == "FinallyStepFailed"


def test_a_finally_step_retries_even_while_the_flow_is_failing() -> None:
    retry = {"retryPolicy": {"limit": 1, "backoff": {"type": "Fixed", "duration": "1s"}}}
    sim = pipeline(job_step("cleanup", **FINALLY, **retry))
    failures = {"cleanup": 0}

    def outcome(job: str) -> str:
        step = sim.steps[job]
        if step == "test":
            return "fail"
        if step == "cleanup" and failures["cleanup"] == 0:
            failures["cleanup"] += 1
            return "fail"
        return "complete"

    run(sim, outcome)
    assert started(sim).count("cleanup") == 2
    assert phases(sim)["cleanup"] == "Succeeded"
    assert failed_condition(sim)[1].startswith("step test failed")


def test_when_reads_the_outcome_and_the_phases_of_the_other_steps() -> None:
    on_failure = job_step("page", when="flow.outcome == 'Failed'", **FINALLY)
    on_success = job_step("celebrate", when="flow.outcome == 'Succeeded'", **FINALLY)
    after_test = job_step("report", when="steps.test.phase == 'Failed'", **FINALLY)
    failed = pipeline(on_failure, on_success, after_test)
    run(failed, by_step(failed, {"test": "fail"}))
    assert {k: v for k, v in phases(failed).items() if k in ("page", "celebrate", "report")} == {
        "page": "Succeeded",
        "celebrate": "Skipped",
        "report": "Succeeded",
    }
    ok = pipeline(on_failure, on_success, after_test)
    run(ok, by_step(ok, {}))
    assert ok.phase == "Succeeded"
    assert {k: v for k, v in phases(ok).items() if k in ("page", "celebrate", "report")} == {
        "page": "Skipped",
        "celebrate": "Succeeded",
        "report": "Skipped",
    }
    assert message(ok, "page") == "when \"flow.outcome == 'Failed'\" is false"


def test_a_stop_ends_everything_at_once_and_runs_no_finally_step() -> None:
    sim = pipeline(job_step("cleanup", **FINALLY))
    sim.reconcile()
    running = sim.running()
    sim.annotate(ANNOTATION_STOP, "true")
    sim.annotate(ANNOTATION_STOPPED_BY, "alice")
    result = sim.reconcile()
    assert [a.name for a in result.actions if isinstance(a, DeleteJob)] == running
    assert sim.phase == "Failed"
    assert phases(sim)["cleanup"] == "Skipped"
    assert message(sim, "cleanup") == "not started: stopped by alice"
    assert "cleanup" not in started(sim)


def test_a_stop_while_finally_steps_run_stops_them_too() -> None:
    sim = pipeline(job_step("cleanup", **FINALLY))
    for _ in range(4):
        sim.reconcile()
        for job in sim.running():
            if sim.steps[job] != "cleanup":
                sim.complete(job)
    assert phases(sim)["cleanup"] == "Running"
    sim.annotate(ANNOTATION_STOP, "true")
    sim.reconcile()
    assert sim.phase == "Failed"
    assert phases(sim)["cleanup"] == "Failed"
    assert failed_condition(sim)[0] == "Stopped"


def test_the_flow_deadline_runs_no_finally_step() -> None:
    sim = pipeline(job_step("cleanup", **FINALLY), execution_policy={"activeDeadlineSeconds": 30})
    sim.reconcile()
    sim.advance(30)
    sim.reconcile()
    assert sim.phase == "Failed"
    assert failed_condition(sim)[0] == "DeadlineExceeded"
    assert phases(sim)["cleanup"] == "Skipped"
    assert "cleanup" not in started(sim)


def test_a_rerun_runs_the_finally_steps_again_at_its_end() -> None:
    sim = pipeline(job_step("cleanup", **FINALLY), job_step("notify", "cleanup", **FINALLY))
    fail_test = {"test": "fail"}
    run(sim, by_step(sim, fail_test))
    assert sim.phase == "Failed"
    assert started(sim).count("cleanup") == 1
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.annotate(ANNOTATION_RETRIED_BY, "alice")
    sim.reconcile()
    assert phases(sim)["cleanup"] == "Pending"  # not beside the rerun step: at its end
    assert phases(sim)["test"] == "Running"
    run(sim, by_step(sim, {}))
    assert sim.phase == "Succeeded"
    assert started(sim).count("cleanup") == 2
    assert started(sim).count("notify") == 2
    assert started(sim)[-2:] == ["cleanup", "notify"]
    audit = sim.flow.status.audit
    assert audit is not None
    assert set(audit.retries[0].steps) == {"test", "cleanup", "notify"}


def test_a_rerun_of_a_flow_failed_only_by_its_finally_step() -> None:
    sim = pipeline(job_step("cleanup", **FINALLY))
    verdicts = {"cleanup": "fail"}
    run(sim, by_step(sim, verdicts))
    assert failed_condition(sim)[0] == "FinallyStepFailed"
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.reconcile()
    verdicts.clear()
    run(sim, by_step(sim, verdicts))
    assert sim.phase == "Succeeded"
    assert started(sim).count("build") == 1
    assert started(sim).count("cleanup") == 2


def test_parallelism_holds_finally_steps_like_the_others() -> None:
    finals = [job_step(f"clean-{i}", **FINALLY) for i in range(3)]
    sim = pipeline(*finals, execution_policy={"parallelism": 1})
    most = 0

    def outcome(job: str) -> str:
        nonlocal most
        most = max(most, len(sim.running()))
        return "complete"

    run(sim, outcome)
    assert sim.phase == "Succeeded"
    assert most == 1
    assert set(started(sim)[:3]) == {"build", "test", "lint"}
    assert started(sim)[3:] == ["clean-0", "clean-1", "clean-2"]


# --- found by a review of the merged features ------------------------------------------------------------


def test_a_failure_with_continue_on_failure_makes_the_outcome_failed_as_the_flow_ends_failed() -> None:
    # The flow ends Failed (the original's rule for continueOnFailure): a "notify on failure" finally step
    # must see it, and a "celebrate" one must not run.
    steps = [
        job_step("optional", continueOnFailure=True),
        job_step("build"),
        job_step("notify-failure", when="flow.outcome == 'Failed'", **FINALLY),
        job_step("celebrate", when="flow.outcome == 'Succeeded'", **FINALLY),
    ]
    sim = Simulator(make_flow(steps), T0)
    run(sim, by_step(sim, {"optional": "fail"}))
    assert sim.phase == "Failed"
    assert phases(sim)["notify-failure"] == "Succeeded"
    assert phases(sim)["celebrate"] == "Skipped"
    assert failed_condition(sim)[0] == "StepFailed"


def test_a_finally_steps_failure_never_hides_how_the_other_steps_ended() -> None:
    # The plan that rejected the gate (ending the other steps) lost its status write: no finally step ran
    # on it, and the next plan rejects the gate again. The finally step fails: the gate's rejection is
    # still the flow's failure, with it recorded, as with the write kept.
    flow = make_flow([job_step("probe", when="false"), manual_step("gate"), job_step("cleanup", **FINALLY)])
    outcomes = []
    for lose in (False, True):
        sim = Simulator(flow, T0)
        sim.annotate(REJECT_PREFIX + "gate", "true")
        sim.reconcile(write_status=not lose)
        assert sim.created == []
        for _ in range(2 if lose else 1):  # ends the other steps again (lost), then starts cleanup
            sim.reconcile()
        sim.fail(sim.running()[0])
        sim.advance(1)
        sim.reconcile()
        audit = sim.flow.status.audit
        outcomes.append(
            (sim.phase, failed_condition(sim), phases(sim), audit and audit.approvals[0].decision)
        )
    assert outcomes[0] == outcomes[1]
    assert outcomes[1][1] == ("StepFailed", "step gate failed: rejected")


def test_a_rerun_steps_job_a_lost_status_write_left_unrecorded_is_taken_over() -> None:
    # With jobRetention LastAttempt the rerun step's first attempt's Job is gone; the rerun plan created
    # its next one and lost its status write. The next plan takes it over (before, it was dropped as
    # "not started" and ran untracked beside the finally step).
    retry = {"limit": 1, "backoff": {"type": "Fixed", "duration": "1s"}}
    steps = [
        job_step("prod-only", when="false"),
        job_step("report", "prod-only", dependencyPolicy="SucceededOrSkipped", retryPolicy=retry),
        job_step("test"),
        job_step("cleanup", **FINALLY),
    ]
    sim = Simulator(make_flow(steps, execution_policy={"jobRetention": "LastAttempt"}), T0)

    def job_of(step: str) -> str:
        return next(j for j in sim.running() if sim.steps[j] == step)

    sim.reconcile()
    sim.fail(job_of("report"))
    sim.reconcile()
    sim.advance(2)
    sim.reconcile()
    sim.reconcile()
    sim.fail(job_of("report"))
    sim.fail(job_of("test"))
    sim.reconcile()
    sim.reconcile()
    sim.complete(job_of("cleanup"))
    sim.reconcile()
    assert sim.phase == "Failed"
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.annotate(ANNOTATION_RETRIED_BY, "alice")
    sim.advance(5)
    sim.reconcile(write_status=False)
    sim.fail(job_of("test"))
    sim.reconcile()
    report = sim.flow.status.step("report")
    assert report is not None
    assert (report.phase, report.retry_count) == ("Running", 2)
    assert phases(sim)["cleanup"] == "Pending"  # it waits for report: the finally step runs last


# --- a finally step's `when` reads committed values only ------------------------------------------------

OUTPUT = {"parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}}]}


def test_a_finally_steps_when_waits_for_the_outputs_a_main_step_got_in_the_same_plan() -> None:
    # Its `when` may read every step: it starts only once the outputs it may read are in the status.
    steps = [
        job_step("m", outputs=OUTPUT),
        job_step("notify", when="steps.m.outputs.parameters.n == '1'", **FINALLY),
    ]
    sim = Simulator(make_flow(steps), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    first = sim.reconcile()
    assert [a.step for a in first.actions if isinstance(a, CreateJob)] == []
    assert phases(sim) == {"m": "Succeeded", "notify": "Pending"}
    second = sim.reconcile()
    assert [a.step for a in second.actions if isinstance(a, CreateJob)] == ["notify"]


def test_a_finally_steps_when_never_decides_on_a_memoized_result_whose_write_was_lost() -> None:
    # m is served from its cache (value old) and that plan's status write is lost; another flow stores the
    # key meanwhile (new): the finally step, whose `when` wants old, is never created on the lost value.
    memo = {"key": "k-m", "cache": {"configMap": {"name": "c"}}}
    when = "steps.m.outputs.parameters.n == 'old'"
    steps = [job_step("m", memoize=memo, outputs=OUTPUT), job_step("cleanup", when=when, **FINALLY)]
    sim = Simulator(make_flow(steps), T0)

    def entry(value: str) -> str:
        return encode_entry(MemoEntry("k-m", {"n": value}, "default/other", "m", T0))

    sim.memo_cache = {"c": {data_key("k-m"): entry("old")}}
    lost = sim.reconcile(write_status=False)
    assert [a.step for a in lost.actions if isinstance(a, CreateJob)] == []
    sim.memo_cache["c"][data_key("k-m")] = entry("new")
    for _ in range(3):
        sim.advance(1)
        sim.reconcile()
    assert sim.created == []
    assert (phases(sim), sim.phase) == ({"m": "Succeeded", "cleanup": "Skipped"}, "Succeeded")


COMMIT_WAIT = "waiting for the status that ends the other steps to be written"


def test_a_finally_step_taken_over_after_a_lost_write_no_longer_says_it_waits_for_the_status() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("cleanup", **FINALLY)]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()  # writes a's end: cleanup waits for that write
    assert message(sim, "cleanup") == COMMIT_WAIT
    sim.reconcile(write_status=False)  # creates cleanup's Job; the write recording it is lost
    sim.reconcile()  # takes the Job over
    assert phases(sim)["cleanup"] == "Running"
    assert message(sim, "cleanup") == ""  # it runs: it waits for nothing


def test_a_flow_suspended_before_its_finally_steps_start_says_it_is_suspended_not_waiting_for_a_write() -> (
    None
):
    sim = Simulator(make_flow([job_step("a"), job_step("cleanup", **FINALLY)]), T0)
    sim.reconcile()
    sim.complete(sim.running()[0])
    sim.reconcile()
    sim.set_suspend(True)
    sim.reconcile()
    assert (sim.flow.status.phase, sim.flow.status.message) == ("Suspended", "suspended")
    assert message(sim, "cleanup") == ""
    sim.set_suspend(False)
    sim.reconcile()
    assert phases(sim)["cleanup"] == "Running"
