"""What a flow names must exist, and what `when` compares must be comparable: refused at admission, with
the field that says it, when the spec alone shows it is wrong (the planner would skip or fail the step
later, the flow often ending Succeeded without it)."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from validation_samples import ErrorType, assert_error, assert_valid, base_flow, errors_of, mutated, step

from zen_flow.core.expression_facts import facts
from zen_flow.core.expressions import ExpressionError

E = ErrorType
WHEN_C = "spec.steps[3].when"  # step c: after gate, b and a (a declares the output `count`)
ARGUMENTS = {"parameters": [{"name": "environment", "value": "prod"}]}


def with_arguments(flow: dict[str, Any]) -> None:
    flow["spec"]["arguments"] = ARGUMENTS


def when_c(when: str) -> dict[str, Any]:
    def change(flow: dict[str, Any]) -> None:
        with_arguments(flow)
        step(flow, "c")["when"] = when

    return mutated(change)


# --- names `when` reads ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        "steps.a.outputs.parameters.verison == '1'",
        "steps['a']['outputs']['parameters']['verison'] == '1'",
        "has(steps.a.outputs.parameters.verison)",
    ],
)
def test_a_when_that_reads_an_undeclared_output_is_refused(when: str) -> None:
    error = assert_error(when_c(when), WHEN_C, E.NOT_FOUND)
    assert 'step "a" has no output parameter "verison" (its outputs.parameters: count)' in str(error)


def test_a_when_that_reads_an_undeclared_argument_is_refused() -> None:
    error = assert_error(when_c("flow.arguments.enviroment == 'prod'"), WHEN_C, E.NOT_FOUND)
    assert 'the flow has no argument "enviroment" (spec.arguments.parameters: environment)' in str(error)


@pytest.mark.parametrize(
    "when",
    [
        "steps.a.outputs.parameters.count == '0'",
        "steps['a'].outputs.parameters['count'] != '' && flow.arguments.environment == 'prod'",
        "int(steps.a.outputs.parameters.count) > 0",
        "double(flow.arguments.environment.size()) >= 1.0",
        # Computed names are not known before the flow runs: allowed as before.
        "steps.exists(s, has(steps[s].outputs.parameters.verison))",
        "flow.arguments[flow.labels.which] == 'prod'",
        "flow.labels.phase == 'succeeded'",  # a label, not a step's phase
        "steps.b.phase in ['Succeeded', 'Failed']",
        "steps.exists(s, steps[s].phase == 'Failed')",
        # The reference is read further: what is compared is a number or a bool, not its string.
        "0 < steps.a.outputs.parameters.count.size()",
        "3 == flow.arguments.environment.size()",
        "true == flow.arguments.environment.startsWith('p')",
        "'Succ' + 'eeded' == steps.b.phase",
        "steps.b.phase == 'Succ' + 'eeded'",
    ],
)
def test_what_can_be_right_is_admitted(when: str) -> None:
    assert_valid(when_c(when))


# --- comparisons that never hold ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "literal"),
    [
        ("steps.b.phase == 'succeeded'", "succeeded"),  # the phase-test form admission reads fastest
        ("steps.b.phase != 'failed' && flow.name != ''", "failed"),
        ("'Success' == steps.b.phase", "Success"),
        ("steps.exists(s, steps[s].phase == 'Sucess')", "Sucess"),
        ("steps.b.phase in ['Succeeded', 'failed']", "failed"),
    ],
)
def test_a_phase_compared_with_what_is_no_phase_is_refused(when: str, literal: str) -> None:
    error = assert_error(when_c(when), WHEN_C, E.INVALID, f'with "{literal}", which is no phase')
    assert "Succeeded" in str(error)  # the phases are listed


@pytest.mark.parametrize(
    ("when", "said"),
    [
        # "0" != 0 is true in CEL: the step ran when the scan found no vulnerabilities.
        (
            "steps.a.outputs.parameters.count != 0",
            "compares steps.a.outputs.parameters.count, a string, with 0,",
        ),
        (
            "flow.arguments.environment > 2",
            "orders flow.arguments.environment, a string, against 2, a number:",
        ),
        (
            "steps.a.outputs.parameters.count == false",
            "compares steps.a.outputs.parameters.count, a string, with false,",
        ),
        (
            "1.5 <= steps['a'].outputs.parameters['count']",
            "orders steps['a'].outputs.parameters['count'], a string, against 1.5, a number:",
        ),
    ],
)
def test_an_output_or_argument_compared_with_a_number_or_bool_is_refused(when: str, said: str) -> None:
    error = assert_error(when_c(when), WHEN_C, E.INVALID, "outputs and arguments are strings")
    assert said in str(error)
    assert "convert it first (int(...), double(...))" in str(error)


@pytest.mark.parametrize(
    ("when", "detail"),
    [
        (
            "steps.a.outputs.parameters.count == 0",
            'compares steps.a.outputs.parameters.count, a string, with 0, which never equals it in CEL ("0" '
            '!= 0 is true): outputs and arguments are strings, so compare with a string ("0") or convert '
            "it first (int(...), double(...))",
        ),
        (
            # No `<` between a string and a number: every evaluation fails, the step is skipped (not
            # "never equals"), and only a conversion orders numbers ("10" < "9" as strings).
            "flow.arguments.environment < 3",
            "orders flow.arguments.environment, a string, against 3, a number: CEL has no such comparison, "
            "so every evaluation fails (the step is always skipped): outputs and arguments are strings, so "
            "convert it first (int(...), double(...))",
        ),
        (
            "true >= flow.arguments.environment",
            "orders flow.arguments.environment, a string, against true, a bool: CEL has no such comparison, "
            "so every evaluation fails (the step is always skipped): outputs and arguments are strings, so "
            "convert it first (int(...), double(...))",
        ),
    ],
)
def test_the_refusal_says_what_the_operator_does(when: str, detail: str) -> None:
    error = assert_error(when_c(when), WHEN_C, E.INVALID, "outputs and arguments are strings")
    assert error.detail == detail


_PHASE_TEST = st.builds(
    lambda name, op, phase, quote: f"steps.{name}.phase {op} {quote}{phase}{quote}",
    st.sampled_from(["a", "b"]),
    st.sampled_from(["==", "!="]),
    st.sampled_from(["Succeeded", "Failed", "Skipped", "succeeded", "Success", "", "FAILED"]),
    st.sampled_from(["'", '"']),
)


@given(st.lists(_PHASE_TEST, min_size=1, max_size=3), st.sampled_from([" && ", " || "]))
def test_phase_tests_are_judged_alike_on_the_fast_path_and_the_long_one(tests: list[str], join: str) -> None:
    # Admission reads plain phase tests with one regular expression and anything else from its tokens;
    # in parentheses the same condition takes the long way, and must get the same verdict.
    fast, scanned = join.join(tests), "(" + join.join(tests) + ")"
    verdicts = [
        sorted(e.detail for e in errors_of(when_c(expr)) if e.path == WHEN_C) for expr in (fast, scanned)
    ]
    assert verdicts[0] == verdicts[1]


@given(st.text(alphabet="steps.flowargumentsphase[]()'\"=!<>-0123456789 ,.", max_size=60))
def test_reading_an_expression_never_fails_otherwise(expr: str) -> None:
    # Admission reads tenants' text: whatever it is, the reader reports facts or an ExpressionError.
    with contextlib.suppress(ExpressionError):
        facts(expr)


# --- inputs -------------------------------------------------------------------------------------------------


def inputs_of_b(*params: dict[str, Any], command: list[str] | None = None) -> dict[str, Any]:
    def change(flow: dict[str, Any]) -> None:
        b = step(flow, "b")
        b["inputs"] = {"parameters": list(params)}
        if command is not None:
            b["template"]["spec"]["template"]["spec"]["containers"][0]["command"] = command

    return mutated(change, base_flow)


VERSION = {"name": "version", "valueFrom": {"jsonPath": "a:$.outputs.parameters.count"}}
B_COMMAND = "spec.steps[1].template.spec.template.spec.containers[0].command"


@pytest.mark.parametrize(
    "placeholder",
    ["{{inputs.parameters.verison}}", "{{ .Parameters.verison }}", "${parameters.verison}"],
)
def test_a_placeholder_naming_no_input_is_refused_where_it_is(placeholder: str) -> None:
    flow = inputs_of_b(VERSION, command=["echo", f"v={placeholder}"])
    error = assert_error(flow, B_COMMAND + "[1]", E.NOT_FOUND, placeholder)
    assert 'step "b" has no input parameter "verison" (its inputs.parameters: version)' in str(error)


def test_a_placeholder_in_the_steps_metadata_is_checked_too() -> None:
    def change(flow: dict[str, Any]) -> None:
        step(flow, "d")["metadata"] = {"annotations": {"example.com/v": "{{inputs.parameters.v}}"}}

    error = assert_error(mutated(change), "spec.steps[4].metadata.annotations[example.com/v]", E.NOT_FOUND)
    assert "(its inputs.parameters: none)" in str(error)


def test_placeholders_of_declared_inputs_are_admitted() -> None:
    assert_valid(
        inputs_of_b(VERSION, command=["echo", "{{inputs.parameters.version}} ${parameters.version}"])
    )


def test_an_input_that_reads_an_undeclared_output_is_refused() -> None:
    typo = {"name": "version", "valueFrom": {"jsonPath": "a:$.outputs.parameters.verison"}}
    error = assert_error(
        inputs_of_b(typo), "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath", E.NOT_FOUND
    )
    assert 'step "a" has no output parameter "verison" (its outputs.parameters: count)' in str(error)


def test_an_input_that_reads_the_jobs_status_needs_no_output() -> None:
    assert_valid(inputs_of_b({"name": "done", "valueFrom": {"jsonPath": "a:$.succeeded"}}))


def test_inputs_that_would_share_an_env_var_are_refused() -> None:
    flow = inputs_of_b({"name": "a.b", "value": "1"}, {"name": "a-b", "value": "2"})
    error = assert_error(flow, "spec.steps[1].inputs.parameters[1].name", E.DUPLICATE)
    assert 'its environment variable ZF_PARAM_A_B is also that of input parameter "a.b"' in str(error)


@pytest.mark.parametrize(
    "action", ["{{ .Parameters.version | upper }}", "{{.JobFlow.Labels}}", '{{ printf "%s" .StepName }}']
)
def test_another_action_on_the_originals_template_context_is_refused(action: str) -> None:
    error = assert_error(inputs_of_b(VERSION, command=["echo", action]), B_COMMAND + "[1]", E.INVALID)
    assert error.value == action
    assert "use {{inputs.parameters.NAME}} (or {{.Parameters.NAME}}), {{.JobFlow.Name}}" in str(error)


def test_the_originals_simple_context_forms_and_other_templates_are_admitted() -> None:
    command = [
        "echo",
        "{{.JobFlow.Name}} {{ .JobFlow.Namespace }} {{.StepName}} {{range .items}}{{.x}}{{end}}",
    ]
    assert_valid(inputs_of_b(VERSION, command=command))
