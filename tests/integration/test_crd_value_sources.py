"""Parameters' value sources as the admission policy shipped with the CRD checks them, and the policies'
CEL cost limits, up to the largest flow."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from jobflow_objects import Kubectl, flow, job, kubectl_create

from zen_flow.validation import validate_jobflow

pytestmark = pytest.mark.integration


def _outputs(**source: Any) -> dict[str, Any]:
    return {"outputs": {"parameters": [{"name": "v", "valueFrom": source}]}}


def _inputs(**param: Any) -> dict[str, Any]:
    return {"inputs": {"parameters": [{"name": "v", **param}]}}


OUT = "spec.steps[].outputs.parameters[].valueFrom"
IN = "spec.steps[].inputs.parameters[]"


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        pytest.param(
            [{"name": "a", "template": job(), **_outputs(supplied={})}],
            f"{OUT}.supplied: only a Manual step's outputs are supplied at its approval",
            id="supplied-output-of-a-job-step",
        ),
        pytest.param(
            [{"name": "gate", "type": "Manual", **_outputs(jsonPath="$.succeeded")}],
            f"{OUT}: a Manual step runs no Job",
            id="read-output-of-a-manual-step",
        ),
        pytest.param(
            [
                {"name": "a", "template": job()},
                {"name": "b", "template": job(), "dependencies": ["a"], **_outputs(jsonPath="a:$.succeeded")},
            ],
            f"{OUT}.jsonPath: an output reads this step's own Job",
            id="output-of-another-step",
        ),
        pytest.param(
            [{"name": "a", "template": job(), **_outputs(jsonPath="$.conditions[*].type")}],
            f"{OUT}.jsonPath: unsupported JSONPath",
            id="output-jsonpath-wildcard",
        ),
        pytest.param(
            [{"name": "a", "template": job(), **_outputs(terminationMessage={"key": "a b"})}],
            f"{OUT}.terminationMessage.key: must consist of letters, digits",
            id="termination-message-key",
        ),
        pytest.param(
            [{"name": "a", "template": job(), **_outputs(terminationMessage={"container": "sidecar"})}],
            f"{OUT}.terminationMessage.container: must name one of the Job template's containers",
            id="termination-message-container",
        ),
        pytest.param(
            [{"name": "g", "type": "Manual", **_outputs(supplied={"default": "x", "enum": ["a"]})}],
            f"{OUT}.supplied.default: the default must be one of enum",
            id="gate-default-not-in-enum",
        ),
        pytest.param(
            [{"name": "a", "template": job(), **_inputs(value="1", valueFrom={"argument": "x"})}],
            f"{IN}.valueFrom: may not be specified together with value",
            id="input-value-and-valuefrom",
        ),
        pytest.param(
            [{"name": "a", "template": job(), **_inputs()}],
            f"{IN}.value: set exactly one of value and valueFrom",
            id="input-without-value",
        ),
        pytest.param(
            [{"name": "a", "template": job(), **_inputs(valueFrom={})}],
            f"{IN}.valueFrom: set exactly one of jsonPath, argument, configMapKeyRef and secretKeyRef",
            id="input-valuefrom-without-source",
        ),
        pytest.param(
            [
                {"name": "a", "template": job()},
                {
                    "name": "b",
                    "template": job(),
                    "dependencies": ["a"],
                    **_inputs(valueFrom={"jsonPath": "$.x"}),
                },
            ],
            f"{IN}.valueFrom.jsonPath: must name the step it reads and a JSONPath",
            id="input-jsonpath-without-step",
        ),
        pytest.param(
            [{"name": "a", "template": job(), **_inputs(valueFrom={"argument": "nope"})}],
            f"{IN}.valueFrom.argument: spec.arguments.parameters has no such name",
            id="input-undeclared-argument",
        ),
    ],
)
def test_bad_value_sources_are_refused_by_the_policy_naming_the_field(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any, steps: list[dict[str, Any]], message: str
) -> None:
    # No webhook in this tier: the step admission policy alone refuses them.
    done = kubectl_create(kubectl, flow("bad", namespace, steps))
    assert done.returncode != 0
    said = " ".join(done.stderr.split())
    assert message in said, said
    assert f"(step {steps[-1]['name']}, " in said


def test_value_sources_of_every_form_the_webhook_takes_are_admitted(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any
) -> None:
    two = job()
    two["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    outputs = [
        {"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}},
        {"name": "own", "valueFrom": {"jsonPath": "a:$.status['completionTime']"}},
        {"name": "q", "valueFrom": {"jsonPath": '$["x y"][0].z-1[-1]'}},
        {"name": "esc", "valueFrom": {"jsonPath": "$['it\\'s']"}},
        {"name": "m", "valueFrom": {"terminationMessage": {"key": "digest.sha_256-x"}}},
    ]
    inputs = [
        {"name": "lit", "value": ""},
        {"name": "out", "valueFrom": {"jsonPath": "a:$.outputs.parameters.n"}},
        {"name": "job", "valueFrom": {"jsonPath": "a:$['succeeded']"}},
        {"name": "arg", "valueFrom": {"argument": "env"}},
        {"name": "cm", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
    ]
    gate = {"supplied": {"default": "a", "enum": ["a", "b"]}}
    side = {"terminationMessage": {"container": "side"}}
    steps = [
        {"name": "a", "template": job(), "outputs": {"parameters": outputs}},
        {"name": "b", "template": two, "dependencies": ["a"], "inputs": {"parameters": inputs},
         "outputs": {"parameters": [{"name": "s", "valueFrom": side}]}},
        {"name": "gate", "type": "Manual", "dependencies": ["b"],
         "outputs": {"parameters": [{"name": "g", "valueFrom": gate}]}},
    ]  # fmt: skip
    arguments = {"parameters": [{"name": "env", "value": "prod"}]}
    done = kubectl_create(kubectl, flow("forms", namespace, steps, arguments=arguments))
    assert done.returncode == 0, done.stderr


def test_flows_full_of_value_sources_pass_the_policy_within_its_cost_limit(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any
) -> None:
    # Each value-source rule is one pass over every step's parameters, a regex match per JSONPath: the
    # commonest form's short one first, the full grammar's (about three times the cost) for the others.
    # 500 steps with 32 output parameters each (the CRD's most) fit the apiserver's runtime cost limit,
    # and so do 12,000 outputs of the full grammar's forms ($['x']) and 12,000 inputs of the short one
    # (docs/API.md); a flow past the limit is admitted (the next test).
    outputs = [{"name": f"p{k}", "valueFrom": {"jsonPath": f"$.status.p{k}"}} for k in range(32)]

    def reads(i: int, n: int) -> list[dict[str, Any]]:
        return [
            {"name": f"i{k}", "valueFrom": {"jsonPath": f"s{i - 1}:$.outputs.parameters.p{k}"}}
            for k in range(n)
        ]

    steps = [
        {
            "name": f"s{i}",
            "template": job(),
            "dependencies": [f"s{i - 1}"] if i else [],
            "outputs": {"parameters": outputs},
            "inputs": {
                "parameters": [*reads(i, 7 if i else 0), {"name": "env", "valueFrom": {"argument": "env"}}]
            },
        }
        for i in range(500)
    ]
    arguments = {"parameters": [{"name": "env", "value": "prod"}]}
    done = kubectl_create(kubectl, flow("sources", namespace, steps, arguments=arguments))
    assert done.returncode == 0, done.stderr
    quoted = [{"name": f"p{k}", "valueFrom": {"jsonPath": f"$.status['p{k}']"}} for k in range(24)]
    steps = [{"name": f"s{i}", "template": job(), "outputs": {"parameters": quoted}} for i in range(500)]
    done = kubectl_create(kubectl, flow("quoted", namespace, steps))
    assert done.returncode == 0, done.stderr
    steps = [
        {
            "name": f"s{i}",
            "template": job(),
            "dependencies": [f"s{i - 1}"] if i else [],
            "inputs": {"parameters": reads(i, 24 if i else 0)},
        }
        for i in range(500)
    ]
    done = kubectl_create(kubectl, flow("inputs", namespace, steps))
    assert done.returncode == 0, done.stderr


def test_flows_past_the_parameter_policy_cost_limit_are_admitted_as_the_webhook_admits_them(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any
) -> None:
    # The parameter rules cost as the parameters are many (and their JSONPaths long: one of 300 KB is past
    # the limit too, but the webhook refuses a path over 512 characters, so it is not a flow it takes),
    # which neither the CRD nor the webhook bounds closely enough for the apiserver's CEL cost limit. A
    # flow the webhook takes is not refused by the policy's cost error (naming no field): the policy admits
    # it (failurePolicy Ignore), and the webhook, or the controller, checks it.
    def conditions(i: int) -> list[dict[str, Any]]:
        path = f"s{i - 1}:$.status.conditions[0].type"
        return [{"name": f"i{k}", "valueFrom": {"jsonPath": path}} for k in range(10)] if i else []

    steps = [
        {
            "name": f"s{i}",
            "template": job(),
            "dependencies": [f"s{i - 1}"] if i else [],
            "inputs": {"parameters": conditions(i)},
        }
        for i in range(500)
    ]
    arguments = {"parameters": [{"name": f"a{k}", "value": ""} for k in range(64)]}
    named = [{"name": f"v{k}", "valueFrom": {"argument": "a63"}} for k in range(23)]
    many_arguments = [
        {"name": f"s{i}", "template": job(), "inputs": {"parameters": named}} for i in range(500)
    ]
    heavy = {
        "conditions": flow("conditions", namespace, steps),
        "arguments": flow("arguments", namespace, many_arguments, arguments=arguments),
    }
    for name, body in heavy.items():
        assert validate_jobflow(body) == [], name  # the webhook admits it
        done = kubectl_create(kubectl, body)
        assert done.returncode == 0, f"{name}: {done.stderr}"
    # What each step must be stays refused on a flow as heavy (its policy fails closed).
    steps[-1] = {**steps[-1], "type": "Manual"}
    done = kubectl_create(kubectl, flow("heavy-broken", namespace, steps))
    assert done.returncode != 0
    assert "a Manual step takes no template" in done.stderr
    assert "(step s499)" in done.stderr


def test_the_largest_flow_passes_the_admission_policies_within_their_cost_limits(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any
) -> None:
    # CEL in an admission policy has a runtime cost limit, and both policies scan or compare the steps:
    # they must hold at the CRD's 500 steps, for the create and for what users do to a big flow later.
    steps = [
        {"name": f"s{i}", "template": job(f"echo {i}"), "dependencies": [f"s{i - 1}"] if i else []}
        for i in range(500)
    ]
    done = kubectl_create(kubectl, flow("big", namespace, steps))
    assert done.returncode == 0, done.stderr

    def edit(*ops: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return kubectl(
            "patch", "jf", "big", "-n", namespace, "--type=json", "-p", json.dumps(ops), check=False
        )

    broken = edit({"op": "add", "path": "/spec/steps/499/type", "value": "Manual"})
    assert broken.returncode != 0
    assert "a Manual step takes no template" in broken.stderr
    assert "(step s499)" in broken.stderr
    edited = edit(
        {
            "op": "replace",
            "path": "/spec/steps/499/template/spec/template/spec/containers/0/image",
            "value": "alpine",
        }
    )
    assert edited.returncode == 0, edited.stderr  # not started: editable
    status = json.dumps({"status": {"phase": "Running", "startTime": "2026-01-02T03:04:05Z"}})
    kubectl("patch", "jf", "big", "-n", namespace, "--subresource=status", "--type=merge", "-p", status)
    frozen = edit(
        {
            "op": "replace",
            "path": "/spec/steps/0/template/spec/template/spec/containers/0/image",
            "value": "alpine",
        }
    )
    assert frozen.returncode != 0
    assert "spec.steps cannot change once the flow has started" in frozen.stderr
    approved = kubectl(
        "annotate", "jf", "big", "-n", namespace, "approve.workflow.kube-zen.io/s3=true", check=False
    )
    assert approved.returncode == 0, approved.stderr
    # With finally steps the policy also scans every dependency against the finally steps' names: a join
    # of 399 steps and a chain of 100 finally steps stay within its limits.
    main = [{"name": f"m{i}", "template": job()} for i in range(399)]
    join = {"name": "join", "template": job(), "dependencies": [s["name"] for s in main]}
    final = [
        {"name": f"f{i}", "template": job(), "finally": True, "dependencies": [f"f{i - 1}"] if i else []}
        for i in range(100)
    ]
    done = kubectl_create(kubectl, flow("big-finally", namespace, [*main, join, *final]))
    assert done.returncode == 0, done.stderr
    # Dependencies on matrix items are matched against the other side's matrix steps: 100 finally steps
    # naming 50 items each of a finally matrix step, with 20 matrix steps on the other side (480 steps
    # once expanded).
    shards = {"parameters": [{"name": "s", "values": [str(i) for i in range(50)]}]}
    one = {"parameters": [{"name": "s", "values": ["x"]}]}
    main = [{"name": f"m{i}", "template": job(), "matrix": one} for i in range(20)]
    items = {"name": "c", "template": job(), "finally": True, "matrix": shards}
    final = [
        {"name": f"f{i}", "template": job(), "finally": True, "dependencies": [f"c-{k}" for k in range(50)]}
        for i in range(100)
    ]
    done = kubectl_create(kubectl, flow("big-matrix", namespace, [*main, items, *final]))
    assert done.returncode == 0, done.stderr
