"""A small spec cannot make the controller build huge Jobs by repeating a parameter's placeholder.

A 100 KB literal value in 3,000 placeholders made one plan build a 300 MB Job body (the apiserver refuses
any object over 1.5 MiB), and a matrix multiplied it by its items: the controller was OOM-killed while
planning, then planned the same flow again after its restart. What substitution adds to one Job is
bounded (1 MiB), refused at admission when literal values make it certain, and one plan builds at most
4 MiB of parameter values (16 reconcile workers: 80 MiB at most in the process); the other ready steps
are created by the next plans.
"""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from validation_samples import make_flow as raw_flow

from zen_flow.api.constants import StepPhase
from zen_flow.controller.flow_queue import worker_count
from zen_flow.core.parameter_forms import MAX_SUBSTITUTED_BYTES
from zen_flow.planner import CreateJob
from zen_flow.planner.parameters import MAX_PLAN_SUBSTITUTED_BYTES
from zen_flow.settings import Settings
from zen_flow.validation import validate_jobflow
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

NOW = datetime(2025, 1, 1, tzinfo=UTC)
MIB = 2**20
RETRY = {"limit": 3, "backoff": {"type": "Fixed", "duration": "1s"}}


def fields(param: dict[str, Any], refs: int, matrix: int = 0, containers: int = 1) -> dict[str, Any]:
    container = {"image": "busybox:1.36", "command": ["echo"], "args": ["{{inputs.parameters.p}}"] * refs}
    pod = {
        "restartPolicy": "Never",
        "containers": [{"name": f"c{k}", **container} for k in range(containers)],
    }
    out: dict[str, Any] = {
        "template": {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}}},
        "inputs": {"parameters": [{"name": "p", **param}]},
    }
    if matrix:
        out["matrix"] = {"parameters": [{"name": "i", "values": [str(k) for k in range(matrix)]}]}
    return out


def creates(sim: Simulator) -> list[CreateJob]:
    return [a for a in sim.last.actions if isinstance(a, CreateJob)]


# --- admission -----------------------------------------------------------------------------------------


def test_admission_refuses_a_literal_value_placeholders_make_past_1_mib_naming_it() -> None:
    errors = validate_jobflow(raw_flow({"name": "a", **fields({"value": "x" * 100_000}, 3_000)}))
    assert [e.path for e in errors] == ["spec.steps[0].inputs.parameters[0].value"]
    assert "are substituted 3,001 times" in str(errors[0])
    assert f"more than {MAX_SUBSTITUTED_BYTES:,}" in str(errors[0])


def test_env_vars_in_every_container_count_too() -> None:
    # 60 containers each get the 20 KB value as ZF_PARAM_P, and a placeholder: 2.4 MB.
    errors = validate_jobflow(raw_flow({"name": "a", **fields({"value": "x" * 20_000}, 1, containers=60)}))
    assert [e.path for e in errors] == ["spec.steps[0].inputs.parameters[0].value"]


def test_admission_takes_what_fits() -> None:
    assert validate_jobflow(raw_flow({"name": "a", **fields({"value": "x" * 10_000}, 100)})) == []
    assert validate_jobflow(raw_flow({"name": "a", **fields({"value": "x" * 100_000}, 9)})) == []


# --- the planner -----------------------------------------------------------------------------------------


def test_the_planner_fails_the_step_naming_it_before_building_the_whole_job() -> None:
    # No webhook (the CRD-only mode), or a value admission cannot know: the step fails, the flow ends, and
    # building the Job stopped at the bound instead of 300 MB.
    sim = Simulator(make_flow([job_step("a", **fields({"value": "x" * 100_000}, 3_000))]), NOW)
    tracemalloc.start()
    try:
        sim.reconcile()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert creates(sim) == []
    (step,) = sim.flow.status.steps
    assert step.phase == StepPhase.FAILED
    assert step.message is not None
    assert "cannot create Job: substituting input parameter p at spec.template.spec.containers[0].args[" in (
        step.message
    )
    assert "past 1,048,576 bytes" in step.message
    assert peak < 16 * MIB, peak
    sim.reconcile()
    assert sim.phase == "Failed"


def test_a_value_from_an_argument_is_bounded_at_run_time() -> None:
    # 4 KiB (an argument's most) in 300 placeholders: 1.2 MB, known only when the Job is built.
    param = {"valueFrom": {"argument": "big"}}
    spec = fields(param, 300)
    raw = raw_flow({"name": "a", **spec})
    raw["spec"]["arguments"] = {"parameters": [{"name": "big", "value": "y" * 4096}]}
    assert validate_jobflow(raw) == []
    sim = Simulator(make_flow([job_step("a", **spec)], arguments={"big": "y" * 4096}), NOW)
    sim.reconcile()
    assert creates(sim) == []
    (step,) = sim.flow.status.steps
    assert step.phase == StepPhase.FAILED
    assert "substituting input parameter p" in (step.message or "")


def test_a_job_just_under_the_bound_is_created_whole() -> None:
    sim = Simulator(make_flow([job_step("a", **fields({"value": "x" * 10_000}, 100))]), NOW)
    sim.reconcile()
    (create,) = creates(sim)
    assert create.body["spec"]["template"]["spec"]["containers"][0]["args"] == ["x" * 10_000] * 100


def test_a_matrix_builds_at_most_4_mib_of_values_per_plan_and_every_item_is_created_in_later_plans() -> None:
    # 64 items of ~1 MB each: accepted (each Job is under the bound), 64 MB if built in one plan.
    spec = fields({"value": "x" * 10_000}, 100, matrix=64)
    assert validate_jobflow(raw_flow({"name": "a", **spec})) == []
    sim = Simulator(make_flow([job_step("a", **spec)]), NOW, expand=True)
    made = 0
    for _ in range(20):
        sim.reconcile()
        bodies = [len(json.dumps(a.body)) for a in creates(sim)]
        assert 0 < sum(bodies) <= MAX_PLAN_SUBSTITUTED_BYTES + 2 * MAX_SUBSTITUTED_BYTES, sum(bodies)
        made += len(bodies)
        waiting = [s for s in sim.flow.status.steps if s.phase == StepPhase.PENDING]
        assert all("waiting to be created" in (s.message or "") for s in waiting)
        if waiting:  # the plan asks to be run again for them, not left to a Job's next event
            assert sim.last.requeue_after is not None
            assert sim.last.requeue_after <= 1
        if made == 64:
            break
        sim.advance(1)
    assert made == 64
    assert len(sim.running()) == 64


def test_a_child_flows_arguments_are_bounded_together() -> None:
    # 64 arguments of 5 placeholders each, filled from an argument of the parent: 64 x 5 x 4 KiB.
    arguments = [{"name": f"a{k}", "value": "{{inputs.parameters.p}}" * 5} for k in range(64)]
    step = {
        "name": "child",
        "type": "Flow",
        "flow": {"templateRef": {"name": "build"}, "arguments": {"parameters": arguments}},
        "inputs": {"parameters": [{"name": "p", "valueFrom": {"argument": "big"}}]},
    }
    sim = Simulator(make_flow([step], arguments={"big": "y" * 4096}), NOW)
    sim.reconcile()
    assert creates(sim) == []
    (child,) = sim.flow.status.steps
    assert child.phase == StepPhase.FAILED
    assert "cannot create child flow: substituting input parameter p at flow.arguments" in (
        child.message or ""
    )


def test_admission_refuses_literal_values_past_the_bound_in_a_child_flows_arguments() -> None:
    arguments = [{"name": f"a{k}", "value": "{{inputs.parameters.p}}"} for k in range(11)]
    step = {
        "name": "child",
        "type": "Flow",
        "flow": {"templateRef": {"name": "build"}, "arguments": {"parameters": arguments}},
        "inputs": {"parameters": [{"name": "p", "value": "x" * 100_000}]},
    }
    errors = validate_jobflow(raw_flow(step))
    assert [e.path for e in errors] == ["spec.steps[0].inputs.parameters[0].value"]
    assert "to the child flow's arguments" in str(errors[0])


def test_what_all_reconcile_workers_build_at_once_stays_well_under_the_pod_memory() -> None:
    # Every worker may plan a large flow at the same time; each plan builds at most its budget and one
    # more Job (the budget is checked before each build). The controller's limit is 384 MiB.
    workers = worker_count(Settings().workers)
    assert workers * (MAX_PLAN_SUBSTITUTED_BYTES + MAX_SUBSTITUTED_BYTES) <= 80 * MIB


def test_the_planner_counts_the_env_var_each_container_gets() -> None:
    # No placeholder at all: an argument's 4 KiB as ZF_PARAM_P in 300 containers is 1.2 MB.
    spec = fields({"valueFrom": {"argument": "big"}}, 0, containers=300)
    sim = Simulator(make_flow([job_step("a", **spec)], arguments={"big": "y" * 4096}), NOW)
    sim.reconcile()
    assert creates(sim) == []
    (step,) = sim.flow.status.steps
    assert step.phase == StepPhase.FAILED
    assert "substituting the input parameters' env vars at spec.template.spec.containers[" in (
        step.message or ""
    )


def flow_step(name: str, placeholders: int) -> dict[str, Any]:
    """A Flow step whose one argument is the parent's 4 KiB argument `placeholders` times."""
    arguments = [{"name": "a", "value": "{{inputs.parameters.p}}" * placeholders}]
    return {
        "name": name,
        "type": "Flow",
        "flow": {"templateRef": {"name": "build"}, "arguments": {"parameters": arguments}},
        "inputs": {"parameters": [{"name": "p", "valueFrom": {"argument": "big"}}]},
    }


def test_child_flows_count_toward_what_one_plan_builds() -> None:
    # 12 child flows of 1,024,000 bytes of arguments each, each under the bound: 12 MB in one plan.
    steps = [flow_step(f"c{k}", 250) for k in range(12)]
    sim = Simulator(make_flow(steps, arguments={"big": "y" * 4096}), NOW)
    sim.reconcile()
    made = creates(sim)
    assert 0 < len(made) < 12
    assert len(made) * 1_024_000 <= MAX_PLAN_SUBSTITUTED_BYTES + MAX_SUBSTITUTED_BYTES
    waiting = [s for s in sim.flow.status.steps if s.phase == StepPhase.PENDING]
    assert waiting
    assert all("waiting to be created" in (s.message or "") for s in waiting)


def test_a_deferred_retrying_step_keeps_why_its_last_attempt_failed() -> None:
    # 6 steps of ~1 MB Jobs (the flow's retry budget, backoffLimit 6) fail and retry in the same plan:
    # those past the plan's budget wait, and still say why attempt 1 failed, then and once they run.
    spec = fields({"value": "x" * 10_000}, 100)
    steps = [job_step(f"s{k:02}", **spec, retryPolicy=RETRY) for k in range(6)]
    sim = Simulator(make_flow(steps), NOW)
    for _ in range(5):
        sim.reconcile()
        if len(sim.running()) == 6:
            break
        sim.advance(1)
    assert len(sim.running()) == 6
    for name in list(sim.running()):
        sim.fail(name, message="boom exit 3")
    saw_waiting = False
    for _ in range(10):
        sim.reconcile()
        for s in sim.flow.status.steps:
            if "waiting to be created" in (s.message or ""):
                saw_waiting = True
                assert "boom exit 3" in (s.message or ""), s.message
        if all(s.phase == StepPhase.RUNNING for s in sim.flow.status.steps):
            break
        sim.advance(1)
    assert saw_waiting
    assert all(s.phase == StepPhase.RUNNING for s in sim.flow.status.steps)
    assert all("boom exit 3" in (s.message or "") for s in sim.flow.status.steps)
    assert not any("waiting to be created" in (s.message or "") for s in sim.flow.status.steps)


def context_fields(arg: str, refs: int, matrix: int) -> dict[str, Any]:
    """A step whose one container has `arg` (a context field's placeholder) as `refs` args, no inputs."""
    spec = fields({"value": "v"}, 0, matrix=matrix)
    del spec["inputs"]
    spec["template"]["spec"]["template"]["spec"]["containers"][0]["args"] = [arg] * refs
    return spec


def test_admission_counts_each_context_field_at_its_longest() -> None:
    # 30,000 x {{.StepName}}, 13 bytes as written: a matrix item's name may be 63, so 1.9 MB in each Job.
    spec = context_fields("{{.StepName}}", 30_000, matrix=256)
    errors = validate_jobflow(raw_flow({"name": "s" * 40, **spec}))
    assert {e.path for e in errors} == {"spec.steps[0].template.spec.template.spec.containers[0].args[0]"}
    assert "{{.StepName}}" in str(errors[0])
    assert f"more than {MAX_SUBSTITUTED_BYTES:,}" in str(errors[0])
    for field in ("{{.JobFlow.Name}}", "{{ .JobFlow.Namespace }}"):
        assert validate_jobflow(raw_flow({"name": "a", **context_fields(field, 17_000, 0)})) != []
        assert validate_jobflow(raw_flow({"name": "a", **context_fields(field, 16_000, 0)})) == []
    # The run's time is 20 characters, never longer.
    scheduled = context_fields("{{.JobFlow.ScheduledTime}}", 30_000, 0)
    assert validate_jobflow(raw_flow({"name": "a", **scheduled})) == []


def test_a_matrix_steps_context_fields_are_refused_once_not_per_item() -> None:
    # Its items' literal values (the matrix parameter: "0" to "255") differ in size; the field to edit is
    # one, and so is its error. Another step's same mistake is its own.
    spec = context_fields("{{.StepName}}", 17_000, matrix=100)
    errors = validate_jobflow(raw_flow({"name": "a", **spec}, {"name": "b", **spec}))
    assert [e.path for e in errors] == [
        f"spec.steps[{k}].template.spec.template.spec.containers[0].args[0]" for k in (0, 1)
    ]
    assert "may add 1,071,000 bytes" in errors[0].detail
    # 4 bytes under the bound alone: past it with the values of two of the three items, said once.
    close = context_fields("{{.StepName}}", MAX_SUBSTITUTED_BYTES // 63, matrix=3)
    close["matrix"]["parameters"][0]["values"] = ["x", "x" * 8, "x" * 9]
    (error,) = validate_jobflow(raw_flow({"name": "a", **close}))
    assert "with the literal input values" in error.detail
    close["matrix"]["parameters"][0]["values"] = ["x", "xx", "xxx"]
    assert validate_jobflow(raw_flow({"name": "a", **close})) == []


def test_the_planner_counts_context_fields_and_fails_each_item_before_building_it() -> None:
    # No webhook: a 512 KB spec made one plan build 256 Jobs of 1.4 MB (366 MB, a 777 MB peak).
    spec = context_fields("{{.StepName}}", 30_000, matrix=256)
    sim = Simulator(make_flow([job_step("s" * 40, **spec)]), NOW, expand=True)
    sim.reconcile()
    assert creates(sim) == []
    failed = [s for s in sim.flow.status.steps if s.phase == StepPhase.FAILED]
    assert failed
    assert all(
        "substituting {{.StepName}} at spec.template.spec.containers[0].args[" in (s.message or "")
        for s in failed
    )


def test_context_fields_count_toward_what_one_plan_builds() -> None:
    # 64 items, each Job ~0.9 MB of {{.StepName}} (20,000 x 44 bytes): under the bound, deferred per plan.
    spec = context_fields("{{.StepName}}", 20_000, matrix=64)
    sim = Simulator(make_flow([job_step("s" * 40, **spec)]), NOW, expand=True)
    sim.reconcile()
    made = creates(sim)
    assert 0 < len(made) < 64
    assert (
        sum(len(json.dumps(a.body)) for a in made) <= MAX_PLAN_SUBSTITUTED_BYTES + 2 * MAX_SUBSTITUTED_BYTES
    )
    waiting = [s for s in sim.flow.status.steps if s.phase == StepPhase.PENDING]
    assert waiting
    assert all("waiting to be created" in (s.message or "") for s in waiting)
