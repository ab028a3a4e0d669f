"""Matrix fan-out (core/matrix.py): a matrix step expanded into its items, in product order, with their
values as literal inputs and an annotation, the fan-in of its dependents, and the flows it cannot
expand; a flow without a matrix is returned as the very same object."""

from __future__ import annotations

import copy
import json
from itertools import product
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.constants import ANNOTATION_MATRIX
from zen_flow.core.matrix import effective_flow, expand_matrix
from zen_flow.core.matrix_items import aggregate
from zen_flow.core.matrix_parameters import (
    DUPLICATE,
    FORBIDDEN,
    INVALID,
    NOT_FOUND,
    REQUIRED,
    TOO_MANY,
)
from zen_flow_dev.testing.flows import job_step, make_flow


def spec(*steps: dict[str, Any], arguments: dict[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"steps": list(steps)}
    if arguments is not None:
        out["arguments"] = {"parameters": [{"name": k, "value": v} for k, v in arguments.items()]}
    return out


def matrix(**params: Any) -> dict[str, Any]:
    """`os=["a"]` gives values, `region="regions"` valueFrom the argument `regions`."""
    return {
        "parameters": [
            {"name": n, "values": v} if isinstance(v, list) else {"name": n, "valueFrom": {"argument": v}}
            for n, v in params.items()
        ]
    }


def build(**fields: Any) -> dict[str, Any]:
    return job_step("build", matrix=matrix(os=["linux", "darwin"], arch=["amd64", "arm64"]), **fields)


def names(found: dict[str, Any] | Any) -> list[str]:
    return [s["name"] for s in found["steps"]]


def problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.kind, p.path) for p in expand_matrix(raw).problems]


def test_a_flow_without_a_matrix_comes_back_as_the_same_object() -> None:
    raw = spec(job_step("a"), job_step("b", "a"))
    assert expand_matrix(raw).spec is raw
    flow = make_flow([job_step("a"), job_step("b", "a")])
    assert effective_flow(flow) is flow


def test_items_in_product_order_the_first_parameter_varying_slowest() -> None:
    found = expand_matrix(spec(job_step("prepare"), build(dependencies=["prepare"])))
    assert names(found.spec) == ["prepare", "build-0", "build-1", "build-2", "build-3"]
    assert found.groups == {"build": ("build-0", "build-1", "build-2", "build-3")}
    items = found.spec["steps"][1:]
    values = [{p["name"]: p["value"] for p in s["inputs"]["parameters"]} for s in items]
    assert values == [
        {"os": "linux", "arch": "amd64"},
        {"os": "linux", "arch": "arm64"},
        {"os": "darwin", "arch": "amd64"},
        {"os": "darwin", "arch": "arm64"},
    ]
    # What kubectl users see on the item's Job and pod.
    assert [json.loads(s["metadata"]["annotations"][ANNOTATION_MATRIX]) for s in items] == values
    assert all("matrix" not in s and s["dependencies"] == ["prepare"] for s in items)


def test_items_keep_the_steps_fields_and_its_own_inputs_and_annotations_first() -> None:
    step = build(
        retryPolicy={"limit": 2},
        timeoutSeconds=60,
        when="true",
        continueOnFailure=True,
        metadata={"annotations": {"team": "a"}, "labels": {"x": "y"}},
        inputs={"parameters": [{"name": "tag", "value": "v1"}]},
        outputs={"parameters": [{"name": "n", "valueFrom": {"jsonPath": "build:$.succeeded"}}]},
    )
    item = expand_matrix(spec(step)).spec["steps"][3]
    assert item["name"] == "build-3"
    for field in ("retryPolicy", "timeoutSeconds", "when", "continueOnFailure", "template"):
        assert item[field] == step[field]
    assert item["inputs"]["parameters"] == [
        {"name": "tag", "value": "v1"},
        {"name": "os", "value": "darwin"},
        {"name": "arch", "value": "arm64"},
    ]
    assert item["metadata"]["labels"] == {"x": "y"}
    assert item["metadata"]["annotations"]["team"] == "a"
    # An output naming its own step reads the item's own Job.
    assert item["outputs"]["parameters"][0]["valueFrom"]["jsonPath"] == "build-3:$.succeeded"
    assert "matrix" in step  # the input is not changed


def test_a_dependent_of_a_matrix_step_depends_on_every_item_other_dependencies_in_place() -> None:
    raw = spec(job_step("a"), build(), job_step("b"), job_step("publish", "a", "build", "b"))
    publish = expand_matrix(raw).spec["steps"][-1]
    assert publish["dependencies"] == ["a", "build-0", "b", "build-1", "build-2", "build-3"]


def test_values_from_an_argument_holding_a_json_array() -> None:
    raw = spec(job_step("deploy", matrix=matrix(region="regions")), arguments={"regions": '["eu","us","ap"]'})
    found = expand_matrix(raw)
    assert names(found.spec) == ["deploy-0", "deploy-1", "deploy-2"]
    assert found.values["deploy-2"] == {"region": "ap"}


def test_aggregate_is_a_json_array_with_null_for_a_missing_value() -> None:
    assert aggregate(["a", None, 'q"x']) == '["a",null,"q\\"x"]'


def test_each_refusal_names_its_field() -> None:
    manual = {"name": "gate", "type": "Manual", "matrix": matrix(x=["1"])}
    assert (FORBIDDEN, "spec.steps[0].matrix") in problems(spec(manual))
    assert problems(spec(job_step("s", matrix={"parameters": []}))) == [
        (REQUIRED, "spec.steps[0].matrix.parameters")
    ]
    both = {"name": "x", "values": ["1"], "valueFrom": {"argument": "a"}}
    assert problems(spec(job_step("s", matrix={"parameters": [both]}), arguments={"a": '["1"]'})) == [
        (FORBIDDEN, "spec.steps[0].matrix.parameters[0].valueFrom")
    ]
    assert problems(spec(job_step("s", matrix={"parameters": [{"name": "x"}]}))) == [
        (REQUIRED, "spec.steps[0].matrix.parameters[0].values")
    ]
    assert problems(spec(job_step("s", matrix=matrix(x="nope")))) == [
        (NOT_FOUND, "spec.steps[0].matrix.parameters[0].valueFrom.argument")
    ]
    for bad in ("eu", "[]", '{"a": 1}', "[1]", json.dumps(["v"] * 257)):
        found = expand_matrix(spec(job_step("s", matrix=matrix(x="a")), arguments={"a": bad}))
        assert [(p.kind, p.path) for p in found.problems] == [
            (INVALID, "spec.steps[0].matrix.parameters[0].valueFrom.argument")
        ], bad
        assert '"a"' in found.problems[0].detail  # names the argument
    many = matrix(x=[str(i) for i in range(16)], y=[str(i) for i in range(17)])
    assert problems(spec(job_step("s", matrix=many))) == [(TOO_MANY, "spec.steps[0].matrix")]
    twice = {"parameters": [{"name": "x", "values": ["1"]}, {"name": "x", "values": ["2"]}]}
    assert problems(spec(job_step("s", matrix=twice))) == [
        (DUPLICATE, "spec.steps[0].matrix.parameters[1].name")
    ]
    clash = job_step("s", matrix=matrix(x=["1"]), inputs={"parameters": [{"name": "x", "value": "v"}]})
    assert problems(spec(clash)) == [(DUPLICATE, "spec.steps[0].matrix.parameters[0].name")]


def test_item_names_must_fit_in_a_label_and_be_no_other_steps_name() -> None:
    long = job_step("s" * 62, matrix=matrix(x=["1", "2"]))
    assert problems(spec(long)) == [(INVALID, "spec.steps[0].matrix")]
    taken = spec(job_step("build-1"), build())
    assert problems(taken) == [(DUPLICATE, "spec.steps[1].name")]
    assert "build-1" in expand_matrix(taken).problems[0].detail


def test_more_than_500_steps_once_expanded_is_refused() -> None:
    big = [job_step(f"m{i}", matrix=matrix(x=[str(v) for v in range(200)])) for i in range(3)]
    assert problems(spec(*big)) == [(TOO_MANY, "spec.steps")]


def test_a_matrix_step_that_cannot_expand_stays_one_step_with_empty_values() -> None:
    found = expand_matrix(spec(job_step("s", matrix=matrix(x="missing")), job_step("t", "s")))
    assert names(found.spec) == ["s", "t"]
    assert found.spec["steps"][0]["inputs"]["parameters"] == [{"name": "x", "value": ""}]
    assert found.spec["steps"][1]["dependencies"] == ["s"]


def test_the_effective_flow_of_a_model_carries_its_groups() -> None:
    flow = make_flow([build(), job_step("publish", "build")])
    found = effective_flow(flow)
    assert [s.name for s in found.spec.steps] == ["build-0", "build-1", "build-2", "build-3", "publish"]
    assert found.spec.matrix_groups == {"build": ("build-0", "build-1", "build-2", "build-3")}
    assert found.spec.steps[-1].dependencies == ("build-0", "build-1", "build-2", "build-3")
    assert "matrixGroups" not in json.dumps(found.spec.to_wire())  # never written anywhere
    assert effective_flow(flow).spec == found.spec


_names = st.text("abc", min_size=1, max_size=3)


@st.composite
def flows(draw: st.DrawFn) -> dict[str, Any]:
    """Random flows of plain and matrix steps, each depending on some earlier ones."""
    count = draw(st.integers(1, 6))
    steps: list[dict[str, Any]] = []
    for i in range(count):
        step = job_step(f"s{i}", *draw(st.sets(st.sampled_from([f"s{j}" for j in range(i)] or ["s0"]))))
        if i == 0:
            step.pop("dependencies", None)
        if draw(st.booleans()):
            dims = draw(
                st.lists(st.lists(_names, min_size=1, max_size=3, unique=True), min_size=1, max_size=3)
            )
            step["matrix"] = {"parameters": [{"name": f"p{k}", "values": v} for k, v in enumerate(dims)]}
        steps.append(step)
    return spec(*steps)


@given(flows())
def test_expansion_properties(raw: dict[str, Any]) -> None:
    before = copy.deepcopy(raw)
    found = expand_matrix(raw)
    assert raw == before  # pure
    assert found.problems == ()
    if not any("matrix" in s for s in raw["steps"]):
        assert found.spec is raw
        return
    effective = found.spec["steps"]
    assert len({s["name"] for s in effective}) == len(effective)  # names unique
    for s in raw["steps"]:
        if "matrix" in s:
            lengths = [len(p["values"]) for p in s["matrix"]["parameters"]]
            items = found.groups[s["name"]]
            count = 1
            for n in lengths:
                count *= n
            assert len(items) == count  # the product of the lengths
            rows = list(product(*(p["values"] for p in s["matrix"]["parameters"])))
            for item, row in zip(items, rows, strict=True):
                assert tuple(found.values[item].values()) == row
    for original, s in zip([raw["steps"][i] for i in found.origins or ()], effective, strict=True):
        for dep in original.get("dependencies", []):
            wanted = found.groups.get(dep, (dep,))
            assert set(wanted) <= set(s.get("dependencies", []))  # every item of a matrix dependency
        assert not set(s.get("dependencies", [])) & set(found.groups)  # never the matrix step itself
