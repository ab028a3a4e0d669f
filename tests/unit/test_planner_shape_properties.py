"""A flow's shape (planner/shape.py) for any spec, well-formed or not: the order runs every step after its
dependencies (finally steps last), each step's dependents are the steps that name it, and the spec is
refused exactly when a name is unknown, duplicated or empty, a dependency crosses `finally`, or the
dependencies form a cycle."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.api.jobflow import Step
from zen_flow.core.dag import CycleError, Graph
from zen_flow.planner.shape import _derive

NAMES = [f"s{i}" for i in range(8)]
JOB = {"apiVersion": "batch/v1", "kind": "Job", "spec": {}}  # a Job step (no template: a Manual one)


@st.composite
def specs(draw: st.DrawFn) -> list[dict[str, Any]]:
    names = draw(st.lists(st.sampled_from([*NAMES, ""]), min_size=1, max_size=8))
    # Mostly well-formed: dependencies on earlier steps; sometimes any name (later ones: a cycle may form).
    steps = []
    for i, name in enumerate(names):
        pool = names[:i] if draw(st.booleans()) or i == 0 else [*names, "missing", ""]
        deps = draw(st.lists(st.sampled_from(pool), max_size=4)) if pool else []
        step: dict[str, Any] = {"name": name, "dependencies": deps, "template": JOB}
        if draw(st.integers(0, 4)) == 0:
            step["finally"] = True
        steps.append(step)
    return steps


@settings(max_examples=300, deadline=None)
@given(raw=specs())
def test_the_shape_orders_wires_and_refuses_as_the_spec_says(raw: list[dict[str, Any]]) -> None:
    steps = tuple(Step.model_validate(s) for s in raw)
    shape = _derive(steps)
    first: dict[str, Step] = {}  # the named steps by name, the first of each name
    for step in steps:
        if step.name:
            first.setdefault(step.name, step)
    final = {name for name, step in first.items() if step.is_finally}
    broken = (
        len(first) < len(steps)  # an empty or a repeated name
        or any(d and (d not in first or (d in final) != s.is_finally) for s in steps for d in s.dependencies)
    )
    if not broken:
        try:
            Graph.build([(s.name, s.dependencies) for s in steps]).topological_order()
        except CycleError:
            broken = True
    assert bool(shape.errors) == broken
    wanted = {
        dep: tuple(name for name, s in first.items() if dep in s.dependencies)
        for dep in {d for s in first.values() for d in s.dependencies}
    }
    if broken:
        assert shape.order == ()
    else:
        assert sorted(shape.order) == sorted(first)
        position = {name: i for i, name in enumerate(shape.order)}
        for name, step in first.items():
            assert all(position[d] < position[name] for d in step.dependencies if d)
            if step.is_finally:
                assert all(position[other] < position[name] for other in first if other not in final)
        wanted.pop("", None)  # a planned flow's steps all have names: nobody asks for ""'s dependents
    assert {dep: names for dep, names in shape.dependents.items() if dep} == {
        dep: names for dep, names in wanted.items() if dep
    }
    assert all(shape.dependents.values())
