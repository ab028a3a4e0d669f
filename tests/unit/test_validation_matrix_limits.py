"""Admission of a matrix's `maxParallel` and `maxItems`: each an integer 1 to 256, refused naming the
field; a static matrix with more items than its `maxItems` is refused; a matrix reading an output is
counted at its `maxItems` toward the status-size bound, so several such fan-outs fit once bounded."""

from __future__ import annotations

from typing import Any

import pytest
from validation_samples import ErrorType, assert_error, assert_valid, errors_of, job_step, make_flow

E = ErrorType
AT = "spec.steps[0].matrix"
GEN_OUTPUT = {"parameters": [{"name": "list", "valueFrom": {"terminationMessage": {"container": "main"}}}]}


def static(values: int, **matrix: Any) -> dict[str, Any]:
    parameters = [{"name": "x", "values": [str(i) for i in range(values)]}]
    return make_flow(job_step("build", matrix={"parameters": parameters, **matrix}))


def test_limits_within_range_are_valid() -> None:
    assert_valid(static(10, maxParallel=3, maxItems=10))
    assert_valid(static(256, maxParallel=256, maxItems=256))


@pytest.mark.parametrize("field", ["maxParallel", "maxItems"])
@pytest.mark.parametrize("value", [0, 257, -1, "3", True, 2.5])
def test_a_limit_that_is_no_integer_from_1_to_256_is_refused_naming_it(field: str, value: Any) -> None:
    assert_error(static(3, **{field: value}), f"{AT}.{field}", E.INVALID, "integer from 1 to 256")


def test_a_static_matrix_with_more_items_than_its_max_items_is_refused() -> None:
    error = assert_error(static(12, maxItems=10), f"{AT}.maxItems", E.TOO_MANY, "makes 12 items")
    assert "10" in str(error)


def dynamic_fan_outs(count: int, outputs: int, **matrix: Any) -> dict[str, Any]:
    """`count` matrix steps reading gen's output, each declaring `outputs` output parameters of 1 KiB."""
    declared = {
        "parameters": [
            {"name": f"o{k}", "valueFrom": {"terminationMessage": {"container": "main"}}}
            for k in range(outputs)
        ]
    }
    source = {"jsonPath": "gen:$.outputs.parameters.list"}
    steps = [job_step("gen", outputs=GEN_OUTPUT)]
    for i in range(count):
        parameters = [{"name": "x", "valueFrom": source}]
        steps.append(
            job_step(f"fan{i}", "gen", matrix={"parameters": parameters, **matrix}, outputs=declared)
        )
    return make_flow(*steps)


def test_bounded_dynamic_fan_outs_fit_the_status_size_bound_that_unbounded_ones_do_not() -> None:
    # Unbounded, each counts at 256 items of 2 KiB of outputs: the status could outgrow etcd.
    assert errors_of(dynamic_fan_outs(2, 2)) != []
    assert_valid(dynamic_fan_outs(2, 2, maxItems=16))
    assert_valid(dynamic_fan_outs(1, 4, maxItems=64))


def dynamic(name: str, *others: dict[str, Any], **matrix: Any) -> dict[str, Any]:
    parameters = [{"name": "x", "valueFrom": {"jsonPath": "gen:$.outputs.parameters.list"}}]
    fan = job_step(name, "gen", matrix={"parameters": parameters, **matrix})
    return make_flow(job_step("gen", outputs=GEN_OUTPUT), fan, *others)


def test_a_dynamic_matrix_is_checked_for_item_names_up_to_its_max_items() -> None:
    # work-10 could be an item of an unbounded matrix, never of one of at most 4 items.
    assert_valid(dynamic("work", job_step("work-10"), maxItems=4))
    error = assert_error(dynamic("work", job_step("work-3"), maxItems=4), "spec.steps[1].name", E.DUPLICATE)
    assert "work-0 to at most work-3" in str(error)
    assert_error(dynamic("work", job_step("work-10")), "spec.steps[1].name", E.DUPLICATE, "work-255")


def test_a_dynamic_matrix_whose_items_could_be_named_too_long_is_refused_naming_the_matrix() -> None:
    # 60 characters: items -0 to -3 are 62 characters, -255 would be 64.
    name = "w" * 60
    assert_valid(dynamic(name, maxItems=4))
    error = assert_error(dynamic(name), "spec.steps[1].matrix", E.INVALID, "no more than 63 characters")
    assert f"{name}-255" in str(error)
    assert "maxItems" in str(error)
