"""The step and parameter admission policies (config/crd/admission-policies.yaml), evaluated with the CEL
library: what they refuse without the webhook, said in the validator's words. The apiserver runs them in
tests/integration/test_crd_validation.py, test_crd_value_sources.py and test_crd_updates.py; here every
case is cheap to try."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cel
import pytest
import yaml

from zen_flow.api import constants
from zen_flow.validation import validate_jobflow, validate_update
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template, manual_step

POLICIES = Path(__file__).parents[2] / "config" / "crd" / "admission-policies.yaml"
MATRIX = {"parameters": [{"name": "shard", "values": ["a", "b"]}]}


def policies() -> list[dict[str, Any]]:
    """The specs of the policies that check a flow's steps on CREATE: what each step must be, and where its
    parameters' values come from."""
    docs = yaml.safe_load_all(POLICIES.read_text())
    names = (f"jobflow-steps.{constants.GROUP}", f"jobflow-parameters.{constants.GROUP}")
    found = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy" and d["metadata"]["name"] in names]
    assert len(found) == len(names)
    return [d["spec"] for d in found]


def refusals(flow: dict[str, Any]) -> list[str]:
    """The messages of the policies' validations that refuse `flow` on CREATE."""
    context: dict[str, Any] = {"object": flow, "oldObject": None, "request": {"operation": "CREATE"}}
    said = []
    for policy in policies():
        variables: dict[str, Any] = {}
        for variable in policy["variables"]:
            variables[variable["name"]] = cel.evaluate(
                variable["expression"], {**context, "variables": variables}
            )
        said += [
            cel.evaluate(v["messageExpression"], {**context, "variables": variables})
            for v in policy["validations"]
            if not cel.evaluate(v["expression"], {**context, "variables": variables})
        ]
    return said


def finally_step(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    return {**job_step(name, *deps, **fields), "finally": True}


REFUSED = {
    "a finally step depending on an item of a main matrix step": (
        [job_step("build", matrix=MATRIX), finally_step("report", "build-0")],
        "step report depends on build-0, which " + constants.FINALLY_CROSSING[True],
    ),
    "a main step depending on an item of a finally matrix step": (
        [job_step("a"), finally_step("clean", matrix=MATRIX), job_step("b", "clean-1")],
        "step b depends on clean-1, which " + constants.FINALLY_CROSSING[False],
    ),
}


@pytest.mark.parametrize(("steps", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_the_policy_refuses_what_the_webhook_refuses_of_a_matrix(
    steps: list[dict[str, Any]], message: str
) -> None:
    flow = flow_manifest("f", "default", steps)
    assert validate_jobflow(flow)  # the webhook refuses it
    (said,) = refusals(flow)
    assert said.startswith("spec.steps: ")
    assert message in " ".join(said.split())


def flow_step(name: str, *deps: str, **fields: Any) -> dict[str, Any]:
    step = {"name": name, "type": "Flow", "flow": {"templateRef": {"name": "build"}}, **fields}
    return {**step, "dependencies": list(deps)} if deps else step


# name: (steps, the index of the Manual or Flow step with a matrix, the webhook's words)
MATRIX_FIELD_REFUSED = {
    "a Manual step with a matrix": (
        [job_step("a"), manual_step("gate", "a", matrix=MATRIX)],
        1,
        constants.MANUAL_MATRIX,
    ),
    "a step with neither type nor template (a Manual gate) with a matrix": (
        [{"name": "gate", "matrix": MATRIX}],
        0,
        constants.MANUAL_MATRIX,
    ),
    "a Flow step with a matrix": ([flow_step("child", matrix=MATRIX)], 0, constants.FLOW_MATRIX),
    "a Flow step with a matrix after a Job step with one": (
        [job_step("a", matrix=MATRIX), flow_step("child", "a", matrix=MATRIX)],
        1,
        constants.FLOW_MATRIX,
    ),
}


@pytest.mark.parametrize(
    ("steps", "index", "words"), MATRIX_FIELD_REFUSED.values(), ids=MATRIX_FIELD_REFUSED.keys()
)
def test_the_policy_refuses_a_matrix_on_a_manual_or_flow_step_naming_the_field_as_the_webhook_does(
    steps: list[dict[str, Any]], index: int, words: str
) -> None:
    flow = flow_manifest("f", "default", steps)
    # The webhook's field and words, and nothing else.
    assert [str(e) for e in validate_jobflow(flow)] == [f"spec.steps[{index}].matrix: Forbidden: {words}"]
    said = [" ".join(s.split()) for s in refusals(flow)]
    assert said == [f"spec.steps[].matrix: {words} (step {steps[index]['name']})"]


ADMITTED = {
    "a main step depending on an item": [job_step("build", matrix=MATRIX), job_step("pub", "build-1")],
    "a Flow step depending on a matrix Job step": [job_step("a", matrix=MATRIX), flow_step("child", "a")],
    "a finally step depending on an item of a finally matrix step": [
        job_step("a"),
        finally_step("clean", matrix=MATRIX),
        finally_step("report", "clean-0"),
    ],
    "a finally matrix step depending on a finally step": [
        job_step("a"),
        finally_step("c"),
        finally_step("clean", "c", matrix=MATRIX),
    ],
    "a step whose name looks like an item of another side's matrix step": [
        job_step("build", matrix=MATRIX),
        finally_step("build-x"),
        finally_step("report", "build-x"),
    ],
}


@pytest.mark.parametrize("steps", ADMITTED.values(), ids=ADMITTED.keys())
def test_the_policy_admits_what_the_webhook_admits_of_a_matrix(steps: list[dict[str, Any]]) -> None:
    flow = flow_manifest("f", "default", steps)
    assert not validate_jobflow(flow)
    assert refusals(flow) == []


# --- where values come from: output and input parameters' sources --------------------------------------


def out(name: str, **source: Any) -> dict[str, Any]:
    return {"outputs": {"parameters": [{"name": name, "valueFrom": source}]}}


def takes(**param: Any) -> dict[str, Any]:
    return {"inputs": {"parameters": [{"name": "v", **param}]}}


OUTPUT = "spec.steps[].outputs.parameters[].valueFrom"
INPUT = "spec.steps[].inputs.parameters[]"
GATE_VALUE = {"supplied": {"default": "x", "enum": ["a", "b"]}}
TWO_CONTAINERS = job_template()
TWO_CONTAINERS["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})

# name: (steps, the webhook's field, the policy's field and the item it names)
SOURCES_REFUSED: dict[str, tuple[list[dict[str, Any]], str, str]] = {
    "a Job step's output supplied at an approval": (
        [job_step("a", **out("v", supplied={}))],
        "spec.steps[0].outputs.parameters[0].valueFrom.supplied",
        f"{OUTPUT}.supplied: only a Manual step's outputs are supplied at its approval",
    ),
    "a Manual step's output read from a Job": (
        [manual_step("gate", **out("v", jsonPath="$.succeeded"))],
        "spec.steps[0].outputs.parameters[0].valueFrom.jsonPath",
        f"{OUTPUT}: a Manual step runs no Job",
    ),
    "an output read from another step's Job": (
        [job_step("a"), job_step("b", "a", **out("v", jsonPath="a:$.succeeded"))],
        "spec.steps[1].outputs.parameters[0].valueFrom.jsonPath",
        f"{OUTPUT}.jsonPath: an output reads this step's own Job",
    ),
    "an output JSONPath with a wildcard": (
        [job_step("a", **out("v", jsonPath="$.conditions[*].type"))],
        "spec.steps[0].outputs.parameters[0].valueFrom.jsonPath",
        f"{OUTPUT}.jsonPath: unsupported JSONPath",
    ),
    "an output JSONPath without $": (
        [job_step("a", **out("v", jsonPath="a:succeeded"))],
        "spec.steps[0].outputs.parameters[0].valueFrom.jsonPath",
        f"{OUTPUT}.jsonPath: unsupported JSONPath",
    ),
    "a termination message key with a space": (
        [job_step("a", **out("v", terminationMessage={"key": "a b"}))],
        "spec.steps[0].outputs.parameters[0].valueFrom.terminationMessage.key",
        f"{OUTPUT}.terminationMessage.key: must consist of letters, digits",
    ),
    "a termination message key ending in a newline": (
        [job_step("a", **out("v", terminationMessage={"key": "digest\n"}))],
        "spec.steps[0].outputs.parameters[0].valueFrom.terminationMessage.key",
        f"{OUTPUT}.terminationMessage.key: must consist of letters, digits",
    ),
    "a termination message of a container the template lacks": (
        [job_step("a", **out("v", terminationMessage={"container": "sidecar"}))],
        "spec.steps[0].outputs.parameters[0].valueFrom.terminationMessage.container",
        f"{OUTPUT}.terminationMessage.container: must name one of the Job template's containers",
    ),
    "a termination message of one of two containers, unnamed": (
        [job_step("a", template=TWO_CONTAINERS, **out("v", terminationMessage={}))],
        "spec.steps[0].outputs.parameters[0].valueFrom.terminationMessage.container",
        f"{OUTPUT}.terminationMessage.container: must name one of the Job template's containers",
    ),
    "a gate's default that its enum does not allow": (
        [manual_step("gate", **out("v", **GATE_VALUE))],
        "spec.steps[0].outputs.parameters[0].valueFrom.supplied.default",
        f"{OUTPUT}.supplied.default: the default must be one of enum",
    ),
    "an input with a value and a valueFrom": (
        [job_step("a", **takes(value="1", valueFrom={"argument": "x"}))],
        "spec.steps[0].inputs.parameters[0].valueFrom",
        f"{INPUT}.valueFrom: may not be specified together with value",
    ),
    "an input with neither": (
        [job_step("a", **takes())],
        "spec.steps[0].inputs.parameters[0].value",
        f"{INPUT}.value: set exactly one of value and valueFrom",
    ),
    "an input valueFrom with two sources": (
        [
            job_step("a"),
            job_step("b", "a", **takes(valueFrom={"jsonPath": "a:$.succeeded", "argument": "x"})),
        ],
        "spec.steps[1].inputs.parameters[0].valueFrom.argument",
        f"{INPUT}.valueFrom: set exactly one of jsonPath, argument",
    ),
    "an input valueFrom with none": (
        [job_step("a", **takes(valueFrom={}))],
        "spec.steps[0].inputs.parameters[0].valueFrom",
        f"{INPUT}.valueFrom: set exactly one of jsonPath, argument",
    ),
    "an input JSONPath naming no step": (
        [job_step("a"), job_step("b", "a", **takes(valueFrom={"jsonPath": "$.succeeded"}))],
        "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath",
        f"{INPUT}.valueFrom.jsonPath: must name the step it reads and a JSONPath",
    ),
    "an input JSONPath with a filter": (
        [job_step("a"), job_step("b", "a", **takes(valueFrom={"jsonPath": "a:$.items[?(@.x)]"}))],
        "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath",
        f"{INPUT}.valueFrom.jsonPath: must name the step it reads and a JSONPath",
    ),
    "an input JSONPath index of more digits than any list has": (
        [job_step("a"), job_step("b", "a", **takes(valueFrom={"jsonPath": "a:$[" + "1" * 4301 + "]"}))],
        "spec.steps[1].inputs.parameters[0].valueFrom.jsonPath",
        f"{INPUT}.valueFrom.jsonPath: must name the step it reads and a JSONPath",
    ),
    "an output JSONPath index of 19 digits": (
        [job_step("a", **out("v", jsonPath="$.items[" + "9" * 19 + "]"))],
        "spec.steps[0].outputs.parameters[0].valueFrom.jsonPath",
        f"{OUTPUT}.jsonPath: unsupported JSONPath",
    ),
    "an input naming an argument the flow does not declare": (
        [job_step("a", **takes(valueFrom={"argument": "nope"}))],
        "spec.steps[0].inputs.parameters[0].valueFrom.argument",
        f"{INPUT}.valueFrom.argument: spec.arguments.parameters has no such name",
    ),
}


@pytest.mark.parametrize(("steps", "field", "said"), SOURCES_REFUSED.values(), ids=SOURCES_REFUSED.keys())
def test_the_policy_refuses_a_bad_value_source_naming_its_field_and_item(
    steps: list[dict[str, Any]], field: str, said: str
) -> None:
    flow = flow_manifest("f", "default", steps)
    assert field in [e.path for e in validate_jobflow(flow)]  # the webhook refuses it, at that field
    (message,) = refusals(flow)
    message = " ".join(message.split())
    assert message.startswith(said), message
    name = steps[-1]["name"]
    kind = "input" if "inputs" in said else "output"
    assert message.endswith(f"(step {name}, {kind} parameter v)"), message


SOURCES_ADMITTED = {
    "outputs read every way the webhook takes": [
        job_step(
            "a",
            outputs={
                "parameters": [
                    {"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}},
                    {"name": "own", "valueFrom": {"jsonPath": "a:$.status['completionTime']"}},
                    {"name": "q", "valueFrom": {"jsonPath": '$["x y"][0].z-1[-1]'}},
                    {"name": "m", "valueFrom": {"terminationMessage": {"key": "digest.sha_256-x"}}},
                    {"name": "whole", "valueFrom": {"terminationMessage": {}}},
                ]
            },
        ),
        job_step(
            "two",
            template=TWO_CONTAINERS,
            outputs={
                "parameters": [{"name": "s", "valueFrom": {"terminationMessage": {"container": "sidecar"}}}]
            },
        ),
        manual_step(
            "gate",
            "a",
            outputs={
                "parameters": [{"name": "g", "valueFrom": {"supplied": {"default": "a", "enum": ["a"]}}}]
            },
        ),
    ],
    "inputs from each source": [
        job_step("a", outputs={"parameters": [{"name": "n", "valueFrom": {"jsonPath": "$.succeeded"}}]}),
        job_step(
            "b",
            "a",
            inputs={
                "parameters": [
                    {"name": "lit", "value": ""},
                    {"name": "out", "valueFrom": {"jsonPath": "a:$.outputs.parameters.n"}},
                    {"name": "job", "valueFrom": {"jsonPath": "a:$['succeeded']"}},
                    {"name": "arg", "valueFrom": {"argument": "env"}},
                    {"name": "cm", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
                    {"name": "sec", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
                ]
            },
        ),
    ],
}


@pytest.mark.parametrize("steps", SOURCES_ADMITTED.values(), ids=SOURCES_ADMITTED.keys())
def test_the_policy_admits_the_value_sources_the_webhook_admits(steps: list[dict[str, Any]]) -> None:
    flow = flow_manifest("f", "default", steps, arguments={"parameters": [{"name": "env", "value": "x"}]})
    assert not validate_jobflow(flow)
    assert refusals(flow) == []


EXAMPLES = sorted((Path(__file__).parents[2] / "examples").rglob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(p.parents[1])))
def test_the_policy_admits_every_example_flow(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict) and doc.get("kind") == "JobFlow" and "steps" in (doc.get("spec") or {}):
            assert refusals(doc) == [], path


def immutable_refusals(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The messages of the spec-immutability policy's validations that refuse the UPDATE `old` -> `new`."""
    docs = yaml.safe_load_all(POLICIES.read_text())
    (policy,) = [
        d["spec"]
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicy"
        and d["metadata"]["name"] == f"jobflow-spec-immutable.{constants.GROUP}"
    ]
    context: dict[str, Any] = {"object": new, "oldObject": old, "request": {"operation": "UPDATE"}}
    variables: dict[str, Any] = {}
    for variable in policy["variables"]:
        variables[variable["name"]] = cel.evaluate(
            variable["expression"], {**context, "variables": variables}
        )
    return [
        " ".join(v["message"].split())
        for v in policy["validations"]
        if not cel.evaluate(v["expression"], {**context, "variables": variables})
    ]


@pytest.mark.parametrize("phase", ["Running", "Pending"])
def test_the_flows_own_locks_cannot_change_once_it_started_as_the_validator_says(phase: str) -> None:
    old = flow_manifest("f", "ns", [job_step("a")], synchronization={"mutexes": [{"name": "db"}]})
    old["status"] = {"phase": phase}
    for new_locks in ({"mutexes": [{"name": "other"}]}, None):
        new = {**old, "spec": {k: v for k, v in old["spec"].items() if k != "synchronization"}}
        if new_locks is not None:
            new["spec"]["synchronization"] = new_locks
        refused = immutable_refusals(old, new)
        if phase == "Running":
            assert refused == [
                "spec.synchronization cannot change once the flow has started (it took its locks then, "
                "and holds them until it ends); create a new JobFlow instead"
            ]
        else:
            assert refused == []
    assert immutable_refusals(old, old) == []


@pytest.mark.parametrize("phase", ["Running", "Pending"])
@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"s3": {"bucket": "flows"}}, {"s3": {"bucket": "other"}}),
        ({"s3": {"bucket": "flows"}}, None),
        (None, {"s3": {"bucket": "flows"}}),
        ({"s3": {"bucket": "flows"}}, {"s3": {"bucket": "flows"}}),
    ],
)
def test_the_artifact_repository_cannot_change_once_the_flow_started_as_the_validator_says(
    phase: str, before: dict[str, Any] | None, after: dict[str, Any] | None
) -> None:
    def manifest(repository: dict[str, Any] | None) -> dict[str, Any]:
        extra = {"artifactRepository": repository} if repository is not None else {}
        flow = flow_manifest("f", "ns", [job_step("a")], **extra)
        flow["status"] = {"phase": phase}
        return flow

    old, new = manifest(before), manifest(after)
    refused = immutable_refusals(old, new)
    validator = [str(e) for e in validate_update(old, new) if "artifactRepository" in e.path]
    changed = before != after and phase == "Running"
    assert bool(refused) == bool(validator) == changed, (refused, validator)
    if changed:
        assert refused == [
            "spec.artifactRepository cannot change once the flow has started (its outputs stored "
            "there are fetched from there by later steps); create a new JobFlow instead"
        ]


NIGHT = "2026-12-07T02:30:00Z"


@pytest.mark.parametrize("phase", ["Running", "Pending"])
@pytest.mark.parametrize(
    ("before", "after"),
    [(NIGHT, "2026-12-08T02:30:00Z"), (NIGHT, None), (None, NIGHT), (NIGHT, NIGHT), (None, None)],
)
def test_the_scheduled_time_cannot_change_once_the_flow_started_as_the_validator_says(
    phase: str, before: str | None, after: str | None
) -> None:
    # Without the webhook too: the first Jobs rendered it as {{.JobFlow.ScheduledTime}}, and a memoized
    # step's result would be stored under another night's key than the one its Job ran for.
    def manifest(night: str | None) -> dict[str, Any]:
        annotations = {"note": "x"} | ({constants.ANNOTATION_SCHEDULED_TIME: night} if night else {})
        flow = flow_manifest("f", "ns", [job_step("a")], annotations=annotations)
        flow["status"] = {"phase": phase}
        return flow

    old, new = manifest(before), manifest(after)
    refused = immutable_refusals(old, new)
    validator = [str(e) for e in validate_update(old, new) if constants.ANNOTATION_SCHEDULED_TIME in e.path]
    changed = before != after and phase == "Running"
    assert bool(refused) == bool(validator) == changed, (refused, validator)
    if changed:
        assert refused == [
            f"metadata.annotations[{constants.ANNOTATION_SCHEDULED_TIME}] cannot change once the flow has "
            "started (its Jobs render it as {{.JobFlow.ScheduledTime}}); create a new JobFlow instead"
        ]
    # A flow with no annotations at all (no metadata.annotations) is no change either.
    bare = {**old, "metadata": {"name": "f", "namespace": "ns"}}
    assert immutable_refusals(bare, bare) == []
