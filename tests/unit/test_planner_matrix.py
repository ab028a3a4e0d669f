"""Planner on a matrix flow's effective flow (core/matrix.py): every item runs as a step of its own, a
fan-in step starts only once all items ended, and reads a matrix step's output as a JSON array of every
item's value (null for an item without one)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from zen_flow.api.constants import ANNOTATION_MATRIX, ANNOTATION_RETRY, ANNOTATION_RETRY_STEPS
from zen_flow.core.matrix import effective_flow
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob
from zen_flow.planner.interventions import rerun_refusal, rerun_scope
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ITEMS = ["build-0", "build-1", "build-2", "build-3"]


def matrix_flow(**build: Any) -> Simulator:
    step = job_step(
        "build",
        matrix={
            "parameters": [
                {"name": "os", "values": ["linux", "darwin"]},
                {"name": "arch", "values": ["x", "y"]},
            ]
        },
        outputs={"parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}}]},
        **build,
    )
    source = {"jsonPath": "build:$.outputs.parameters.n"}
    publish = job_step("publish", "build", inputs={"parameters": [{"name": "all", "valueFrom": source}]})
    return Simulator(effective_flow(make_flow([step, publish])), T0)


def created(sim: Simulator) -> dict[str, dict[str, Any]]:
    return {a.step: a.body for p in sim.plans for a in p.actions if isinstance(a, CreateJob)}


def env(body: dict[str, Any]) -> dict[str, str]:
    entries = body["spec"]["template"]["spec"]["containers"][0]["env"]
    return {e["name"]: e["value"] for e in entries if "value" in e}


def test_every_item_runs_with_its_values_and_the_fan_in_waits_for_all() -> None:
    sim = matrix_flow()
    sim.reconcile()
    jobs = created(sim)
    assert sorted(jobs) == ITEMS
    assert env(jobs["build-2"])["ZF_PARAM_OS"] == "darwin"
    assert env(jobs["build-2"])["ZF_PARAM_ARCH"] == "x"
    assert json.loads(jobs["build-2"]["metadata"]["annotations"][ANNOTATION_MATRIX]) == {
        "os": "darwin",
        "arch": "x",
    }
    assert sim.flow.status.progress is not None
    assert sim.flow.status.progress.total_steps == 5
    for item in ITEMS[:3]:
        sim.complete(job_name("flow", item, 0))
        for _ in range(3):
            sim.reconcile()
    assert "publish" not in created(sim)  # one item still runs
    sim.complete(job_name("flow", "build-3", 0))
    for _ in range(3):
        sim.reconcile()
    assert env(created(sim)["publish"])["ZF_PARAM_ALL"] == '["1","1","1","1"]'


def test_an_item_without_a_value_reads_as_null() -> None:
    sim = matrix_flow(continueOnFailure=True)
    sim.reconcile()
    for item in ITEMS:
        if item == "build-1":
            sim.fail(job_name("flow", item, 0))
        else:
            sim.complete(job_name("flow", item, 0))
    for _ in range(4):
        sim.reconcile()
    assert env(created(sim)["publish"])["ZF_PARAM_ALL"] == '["1",null,"1","1"]'


def test_an_aggregated_value_too_long_for_an_environment_variable_fails_the_reader_before_its_job() -> None:
    # 128 items of 1 KiB: one 132 KB env string, which Linux refuses to exec (MAX_ARG_STRLEN, 128 KiB).
    step = job_step(
        "build",
        matrix={"parameters": [{"name": "i", "values": [str(i) for i in range(128)]}]},
        outputs={"parameters": [{"name": "n", "valueFrom": {"terminationMessage": {"container": "main"}}}]},
    )
    source = {"jsonPath": "build:$.outputs.parameters.n"}
    publish = job_step("publish", "build", inputs={"parameters": [{"name": "all", "valueFrom": source}]})
    sim = Simulator(effective_flow(make_flow([step, publish])), T0)
    sim.reconcile()
    for k in range(128):
        sim.complete(job_name("flow", f"build-{k}", 0), {"main": "x" * 1024})
    for _ in range(4):
        sim.reconcile()
    assert "publish" not in created(sim)
    entry = next(s for s in sim.flow.status.steps if s.name == "publish")
    assert entry.phase == "Failed"
    assert "input parameter all" in (entry.message or "")
    assert "ZF_PARAM_ALL" in (entry.message or "")
    assert "bytes" in (entry.message or "")


def test_a_rerun_naming_the_matrix_step_reruns_its_failed_items() -> None:
    # `zen-flow retry NAME --step build`: build has no status entry, its failed items rerun.
    sim = matrix_flow()
    sim.reconcile()
    for item in ITEMS:
        if item in ("build-1", "build-3"):
            sim.fail(job_name("flow", item, 0))
        else:
            sim.complete(job_name("flow", item, 0))
    for _ in range(3):
        sim.reconcile()
    assert sim.phase == "Failed"
    assert rerun_scope(sim.flow, ("build",)) == ("build-1", "build-3")
    assert rerun_refusal(sim.flow, rerun_scope(sim.flow, ("build",))) is None
    sim.annotate(ANNOTATION_RETRY, "r1")
    sim.annotate(ANNOTATION_RETRY_STEPS, "build")
    for _ in range(2):
        sim.reconcile()
    assert sim.phase == "Running"
    assert {job_name("flow", "build-1", 1), job_name("flow", "build-3", 1)} <= set(sim.jobs)


def test_a_dependency_on_the_matrix_step_and_one_of_its_items_is_one_dependency_each() -> None:
    step = job_step("build", matrix={"parameters": [{"name": "os", "values": ["l", "d"]}]})
    flow = effective_flow(make_flow([step, job_step("pub", "build", "build-0")]))
    assert flow.spec.steps[-1].dependencies == ("build-0", "build-1")
