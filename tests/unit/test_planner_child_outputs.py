"""Planner: a Flow step's output paths read its child's steps in the child's spec order (docs/API.md,
"Child flows"), even when a matrix step of the child's template expands into several status entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.api import JobFlow, JobFlowStatus
from zen_flow.api.constants import StepPhase
from zen_flow.core.matrix import effective_spec
from zen_flow.planner import CreateJob, as_job, plan
from zen_flow.planner.child_outputs import child_document
from zen_flow.planner.readiness import matrix_producer
from zen_flow.planner.steps import StepWork
from zen_flow_dev.testing.flows import job_step, make_flow

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def parent_reading(*paths: str) -> JobFlow:
    """A parent whose Flow step `sub` declares one output per path (out0, out1, ...)."""
    outputs = [{"name": f"out{i}", "valueFrom": {"jsonPath": p}} for i, p in enumerate(paths)]
    step = {
        "name": "sub",
        "type": "Flow",
        "flow": {"templateRef": {"name": "build"}},
        "outputs": {"parameters": outputs},
    }
    return make_flow([step], name="parent")


def produces(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return job_step(
        name,
        *deps,
        outputs={"parameters": [{"name": "v", "valueFrom": {"jsonPath": "$.succeeded"}}]},
        **fields,
    )


def succeeded_child(
    body: dict[str, Any], spec_steps: list[dict[str, Any]], status_steps: list[Any]
) -> JobFlow:
    """The child the apiserver stores from `body`, expanded from its template (its `spec.steps`, a matrix
    step kept as written), Succeeded with these status entries (the matrix's items in its place)."""
    doc = {
        **body,
        "metadata": {**body["metadata"], "uid": "uid-child", "creationTimestamp": "2025-01-01T00:00:00Z"},
        "spec": {"steps": spec_steps},
    }
    child = JobFlow.model_validate(doc)
    status = JobFlowStatus.model_validate({"phase": "Succeeded", "steps": status_steps})
    return child.model_copy(update={"status": status})


def entry(name: str, value: str | None, phase: str = "Succeeded") -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "phase": phase}
    if value is not None:
        out["outputs"] = {"parameters": [{"name": "v", "value": value}]}
    return out


def outputs_after(parent: JobFlow, child_spec: list[dict[str, Any]], child_status: list[Any]) -> JobFlow:
    first = plan(parent, [], T0)
    parent = parent.model_copy(update={"status": first.status})
    [create] = [a for a in first.actions if isinstance(a, CreateJob)]
    child = succeeded_child(create.body, child_spec, child_status)
    done = plan(parent, [as_job(child)], T0 + timedelta(seconds=9))
    return parent.model_copy(update={"status": done.status})


def values(parent: JobFlow) -> dict[str, str]:
    sub = next(s for s in parent.status.steps if s.name == "sub")
    assert sub.phase == "Succeeded", sub.message
    assert sub.outputs is not None
    return {p.name: p.value for p in sub.outputs.parameters}


MATRIX = {"parameters": [{"name": "os", "values": ["linux", "darwin", "windows"]}]}


def test_a_step_after_a_matrix_step_is_read_at_its_place_in_the_childs_spec() -> None:
    # The template: build (a matrix of 3 items), then publish. `$.steps[1]` is publish, as API.md says
    # ("the second step's first output, in the child's spec order"), not build's second item.
    parent = parent_reading("$.steps[1].outputs.parameters[0].value", "$.steps[1].name")
    spec = [produces("build", matrix=MATRIX), produces("publish", "build")]
    status = [entry("build-0", "1"), entry("build-1", "1"), entry("build-2", "1"), entry("publish", "7")]
    got = values(outputs_after(parent, spec, status))
    assert got == {"out0": "7", "out1": "publish"}


def test_the_matrix_step_itself_reads_as_a_dependent_reads_it_its_items_beneath() -> None:
    parent = parent_reading(
        "$.steps[0].outputs.parameters[0].value",
        "$.steps[0].phase",
        "$.steps[0].items[2].outputs.parameters[0].value",
        "$.steps[0].items[1].name",
    )
    spec = [produces("build", matrix=MATRIX), produces("publish", "build")]
    status = [
        entry("build-0", "a"),
        entry("build-1", None, phase="Skipped"),
        entry("build-2", "c"),
        entry("publish", "7"),
    ]
    got = values(outputs_after(parent, spec, status))
    assert got == {"out0": '["a",null,"c"]', "out1": "Succeeded", "out2": "c", "out3": "build-1"}


@settings(max_examples=30, deadline=None)
@given(
    before=st.integers(min_value=0, max_value=3),
    items=st.integers(min_value=1, max_value=5),
    after=st.integers(min_value=1, max_value=3),
)
def test_every_plain_step_reads_at_its_spec_index_wherever_matrices_are(
    before: int, items: int, after: int
) -> None:
    # Plain steps p0.., then a matrix step m, then plain steps q0..: each plain step is at its spec index.
    plain_before = [f"p{i}" for i in range(before)]
    plain_after = [f"q{i}" for i in range(after)]
    matrix = {"parameters": [{"name": "n", "values": [str(i) for i in range(items)]}]}
    spec = [
        *(produces(n) for n in plain_before),
        produces("m", matrix=matrix),
        *(produces(n) for n in plain_after),
    ]
    status = [
        *(entry(n, n) for n in plain_before),
        *(entry(f"m-{i}", str(i)) for i in range(items)),
        *(entry(n, n) for n in plain_after),
    ]
    names = [*plain_before, "m", *plain_after]
    parent = parent_reading(*(f"$.steps[{i}].name" for i in range(len(names))))
    got = values(outputs_after(parent, spec, status))
    assert [got[f"out{i}"] for i in range(len(names))] == names


def matrix_child(phases: list[str]) -> JobFlow:
    """A child of the matrix step `build` (one item per phase) then `publish`, its items in these phases."""
    matrix = {"parameters": [{"name": "n", "values": [str(i) for i in range(len(phases))]}]}
    body = {"apiVersion": "workflow.kube-zen.io/v1alpha1", "kind": "JobFlow", "metadata": {"name": "c"}}
    spec = [produces("build", matrix=matrix), produces("publish", "build")]
    items = [entry(f"build-{i}", str(i) if p == "Succeeded" else None, phase=p) for i, p in enumerate(phases)]
    return succeeded_child(body, spec, [*items, entry("publish", None, phase="Pending")])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([p.value for p in StepPhase]), min_size=1, max_size=4))
def test_the_matrix_steps_phase_is_the_one_a_dependent_in_its_own_flow_reads(phases: list[str]) -> None:
    # API.md: Failed when an item failed (an allowFailure item of a child that succeeded), an item's own
    # phase while it has not ended. The child's reader and the flow's own (matrix_producer) must agree.
    child = matrix_child(phases)
    effective, _ = effective_spec(child.spec, child.status.steps)
    specs = {s.name: s for s in effective.steps}
    old = {s.name: s for s in child.status.steps}
    names = effective.matrix_groups["build"]
    works = {n: StepWork.load(specs[n], old.get(n)) for n in names}
    expected = matrix_producer(names, works).phase
    assert child_document(child)["steps"][0]["phase"] == expected


def test_a_matrix_step_with_a_failed_item_reads_failed_and_one_still_running_reads_running() -> None:
    assert child_document(matrix_child(["Succeeded", "Failed", "Skipped"]))["steps"][0]["phase"] == "Failed"
    running = child_document(matrix_child(["Succeeded", "Running", "Failed"]))["steps"][0]["phase"]
    assert running == "Running"
    assert child_document(matrix_child(["Succeeded", "Skipped"]))["steps"][0]["phase"] == "Succeeded"
