"""Matrix values from an earlier step's output (core/matrix_sources.py): the expansion depends on the
status, as a stand-in until the source succeeded, then as the matrix written with those values; what
cannot be expanded is a verdict on the step (Skipped, Failed) naming the field, never a problem of the
flow; and the controller's cache (MatrixFlows) expands again when, and only when, the source's state
changes."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api import JobFlow
from zen_flow.api.constants import FlowPhase
from zen_flow.api.flow_status import ParameterValue, StepOutputValues, StepStatus
from zen_flow.controller.matrix_flows import MatrixFlows
from zen_flow.core import matrix as core_matrix
from zen_flow.core.matrix import effective_spec, expand_matrix
from zen_flow.core.matrix_sources import SourceState, parse_source
from zen_flow_dev.testing.flows import job_step, make_flow

FIELD = "spec.steps[1].matrix.parameters[0].valueFrom.jsonPath"
OUTPUTS = {"parameters": [{"name": "list", "valueFrom": {"terminationMessage": {"container": "main"}}}]}


def steps(*, os: list[str] | None = None, name: str = "build") -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [{"name": "x", "valueFrom": {"jsonPath": "gen:$.outputs.parameters.list"}}]
    if os is not None:
        params.append({"name": "os", "values": os})
    return [
        job_step("gen", outputs=OUTPUTS),
        job_step(name, "gen", matrix={"parameters": params}),
        job_step("after", name),
    ]


def gen(phase: str = "Succeeded", value: str | None = None) -> StepStatus:
    outputs = (
        None if value is None else StepOutputValues(parameters=(ParameterValue(name="list", value=value),))
    )
    return StepStatus(name="gen", phase=phase, outputs=outputs)


def flow(*status: StepStatus, os: list[str] | None = None, generation: int = 1) -> JobFlow:
    made = make_flow(steps(os=os), generation=generation)
    return made.model_copy(update={"status": made.status.model_copy(update={"steps": status})})


def test_only_the_output_form_is_a_source() -> None:
    assert parse_source("gen:$.outputs.parameters.list") == ("gen", "list")
    assert parse_source("gen:$.outputs.parameters['a-b']") == ("gen", "a-b")
    for text in ("gen:$.succeeded", "$.outputs.parameters.list", "gen:$.outputs.parameters.l[0]", ":$.x", 3):
        assert parse_source(text) is None


def test_at_admission_and_until_the_source_succeeded_the_step_is_one_stand_in() -> None:
    raw = {"steps": steps(os=["l", "d"])}
    found = expand_matrix(raw)
    assert [s["name"] for s in found.spec["steps"]] == ["gen", "build", "after"]
    assert found.problems == ()
    assert found.verdicts == {}
    assert found.groups == {}
    stand_in = found.spec["steps"][1]
    assert stand_in["inputs"]["parameters"] == [{"name": "x", "value": ""}, {"name": "os", "value": ""}]
    for status in [(), (gen("Running"),), (gen("Retrying"),)]:
        spec, problems = effective_spec(flow(*status).spec, status)
        assert [s.name for s in spec.steps] == ["gen", "build", "after"]
        assert problems == ()
        assert spec.matrix_verdicts["build"][0] == "Pending"


def test_once_the_source_succeeded_it_expands_as_the_matrix_written_with_those_values() -> None:
    status = (gen(value='["a", 2, false]'),)
    spec, problems = effective_spec(flow(*status, os=["l", "d"]).spec, status)
    written = make_flow(
        [
            job_step("gen", outputs=OUTPUTS),
            job_step(
                "build",
                "gen",
                matrix={
                    "parameters": [
                        {"name": "x", "values": ["a", "2", "false"]},
                        {"name": "os", "values": ["l", "d"]},
                    ]
                },
            ),
            job_step("after", "build"),
        ]
    )
    static, _ = effective_spec(written.spec)
    assert problems == ()
    assert spec.matrix_verdicts == {}
    assert spec.steps == static.steps
    assert spec.matrix_groups == static.matrix_groups


def test_what_cannot_be_expanded_is_a_verdict_on_the_step_naming_the_field() -> None:
    cases = {
        "[]": ("Skipped", f"{FIELD}: step gen's output list is an empty array: no items"),
        "[null]": ("Failed", "item 0 is null, not a string"),
        "[[1]]": ("Failed", "item 0 is an array, not a string"),
        '"a"': ("Failed", "it is JSON, but not an array"),
        '["' + "v" * 4097 + '"]': ("Failed", "item 0 is longer than 4096 characters"),
    }
    for value, (phase, why) in cases.items():
        status = (gen(value=value),)
        spec, problems = effective_spec(flow(*status).spec, status)
        assert problems == ()  # the flow stays valid: the step ends, the flow goes on by its rules
        verdict = spec.matrix_verdicts["build"]
        assert verdict[0] == phase, value
        assert why in verdict[1], value
        assert verdict[1].startswith(FIELD), value
    status = (gen(value=None),)
    spec, _ = effective_spec(flow(*status).spec, status)
    assert spec.matrix_verdicts["build"] == (
        "Failed",
        f"{FIELD}: step gen succeeded without output parameter list",
        ("gen",),
    )
    for phase in ("Failed", "Skipped"):
        status = (gen(phase),)
        verdict = effective_spec(flow(*status).spec, status)[0].matrix_verdicts["build"]
        assert verdict == (
            "Skipped",
            f"{FIELD}: its matrix items come from step gen's output, and gen is {phase}",
            ("gen",),
        )


def test_items_past_the_flow_limit_fail_the_step_and_names_taken_or_too_long_are_refused() -> None:
    many = [job_step(f"s{i}") for i in range(490)]
    raw = make_flow([*steps(), *many])
    status = (gen(value=json.dumps([str(i) for i in range(20)])),)
    verdict = effective_spec(raw.spec, status)[0].matrix_verdicts["build"]
    assert verdict == (
        "Failed",
        "spec.steps[1].matrix: its 20 items would make the flow 512 steps, more than 500",
        ("gen",),
    )
    # A step named as an item is refused at admission (the flow is invalid, as with a static matrix).
    clash = make_flow([*steps(), job_step("build-1")])
    _, problems = effective_spec(clash.spec, (gen(value='["a","b"]'),))
    assert [p.path for p in problems] == ["spec.steps[1].name"]
    # So is one whose items could be named too long (up to b...-255: no maxItems here).
    long = make_flow(steps(name="b" * 62))
    _, problems = effective_spec(long.spec, (gen(value='["a","b"]'),))
    assert [p.path for p in problems] == ["spec.steps[1].matrix"]
    assert "must be no more than 63 characters" in problems[0].detail


def test_the_cache_expands_again_when_the_source_state_changes_and_only_then(monkeypatch: Any) -> None:
    expanded: list[object] = []
    real = core_matrix.expand_matrix
    monkeypatch.setattr(
        core_matrix, "expand_matrix", lambda spec, *a: expanded.append(spec) or real(spec, *a)
    )
    flows = MatrixFlows()
    running = flow(gen("Running"))
    first, problems = flows.effective(running)
    assert [s.name for s in first.spec.steps] == ["gen", "build", "after"]
    assert problems == ()
    assert flows.effective(flow(gen("Retrying")))[0].spec is first.spec  # still waiting: no new expansion
    assert len(expanded) == 1
    landed = flow(gen(value='["a","b","c"]'))
    items = flows.effective(landed)[0].spec
    assert [s.name for s in items.steps] == ["gen", "build-0", "build-1", "build-2", "after"]
    assert flows.effective(landed)[0].spec is items
    assert len(expanded) == 2
    # A new value of the source (a rerun of it): the items it gives now, fewer.
    fewer = flows.effective(flow(gen(value='["a"]')))[0].spec
    assert [s.name for s in fewer.steps] == ["gen", "build-0", "after"]
    # A new generation of a started flow keeps the items it ran, as for any matrix.
    started = flow(gen(value='["a"]'), generation=2)
    started = started.model_copy(
        update={
            "status": started.status.model_copy(
                update={"start_time": "2025-01-01T00:00:00Z", "phase": FlowPhase.RUNNING}
            )
        }
    )
    assert flows.effective(started)[0].spec.steps == fewer.steps


def test_the_sources_key_ignores_what_a_source_does_before_it_ends() -> None:
    from zen_flow.core.matrix_sources import source_states

    wanted = {("gen", "list")}
    assert source_states(wanted, [gen("Running")]) == {("gen", "list"): SourceState("Pending", None)}
    assert source_states(wanted, []) == {("gen", "list"): SourceState("Pending", None)}
    assert source_states(wanted, [gen(value="[]")]) == {("gen", "list"): SourceState("Succeeded", "[]")}


_scalar = st.one_of(
    st.text('ab1[]{}\\"', max_size=3),
    st.text("ab", min_size=4094, max_size=4098),  # the longest value is 4096 characters
    st.integers(-5, 5),
    st.booleans(),
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf]),  # json.dumps writes them, and JSON has none
    st.none(),
)
_value = _scalar | st.recursive(
    _scalar, lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text("k", max_size=1), inner)
)


def _usable(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 4096
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int | bool)


@given(
    st.lists(_value, max_size=6),
    st.lists(st.text("xy", min_size=1, max_size=2), min_size=1, max_size=3, unique=True),
    st.one_of(st.just(0), st.integers(1, 3), st.integers(1000, 10_000)),
)
def test_an_output_expands_as_its_values_written_out_or_ends_the_step(
    values: list[Any], os: list[str], depth: int
) -> None:
    # `depth`: the array nested in that many more (an output of 1 KiB can nest a thousand deep; deeper
    # here, as hypothesis raises the recursion limit).
    status = (gen(value="[" * depth + json.dumps(values) + "]" * depth),)
    spec, problems = effective_spec(flow(*status, os=os).spec, status)
    assert problems == ()  # never a problem of the flow: a verdict on the step, or items
    usable = depth == 0 and all(map(_usable, values))
    if not usable:
        assert spec.matrix_verdicts["build"][0] == "Failed"
    elif not values:
        assert spec.matrix_verdicts["build"][0] == "Skipped"
    else:
        texts = [v if isinstance(v, str) else json.dumps(v) for v in values]
        assert spec.matrix_groups["build"] == tuple(f"build-{k}" for k in range(len(texts) * len(os)))
        given_values = [
            {p.name: p.value for p in s.inputs.parameters if p.name in ("x", "os")}
            for s in spec.steps
            if s.inputs is not None and s.name.startswith("build-")
        ]
        assert given_values == [{"x": t, "os": o} for t in texts for o in os]
        assert spec.steps[-1].dependencies == spec.matrix_groups["build"]  # fan-in on every item
