"""Admission of a matrix reading an earlier step's output (`valueFrom.jsonPath`, Argo's `withParam`):
the item count is unknown, so the step is checked as its stand-in (one step, its matrix parameters as
empty inputs); the reference itself is refused, naming the field, unless it names a declared output
parameter of a Job step the matrix step lists in its dependencies."""

from __future__ import annotations

import copy
from typing import Any

from validation_samples import ErrorType, assert_error, assert_valid, errors_of, job_step, make_flow

from zen_flow.validation.size import status_bound

E = ErrorType
AT = "spec.steps[1].matrix.parameters[0].valueFrom"
MEMO = {"cache": {"configMap": {"name": "memo"}}}
JOB_OUTPUT = {"parameters": [{"name": "list", "valueFrom": {"terminationMessage": {"container": "main"}}}]}


def uses(*names: str) -> dict[str, Any]:
    step = job_step("x")
    command = " ".join("{{inputs.parameters.%s}}" % n for n in names)  # noqa: UP031
    step["template"]["spec"]["template"]["spec"]["containers"][0]["command"] = ["echo", command]
    template: dict[str, Any] = step["template"]
    return template


def flow(
    source: Any = "gen:$.outputs.parameters.list",
    *,
    deps: tuple[str, ...] = ("gen",),
    gen: Any = None,
    template: dict[str, Any] | None = None,
    **build: Any,
) -> dict[str, Any]:
    producer = gen if gen is not None else job_step("gen", outputs=JOB_OUTPUT)
    step = job_step(
        "build",
        *deps,
        matrix={
            "parameters": [
                {"name": "x", "valueFrom": source if isinstance(source, dict) else {"jsonPath": source}}
            ]
        },
        template=template or uses("x"),
        **build,
    )
    return make_flow(producer, step, job_step("after", "build"))


def test_a_matrix_over_a_dependency_s_declared_output_is_valid() -> None:
    assert_valid(flow())
    assert_valid(flow("gen:$.outputs.parameters['list']"))


def test_a_path_of_another_form_is_refused() -> None:
    for text in ("$.outputs.parameters.list", "gen:$.succeeded", "gen:$.outputs.parameters.list[0]", "gen:"):
        assert_error(flow(text), AT + ".jsonPath", E.INVALID, "<step>:$.outputs.parameters.<name>")


def test_an_unknown_step_or_output_is_refused() -> None:
    assert_error(flow("nope:$.outputs.parameters.list"), AT + ".jsonPath", E.NOT_FOUND, 'no step "nope"')
    assert_error(
        flow("gen:$.outputs.parameters.other"),
        AT + ".jsonPath",
        E.NOT_FOUND,
        "(its outputs.parameters: list)",
    )


def test_the_source_must_be_a_job_step_not_a_matrix_and_a_direct_dependency() -> None:
    gate = {"name": "gen", "type": "Manual"}
    assert_error(flow(gen=gate), AT + ".jsonPath", E.INVALID, "is no Job step")
    matrix_gen = job_step("gen", outputs=JOB_OUTPUT, matrix={"parameters": [{"name": "y", "values": ["1"]}]})
    assert_error(flow(gen=matrix_gen), AT + ".jsonPath", E.FORBIDDEN, "is a matrix step itself")
    assert_error(flow(deps=()), AT + ".jsonPath", E.INVALID, 'must list "gen" in its dependencies')


def test_argument_and_json_path_together_are_refused() -> None:
    both = {"argument": "a", "jsonPath": "gen:$.outputs.parameters.list"}
    assert_error(flow(both, arguments={"parameters": [{"name": "a", "value": '["1"]'}]}), AT, E.FORBIDDEN)


def test_the_stand_in_is_checked_as_a_step_so_its_template_rules_still_apply() -> None:
    # The template reads a parameter neither the matrix nor the inputs give: refused on the stand-in.
    errors = errors_of(flow(template=uses("x", "missing")))
    assert any(e.path.startswith("spec.steps[1]") and "missing" in str(e) for e in errors), errors


def test_the_memoize_key_must_still_read_every_matrix_parameter() -> None:
    assert_error(
        flow(memoize={**MEMO, "key": "build"}),
        "spec.steps[1].memoize.key",
        E.INVALID,
        "{{inputs.parameters.x}}",
    )
    assert_valid(flow(memoize={**MEMO, "key": "build-{{inputs.parameters.x}}"}))


def test_the_stand_in_counts_as_one_step_toward_the_limit() -> None:
    # 498 other steps + gen + the stand-in: 500, valid; its items are counted when they are known.
    doc = flow()
    doc["spec"]["steps"].extend(job_step(f"s{i}") for i in range(497))
    assert_valid(doc)


def test_the_status_bound_counts_the_most_items_an_output_can_give() -> None:
    # The status must fit in etcd however many items the output gives: 256 here (the flow stays <= 500).
    dynamic = flow(outputs={"parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}}]})
    static = copy.deepcopy(dynamic)
    static["spec"]["steps"][1]["matrix"]["parameters"][0] = {
        "name": "x",
        "values": [str(i) for i in range(256)],
    }
    assert status_bound(dynamic["spec"]) >= status_bound(static["spec"])
    # Near the step limit only the room left counts: 498 other steps leave one more item.
    crowded = copy.deepcopy(dynamic)
    crowded["spec"]["steps"].extend(job_step(f"s{i}") for i in range(497))
    few = copy.deepcopy(crowded)
    few["spec"]["steps"][1]["matrix"]["parameters"][0] = {"name": "x", "values": ["a", "b"]}
    assert status_bound(crowded["spec"]) >= status_bound(few["spec"])


def test_a_step_name_that_is_no_string_beside_a_matrix_is_refused_not_a_crash() -> None:
    # The expansion indexed the steps by name: a list as a name (not hashable) raised a TypeError.
    doc = flow()
    doc["spec"]["steps"][2]["name"] = ["after"]
    assert any(e.path == "spec.steps[2].name" for e in errors_of(doc))
    static = copy.deepcopy(doc)
    static["spec"]["steps"][1]["matrix"]["parameters"][0] = {"name": "x", "values": ["a"]}
    assert any(e.path == "spec.steps[2].name" for e in errors_of(static))


def test_values_and_json_path_together_are_refused() -> None:
    # The values were dropped silently at run time; with `argument` this was already refused.
    doc = flow()
    doc["spec"]["steps"][1]["matrix"]["parameters"][0]["values"] = ["a", "b"]
    assert_error(doc, AT, E.FORBIDDEN, "may not be specified together with values")


def test_a_step_named_as_one_of_the_items_is_refused_at_admission() -> None:
    # The items' number is known only at run time, where build-7 would clash and fail the step.
    doc = flow()
    doc["spec"]["steps"].append(job_step("build-7"))
    assert_error(
        doc,
        "spec.steps[1].name",
        E.DUPLICATE,
        "would include build-7, the name of the step at spec.steps[3]: rename one",
    )
    doc["spec"]["steps"][3]["name"] = "build-256"  # past the most items a matrix step has
    assert_valid(doc)
