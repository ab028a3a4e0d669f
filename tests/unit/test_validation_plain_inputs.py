"""The one-call check of common inputs (validation/plain_inputs.py) never changes what is reported:
`check_inputs` gives the same errors, in the same order, as when every input is checked field by field."""

from __future__ import annotations

from typing import Any
from unittest.mock import patch

from hypothesis import given, settings
from hypothesis import strategies as st

import zen_flow.validation.io as io_rules
from zen_flow.validation.errors import FieldError
from zen_flow.validation.index import build_index
from zen_flow.validation.io import check_inputs
from zen_flow.validation.reader import Reader

STORE = {"bucket": "b"}
STEPS: list[dict[str, Any]] = [
    {"name": "a", "outputs": {"artifacts": [{"name": "out", "s3": STORE}, {"name": "tmp"}]}},
    {"name": "b", "dependencies": ["a"]},
    {"name": "c"},
    {"name": "Bad_Name"},
    {"name": "d", "dependencies": ["b", "Bad_Name"]},
]
INDEX = build_index([(f"spec.steps[{i}]", s) for i, s in enumerate(STEPS)])

names = st.sampled_from(["p", "q", "p", "", "Not_A_Name", "x" * 254, 7, None])
refs = st.sampled_from(["a", "b", "c", "d", "Bad_Name", "zz", "", "$x"])
exprs = st.sampled_from(["$.succeeded", "$.a[0]", "$['k']", "$..deep", "succeeded", "", "$.a[", "$"])


@st.composite
def parameters(draw: st.DrawFn) -> Any:
    item: dict[str, Any] = {}
    if (name := draw(names)) is not None:
        item["name"] = name
    json_path = draw(st.one_of(st.builds(lambda r, e: f"{r}:{e}", refs, exprs), exprs, st.just(3)))
    source: Any = draw(
        st.sampled_from(
            [
                {"jsonPath": json_path},
                {"jsonPath": json_path, "argument": "env"},
                {"argument": "env"},
                {},
                "text",
            ]
        )
    )
    if draw(st.booleans()) or not draw(st.booleans()):
        item["valueFrom"] = source
    if draw(st.integers(0, 4)) == 0:
        item["value"] = draw(st.sampled_from(["v", 1, None]))
    return draw(st.sampled_from([item, item, item, "not an object"]))


@st.composite
def artifacts(draw: st.DrawFn) -> Any:
    item: dict[str, Any] = {}
    if (name := draw(names)) is not None:
        item["name"] = name
    origin = draw(
        st.one_of(
            st.builds(lambda r, n: f"{r}/{n}", refs, st.sampled_from(["out", "tmp", "none", "Bad", ""])),
            refs,
            st.sampled_from(["a/out/x", "/out", 5]),
        )
    )
    if draw(st.integers(0, 5)) > 0:
        item["from"] = origin
    if draw(st.booleans()):
        item["path"] = draw(st.sampled_from(["/in/a", "in/a", "/in/../a", "/in\x00", 1]))
    extra = draw(st.sampled_from([None, "http", "s3"]))
    if extra == "http":
        item["http"] = {"url": "https://example.test/a"}
    elif extra == "s3":
        item["s3"] = {"bucket": "b", "key": "k"}
    return draw(st.sampled_from([item, item, item, None]))


def errors_of(inputs: dict[str, Any], step: str, *, plain: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    if plain:
        check_inputs(Reader(errors), INDEX, step, inputs, "spec.steps[4].inputs", frozenset({"env"}))
        return errors
    with (
        patch.object(io_rules, "plain_parameter", return_value=False),
        patch.object(io_rules, "plain_artifact", return_value=False),
    ):
        check_inputs(Reader(errors), INDEX, step, inputs, "spec.steps[4].inputs", frozenset({"env"}))
    return errors


@settings(max_examples=600, deadline=None)
@given(
    st.lists(parameters(), max_size=4),
    st.lists(artifacts(), max_size=4),
    st.sampled_from(["d", "b", "a"]),
)
def test_inputs_checked_in_one_call_are_reported_as_field_by_field(
    params: list[Any], arts: list[Any], step: str
) -> None:
    inputs = {"parameters": params, "artifacts": arts}
    assert errors_of(inputs, step, plain=True) == errors_of(inputs, step, plain=False)


def test_the_common_shapes_take_one_call_and_a_broken_one_is_reported_with_its_path() -> None:
    plain = {
        "parameters": [{"name": "p", "valueFrom": {"jsonPath": "b:$.succeeded"}}],
        "artifacts": [{"name": "in", "path": "/in", "from": "a/out"}],
    }
    with (
        patch.object(io_rules, "_check_input_parameter") as parameter,
        patch.object(io_rules, "_check_input_artifact") as artifact,
    ):
        assert errors_of(plain, "d", plain=True) == []
    assert parameter.call_count == artifact.call_count == 0
    plain["artifacts"][0]["from"] = "a/tmp"  # not stored: no later step can fetch it
    [error] = errors_of(plain, "d", plain=True)
    assert error.path == "spec.steps[4].inputs.artifacts[0].from"
    assert "does not store artifact" in str(error)
