"""The JSONPath subset of parameters: `$`, `.field`, `['field']`, `[index]`, and how values render."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.core.jsonpath import JsonPathError, NotFound, evaluate, parse, render

STATUS: dict[str, Any] = {
    "succeeded": 1,
    "failed": 0,
    "startTime": "2025-01-01T00:00:00Z",
    "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}],
    "odd key": {"a.b": "dotted", "it's": "quoted"},
    "ratio": 2.5,
    "nothing": None,
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("$.succeeded", 1),
        ("$.failed", 0),
        ("$.startTime", "2025-01-01T00:00:00Z"),
        ("$.conditions[0].type", "SuccessCriteriaMet"),
        ("$.conditions[-1].type", "Complete"),
        ("$['conditions'][1]['status']", "True"),
        ('$["odd key"]["a.b"]', "dotted"),
        ("$['odd key']['it\\'s']", "quoted"),
        ("$.ratio", 2.5),
    ],
)
def test_paths_select_one_value(path: str, expected: Any) -> None:
    assert evaluate(path, STATUS) == expected


def test_dollar_is_the_whole_document() -> None:
    assert evaluate("$", STATUS) is STATUS


@pytest.mark.parametrize(
    "path",
    ["$.missing", "$.conditions[2]", "$.conditions[-3]", "$.succeeded.x", "$.startTime[0]", "$.nothing"],
)
def test_paths_that_select_nothing_raise_not_found(path: str) -> None:
    with pytest.raises(NotFound):
        evaluate(path, STATUS)


@pytest.mark.parametrize(
    "path",
    [
        "succeeded",
        ".succeeded",
        "$..succeeded",
        "$.conditions[*]",
        "$.conditions[0:1]",
        "$[?(@.a)]",
        "$.",
        "$['x",
    ],
)
def test_unsupported_or_broken_paths_are_errors(path: str) -> None:
    with pytest.raises(JsonPathError):
        parse(path)


@pytest.mark.parametrize("digits", [19, 4301, 100_000])
def test_an_index_of_more_than_18_digits_is_a_path_error_not_a_crash(digits: int) -> None:
    # int() of over 4,300 digits raises a plain ValueError (int_max_str_digits) that callers, which catch
    # JsonPathError, would let out; no list has 10**18 elements, so the index is refused for what it is.
    with pytest.raises(JsonPathError, match="at most 18 digits"):
        parse("$.items[" + "1" * digits + "]")
    with pytest.raises(JsonPathError, match="at most 18 digits"):
        parse("$[-" + "1" * digits + "]")


def test_an_index_of_18_digits_parses() -> None:
    assert parse("$[" + "9" * 18 + "]") == (10**18 - 1,)
    assert parse("$[-" + "9" * 18 + "]") == (-(10**18 - 1),)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (3, "3"),
        (2.5, "2.5"),
        (3.0, "3"),
        (0.1, "0.1"),
        (-7, "-7"),
        (1e300, "1e+300"),
        (True, "true"),
        (False, "false"),
        ("as is", "as is"),
        ("", ""),
        ({"a": [1, "x"]}, '{"a":[1,"x"]}'),
        ([1, 2.5], "[1,2.5]"),
    ],
)
def test_values_render_without_losing_decimals(value: Any, text: str) -> None:
    assert render(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_rendered_floats_read_back_as_the_same_number(value: float) -> None:
    assert float(render(value)) == value


@given(
    st.recursive(st.integers() | st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner))
)
def test_quoted_names_and_indexes_reach_any_value(document: Any) -> None:
    # Build the path to every leaf with the bracket forms and check it selects exactly that leaf.
    def quoted(key: str) -> str:
        return "['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']"

    def leaves(node: Any, path: str) -> list[tuple[str, Any]]:
        if isinstance(node, dict):
            return [leaf for k, v in node.items() for leaf in leaves(v, path + quoted(k))]
        if isinstance(node, list):
            return [leaf for i, v in enumerate(node) for leaf in leaves(v, f"{path}[{i}]")]
        return [(path, node)]

    for path, leaf in leaves(document, "$"):
        assert evaluate(path, document) == leaf
