"""`flow.outcome` as finally steps read it under a graceful stop: it says how the steps that are not
finally ended (an untolerated failure, or a stop or the grace cutting one short), the same in every plan
of the run, and a finally step's own Job found gone under the stop does not change it."""

from typing import Any

from graceful_stop_rig import ON_FAILURE, T0, job_of, stop
from test_planner_finally import FINALLY, by_step, started
from test_planner_joins import message, phases

from zen_flow.api.constants import ANNOTATION_STOP
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator, run


def tolerant_main_and_failure_steps() -> list[dict[str, Any]]:
    """`a` may fail (allowFailure), so only a stop cutting it short makes the outcome Failed."""
    return [
        job_step("a", allowFailure=True),
        job_step("first", **ON_FAILURE),
        job_step("second", "first", **ON_FAILURE),
    ]


def test_a_main_step_cut_short_by_a_graceful_stop_keeps_the_outcome_failed_after_the_stop_is_taken_back() -> (
    None
):
    sim = Simulator(make_flow(tolerant_main_and_failure_steps()), T0)
    sim.reconcile()
    stop(sim)
    sim.reconcile()
    assert message(sim, "a") == "stopped by alice"
    sim.annotate(ANNOTATION_STOP, None)  # taken back: the stored message still says the stop cut `a`
    sim.reconcile()
    run(sim, by_step(sim, {}))
    assert phases(sim)["first"] == "Succeeded"
    assert phases(sim)["second"] == "Succeeded", phases(sim)  # decided plans later: still Failed


def test_a_stop_now_whose_write_was_lost_then_made_graceful_keeps_the_outcome_failed() -> None:
    sim = Simulator(make_flow(tolerant_main_and_failure_steps()), T0)
    sim.reconcile()
    stop(sim, "true")
    sim.reconcile(write_status=False)  # the stop now deleted a's Job; its write was lost
    stop(sim)  # then set to RunFinally
    sim.reconcile()
    assert message(sim, "a") == "stopped by alice"
    run(sim, by_step(sim, {}))
    assert phases(sim)["second"] == "Succeeded", phases(sim)


def test_a_finally_job_gone_under_a_graceful_stop_leaves_the_outcome_of_a_step_decided_in_that_plan() -> None:
    on_success: dict[str, Any] = {"when": "flow.outcome == 'Succeeded'", **FINALLY}
    steps = [
        job_step("a"),
        job_step("cleanup", allowFailure=True, **FINALLY),
        job_step("report", **on_success),
    ]
    sim = Simulator(make_flow(steps, execution_policy={"parallelism": 1}), T0)
    sim.reconcile()
    sim.complete(job_of(sim, "a"))
    sim.reconcile()
    sim.reconcile()
    assert started(sim) == ["a", "cleanup"]
    stop(sim)
    sim.vanish(job_of(sim, "cleanup"))
    sim.reconcile()  # ends cleanup "stopped by alice" and decides report in the same plan
    assert message(sim, "cleanup") == "stopped by alice"
    run(sim, by_step(sim, {}))
    assert "report" in started(sim), phases(sim)
