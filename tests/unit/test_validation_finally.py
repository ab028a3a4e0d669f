"""Finally steps at admission: `finally` is a bool; a finally step depends only on finally steps and no
other step depends on one (field-named errors both ways); a Manual step cannot be finally; the `when` of a
finally step reads every other step and `flow.outcome`, which no other step's `when` may read."""

from __future__ import annotations

from typing import Any

from validation_samples import ErrorType, assert_error, assert_valid, job_step, make_flow, manual_step

E = ErrorType
FINALLY: dict[str, Any] = {"finally": True}


def pipeline(*finals: dict[str, Any]) -> Any:
    """build -> test, lint after build, then the given steps (index 3 on)."""
    return make_flow(job_step("build"), job_step("test", "build"), job_step("lint", "build"), *finals)


def test_finally_steps_ordered_among_themselves_reading_every_step_are_valid() -> None:
    assert_valid(
        pipeline(
            job_step(
                "cleanup", when="steps.test.phase == 'Failed' || steps.lint.phase == 'Failed'", **FINALLY
            ),
            job_step("notify", "cleanup", when="flow.outcome == 'Failed'", **FINALLY),
            job_step("report", when="steps.test.phase != 'Succeeded' && flow.outcome != 'Failed'", **FINALLY),
        )
    )


def test_finally_must_be_a_bool() -> None:
    assert_error(pipeline(job_step("cleanup", **{"finally": "yes"})), "spec.steps[3].finally", E.INVALID)


def test_a_finally_step_may_not_depend_on_a_step_that_is_not_finally() -> None:
    flow = pipeline(job_step("cleanup", **FINALLY), job_step("notify", "cleanup", "test", **FINALLY))
    error = assert_error(flow, "spec.steps[4].dependencies[1]", E.INVALID, "is not a finally step")
    assert str(error).startswith('spec.steps[4].dependencies[1]: Invalid value: "test": ')


def test_a_step_may_not_depend_on_a_finally_step() -> None:
    flow = make_flow(job_step("notify", **FINALLY), job_step("build"), job_step("ship", "build", "notify"))
    error = assert_error(flow, "spec.steps[2].dependencies[1]", E.INVALID, "is a finally step")
    assert str(error).startswith('spec.steps[2].dependencies[1]: Invalid value: "notify": ')


def test_a_manual_step_cannot_be_finally() -> None:
    flow = pipeline(manual_step("sign-off", **FINALLY))
    assert_error(flow, "spec.steps[3].finally", E.FORBIDDEN, "a Manual step cannot be finally")


def test_only_a_finally_step_may_read_flow_outcome() -> None:
    flow = pipeline(job_step("ship", "test", when="flow.outcome == 'Succeeded'"))
    assert_error(flow, "spec.steps[3].when", E.INVALID, "only the when of a finally step can read")


def test_a_step_that_is_not_finally_still_reads_only_its_dependencies() -> None:
    flow = pipeline(
        job_step("cleanup", **FINALLY), job_step("late", "build", when="steps.cleanup.phase == 'Failed'")
    )
    assert_error(flow, "spec.steps[4].when", E.INVALID, "not among the dependencies")


def test_a_finally_step_reads_another_finally_step_only_after_it() -> None:
    flow = pipeline(
        job_step("cleanup", **FINALLY), job_step("notify", when="steps.cleanup.phase == 'Failed'", **FINALLY)
    )
    error = assert_error(flow, "spec.steps[4].when", E.INVALID, "not among the dependencies")
    assert "a finally step reads any step that is not finally" in str(error)


def test_a_finally_step_reads_the_outputs_of_any_step_that_is_not_finally() -> None:
    built = job_step(
        "build", outputs={"parameters": [{"name": "tag", "valueFrom": {"jsonPath": "$.succeeded"}}]}
    )
    cleanup = job_step(
        "cleanup",
        when="steps.build.outputs.parameters.tag != ''",
        inputs={"parameters": [{"name": "tag", "valueFrom": {"jsonPath": "build:$.outputs.parameters.tag"}}]},
        **FINALLY,
    )
    assert_valid(make_flow(built, job_step("test", "build"), cleanup))
