"""What the apiserver rejects, by the JobFlow CRD's schema and CEL rules and the admission policy that ships
with it (config/crd/), with the message users see."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
from jobflow_objects import Kubectl, create, flow, get, job, kubectl_create, patch_status
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from zen_flow.validation import validate_jobflow

pytestmark = pytest.mark.integration


@pytest.fixture
def objects(api_client: Any, jobflow_crd: dict[str, Any]) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.mark.parametrize(
    "started",
    [
        pytest.param({"phase": "Running", "startTime": "2026-01-02T03:04:05Z"}, id="flow-running"),
        pytest.param({"phase": "Pending", "steps": [{"name": "a", "phase": "Running"}]}, id="step-running"),
        pytest.param({"phase": "Failed"}, id="flow-failed-before-any-step"),
    ],
)
async def test_steps_are_immutable_once_the_flow_started(
    objects: client.CustomObjectsApi, kubectl: Kubectl, namespace: str, started: dict[str, Any]
) -> None:
    await create(objects, flow("frozen", namespace, [{"name": "a", "template": job("echo 1")}]))

    def edit(patch: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        body = json.dumps({"spec": patch})
        return kubectl("patch", "jf", "frozen", "-n", namespace, "--type=merge", "-p", body, check=False)

    def set_command(command: str) -> subprocess.CompletedProcess[str]:
        return edit({"steps": [{"name": "a", "template": job(command)}]})

    assert set_command("echo 2").returncode == 0  # no status yet: editable
    await patch_status(
        objects, namespace, "frozen", {"phase": "Pending", "steps": [{"name": "a", "phase": "Pending"}]}
    )
    assert set_command("echo 3").returncode == 0  # not started yet: still editable
    await patch_status(objects, namespace, "frozen", started)
    refused = set_command("echo 4")  # a change deep inside the Job template is seen too
    assert refused.returncode != 0
    assert "spec.steps cannot change once the flow has started" in refused.stderr
    refused = edit({"arguments": {"parameters": [{"name": "p", "value": "v"}]}})
    assert refused.returncode != 0
    assert "spec.arguments cannot change once the flow has started" in refused.stderr
    # What stays possible after the start: suspend, policy edits, approvals, status writes.
    assert edit({"suspend": True}).returncode == 0
    assert edit({"executionPolicy": {"ttlSecondsAfterFinished": 60}}).returncode == 0
    kubectl("annotate", "jf", "frozen", "-n", namespace, "approve.workflow.kube-zen.io/a=true")
    await patch_status(objects, namespace, "frozen", {"phase": "Suspended"})
    stored = await get(objects, namespace, "frozen")
    assert stored["spec"]["steps"][0]["template"] == job("echo 3")


async def test_a_stored_flow_past_the_webhooks_string_limits_can_still_have_its_status_written(
    objects: client.CustomObjectsApi, namespace: str
) -> None:
    # Stored before the webhook bounded them (or in the CRD-only mode): a 603-character input JSONPath and
    # a 300-character Secret name. The controller fails the flow as InvalidSpec, a status write the schema
    # must take: spec.steps is atomic, so a bound there is not ratcheted and would refuse every write.
    steps = [
        {"name": "a", "template": job()},
        {
            "name": "b",
            "template": job(),
            "dependencies": ["a"],
            "inputs": {"parameters": [{"name": "v", "valueFrom": {"jsonPath": "a:$" + ".x" * 300}}]},
        },
        {
            "name": "c",
            "template": job(),
            "inputs": {
                "parameters": [{"name": "s", "valueFrom": {"secretKeyRef": {"name": "s" * 300, "key": "k"}}}]
            },
        },
    ]
    await create(objects, flow("long", namespace, steps))
    await patch_status(objects, namespace, "long", {"phase": "Failed"})
    assert (await get(objects, namespace, "long"))["status"]["phase"] == "Failed"


# --- rejections ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "spec", "message"),
    [
        pytest.param(
            [{"name": "ok", "template": job()}, {"name": "a", "type": "Job"}],
            {},
            "a step of type Job needs a template (a batch/v1 Job); for an approval gate use type: Manual"
            " (step a)",
            id="job-without-template",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "dependencies": ["a"]}],
            {},
            "spec.steps: a step cannot depend on itself (step a)",
            id="self-dependency",
        ),
        pytest.param(
            [{"name": "Step_1", "template": job()}], {}, "spec.steps[0].name: Invalid value", id="bad-name"
        ),
        pytest.param(
            [{"name": "a", "type": "Script", "template": job()}],
            {},
            'spec.steps[0].type: Unsupported value: "Script"',
            id="unknown-type",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "retryPolicy": {"limit": -1}}],
            {},
            "spec.steps[0].retryPolicy.limit in body should be greater than or equal to 0",
            id="negative-retry-limit",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "retryPolicy": {"affinity": {"nodeAntiAffinity": {"x": 1}}}}],
            {},
            "spec.steps[0].retryPolicy.affinity.nodeAntiAffinity: Too many: 1: must have at most 0 items",
            id="node-anti-affinity-with-a-field",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "retryPolicy": {"backoff": {"duration": "ten seconds"}}}],
            {},
            "spec.steps[0].retryPolicy.backoff.duration: Invalid value",
            id="bad-duration",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "timeoutSeconds": 0}],
            {},
            "spec.steps[0].timeoutSeconds: Invalid value",
            id="zero-timeout",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {"executionPolicy": {"concurrencyPolicy": "Sometimes"}},
            'spec.executionPolicy.concurrencyPolicy: Unsupported value: "Sometimes"',
            id="unknown-concurrency-policy",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {
                "executionPolicy": {
                    "podFailurePolicy": {
                        "rules": [
                            {
                                "action": "Count",
                                "onExitCodes": {"operator": "In", "values": [1]},
                                "onPodConditions": [{"type": "DisruptionTarget"}],
                            }
                        ]
                    }
                }
            },
            "a podFailurePolicy rule needs exactly one of onExitCodes and onPodConditions",
            id="pod-failure-rule-with-both-matchers",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {
                "executionPolicy": {
                    "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": []}]}
                }
            },
            "a podFailurePolicy rule needs exactly one of onExitCodes and onPodConditions",
            id="pod-failure-rule-without-matcher",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {
                "executionPolicy": {
                    "podFailurePolicy": {"rules": [{"action": "Count", "onExitCodes": {"values": [0]}}]}
                }
            },
            "exit code 0 cannot be used with the In operator",
            id="exit-code-zero-with-in",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {"executionPolicy": {"finallyGraceSeconds": 10}},
            "spec.executionPolicy.finallyGraceSeconds: Invalid value",
            id="finally-grace-without-deadline",
        ),
        pytest.param(
            [{"name": "a", "template": job()}],
            {"executionPolicy": {"activeDeadlineSeconds": 20, "finallyGraceSeconds": 20}},
            "spec.executionPolicy.finallyGraceSeconds: Invalid value: must be less than activeDeadline",
            id="finally-grace-as-long-as-the-deadline",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "retryPolicy": {"backoff": {"duration": "0s"}}}],
            {},
            "must be more than 0s and at most 720h (30 days)",
            id="zero-backoff",
        ),
        pytest.param(
            [{"name": "a", "template": job(), "retryPolicy": {"backoff": {"maxDuration": "721h"}}}],
            {},
            "must be more than 0s and at most 720h (30 days)",
            id="backoff-cap-over-30-days",
        ),
        pytest.param(
            [{"name": "a", "type": "Manual", "template": job()}],
            {},
            "a Manual step takes no template: it is an approval gate and runs nothing (step a)",
            id="manual-with-template",
        ),
        pytest.param(
            [{"name": "ok", "template": job()}, {"name": "gate", "type": "Manual", "finally": True}],
            {},
            "a Manual step cannot be finally: nobody could approve it in time to matter, as every other"
            " step has ended when it is reached (step gate)",
            id="manual-finally",
        ),
        pytest.param(
            [{"name": "report", "finally": True}],
            {},
            "a Manual step cannot be finally",
            id="typeless-gate-finally",
        ),
        pytest.param(
            [
                {"name": "cleanup", "template": job(), "finally": True},
                {"name": "deploy", "template": job(), "dependencies": ["cleanup"]},
            ],
            {},
            "spec.steps: step deploy depends on cleanup, which is a finally step, which runs only after"
            " every step that is not finally has ended, this one included: it can never come first",
            id="step-after-finally",
        ),
        pytest.param(
            [
                {"name": "deploy", "template": job()},
                {"name": "cleanup", "template": job(), "finally": True, "dependencies": ["deploy"]},
            ],
            {},
            "spec.steps: step cleanup depends on deploy, which is not a finally step: a finally step already"
            " runs after every step that is not finally",
            id="finally-after-step",
        ),
        pytest.param(
            [{"name": "gate", "type": "Manual", "matrix": {"parameters": [{"name": "s", "values": ["a"]}]}}],
            {},
            "spec.steps[].matrix: a Manual step is an approval gate and cannot fan out; put the matrix on a"
            " Job step (step gate)",
            id="manual-matrix",
        ),
        pytest.param(
            [
                {
                    "name": "build",
                    "template": job(),
                    "matrix": {"parameters": [{"name": "s", "values": ["a"]}]},
                },
                {"name": "report", "template": job(), "finally": True, "dependencies": ["build-0"]},
            ],
            {},
            "spec.steps: step report depends on build-0, which is not a finally step",
            id="finally-after-item",
        ),
        pytest.param(
            [
                {"name": "a", "template": job()},
                {
                    "name": "clean",
                    "template": job(),
                    "finally": True,
                    "matrix": {"parameters": [{"name": "s", "values": ["a", "b"]}]},
                },
                {"name": "b", "template": job(), "dependencies": ["clean-1"]},
            ],
            {},
            "spec.steps: step b depends on clean-1, which is a finally step",
            id="item-of-finally-first",
        ),
        pytest.param(
            [
                {
                    "name": "child",
                    "type": "Flow",
                    "flow": {"templateRef": {"name": "build"}},
                    "matrix": {"parameters": [{"name": "s", "values": ["a", "b"]}]},
                }
            ],
            {},
            "spec.steps[].matrix: a Flow step cannot fan out (step child)",
            id="flow-matrix",
        ),
        # The schema's patterns are RE2's: `$` is the end of the text, not before a final newline as
        # Python's (the webhook refuses it too: tests/unit/test_validation_newlines.py).
        pytest.param(
            [{"name": "a\n", "template": job()}],
            {},
            "spec.steps[0].name in body should match",
            id="step-name-ending-in-a-newline",
        ),
        pytest.param([], {}, "spec.steps: Invalid value", id="no-steps"),
    ],
)
def test_invalid_flows_are_rejected_with_a_clear_message(
    kubectl: Kubectl,
    namespace: str,
    jobflow_crd: Any,
    steps: list[dict[str, Any]],
    spec: dict[str, Any],
    message: str,
) -> None:
    done = kubectl_create(kubectl, flow("bad", namespace, steps, **spec))
    assert done.returncode != 0
    assert message in done.stderr


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


def test_a_pending_flow_cannot_be_edited_into_a_broken_one(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any
) -> None:
    # The step rules are an admission policy (not CRD rules, which would run on every status write): it
    # checks updates that change spec.steps as it checks creates.
    assert (
        kubectl_create(kubectl, flow("edited", namespace, [{"name": "a", "template": job()}])).returncode == 0
    )
    broken = json.dumps({"spec": {"steps": [{"name": "a", "template": job()}, {"name": "b", "type": "Job"}]}})
    done = kubectl("patch", "jf", "edited", "-n", namespace, "--type=merge", "-p", broken, check=False)
    assert done.returncode != 0
    assert "a step of type Job needs a template" in done.stderr
    assert "(step b)" in done.stderr
    label = kubectl("label", "jf", "edited", "-n", namespace, "team=a", check=False)
    assert label.returncode == 0, label.stderr


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


def test_a_flow_name_longer_than_a_label_value_is_rejected(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any
) -> None:
    done = kubectl_create(kubectl, flow("f" * 64, namespace, [{"name": "a", "template": job()}]))
    assert done.returncode != 0
    assert "a JobFlow name must be at most 63 characters" in done.stderr
    assert (
        kubectl_create(kubectl, flow("f" * 63, namespace, [{"name": "a", "template": job()}])).returncode == 0
    )


def test_a_step_without_type_or_template_is_accepted_as_a_manual_gate(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any
) -> None:
    # The original's rule: no type and no template is a Manual gate, so steps[].type has no default.
    steps: list[dict[str, Any]] = [
        {"name": "gate"},
        {"name": "work", "dependencies": ["gate"], "template": job()},
    ]
    done = kubectl_create(kubectl, flow("gates", namespace, steps))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"phase": "Exploded"}, 'status.phase: Unsupported value: "Exploded"'),
        ({"steps": [{"name": "a", "phase": "Done"}]}, 'status.steps[0].phase: Unsupported value: "Done"'),
        (
            {"conditions": [{"type": "Complete", "status": True}]},
            "status.conditions[0].status: Invalid value",
        ),
        ({"steps": [{"name": "a", "message": "m" * 1025}]}, "status.steps[0].message: Too long"),
    ],
)
async def test_invalid_status_writes_are_rejected(
    objects: client.CustomObjectsApi, namespace: str, status: dict[str, Any], message: str
) -> None:
    await create(objects, flow("st", namespace, [{"name": "a", "template": job()}]))
    with pytest.raises(ApiException) as raised:
        await patch_status(objects, namespace, "st", status)
    assert raised.value.status == 422
    assert message in json.loads(raised.value.body or "{}")["message"]


# S3 keys without the webhook: the CRD refuses the repository's keyPrefix as validation/repository.py does
# (its CEL rules). A step's own key has no bound in the CRD: rules inside the step lists would cost the
# schema's CEL budget many times over, and a new bound there (an atomic list, not ratcheted) would refuse
# every status write of a stored flow holding a longer key; the webhook alone checks its length, bytes and
# segments.
PREFIX_FIELD = "spec.artifactRepository.s3.keyPrefix"


def _stored(prefix: str | None = None, key: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    s3 = {"bucket": "b"} | ({"key": key} if key is not None else {})
    steps = [
        {
            "name": "a",
            "template": job(),
            "outputs": {"artifacts": [{"name": "o", "path": "/out/o", "s3": s3}]},
        }
    ]
    repository = {"bucket": "b"} | ({"keyPrefix": prefix} if prefix is not None else {})
    return steps, {"artifactRepository": {"s3": repository}}


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("team/../x", "no /-separated segment may be '.' or '..'"),
        ("./x", "no /-separated segment may be '.' or '..'"),
        ("team/.", "no /-separated segment may be '.' or '..'"),
        ("team\x07x", "must not hold control characters"),
        ("team\x7f", "must not hold control characters"),
        ("//", "must hold a name (e.g. team-a/artifacts), not only slashes"),
        ("é" * 257, "may not be more than 512 bytes: an S3 key has at most 1024 bytes"),  # 514 bytes
    ],
)
def test_a_bad_repository_key_prefix_is_refused_without_the_webhook_naming_the_field(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any, prefix: str, message: str
) -> None:
    steps, spec = _stored(prefix)
    body = flow("bad-prefix", namespace, steps, **spec)
    assert validate_jobflow(body) != []  # the webhook refuses it too
    done = kubectl_create(kubectl, body)
    assert done.returncode != 0
    assert PREFIX_FIELD in done.stderr
    assert message in done.stderr


@pytest.mark.parametrize("prefix", ["team-a/artifacts", "/x/", "a..b/c.d", "é" * 256])
def test_a_repository_key_prefix_the_webhook_takes_is_admitted(
    kubectl: Kubectl, namespace: str, jobflow_crd: Any, prefix: str
) -> None:
    steps, spec = _stored(prefix)
    body = flow(f"prefix-{len(prefix)}-{prefix.count('/')}", namespace, steps, **spec)
    assert [str(e) for e in validate_jobflow(body)] == []
    done = kubectl_create(kubectl, body)
    assert done.returncode == 0, done.stderr


async def test_a_stored_flow_with_an_s3_key_over_1024_characters_keeps_its_status_writes(
    objects: client.CustomObjectsApi, namespace: str
) -> None:
    # A flow stored before the webhook refused such keys (or where it does not run) must go on running:
    # the schema under spec.steps is never tightened below what it once admitted.
    steps, spec = _stored(key="k" * 1025)
    steps[0]["inputs"] = {"artifacts": [{"name": "i", "s3": {"bucket": "b", "key": "k" * 1025}}]}
    body = flow("long-key", namespace, steps, **spec)
    assert any("s3.key" in str(e) for e in validate_jobflow(body))  # the webhook refuses it
    await create(objects, body)
    await patch_status(objects, namespace, "long-key", {"phase": "Running", "steps": [{"name": "a"}]})
