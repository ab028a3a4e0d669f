"""Planner: output parameters are captured into status, inputs are resolved, substituted and exposed as
env vars, and a parameter that cannot be resolved fails the step instead of leaving a placeholder."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from zen_flow.api.meta import Condition
from zen_flow.core.naming import job_name
from zen_flow.planner import CreateJob
from zen_flow_dev.testing.flows import job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def template(
    *,
    command: list[str] | None = None,
    args: list[str] | None = None,
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox", "command": command or ["true"]}
    if args is not None:
        container["args"] = args
    if env is not None:
        container["env"] = env
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {"template": {"spec": {"containers": [container], "restartPolicy": "Never"}}},
    }


def outputs(**paths: str) -> dict[str, Any]:
    return {"parameters": [{"name": n, "valueFrom": {"jsonPath": p}} for n, p in paths.items()]}


def inputs(*params: dict[str, Any]) -> dict[str, Any]:
    return {"parameters": list(params)}


def status_of(sim: Simulator, step: str) -> Any:
    found = sim.flow.status.step(step)
    assert found is not None
    return found


def values(sim: Simulator, step: str) -> dict[str, str]:
    out = status_of(sim, step).outputs
    return {p.name: p.value for p in out.parameters} if out is not None else {}


def created(sim: Simulator, step: str) -> dict[str, Any]:
    """The body of the (last) CreateJob of `step` in any plan so far."""
    bodies = [a.body for p in sim.plans for a in p.actions if isinstance(a, CreateJob) and a.step == step]
    assert bodies, f"no Job was created for step {step}"
    return bodies[-1]


def container(body: dict[str, Any], index: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = body["spec"]["template"]["spec"]["containers"][index]
    return result


def run_a_then(b: dict[str, Any], *, a_outputs: dict[str, Any] | None = None, **a_fields: Any) -> Simulator:
    """Flow a -> b: run a to completion and reconcile until b's Job exists (or the flow ends)."""
    a = job_step("a", outputs=a_outputs or outputs(count="$.succeeded"), **a_fields)
    sim = Simulator(make_flow([a, b]), T0)
    sim.reconcile()
    sim.complete(job_name("flow", "a", 0))
    for _ in range(3):
        sim.reconcile()
        if (
            any(a.step == "b" for p in sim.plans for a in p.actions if isinstance(a, CreateJob))
            or sim.terminal
        ):
            break
    return sim


# --- outputs ------------------------------------------------------------------------------------------


def test_output_values_not_paths_are_stored_when_the_step_succeeds() -> None:
    a = job_step(
        "a",
        outputs=outputs(
            count="$.succeeded",
            started="$.startTime",
            last="$.conditions[-1].type",
            failures="a:$.failed",  # the original's own-step prefix
            status="$",
        ),
    )
    sim = Simulator(make_flow([a]), T0)
    sim.reconcile()
    sim.complete(job_name("flow", "a", 0))
    sim.reconcile()
    assert status_of(sim, "a").phase == "Succeeded"
    got = values(sim, "a")
    assert got["count"] == "1"
    assert got["started"] == "2025-01-01T00:00:00Z"
    assert got["last"] == "Complete"
    assert got["failures"] == "0"
    assert got["status"].startswith('{"conditions":[{"type":"Complete"')
    assert list(got) == ["count", "started", "last", "failures", "status"]  # spec order


def test_a_path_that_finds_nothing_fails_the_step_and_names_the_parameter() -> None:
    a = job_step("a", outputs=outputs(version="$.nope"), retryPolicy={"limit": 2})
    sim = Simulator(make_flow([a, job_step("b", "a")]), T0)
    sim.reconcile()
    sim.complete(job_name("flow", "a", 0))
    sim.reconcile()
    a_status = status_of(sim, "a")
    assert a_status.phase == "Failed"
    assert "output parameter version" in (a_status.message or "")
    assert "'nope'" in (a_status.message or "")
    assert a_status.outputs is None
    assert sim.phase == "Failed"
    assert status_of(sim, "b").phase == "Skipped"
    assert sim.created == [job_name("flow", "a", 0)]  # the completed work is not rerun


def test_an_oversized_value_fails_the_step() -> None:
    sim = Simulator(make_flow([job_step("a", outputs=outputs(conds="$.conditions"))]), T0)
    sim.reconcile()
    name = job_name("flow", "a", 0)
    job = sim.jobs[name]
    cond = Condition(type="Complete", status="True", message="x" * 2000, last_transition_time=T0)
    sim.jobs[name] = replace(job, status=replace(job.status, conditions=(cond,)))
    sim.reconcile()
    message = status_of(sim, "a").message or ""
    assert status_of(sim, "a").phase == "Failed"
    assert "output parameter conds" in message
    assert "1024" in message


def test_outputs_are_committed_before_the_dependent_job_exists() -> None:
    b = job_step(
        "b", "a", inputs=inputs({"name": "n", "valueFrom": {"jsonPath": "a:$.outputs.parameters.count"}})
    )
    sim = Simulator(make_flow([job_step("a", outputs=outputs(count="$.succeeded")), b]), T0)
    sim.reconcile()
    sim.complete(job_name("flow", "a", 0))
    first = sim.reconcile()
    # The write that marks a Succeeded carries its values; b waits for that write.
    assert not [x for x in first.actions if isinstance(x, CreateJob)]
    assert status_of(sim, "a").phase == "Succeeded"
    assert values(sim, "a") == {"count": "1"}
    committed = sim.flow.status
    second = sim.reconcile()
    assert [x.step for x in second.actions if isinstance(x, CreateJob)] == ["b"]
    committed_a = committed.step("a")
    assert committed_a is not None
    assert committed_a.outputs is not None
    assert {"name": "ZF_PARAM_N", "value": "1"} in container(created(sim, "b"))["env"]


def test_steps_without_output_parameters_start_dependents_at_once() -> None:
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")]), T0)
    sim.reconcile()
    sim.complete(job_name("flow", "a", 0))
    result = sim.reconcile()
    assert [x.step for x in result.actions if isinstance(x, CreateJob)] == ["b"]
    assert status_of(sim, "a").outputs is None


def test_when_sees_the_output_values() -> None:
    a = job_step("a", outputs=outputs(count="$.succeeded"))
    yes = job_step("yes", "a", when="steps.a.outputs.parameters.count == '1'")
    no = job_step("no", "a", when="steps.a.outputs.parameters.count != '1'")
    sim = Simulator(make_flow([a, yes, no]), T0)
    sim.reconcile()
    sim.complete(job_name("flow", "a", 0))
    sim.reconcile()
    sim.reconcile()
    assert status_of(sim, "yes").phase == "Running"
    assert status_of(sim, "no").phase == "Skipped"


# --- inputs -------------------------------------------------------------------------------------------


def test_each_source_resolves_and_is_exposed_as_env() -> None:
    b = job_step(
        "b",
        "a",
        template=template(
            args=["{{inputs.parameters.lit}}", "{{inputs.parameters.count}}", "{{inputs.parameters.done}}"]
        ),
        inputs=inputs(
            {"name": "lit", "value": "hello"},
            {"name": "count", "valueFrom": {"jsonPath": "a:$.outputs.parameters.count"}},
            {"name": "done", "valueFrom": {"jsonPath": "a:$.conditions[0].type"}},  # a's Job status
            {"name": "cfg.key", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        ),
    )
    sim = run_a_then(b)
    main = container(created(sim, "b"))
    assert main["args"] == ["hello", "1", "Complete"]
    assert main["env"] == [
        {"name": "ZF_PARAM_LIT", "value": "hello"},
        {"name": "ZF_PARAM_COUNT", "value": "1"},
        {"name": "ZF_PARAM_DONE", "value": "Complete"},
        {"name": "ZF_PARAM_CFG_KEY", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
        {"name": "ZF_PARAM_TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
    ]


def test_config_map_and_secret_placeholders_become_kubernetes_expansions() -> None:
    step = job_step(
        "s",
        template=template(
            command=["sh", "-c", "login --token=${parameters.token}"],
            args=["--mode={{ .Parameters.mode }}"],
            env=[{"name": "MODE", "value": "{{parameters.mode}}"}, {"name": "KEEP", "value": "x"}],
        ),
        inputs=inputs(
            {"name": "mode", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
            {"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        ),
    )
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    main = container(created(sim, "s"))
    assert main["command"] == ["sh", "-c", "login --token=$(ZF_PARAM_TOKEN)"]
    assert main["args"] == ["--mode=$(ZF_PARAM_MODE)"]
    # Ours come first, so the container's own entries can refer to them.
    assert [e["name"] for e in main["env"]] == ["ZF_PARAM_MODE", "ZF_PARAM_TOKEN", "MODE", "KEEP"]
    assert main["env"][2] == {"name": "MODE", "value": "$(ZF_PARAM_MODE)"}


def test_a_secret_placeholder_outside_command_args_env_fails_the_step() -> None:
    step = job_step(
        "s",
        metadata={"annotations": {"token": "{{inputs.parameters.token}}"}},
        inputs=inputs({"name": "token", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}),
    )
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    s = status_of(sim, "s")
    assert s.phase == "Failed"
    assert "input parameter token" in (s.message or "")
    assert "metadata.annotations.token" in (s.message or "")
    assert sim.created == []


def test_substitution_is_json_safe_single_pass_and_literal_under_expansion() -> None:
    tricky = 'say "hi"\nthen {{inputs.parameters.other}} and $(HOME) \\ done'
    tpl = template(
        command=["echo", "{{inputs.parameters.v}}"],
        args=["pre-{{inputs.parameters.v}}-post"],
        env=[{"name": "V", "value": "{{inputs.parameters.v}}"}],
    )
    tpl["metadata"] = {"annotations": {"v": "{{inputs.parameters.v}}"}}
    tpl["spec"]["template"]["spec"]["volumes"] = [
        {"name": "cfg", "configMap": {"name": "x-{{inputs.parameters.other}}"}}
    ]
    step = job_step(
        "s",
        template=tpl,
        metadata={"labels": {"n": "{{inputs.parameters.other}}"}},
        inputs=inputs({"name": "v", "value": tricky}, {"name": "other", "value": "o"}),
    )
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    body = created(sim, "s")
    main = container(body)
    escaped = tricky.replace("$", "$$")  # Kubernetes turns $$ back into $: the pod sees `tricky` as is
    assert main["command"] == ["echo", escaped]
    assert main["args"] == [f"pre-{escaped}-post"]
    assert {"name": "V", "value": escaped} in main["env"]
    assert {"name": "ZF_PARAM_V", "value": escaped} in main["env"]
    assert body["metadata"]["annotations"]["v"] == tricky  # not expanded by Kubernetes: no escaping
    assert body["metadata"]["labels"]["n"] == "o"
    assert body["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == "x-o"


@pytest.mark.parametrize(
    "placeholder",
    [
        "{{inputs.parameters.x}}",
        "{{.Parameters.x}}",
        "{{parameters.x}}",
        "{{.parameters.x}}",
        "${parameters.x}",
        "{{ inputs.parameters.x }}",
    ],
)
def test_every_placeholder_form_is_replaced(placeholder: str) -> None:
    step = job_step(
        "s", template=template(args=[f"<{placeholder}>"]), inputs=inputs({"name": "x", "value": "v"})
    )
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    assert container(created(sim, "s"))["args"] == ["<v>"]


def test_the_originals_flow_and_step_names_are_substituted_and_other_templates_left_alone() -> None:
    # The original's Go-template context; a kubectl go-template in a command is not ours to touch.
    args = ["{{.JobFlow.Name}}/{{ .JobFlow.Namespace }}/{{.StepName}}", "-o=go-template={{.metadata.name}}"]
    sim = Simulator(make_flow([job_step("build", template=template(args=args))], name="nightly"), T0)
    sim.reconcile()
    assert container(created(sim, "build"))["args"] == ["nightly/default/build", args[1]]


@pytest.mark.parametrize(
    "action", ["{{ .Parameters.x | upper }}", "{{.JobFlow.Spec}}", '{{ printf "%s" .StepName }}']
)
def test_another_action_on_the_originals_context_fails_the_step_and_creates_no_job(action: str) -> None:
    # Without the webhook (which refuses it): the Job would have run with the text left in it.
    step = job_step("s", template=template(args=[action]), inputs=inputs({"name": "x", "value": "v"}))
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    s = status_of(sim, "s")
    assert s.phase == "Failed"
    assert f"unsupported template action {action} at spec.template.spec.containers[0].args[0]" in (
        s.message or ""
    )
    assert sim.created == []


def test_an_unknown_placeholder_fails_the_step_and_creates_no_job() -> None:
    step = job_step(
        "s",
        template=template(args=["{{inputs.parameters.typo}}"]),
        inputs=inputs({"name": "x", "value": "v"}),
    )
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    s = status_of(sim, "s")
    assert s.phase == "Failed"
    assert "unknown parameter typo" in (s.message or "")
    assert "containers[0].args[0]" in (s.message or "")
    assert sim.created == []
    assert sim.phase == "Failed"


def test_a_missing_output_of_the_referenced_step_fails_the_step() -> None:
    b = job_step(
        "b", "a", inputs=inputs({"name": "v", "valueFrom": {"jsonPath": "a:$.outputs.parameters.version"}})
    )
    sim = run_a_then(b)
    s = status_of(sim, "b")
    assert s.phase == "Failed"
    assert "input parameter v" in (s.message or "")
    assert "'version'" in (s.message or "")
    assert sim.created == [job_name("flow", "a", 0)]


def test_stored_outputs_outlive_the_job_but_its_status_does_not() -> None:
    flow_steps = [
        job_step("a", outputs=outputs(count="$.succeeded")),
        job_step(
            "b", "a", inputs=inputs({"name": "v", "valueFrom": {"jsonPath": "a:$.outputs.parameters.count"}})
        ),
        job_step("c", "a", inputs=inputs({"name": "v", "valueFrom": {"jsonPath": "a:$.succeeded"}})),
    ]
    sim = Simulator(make_flow(flow_steps), T0)
    sim.reconcile()
    sim.complete(job_name("flow", "a", 0))
    sim.reconcile()
    sim.vanish(job_name("flow", "a", 0))  # e.g. the Job's own ttlSecondsAfterFinished removed it
    sim.reconcile()
    assert status_of(sim, "b").phase == "Running"
    assert {"name": "ZF_PARAM_V", "value": "1"} in container(created(sim, "b"))["env"]
    c = status_of(sim, "c")
    assert c.phase == "Failed"
    assert "no longer exists" in (c.message or "")
    assert "a:$.outputs.parameters.NAME" in (c.message or "")


def test_env_names_that_collide_fail_the_step() -> None:
    step = job_step("s", inputs=inputs({"name": "a-b", "value": "1"}, {"name": "a.b", "value": "2"}))
    sim = Simulator(make_flow([step]), T0)
    sim.reconcile()
    s = status_of(sim, "s")
    assert s.phase == "Failed"
    assert "ZF_PARAM_A_B" in (s.message or "")


def test_a_retry_gets_the_parameters_again() -> None:
    b = job_step(
        "b",
        "a",
        template=template(args=["{{inputs.parameters.v}}"]),
        retryPolicy={"limit": 1, "backoff": {"type": "Fixed", "duration": "1s"}},
        inputs=inputs({"name": "v", "valueFrom": {"jsonPath": "a:$.outputs.parameters.count"}}),
    )
    sim = run_a_then(b)
    sim.fail(job_name("flow", "b", 0))
    sim.reconcile()
    sim.advance(sim.last.requeue_after)
    sim.reconcile()
    assert sim.created[-1] == job_name("flow", "b", 1)
    assert container(created(sim, "b"))["args"] == ["1"]
    assert created(sim, "b")["metadata"]["name"] == job_name("flow", "b", 1)


def test_a_template_without_placeholders_or_inputs_is_unchanged() -> None:
    sim = Simulator(
        make_flow([job_step("s", template=template(args=["{not a placeholder}", "${HOME}"]))]), T0
    )
    sim.reconcile()
    main = container(created(sim, "s"))
    assert main["args"] == ["{not a placeholder}", "${HOME}"]
    assert "env" not in main
