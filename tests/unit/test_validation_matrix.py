"""Admission of matrix steps (`spec.steps[].matrix`): the effective flow is validated, each item as an
ordinary step, errors at the matrix step's path; what reads a matrix step as a whole (its outputs) is
allowed, what would need a single Job (its Job status, an artifact, `when`) is refused naming an item."""

from __future__ import annotations

import json
from typing import Any

from validation_samples import ErrorType, assert_error, assert_valid, errors_of, job_step, make_flow

from zen_flow.core import matrix as core_matrix
from zen_flow.validation import validate_jobflow
from zen_flow.validation.size import status_bound

E = ErrorType


def matrix(**params: Any) -> dict[str, Any]:
    return {
        "parameters": [
            {"name": n, "values": v} if isinstance(v, list) else {"name": n, "valueFrom": {"argument": v}}
            for n, v in params.items()
        ]
    }


def uses(*names: str) -> dict[str, Any]:
    """A Job template whose command reads the input parameters `names`."""
    step = job_step("x")
    placeholders = " ".join("{{inputs.parameters.%s}}" % n for n in names)  # noqa: UP031
    step["template"]["spec"]["template"]["spec"]["containers"][0]["command"] = ["echo", placeholders]
    template: dict[str, Any] = step["template"]
    return template


def flow(*, consumer: dict[str, Any] | None = None, **build: Any) -> dict[str, Any]:
    step = job_step(
        "build",
        matrix=matrix(os=["linux", "darwin"], region="regions"),
        template=uses("os", "region"),
        outputs={"parameters": [{"name": "artifact", "valueFrom": {"jsonPath": "$.succeeded"}}]},
        **build,
    )
    steps = [step] + ([consumer] if consumer is not None else [])
    arguments = {"parameters": [{"name": "regions", "value": '["eu","us"]'}]}
    return make_flow(*steps, arguments=arguments)


def reader(json_path: str, *deps: str) -> dict[str, Any]:
    source = {"jsonPath": json_path}
    return job_step(
        "publish", *(deps or ("build",)), inputs={"parameters": [{"name": "all", "valueFrom": source}]}
    )


def test_a_matrix_flow_with_a_fan_in_reading_an_aggregated_output_is_valid() -> None:
    assert_valid(flow(consumer=reader("build:$.outputs.parameters.artifact")))


def test_an_item_is_read_by_name_like_any_step() -> None:
    assert_valid(flow(consumer=reader("build-3:$.succeeded", "build-3")))


def test_a_matrix_steps_job_status_is_refused_suggesting_an_item() -> None:
    error = assert_error(
        flow(consumer=reader("build:$.succeeded")),
        "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath",
        E.INVALID,
        "matrix step",
    )
    assert '"build-0:$.succeeded"' in str(error)


def test_an_aggregated_read_needs_every_item_before_it() -> None:
    assert_error(
        flow(consumer=reader("build:$.outputs.parameters.artifact", "build-0")),
        "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath",
        E.INVALID,
        "does not depend",
    )


def test_an_artifact_from_a_matrix_step_is_refused_suggesting_an_item() -> None:
    consumer = job_step(
        "publish", "build", inputs={"artifacts": [{"name": "a", "from": "build/out", "path": "/a"}]}
    )
    error = assert_error(flow(consumer=consumer), "spec.steps[1].inputs.artifacts[0].from", E.INVALID)
    assert "build-0/out" in str(error)


def test_when_reading_a_matrix_step_is_refused_naming_its_items() -> None:
    consumer = job_step("publish", "build", when="steps.build.phase == 'Succeeded'")
    error = assert_error(flow(consumer=consumer), "spec.steps[1].when", E.INVALID, "matrix step")
    assert "build-0" in str(error)
    assert_valid(flow(consumer=job_step("publish", "build", when="steps['build-1'].phase == 'Succeeded'")))


def test_an_argument_that_is_no_json_array_names_the_argument_and_the_matrix_field() -> None:
    bad = flow()
    bad["spec"]["arguments"]["parameters"][0]["value"] = "eu,us"
    error = assert_error(bad, "spec.steps[0].matrix.parameters[1].valueFrom.argument", E.INVALID)
    assert '"regions"' in str(error)
    assert "JSON array" in str(error)


def test_refusals_name_their_field() -> None:
    manual = make_flow({"name": "gate", "type": "Manual", "matrix": matrix(x=["1"])})
    assert_error(manual, "spec.steps[0].matrix", E.FORBIDDEN, "Manual")
    empty = make_flow(job_step("s", matrix={"parameters": []}))
    assert_error(empty, "spec.steps[0].matrix.parameters", E.REQUIRED)
    taken = make_flow(job_step("build-1"), job_step("build", matrix=matrix(x=["1", "2"])))
    assert_error(taken, "spec.steps[1].name", E.DUPLICATE, "build-1")
    long = make_flow(job_step("s" * 62, matrix=matrix(x=["1", "2"])))
    assert_error(long, "spec.steps[0].matrix", E.INVALID, "63")
    big = make_flow(*[job_step(f"m{i}", matrix=matrix(x=[str(v) for v in range(200)])) for i in range(3)])
    assert_error(big, "spec.steps", E.TOO_MANY)


def test_an_items_error_is_said_once_at_its_matrix_step() -> None:
    bad = flow()
    bad["spec"]["steps"][0]["timeoutSeconds"] = -1
    errors = [str(e) for e in errors_of(bad)]
    assert errors == ["spec.steps[0].timeoutSeconds: Invalid value: -1: must be greater than 0"]


def test_a_placeholder_of_a_matrix_parameter_resolves_and_an_unknown_one_is_reported() -> None:
    bad = flow()
    bad["spec"]["steps"][0]["template"] = uses("os", "nope")
    assert any("nope" in str(e) for e in validate_jobflow(bad))


def test_the_status_bound_counts_every_item() -> None:
    one = make_flow(job_step("s"))["spec"]
    many = make_flow(job_step("s", matrix=matrix(x=[str(i) for i in range(100)])))["spec"]
    assert status_bound(many) > status_bound(one) + 99 * 500


def test_the_examples_matrix_is_valid_with_overridden_arguments() -> None:
    ok = flow()
    ok["spec"]["arguments"]["parameters"][0]["value"] = json.dumps(["a", "b", "c"])
    assert_valid(ok)


def test_a_flow_of_too_many_items_is_refused_without_building_them(monkeypatch: Any) -> None:
    # 500 steps of 256 items each would be 128,000 steps: counted first, never built (nor checked).
    built: list[str] = []
    real = core_matrix.item_step
    monkeypatch.setattr(core_matrix, "item_step", lambda *a: built.append(a[2]) or real(*a))
    values = json.dumps([f"v{i}" for i in range(256)])
    steps = [job_step(f"s{k}", matrix=matrix(x="xs")) for k in range(500)]
    huge = make_flow(*steps, arguments={"parameters": [{"name": "xs", "value": values}]})
    errors = [str(e) for e in errors_of(huge)]
    assert errors == [errors[0]]
    assert errors[0].startswith("spec.steps: Too many: 128000: must have at most 500 items")
    assert "spec.steps[0].matrix alone makes 256" in errors[0]
    assert built == []


def test_a_memoize_key_must_read_every_matrix_parameter() -> None:
    # Otherwise items with different values share one key, and one item's result is served to all.
    memo = {"cache": {"configMap": {"name": "memo"}}}
    error = assert_error(
        flow(memoize={**memo, "key": "v1-{{inputs.parameters.os}}"}), "spec.steps[0].memoize.key", E.INVALID
    )
    assert "{{inputs.parameters.region}}" in str(error)
    assert "{{inputs.parameters.os}}" not in str(error).split("missing:")[1]
    assert_valid(flow(memoize={**memo, "key": "v1-{{inputs.parameters.os}}-{{inputs.parameters.region}}"}))


def test_an_items_error_naming_it_is_said_once_with_how_many_items_share_it() -> None:
    # One typo in a 256-item step's template: one error naming the first item, not 256 (46 KB).
    step = job_step("build", template=uses("nope"), matrix=matrix(os=[str(i) for i in range(256)]))
    errors = [str(e) for e in validate_jobflow(make_flow(step))]
    assert len(errors) == 1
    assert '"nope"' in errors[0]
    assert 'step "build-0"' in errors[0]
    assert errors[0].endswith("(and 255 more items of this matrix step)")
