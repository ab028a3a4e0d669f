"""The `when` language: CEL, the original's legacy forms, fail-closed evaluation, static references."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api import JobFlow
from zen_flow.api.flow_status import ParameterValue, StepOutputValues, StepStatus
from zen_flow.core.expression_scanner import tokens
from zen_flow.core.expressions import (
    CompiledWhen,
    EvaluationError,
    ExpressionError,
    Unavailable,
    WhenContext,
    check_when,
    compile_when,
    evaluate_when,
    referenced_steps,
)

CTX = WhenContext(
    steps={
        "extract-a": {"phase": "Succeeded", "outputs": {"parameters": {"rows": "42"}}},
        "load": {"phase": "Failed", "outputs": {"parameters": {}}},
        "in": {"phase": "Skipped", "outputs": {"parameters": {}}},
    },
    flow={"name": "etl", "namespace": "data", "labels": {"env": "prod"}, "annotations": {}},
)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("always", True),
        ("Always", True),
        ("TRUE", True),
        (" true ", True),
        ("never", False),
        ("Never", False),
        ("False", False),
        ("", True),
    ],
)
def test_legacy_constants_are_case_insensitive(expr: str, expected: bool) -> None:
    assert evaluate_when(expr, CTX) is expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("steps.extract-a.phase == 'Succeeded'", True),
        ("steps.extract-a.phase != 'Failed'", True),
        ("steps.load.phase == 'Succeeded'", False),
        ("steps.load.phase != 'Failed'", False),
        ('steps["extract-a"].phase == "Succeeded"', True),
        ("steps.in.phase == 'Skipped'", True),  # a reserved word as a step name
        ("int(steps.extract-a.outputs.parameters.rows) > 40", True),
        ("flow.labels.env == 'prod' && steps.extract-a.phase == 'Succeeded'", True),
        ("steps.exists(s, steps[s].phase == 'Failed')", True),
        ("steps.all(s, steps[s].phase == 'Succeeded')", False),
        ("'extract-a' in steps", True),
        ("flow.name == 'etl' || 1/0 == 1", True),
    ],
)
def test_cel_over_steps_and_flow(expr: str, expected: bool) -> None:
    assert evaluate_when(expr, CTX) is expected


def test_dashed_names_are_rewritten_to_index_form() -> None:
    compiled = compile_when("steps.extract-a.phase == 'Succeeded' && steps.load.phase == 'Failed'")
    assert compiled.cel_source == "steps[\"extract-a\"].phase == 'Succeeded' && steps.load.phase == 'Failed'"


def test_names_with_consecutive_dashes_and_leading_digits_are_one_reference() -> None:
    # DNS-1123 labels allow "0--0" and "a--b"; found by the validator's property test.
    expr = "steps.0--0.phase == 'Succeeded' && steps.a--b-c.phase == 'Failed'"
    assert referenced_steps(expr) == {"0--0", "a--b-c"}
    assert compile_when(expr).cel_source == (
        "steps[\"0--0\"].phase == 'Succeeded' && steps[\"a--b-c\"].phase == 'Failed'"
    )


def test_rewrite_leaves_string_literals_and_subtraction_with_spaces_alone() -> None:
    compiled = compile_when("flow.name == 'steps.extract-a.phase'")
    assert compiled.cel_source == "flow.name == 'steps.extract-a.phase'"
    assert compiled.references == frozenset()
    # With spaces the dash is subtraction, and `b` is then an unknown variable.
    with pytest.raises(ExpressionError, match="unknown variable 'b'"):
        compile_when("steps.a - b.phase == 1")


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("steps.a.phase ==", "Syntax error"),
        ("foo == 1", "unknown variable 'foo'"),
        ("'unterminated", "unterminated string"),
        ("{{ .Steps.a }}", "Syntax error|parse"),
        ("x" * 5000, "longer than"),
    ],
)
def test_compile_errors_are_reported(expr: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        compile_when(expr)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("steps.missing.phase == 'Succeeded'", "no such key 'missing'"),
        ("flow.labels.team == 'x'", "no such key 'team'"),
        ("1/0 == 1", "ZeroDivision"),
        ("steps.load.phase", "not a bool"),
        ("int(steps.load.phase) == 1", "failed"),
        ("steps.a.phase ==", "does not compile"),
    ],
)
def test_evaluation_is_fail_closed_with_a_reason(expr: str, reason: str) -> None:
    result = check_when(expr, CTX)
    assert result.value is False
    assert reason in result.reason
    assert len(result.reason) <= 200


def test_referenced_steps() -> None:
    assert referenced_steps("steps.extract-a.phase == 'Succeeded' || steps['load'].phase == 'x'") == {
        "extract-a",
        "load",
    }
    assert referenced_steps("has(steps.load)") == {"load"}
    assert referenced_steps("steps.exists(s, s == 'x')") == set()
    assert referenced_steps('steps["a.b"].phase == "Succeeded"') == {"a.b"}
    assert referenced_steps("always") == set()


def test_dynamic_use_of_steps_is_flagged() -> None:
    assert compile_when("size(steps) > 2").dynamic
    assert not compile_when("steps.load.phase == 'Failed'").dynamic


def test_compilation_is_cached() -> None:
    assert compile_when("steps.load.phase == 'Failed'") is compile_when("steps.load.phase == 'Failed'")


def test_context_from_flow_exposes_phase_and_outputs() -> None:
    flow = JobFlow.model_validate({"metadata": {"name": "f", "namespace": "ns", "labels": {"a": "b"}}})
    status = StepStatus(
        name="extract",
        phase="Succeeded",
        outputs=StepOutputValues(parameters=(ParameterValue(name="rows", value="7"),)),
    )
    ctx = WhenContext.from_flow(flow, {"extract": status})
    assert evaluate_when("steps.extract.outputs.parameters.rows == '7' && flow.labels.a == 'b'", ctx)
    assert evaluate_when("flow.namespace == 'ns'", ctx)


def test_none_means_no_condition() -> None:
    assert evaluate_when(None, CTX) is True


def test_accepts_a_compiled_expression() -> None:
    compiled = compile_when("steps.load.phase == 'Failed'")
    assert isinstance(compiled, CompiledWhen)
    assert evaluate_when(compiled, CTX) is True


@given(st.text(max_size=80))
def test_arbitrary_text_never_raises_at_evaluation(expr: str) -> None:
    # Admission may reject it, but the planner's evaluation must never crash or count an error as true.
    result = check_when(expr, CTX)
    assert isinstance(result.value, bool)
    try:
        compile_when(expr)
    except ExpressionError:
        assert result.value is False


@given(st.text(alphabet=st.sampled_from(list("ab_9Zü٣ .=&'\"\\\n/r")), max_size=40))
def test_identifiers_are_the_longest_runs_of_letters_digits_and_underscores(src: str) -> None:
    try:
        found = tokens(src)
    except ExpressionError:  # an unterminated string literal
        return
    for tok in found:
        if tok.kind == "ident":
            assert all(c.isalnum() or c == "_" for c in tok.text)
            assert tok.end == len(src) or not (src[tok.end].isalnum() or src[tok.end] == "_")
            assert tok.start == 0 or not (src[tok.start - 1].isalnum() or src[tok.start - 1] == "_")


@pytest.mark.parametrize(
    ("expr", "bounded"),
    [
        # Phase tests cost the same whatever the flow holds: evaluated in-process.
        ("steps.extract-a.phase == 'Succeeded'", False),
        ("steps.load.phase == 'Failed' || steps.extract-a.phase != 'Succeeded'", False),
        ("always", False),
        # Anything else may read the flow's data, and no loop is needed to make that slow: 50 terms of
        # `+` over a 250 KiB annotation copied 300 MB per evaluation, on the event loop.
        ("steps['extract-a'].outputs.parameters.rows == '42'", True),
        ("size(flow.name + flow.name + flow.name) == 9", True),
        ("flow.name != 'matches('", True),
        ("steps.exists(s, steps[s].phase == 'Failed')", True),
        # The CEL library's other spelling of exists_one: once read as linear, a nested one ran on the
        # controller's event loop without a budget.
        ("[1, 2].existsOne(x, x == 1)", True),
        # A pattern is compiled on every call: `"".matches("\\w{290}")` takes ~40 ms.
        ("flow.name.matches('^e')", True),
    ],
)
def test_only_phase_tests_are_evaluated_without_the_evaluator(expr: str, bounded: bool) -> None:
    asked: list[str] = []

    def evaluate(compiled: CompiledWhen, variables: dict[str, object]) -> object:
        asked.append(compiled.source)
        return compiled.program.execute(variables)

    assert check_when(expr, CTX, evaluate).value is True
    assert asked == ([expr] if bounded else [])


@pytest.mark.parametrize(
    ("expr", "given"),
    [
        ("flow.labels.env == 'prod'", {"labels"}),
        ("has(flow.labels.env) && flow['name'] == 'etl'", {"labels", "name"}),
        ("steps.load.phase == 'Failed' && flow.name == 'etl'", {"name"}),
        # Any other use of `flow` may read every member.
        ("flow.exists(k, k == 'name')", {"name", "namespace", "labels", "annotations"}),
        (
            "flow[flow.name == 'etl' ? 'name' : 'labels'] == 'etl'",
            {"name", "namespace", "labels", "annotations"},
        ),
    ],
)
def test_an_evaluator_is_given_only_the_members_of_flow_the_expression_reads(
    expr: str, given: set[str]
) -> None:
    # A flow applied with kubectl carries its whole manifest in an annotation: sent with every
    # condition, a 500-step flow's would be sent 500 times.
    seen: list[set[str]] = []

    def evaluate(compiled: CompiledWhen, variables: dict[str, object]) -> object:
        flow = variables["flow"]
        assert isinstance(flow, dict)
        seen.append(set(flow))
        return compiled.program.execute(variables)

    assert check_when(expr, CTX, evaluate).value is True
    assert seen == [given]


def test_an_evaluator_that_fails_leaves_the_condition_undecided() -> None:
    # Its worker did not start, it crashed...: that says nothing about the condition, which must not
    # be taken as false (the step would be Skipped and the flow could end Succeeded).
    def broken(compiled: CompiledWhen, variables: dict[str, object]) -> object:
        raise OSError("no process")

    with pytest.raises(Unavailable, match="the expression evaluator failed: OSError: no process"):
        check_when("flow.name == 'etl'", CTX, broken)


def test_an_error_the_evaluator_reports_of_the_expression_is_false() -> None:
    def reports(compiled: CompiledWhen, variables: dict[str, object]) -> object:
        raise EvaluationError("KeyError: 'verison'")

    result = check_when("flow.arguments.verison == '1'", CTX, reports)
    assert (result.value, result.exceeded) == (False, False)
    assert result.reason == (
        "when \"flow.arguments.verison == '1'\" failed: no such key 'verison' (not set: e.g. an output of a "
        "step that did not succeed; test its phase first)"
    )
