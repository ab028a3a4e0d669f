"""Flow-level rules: the object, metadata, the step list, names, dependencies, cycles, size, approvals;
the message format and all-errors-at-once."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from validation_samples import (
    ErrorType,
    Flow,
    assert_error,
    assert_valid,
    base_flow,
    errors_of,
    job_step,
    load_yaml,
    make_flow,
    manual_step,
    mutated,
    step,
)

from zen_flow.api.constants import LABEL_CONCURRENCY_KEY
from zen_flow.validation import render, validate_approvals, validate_jobflow
from zen_flow_dev.testing.examples import all_flow_params, project_examples

E = ErrorType


@pytest.mark.parametrize("path", all_flow_params())
def test_the_examples_and_the_original_forms_are_valid(path: Path) -> None:
    assert_valid(load_yaml(path))


def test_the_examples_cover_every_feature_of_the_api() -> None:
    """examples/ is the users' catalogue: each feature of the API appears in at least one example."""
    flows = [load_yaml(p) for p in project_examples()]
    steps = [s for f in flows for s in f["spec"]["steps"]]
    policies = [f["spec"].get("executionPolicy") or {} for f in flows]
    templates = [f["spec"].get("resourceTemplates") or {} for f in flows]

    def is_chain(flow: Flow) -> bool:
        return len(flow["spec"]["steps"]) >= 3 and all(
            s.get("dependencies", []) == ([] if i == 0 else [flow["spec"]["steps"][i - 1]["name"]])
            for i, s in enumerate(flow["spec"]["steps"])
        )

    def is_diamond(flow: Flow) -> bool:
        deps = [s.get("dependencies", []) for s in flow["spec"]["steps"]]
        fan_out = any([d[0] for d in deps if len(d) == 1].count(n) >= 2 for n in {d[0] for d in deps if d})
        return fan_out and any(len(d) >= 2 for d in deps)

    covered = {
        "linear chain": any(is_chain(f) for f in flows),
        "diamond DAG": any(is_diamond(f) for f in flows),
        "retries with backoff": any((s.get("retryPolicy") or {}).get("backoff") for s in steps),
        "step timeout": any("timeoutSeconds" in s for s in steps),
        "flow deadline": any("activeDeadlineSeconds" in p for p in policies),
        "when": any("when" in s for s in steps),
        "continueOnFailure": any(s.get("continueOnFailure") for s in steps),
        "allowFailure": any(s.get("allowFailure") for s in steps),
        "manual approval": any(s.get("type") == "Manual" for s in steps),
        "parameters between steps": any(
            "jsonPath" in (p.get("valueFrom") or {})
            for s in steps
            for p in (s.get("inputs") or {}).get("parameters", [])
        ),
        "output parameters": any((s.get("outputs") or {}).get("parameters") for s in steps),
        "PVC template": any(t.get("volumeClaimTemplates") for t in templates),
        "ConfigMap template": any(t.get("configMapTemplates") for t in templates),
        "concurrency policy": any(p.get("concurrencyPolicy") == "Forbid" for p in policies)
        and any(LABEL_CONCURRENCY_KEY in (f["metadata"].get("labels") or {}) for f in flows),
        "podFailurePolicy": any("podFailurePolicy" in p for p in policies),
        "TTL": any("ttlSecondsAfterFinished" in p for p in policies),
        "finally steps": any(s.get("finally") for s in steps),
        "matrix fan-out": any(s.get("matrix") for s in steps),
        "step locks": any(s.get("synchronization") for s in steps),
        "matrix step locks": any(s.get("synchronization") and s.get("matrix") for s in steps),
        "flow locks": any(f["spec"].get("synchronization") for f in flows),
    }
    assert [feature for feature, shown in covered.items() if not shown] == []


def test_base_flow_is_valid() -> None:
    assert_valid(base_flow())


# --- the object and its metadata ----------------------------------------------------------------------


@pytest.mark.parametrize("obj", [None, [], "flow", 3, True])
def test_something_that_is_not_an_object_is_rejected_without_raising(obj: Any) -> None:
    errors = errors_of(obj)
    assert len(errors) == 1
    assert errors[0].path == ""


def test_api_version_and_kind_must_be_jobflow_when_set() -> None:
    flow = mutated(lambda f: f.update(apiVersion="workflow.kube-zen.io/v1", kind="CronJob"))
    assert_error(flow, "apiVersion", E.NOT_SUPPORTED, '"workflow.kube-zen.io/v1alpha1"')
    assert_error(flow, "kind", E.NOT_SUPPORTED, '"JobFlow"')


def test_api_version_and_kind_may_be_omitted() -> None:
    flow = base_flow()
    del flow["apiVersion"], flow["kind"]
    assert_valid(flow)


def test_metadata_is_required() -> None:
    assert_error(mutated(lambda f: f.pop("metadata")), "metadata", E.REQUIRED)


def test_name_or_generate_name_is_required() -> None:
    assert_error(mutated(lambda f: f["metadata"].pop("name")), "metadata.name", E.REQUIRED)
    only_generate = mutated(lambda f: f["metadata"].update(name=None, generateName="nightly-"))
    assert_valid(only_generate)


@pytest.mark.parametrize("name", ["a", "a" * 63, "etl-2024", "x.y"])
def test_valid_flow_names(name: str) -> None:
    assert_valid(make_flow(job_step("a"), name=name))


def test_flow_name_longer_than_a_label_value_is_rejected_with_the_reason() -> None:
    error = assert_error(make_flow(job_step("a"), name="a" * 64), "metadata.name", E.INVALID)
    assert "must be no more than 63 characters" in str(error)
    assert "workflow.kube-zen.io/flow label" in str(error)


def test_flow_name_must_be_a_dns_subdomain() -> None:
    assert_error(make_flow(job_step("a"), name="Bad_Name"), "metadata.name", E.INVALID, "RFC 1123 subdomain")


def test_generate_name_leaves_room_for_the_random_suffix() -> None:
    ok = mutated(lambda f: f["metadata"].update(name=None, generateName="g" * 58))
    assert_valid(ok)
    long = mutated(lambda f: f["metadata"].update(name=None, generateName="g" * 59))
    assert_error(long, "metadata.generateName", E.INVALID, "no more than 58 characters")


def test_flow_labels_and_annotations_must_be_valid_keys_and_values() -> None:
    flow = mutated(
        lambda f: f["metadata"].update(
            labels={"bad key": "v", "ok": "bad value!"}, annotations={"a/b/c": "x"}
        )
    )
    assert_error(flow, "metadata.labels", E.INVALID, '"bad key"')
    assert_error(flow, "metadata.labels[ok]", E.INVALID, '"bad value!"')
    assert_error(flow, "metadata.annotations", E.INVALID, '"a/b/c"')


# --- the step list ------------------------------------------------------------------------------------


def test_spec_is_required() -> None:
    assert_error(mutated(lambda f: f.pop("spec")), "spec", E.REQUIRED)


@pytest.mark.parametrize(
    ("steps", "kind"),
    [(None, E.REQUIRED), ([], E.REQUIRED), ("a", E.INVALID), ({"name": "a"}, E.INVALID)],
    ids=["missing", "empty", "string", "object"],
)
def test_at_least_one_step_in_a_list(steps: Any, kind: ErrorType) -> None:
    assert_error(mutated(lambda f: f["spec"].update(steps=steps)), "spec.steps", kind)


def test_at_most_500_steps() -> None:
    assert_valid(make_flow(*(job_step(f"s{i}") for i in range(500))))
    flow = make_flow(*(job_step(f"s{i}") for i in range(501)))
    error = assert_error(flow, "spec.steps", E.TOO_MANY)
    assert str(error) == "spec.steps: Too many: 501: must have at most 500 items"


def test_a_step_must_be_an_object() -> None:
    flow = mutated(lambda f: f["spec"]["steps"].append("e"))
    assert_error(flow, "spec.steps[5]", E.INVALID, "must be an object")


def test_suspend_is_a_boolean() -> None:
    assert_valid(mutated(lambda f: f["spec"].update(suspend=True)))
    assert_error(mutated(lambda f: f["spec"].update(suspend="yes")), "spec.suspend", E.INVALID)


def test_a_spec_too_large_for_etcd_is_rejected_with_limit_and_size() -> None:
    big = "x" * (1024 * 1024)
    flow = mutated(lambda f: step(f, "a").update(message=None, metadata={"annotations": {"blob": big}}))
    error = assert_error(flow, "spec", E.TOO_LONG)
    assert "may not be more than 1048576 bytes" in str(error)
    assert "the serialized spec is 10" in str(error)


def _outputs(count: int) -> dict[str, Any]:
    return {"parameters": [{"name": f"p{i}", "valueFrom": {"jsonPath": "$.succeeded"}} for i in range(count)]}


def test_a_flow_whose_status_could_outgrow_etcd_is_rejected_at_admission() -> None:
    """The hostile-input probe: 100 steps x 60 output parameters passed and then hung with every status
    write refused. Both the per-step cap and the whole-object bound speak now."""
    chain = [job_step("s0", outputs=_outputs(60))] + [
        job_step(f"s{i}", f"s{i - 1}", outputs=_outputs(60)) for i in range(1, 100)
    ]
    errors = errors_of(make_flow(*chain))
    assert (
        "spec.steps[0].outputs.parameters: Too many: 60: must have at most 32 items: "
        "each value is stored in the flow's status, which must fit in etcd"
    ) in [str(e) for e in errors]
    (size,) = [e for e in errors if e.path == "spec"]
    assert "its status can grow to" in str(size)
    assert "over the 1,400,000 that fit in etcd" in str(size)


def test_big_flows_that_fit_are_admitted() -> None:
    chain = [job_step("s0")] + [job_step(f"s{i}", f"s{i - 1}") for i in range(1, 500)]
    assert_valid(make_flow(*chain))  # the largest flow, without outputs
    with_outputs = [job_step("s0", outputs=_outputs(1))] + [
        job_step(f"s{i}", f"s{i - 1}", outputs=_outputs(1)) for i in range(1, 500)
    ]
    assert_valid(make_flow(*with_outputs))  # one output parameter per step still fits
    wide = [job_step("s0", outputs=_outputs(32))] + [
        job_step(f"s{i}", "s0", outputs=_outputs(32)) for i in range(1, 25)
    ]
    assert_valid(make_flow(*wide))


# --- step names ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a", "step-1", "0", "a" * 63])
def test_valid_step_names(name: str) -> None:
    assert_valid(make_flow(job_step(name)))


@pytest.mark.parametrize(
    ("name", "kind", "text"),
    [
        (None, E.REQUIRED, ""),
        ("", E.REQUIRED, ""),
        ("Bad_Name", E.INVALID, "a lowercase RFC 1123 label must consist of"),
        (" a", E.INVALID, "RFC 1123 label"),
        ("a ", E.INVALID, "RFC 1123 label"),
        ("a.b", E.INVALID, "RFC 1123 label"),
        ("-a", E.INVALID, "RFC 1123 label"),
        ("a" * 64, E.INVALID, "must be no more than 63 characters"),
        (7, E.INVALID, "must be a string"),
    ],
)
def test_invalid_step_names(name: Any, kind: ErrorType, text: str) -> None:
    assert_error(
        make_flow({"name": name, "template": base_flow()["spec"]["steps"][0]["template"]}),
        "spec.steps[0].name",
        kind,
        text,
    )


def test_step_name_message_matches_kubernetes() -> None:
    errors = errors_of(make_flow(job_step("Bad_Name")))
    assert str(errors[0]) == (
        'spec.steps[0].name: Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of '
        "lower case "
        "alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. "
        "'my-name', or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    )


def test_duplicate_step_names() -> None:
    flow = make_flow(job_step("a"), job_step("b"), job_step("a"))
    error = assert_error(flow, "spec.steps[2].name", E.DUPLICATE)
    assert str(error) == 'spec.steps[2].name: Duplicate value: "a"'


# --- dependencies and cycles ---------------------------------------------------------------------------


def test_dependency_on_a_missing_step() -> None:
    flow = make_flow(job_step("a"), job_step("b", "a", "zzz"))
    error = assert_error(flow, "spec.steps[1].dependencies[1]", E.NOT_FOUND)
    assert str(error) == 'spec.steps[1].dependencies[1]: Not found: "zzz"'


@pytest.mark.parametrize(
    ("deps", "path", "kind"),
    [
        ("a", "spec.steps[1].dependencies", E.INVALID),
        ([1], "spec.steps[1].dependencies[0]", E.INVALID),
        ([""], "spec.steps[1].dependencies[0]", E.INVALID),
    ],
    ids=["string", "number", "empty"],
)
def test_malformed_dependencies(deps: Any, path: str, kind: ErrorType) -> None:
    assert_error(make_flow(job_step("a"), job_step("b", dependencies=deps)), path, kind)


def test_a_dependency_may_be_listed_twice() -> None:
    assert_valid(make_flow(job_step("a"), job_step("b", "a", "a")))


def test_a_cycle_is_named() -> None:
    flow = make_flow(job_step("a", "c"), job_step("b", "a"), job_step("c", "b"))
    error = assert_error(flow, "spec.steps[0].dependencies", E.INVALID)
    assert '"a -> c -> b -> a"' in str(error)
    assert "cycle" in str(error)


def test_a_self_dependency_is_a_cycle() -> None:
    assert_error(make_flow(job_step("a", "a")), "spec.steps[0].dependencies", E.INVALID, '"a -> a"')


def test_a_long_chain_has_no_cycle_and_no_recursion_limit() -> None:
    steps = [job_step("s0")] + [job_step(f"s{i}", f"s{i - 1}") for i in range(1, 500)]
    assert_valid(make_flow(*steps))


# --- approval annotations ------------------------------------------------------------------------------


def approvals_of(flow: Flow) -> list[str]:
    return [str(e) for e in validate_approvals(flow)]


def test_approval_annotations_must_name_a_manual_step() -> None:
    ok = mutated(lambda f: f["metadata"].update(annotations={"approve.workflow.kube-zen.io/gate": "true"}))
    assert approvals_of(ok) == []
    typo = mutated(lambda f: f["metadata"].update(annotations={"approve.workflow.kube-zen.io/gat": "true"}))
    assert approvals_of(typo) == [
        'metadata.annotations[approve.workflow.kube-zen.io/gat]: Not found: "gat": '
        "this flow has no step of that name"
    ]
    job = mutated(lambda f: f["metadata"].update(annotations={"reject.workflow.kube-zen.io/a": "true"}))
    assert approvals_of(job) == [
        'metadata.annotations[reject.workflow.kube-zen.io/a]: Invalid value: "a": '
        "only Manual steps are approved or rejected"
    ]


def test_a_stray_approval_never_makes_the_flow_definition_invalid() -> None:
    # the controller re-validates running flows with validate_jobflow: an annotation must not fail them
    typo = mutated(lambda f: f["metadata"].update(annotations={"approve.workflow.kube-zen.io/zzz": "true"}))
    assert_valid(typo)


def test_implicit_manual_step_can_be_approved() -> None:
    flow = make_flow({"name": "gate"}, job_step("b", "gate"))
    flow["metadata"]["annotations"] = {"approve.workflow.kube-zen.io/gate": "true"}
    assert approvals_of(flow) == []


@pytest.mark.parametrize(
    "obj", [None, [], {"metadata": {"annotations": "x"}}, {"metadata": {"annotations": {1: 2}}}]
)
def test_approval_check_never_raises(obj: Any) -> None:
    assert validate_approvals(obj) == []


# --- reporting -----------------------------------------------------------------------------------------


def broken_everywhere() -> Flow:
    flow = base_flow()
    flow["metadata"]["name"] = "Bad_Flow"
    flow["spec"]["executionPolicy"] = {"concurrencyPolicy": "Sometimes"}
    step(flow, "b")["dependencies"] = ["zzz"]
    step(flow, "c")["timeoutSeconds"] = 0
    step(flow, "d")["name"] = "D"
    flow["spec"]["steps"].append(manual_step("e", template={"spec": {}}))
    return flow


def test_all_errors_are_reported_at_once() -> None:
    lines = render(errors_of(broken_everywhere())).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "metadata.name",
        "spec.executionPolicy.concurrencyPolicy",
        "spec.steps[4].name",
        "spec.steps[1].dependencies[0]",
        "spec.steps[3].timeoutSeconds",
        "spec.steps[5].template",
    ]


def test_message_lines_follow_kubernetes_field_error_style() -> None:
    lines = render(errors_of(broken_everywhere())).splitlines()
    assert (
        'spec.executionPolicy.concurrencyPolicy: Unsupported value: "Sometimes": '
        'supported values: "Allow", "Forbid", "Replace"' in lines
    )
    assert "spec.steps[3].timeoutSeconds: Invalid value: 0: must be greater than 0" in lines
    assert (
        "spec.steps[5].template: Forbidden: Manual steps take no template: "
        "a Manual step is an approval gate and runs nothing" in lines
    )


def test_validation_does_not_modify_its_input() -> None:
    flow = broken_everywhere()
    before = copy.deepcopy(flow)
    validate_jobflow(flow)
    assert flow == before


def test_huge_values_are_truncated_in_messages() -> None:
    flow = make_flow(job_step("a", timeoutSeconds="9" * 10_000))
    (error,) = errors_of(flow)
    assert len(str(error)) < 400
    assert "...(truncated)" in str(error)
