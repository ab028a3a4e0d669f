"""The controller's effective flows (controller/matrix_flows.py): expanded once per generation, the same
spec object on every reconcile (the planner's memos key on it), a flow without a matrix returned as it
is; a matrix the webhook never saw fails the flow with the field named (Validity, as any invalid flow)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from controller_rig import Rig

from zen_flow.api import JobFlow
from zen_flow.api.constants import FlowPhase
from zen_flow.api.jobflow import ArgumentParameter, Arguments
from zen_flow.controller.matrix_flows import FINISHED_KEPT, MatrixFlows
from zen_flow.controller.validity import Validity
from zen_flow.core import matrix as core_matrix
from zen_flow.core.naming import job_name
from zen_flow.planner.lifecycle import ENDED_REASON
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def matrix_step(argument: str = "regions") -> dict[str, object]:
    return job_step(
        "deploy", matrix={"parameters": [{"name": "region", "valueFrom": {"argument": argument}}]}
    )


def test_a_flow_without_a_matrix_is_the_same_object() -> None:
    flows = MatrixFlows()
    flow = make_flow([job_step("a"), job_step("b", "a")])
    assert flows.effective(flow) == (flow, ())
    assert flows.effective(flow)[0] is flow


def test_a_matrix_flow_is_expanded_once_per_generation() -> None:
    flows = MatrixFlows()
    flow = make_flow([matrix_step()], arguments={"regions": '["eu","us"]'})
    first, problems = flows.effective(flow)
    assert problems == ()
    assert [s.name for s in first.spec.steps] == ["deploy-0", "deploy-1"]
    again, _ = flows.effective(flow)
    assert again.spec is first.spec  # not expanded again: the planner's shape memo holds
    edited = make_flow([matrix_step()], arguments={"regions": '["eu","us","ap"]'}, generation=2)
    assert len(flows.effective(edited)[0].spec.steps) == 3
    flows.forget(flow.metadata.uid)
    assert len(flows) == 0


async def test_a_matrix_that_cannot_expand_fails_the_flow_naming_the_field() -> None:
    flow = make_flow([matrix_step()], arguments={"regions": "eu,us"})
    effective, problems = MatrixFlows().effective(flow)
    assert [s.name for s in effective.spec.steps] == ["deploy"]  # one stand-in step: nothing runs
    assert problems
    errors = await Validity(lambda key: None).checked(flow)  # what the controller fails the flow with
    assert any(
        e.startswith("spec.steps[0].matrix.parameters[0].valueFrom.argument: Invalid value") for e in errors
    )


def test_a_flow_of_too_many_items_fails_without_building_them(monkeypatch: Any) -> None:
    # Without the webhook: 500 steps of 256 items (128,000 steps) are counted, never built, so the
    # controller's event loop is not held for seconds nor its memory filled.
    built: list[str] = []
    real = core_matrix.item_step
    monkeypatch.setattr(core_matrix, "item_step", lambda *a: built.append(a[2]) or real(*a))
    steps = [
        job_step(f"s{k}", matrix={"parameters": [{"name": "x", "valueFrom": {"argument": "xs"}}]})
        for k in range(500)
    ]
    flow = make_flow(steps, arguments={"xs": json.dumps([f"v{i}" for i in range(256)])})
    effective, problems = MatrixFlows().effective(flow)
    assert len(effective.spec.steps) == 500  # each matrix step one stand-in: nothing runs
    assert effective.spec.matrix_groups == {}
    assert [p.split(" (")[0] for p in problems] == ["spec.steps: too_many: 128000"]
    assert built == []


async def test_a_started_flow_keeps_its_items_when_an_argument_is_edited_under_it() -> None:
    # Without the webhook an argument can be edited after the start: the running items keep their
    # entries and Jobs, and the flow goes on from the items it started with.
    flows = MatrixFlows()
    flow = make_flow([matrix_step()], arguments={"regions": '["eu","us"]'})
    sim = Simulator(flows.effective(flow)[0], T0)
    sim.reconcile()
    assert sorted(sim.running()) == [job_name("flow", "deploy-0", 0), job_name("flow", "deploy-1", 0)]
    edited = make_flow([matrix_step()], arguments={"regions": "eu,us"}, generation=2)
    edited = edited.model_copy(update={"status": sim.flow.status})
    kept, problems = flows.effective(edited)
    assert problems == ()
    assert await Validity(lambda key: None).checked(edited) == ()  # started: what the controller fails with
    assert [s.name for s in kept.spec.steps] == ["deploy-0", "deploy-1"]
    sim.flow = kept
    for item in ("deploy-0", "deploy-1"):
        sim.complete(job_name("flow", item, 0))
    for _ in range(3):
        sim.reconcile()
    assert sim.phase == "Succeeded"
    assert [(s.name, s.phase) for s in sim.flow.status.steps] == [
        ("deploy-0", "Succeeded"),
        ("deploy-1", "Succeeded"),
    ]


def finished(name: str) -> JobFlow:
    flow = make_flow([matrix_step()], name=name, arguments={"regions": '["eu","us"]'})
    return flow.model_copy(update={"status": flow.status.model_copy(update={"phase": FlowPhase.SUCCEEDED})})


def test_a_finished_flows_expansion_is_kept_among_the_last_few(monkeypatch: Any) -> None:
    # A finished flow is reconciled again (startup, relists, its Jobs deleted): a 256-item flow was
    # expanded again each time, 7 ms of the event loop.
    expanded: list[object] = []
    real = core_matrix.expand_matrix
    monkeypatch.setattr(
        core_matrix, "expand_matrix", lambda spec, *a: expanded.append(spec) or real(spec, *a)
    )
    flows = MatrixFlows()
    first = finished("f0")
    for _ in range(3):
        assert [s.name for s in flows.effective(first)[0].spec.steps] == ["deploy-0", "deploy-1"]
    assert len(expanded) == 1
    # Bounded: the least recently used finished flow leaves first.
    others = [finished(f"f{i}") for i in range(1, FINISHED_KEPT + 1)]
    for flow in others:
        flows.effective(flow)
    assert len(flows) == FINISHED_KEPT
    flows.effective(others[-1])
    assert len(expanded) == 1 + FINISHED_KEPT
    flows.effective(first)  # it was the least recently used: expanded again
    assert len(expanded) == 2 + FINISHED_KEPT
    # A rerun makes it a running flow's entry again; deleting the flow forgets it.
    status = first.status.model_copy(update={"phase": FlowPhase.RUNNING})
    assert (
        flows.effective(first.model_copy(update={"status": status}))[0].spec is flows.effective(first)[0].spec
    )
    flows.forget(first.metadata.uid)
    assert len(flows) == FINISHED_KEPT - 1


REGIONS = make_flow([matrix_step()], name="rollout", namespace="team", arguments={"regions": '["eu","us"]'})


@pytest.mark.parametrize("rig", [REGIONS], indirect=True)
async def test_a_restart_that_cannot_expand_a_started_flow_fails_it_and_stops_its_items(rig: Rig) -> None:
    # Its argument edited after the start where no admission policy guards it, then the controller
    # restarts (its memory of the items it started is gone): the spec names no item, so the flow fails as
    # invalid, and the items' Jobs, which its spec can no longer name, must not run on behind it.
    api = rig.api
    api.sync()
    await rig.settle()
    api.sync()
    items = sorted(name for _, name in api.jobs)
    assert len(items) == 2

    def edited(flow: JobFlow) -> JobFlow:
        spec = flow.spec.model_copy(
            update={"arguments": Arguments(parameters=(ArgumentParameter(name="regions", value="eu,us"),))}
        )
        meta = flow.metadata.model_copy(update={"generation": 2})
        return flow.model_copy(update={"spec": spec, "metadata": meta})

    api.update_flow(rig.key, edited)
    rig.controller._matrix = MatrixFlows()  # a restart
    api.sync()
    await rig.settle()
    api.sync()
    await rig.settle()
    assert rig.flow.status.phase == "Failed"
    assert [name for _, name in api.jobs] == []
    assert sorted(m for _, r, m in api.events if r == "StrayJobDeleted") == [
        f"Job {name} deleted: {ENDED_REASON}" for name in items
    ]


@pytest.mark.parametrize("rig", [REGIONS], indirect=True)
async def test_an_expansion_that_raises_fails_the_flow_saying_why_instead_of_requeuing_it(
    rig: Rig, monkeypatch: Any
) -> None:
    # Whatever a bug or an unforeseen value makes the expansion raise (an output nested a thousand deep
    # raised RecursionError): out of the reconcile it requeued the flow forever, Running with no message.
    def broken(*args: object) -> object:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(core_matrix, "expand_matrix", broken)
    rig.api.sync()
    await rig.settle()
    valid = next(c for c in rig.flow.status.conditions if c.type == "Valid")
    assert (rig.flow.status.phase, valid.status) == ("Failed", "False")
    assert valid.message == (
        "invalid spec: spec.steps: invalid: its matrix could not be expanded: RecursionError: "
        "maximum recursion depth exceeded"
    )
    assert rig.api.job_creates == []
    # `zen-flow get` and `watch` show the stored flow rather than crash.
    assert core_matrix.effective_flow(rig.flow) is rig.flow
