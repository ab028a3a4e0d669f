"""JobFlowTemplates: a flow naming one is expanded (validation/expansion.py) into the flow it stores, and a
template is checked with the JobFlow rules (validation/flow_template.py)."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.cli.validate import validate_paths
from zen_flow.validation import (
    validate_clusterjobflowtemplate,
    validate_cronjobflow,
    validate_jobflow,
    validate_jobflowtemplate,
    validate_update,
)
from zen_flow.validation.expansion import expand, flow_shape, merge_policy, missing_template, template_ref

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "templates"
CLUSTER_EXAMPLES = REPO / "examples" / "cluster-templates"
API = "workflow.kube-zen.io/v1alpha1"
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "Never"}}
    },
}


def template(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": API,
        "kind": "JobFlowTemplate",
        "metadata": {"name": "build", "namespace": "team-a"},
        "spec": {
            "steps": [{"name": "compile", "template": JOB}],
            "arguments": {
                "parameters": [
                    {"name": "env", "value": "dev", "enum": ["dev", "prod"]},
                    {"name": "ref", "value": "main", "description": "the git ref"},
                ]
            },
            "executionPolicy": {"backoffLimit": 2, "concurrencyPolicy": "Allow", "parallelism": 3},
        },
    }
    base["spec"].update(spec)
    return base


def flow_spec(**spec: Any) -> dict[str, Any]:
    return {"templateRef": {"name": "build"}, **spec}


def args(**values: str) -> dict[str, Any]:
    return {"parameters": [{"name": k, "value": v} for k, v in values.items()]}


def as_flow(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "JobFlow",
        "metadata": {"name": "f", "namespace": "team-a"},
        "spec": spec,
    }


def errors_of(spec: dict[str, Any], tpl: dict[str, Any] | None = None) -> list[str]:
    return [str(e) for e in expand(spec, tpl or template(), "team-a").errors]


# --- expansion -------------------------------------------------------------------------------------------


def test_the_flow_gets_the_templates_definition_with_its_own_values() -> None:
    expansion = expand(flow_spec(arguments=args(env="prod"), suspend=True), template(), "team-a")
    assert expansion.errors == ()
    spec = expansion.spec
    assert spec is not None
    assert spec["steps"] == template()["spec"]["steps"]
    assert spec["arguments"]["parameters"] == [
        {"name": "env", "value": "prod", "enum": ["dev", "prod"]},  # the flow's value, the template's enum
        {"name": "ref", "value": "main", "description": "the git ref"},  # not set: the template's default
    ]
    assert "templateRef" not in spec  # the flow's label records it
    assert spec["suspend"] is True
    assert validate_jobflow(as_flow(spec)) == []


def test_an_undeclared_argument_is_refused_naming_it() -> None:
    assert errors_of(flow_spec(arguments=args(env="dev", colour="red"))) == [
        'spec.arguments.parameters[1].name: Not found: "colour": JobFlowTemplate "build" declares no such '
        "argument (it declares: env, ref)"
    ]


def test_a_value_outside_the_templates_enum_is_refused() -> None:
    assert errors_of(flow_spec(arguments=args(env="staging"))) == [
        'spec.arguments.parameters[0].value: Unsupported value: "staging": supported values: "dev", "prod"; '
        'the enum of JobFlowTemplate "build"'
    ]


def test_a_flow_may_not_redeclare_an_argument() -> None:
    spec = flow_spec(arguments={"parameters": [{"name": "env", "value": "dev", "enum": ["dev"]}]})
    assert errors_of(spec) == [
        'spec.arguments.parameters[0].enum: Forbidden: the argument is declared by JobFlowTemplate "build"; '
        "a flow sets its value"
    ]


def test_the_flows_policy_fields_replace_the_templates_one_by_one() -> None:
    spec = flow_spec(executionPolicy={"parallelism": 1, "activeDeadlineSeconds": 60})
    expanded = expand(spec, template(), "team-a").spec
    assert expanded is not None
    assert expanded["executionPolicy"] == {
        "backoffLimit": 2,
        "concurrencyPolicy": "Allow",
        "parallelism": 1,
        "activeDeadlineSeconds": 60,
    }


def test_the_finally_grace_comes_from_the_template_or_the_flow_and_is_checked_merged() -> None:
    tpl = template(executionPolicy={"activeDeadlineSeconds": 3600, "finallyGraceSeconds": 300})
    kept = expand(flow_spec(), tpl, "team-a").spec
    assert kept is not None
    assert kept["executionPolicy"] == {"activeDeadlineSeconds": 3600, "finallyGraceSeconds": 300}
    own = expand(flow_spec(executionPolicy={"finallyGraceSeconds": 600}), tpl, "team-a").spec
    assert own is not None
    assert own["executionPolicy"]["finallyGraceSeconds"] == 600
    # A flow's shorter deadline under the template's grace: the merged policy is what is refused.
    short = expand(flow_spec(executionPolicy={"activeDeadlineSeconds": 300}), tpl, "team-a").spec
    assert short is not None
    assert [str(e) for e in validate_jobflow(as_flow(short))] == [
        "spec.executionPolicy.finallyGraceSeconds: Invalid value: 300: must be less than "
        "activeDeadlineSeconds: it is the last seconds of the flow's deadline, kept for its finally steps"
    ]


def test_a_flow_naming_a_template_may_set_a_grace_the_templates_deadline_bounds() -> None:
    # Unexpanded, the flow's policy is only a part of the one it runs with: a grace without a deadline of
    # its own is admitted (without the mutating webhook, by the validating one and the CRD alike; a
    # CronJobFlow's template too), and the expansion checks the merged policy, naming the field.
    spec = flow_spec(executionPolicy={"finallyGraceSeconds": 600})
    assert validate_jobflow(as_flow(spec)) == []
    cron = {
        "apiVersion": API,
        "kind": "CronJobFlow",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 2 * * *", "jobFlowTemplate": {"spec": copy.deepcopy(spec)}},
    }
    assert validate_cronjobflow(cron) == []
    long = expand(spec, template(executionPolicy={"activeDeadlineSeconds": 3600}), "team-a").spec
    assert long is not None
    assert validate_jobflow(as_flow(long)) == []
    for policy in ({"activeDeadlineSeconds": 300}, {}):
        merged = expand(spec, template(executionPolicy=policy), "team-a").spec
        assert merged is not None
        [error] = validate_jobflow(as_flow(merged))
        assert str(error).startswith("spec.executionPolicy.finallyGraceSeconds: Invalid value: 600: ")
    # A flow with steps of its own is checked whole, as before.
    own = {"steps": [{"name": "a", "template": JOB}], "executionPolicy": spec["executionPolicy"]}
    [error] = validate_jobflow(as_flow(own))
    assert "needs activeDeadlineSeconds" in str(error)


def test_a_policy_field_at_its_schema_default_leaves_the_templates_value() -> None:
    # The apiserver writes the CRD's defaults into every flow before any webhook sees it: 6 and Forbid
    # are what every flow without its own values carries.
    defaults = {"backoffLimit": 6, "concurrencyPolicy": "Forbid", "ttlSecondsAfterFinished": 86400}
    assert merge_policy({"backoffLimit": 2, "concurrencyPolicy": "Allow"}, defaults) == {
        "backoffLimit": 2,
        "concurrencyPolicy": "Allow",
        "ttlSecondsAfterFinished": 86400,
    }
    assert merge_policy({"backoffLimit": 2}, {"backoffLimit": 0})["backoffLimit"] == 0


def test_a_flows_priority_overrides_the_templates_even_at_zero_and_a_flow_without_keeps_it() -> None:
    # Not a CRD-defaulted field: a flow's 0 is one it set, so it replaces the template's.
    assert merge_policy({"priority": 500}, {"priority": 0})["priority"] == 0
    assert merge_policy({"priority": 500}, {"priority": -3})["priority"] == -3
    assert merge_policy({"priority": 500, "backoffLimit": 2}, {"backoffLimit": 6})["priority"] == 500


def test_resource_templates_come_from_the_template_only() -> None:
    pvc = {"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}
    tpl = template(resourceTemplates={"volumeClaimTemplates": [pvc]})
    expanded = expand(flow_spec(), tpl, "team-a").spec
    assert expanded is not None
    assert expanded["resourceTemplates"] == {"volumeClaimTemplates": [pvc]}
    assert errors_of(flow_spec(resourceTemplates={"configMapTemplates": []}), tpl) == [
        "spec.resourceTemplates: Forbidden: a flow with spec.templateRef uses its JobFlowTemplate's "
        "resourceTemplates; set them there"
    ]


def test_steps_and_template_ref_exactly_one() -> None:
    assert str(flow_shape({"steps": [], "templateRef": {"name": "x"}})) == (
        "spec.templateRef: Forbidden: a flow with spec.templateRef takes its steps from the JobFlowTemplate: "
        "set steps or templateRef, not both (a flow made from a template is stored with its steps and "
        "without templateRef)"
    )
    assert str(flow_shape({"suspend": True})) == (
        "spec.steps: Required value: a JobFlow needs spec.steps, or spec.templateRef naming a "
        "JobFlowTemplate to take them from"
    )
    assert flow_shape({"steps": []}) is None
    assert flow_shape({"templateRef": {"name": "x"}}) is None
    # The validator says the same of a flow with neither.
    assert [str(e) for e in validate_jobflow(as_flow({"suspend": True}))] == [str(flow_shape({}))]


def test_a_flow_naming_a_template_is_valid_before_its_expansion_and_its_ref_checked() -> None:
    assert validate_jobflow(as_flow(flow_spec(arguments=args(anything="x")))) == []
    bad = as_flow({"templateRef": {"name": "Not_A_Name"}})
    assert [e.path for e in validate_jobflow(bad)] == ["spec.templateRef.name"]
    assert [e.path for e in validate_jobflow(as_flow({"templateRef": {}}))] == ["spec.templateRef.name"]


def test_an_expansion_too_large_for_etcd_is_refused_with_the_template_named() -> None:
    # 64 arguments of 4 KiB each fit one by one, and the spec holds them twice over with 100 large steps.
    big = {"name": "x", "template": {**JOB, "metadata": {"annotations": {"a": "x" * 9000}}}}
    steps = [{**big, "name": f"s{i}"} for i in range(100)]
    names = [f"a{i}" for i in range(64)]
    tpl = template(steps=steps, arguments={"parameters": [{"name": n, "value": ""} for n in names]})
    assert validate_jobflowtemplate(tpl) == []
    spec = flow_spec(arguments={"parameters": [{"name": n, "value": "v" * 4096} for n in names]})
    [error] = errors_of(spec, tpl)
    assert error.startswith(
        'spec.templateRef: Forbidden: the flow expanded from JobFlowTemplate "build" is too'
    )
    assert "use shorter argument values or a smaller template" in error


def test_a_template_without_steps_cannot_be_expanded() -> None:
    assert errors_of(flow_spec(), {"spec": {}}) == [
        'spec.templateRef.name: Invalid value: "build": JobFlowTemplate "build" in namespace "team-a" has no '
        "steps"
    ]


@settings(max_examples=60, deadline=None)
@given(
    env=st.sampled_from(["dev", "prod", "staging", ""]),
    extra=st.booleans(),
    policy=st.dictionaries(
        st.sampled_from(["backoffLimit", "parallelism", "concurrencyPolicy", "activeDeadlineSeconds"]),
        st.sampled_from([0, 1, 6, "Forbid", "Replace", "Sometimes", -1]),
    ),
)
def test_expansion_then_validation_is_validating_the_merged_flow(
    env: str, extra: bool, policy: dict[str, Any]
) -> None:
    """Whatever the flow sets: the expansion is refused exactly when the flow it would make is invalid for
    its arguments (validated as a flow written by hand), or else validating the stored flow finds what
    validating that hand-written flow finds."""
    given_args = args(env=env, **({"extra": "1"} if extra else {}))
    expansion = expand(flow_spec(arguments=given_args, executionPolicy=policy), template(), "team-a")
    by_hand = copy.deepcopy(template()["spec"])
    declared = {p["name"]: p for p in by_hand["arguments"]["parameters"]}
    for p in given_args["parameters"]:
        declared.setdefault(p["name"], {"name": p["name"]})["value"] = p["value"]
    by_hand["arguments"]["parameters"] = list(declared.values())
    by_hand["executionPolicy"] = merge_policy(by_hand["executionPolicy"], policy)
    hand_errors = {str(e) for e in validate_jobflow(as_flow(by_hand)) if e.path.startswith("spec.arguments")}
    assert (expansion.spec is None) == (bool(hand_errors) or extra)
    if expansion.spec is not None:
        assert {k: v for k, v in expansion.spec.items() if k != "templateRef"} == by_hand
        assert validate_jobflow(as_flow(expansion.spec)) == validate_jobflow(as_flow(by_hand))


# --- the template's own validation -----------------------------------------------------------------------


def test_a_template_is_checked_with_the_jobflow_rules_under_the_same_paths() -> None:
    tpl = template(steps=[{"name": "a", "template": JOB, "dependencies": ["ghost"]}])
    assert [str(e) for e in validate_jobflowtemplate(tpl)] == [
        'spec.steps[0].dependencies[0]: Not found: "ghost"'
    ]


def test_a_template_name_is_a_label_value_and_names_no_other_template() -> None:
    tpl = template(templateRef={"name": "other"})
    tpl["metadata"]["name"] = "t" * 64
    assert [str(e) for e in validate_jobflowtemplate(tpl)] == [
        f'metadata.name: Invalid value: "{"t" * 64}": must be no more than 63 characters: it is the value of '
        "the workflow.kube-zen.io/template label on the flows made from it",
        "spec.templateRef: Forbidden: a JobFlowTemplate holds steps; it cannot name another template",
    ]
    assert [e.path for e in validate_jobflowtemplate({**template(), "kind": "JobFlow"})] == ["kind"]


def applied(folder: Path) -> list[dict[str, Any]]:
    """The documents of `folder` in the order `kubectl apply -f FOLDER/` sends them: by file name."""
    return [d for p in sorted(folder.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]


@pytest.mark.parametrize("folder", [EXAMPLES, CLUSTER_EXAMPLES], ids=lambda f: f.name)
def test_an_examples_folder_applied_whole_creates_each_template_before_the_flows_naming_it(
    folder: Path,
) -> None:
    # Their comments say `kubectl apply -f examples/templates/`: a flow sent before its template is
    # refused by the webhook (Not found).
    created: set[tuple[str, str]] = set()
    for doc in applied(folder):
        ref = template_ref(doc["spec"]) if doc["kind"] == "JobFlow" else None
        assert ref is None or (ref.kind, ref.name) in created, (
            f"{doc['metadata']['name']} before its template"
        )
        created.add((doc["kind"], doc["metadata"]["name"]))


def test_the_template_examples_a_tenant_applies_are_namespaced() -> None:
    # A tenant may create nothing cluster-scoped: examples/templates/ holds no ClusterJobFlowTemplate.
    assert {d["kind"] for d in applied(EXAMPLES)} == {"JobFlowTemplate", "JobFlow"}
    assert {d["kind"] for d in applied(CLUSTER_EXAMPLES)} == {"ClusterJobFlowTemplate", "JobFlow"}


def test_the_examples_expand_into_a_valid_flow() -> None:
    docs = [d for folder in (EXAMPLES, CLUSTER_EXAMPLES) for d in applied(folder)]
    templates = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] != "JobFlow"}
    assert validate_jobflowtemplate(templates["JobFlowTemplate", "build-and-test"]) == []
    assert validate_clusterjobflowtemplate(templates["ClusterJobFlowTemplate", "image-scan"]) == []
    flows = [d for d in docs if d["kind"] == "JobFlow"]
    assert {f["spec"]["templateRef"].get("clusterScope", False) for f in flows} == {True, False}
    for flow in flows:
        ref = template_ref(flow["spec"])
        assert ref is not None
        expansion = expand(flow["spec"], templates[ref.kind, ref.name], "default")
        assert expansion.errors == ()
        assert validate_jobflow({**flow, "spec": expansion.spec}) == []


# --- updates ---------------------------------------------------------------------------------------------


def test_template_ref_cannot_change_once_the_flow_started() -> None:
    old = as_flow({**template()["spec"], "templateRef": {"name": "build"}})
    old["status"] = {"phase": "Running"}
    new = copy.deepcopy(old)
    new["spec"]["templateRef"] = {"name": "other"}
    assert [str(e) for e in validate_update(old, new)] == [
        "spec.templateRef: Forbidden: templateRef cannot change after the flow started"
    ]
    old["status"] = {"phase": "Pending"}
    assert validate_update(old, new) == []


@pytest.mark.parametrize("name", ["a" * 63, "build.v2"])
def test_template_names_that_are_label_values_are_accepted(name: str) -> None:
    tpl = template()
    tpl["metadata"]["name"] = name
    assert validate_jobflowtemplate(tpl) == []


# --- steps or templateRef, never both --------------------------------------------------------------------


def test_every_validator_refuses_steps_and_template_ref_together_naming_the_field(tmp_path: Path) -> None:
    both = {"templateRef": {"name": "build"}, "steps": template()["spec"]["steps"]}
    [error] = validate_jobflow(as_flow(both))
    assert error.path == "spec.templateRef"
    assert "set steps or templateRef, not both" in str(error)
    # A CronJobFlow whose template has both would have every run refused: refused itself, at its path.
    cron = {
        "apiVersion": API,
        "kind": "CronJobFlow",
        "metadata": {"name": "nightly", "namespace": "team-a"},
        "spec": {"schedule": "0 2 * * *", "jobFlowTemplate": {"spec": both}},
    }
    assert [e.path for e in validate_cronjobflow(cron)] == ["spec.jobFlowTemplate.spec.templateRef"]
    # `zen-flow validate` says it of a file.
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump(as_flow(both)))
    out, err = io.StringIO(), io.StringIO()
    assert validate_paths([str(path)], out, err) == 2  # invalid
    assert "spec.templateRef: Forbidden: a flow with spec.templateRef takes its steps" in out.getvalue()


def expanded_pending() -> dict[str, Any]:
    """A flow stored from the template (as the webhook or the controller writes it), queued: Pending."""
    spec = expand(flow_spec(arguments=args(env="prod")), template(), "team-a").spec
    assert spec is not None
    stored = as_flow(spec)
    stored["metadata"]["labels"] = {"workflow.kube-zen.io/template": "build"}
    stored["status"] = {"phase": "Pending"}
    return stored


def test_an_expanded_flow_cannot_be_given_a_template_ref_again() -> None:
    stored = expanded_pending()
    # An edit naming another template beside the steps it holds: "not both".
    edited = copy.deepcopy(stored)
    edited["spec"]["templateRef"] = {"name": "deploy"}
    assert [str(e) for e in validate_update(stored, edited)] == [
        "spec.templateRef: Forbidden: a flow with spec.templateRef takes its steps from the JobFlowTemplate: "
        "set steps or templateRef, not both (a flow made from a template is stored with its steps and "
        "without templateRef)"
    ]
    # The original manifest applied again server-side (templateRef, the steps it never sent dropped):
    # refused, not expanded again from the template as it is now.
    reapplied = copy.deepcopy(stored)
    reapplied["spec"] = flow_spec(arguments=args(env="prod"))
    assert [str(e) for e in validate_update(stored, reapplied)] == [
        "spec.templateRef: Forbidden: templateRef can be set only when the flow is created (a flow made "
        "from a template is stored with its steps and without templateRef); create a new JobFlow instead"
    ]
    # A flow not expanded yet (stored without the webhook) may still be edited, its templateRef too.
    unexpanded = as_flow(flow_spec())
    renamed = as_flow({"templateRef": {"name": "deploy"}})
    assert validate_update(unexpanded, renamed) == []


# --- ClusterJobFlowTemplates ---------------------------------------------------------------------------


def cluster_spec(**spec: Any) -> dict[str, Any]:
    return {"templateRef": {"name": "build", "clusterScope": True}, **spec}


def test_a_cluster_template_expands_as_a_namespaced_one_and_errors_name_its_kind() -> None:
    tpl = {**template(), "kind": "ClusterJobFlowTemplate", "metadata": {"name": "build"}}
    by_cluster = expand(cluster_spec(arguments=args(env="prod")), tpl, "team-a")
    by_namespace = expand(flow_spec(arguments=args(env="prod")), template(), "team-a")
    assert by_cluster == by_namespace  # one function, one result: the scope is only where it is read
    assert [str(e) for e in expand(cluster_spec(arguments=args(colour="red")), tpl, "team-a").errors] == [
        'spec.arguments.parameters[0].name: Not found: "colour": ClusterJobFlowTemplate "build" declares no '
        "such argument (it declares: env, ref)"
    ]
    assert [str(e) for e in expand(cluster_spec(), {"spec": {}}, "team-a").errors] == [
        'spec.templateRef.name: Invalid value: "build": ClusterJobFlowTemplate "build" has no steps'
    ]


def test_the_template_a_flow_names_and_how_it_is_labelled() -> None:
    ref = template_ref(cluster_spec())
    assert ref is not None
    assert (ref.kind, ref.cluster) == ("ClusterJobFlowTemplate", True)
    assert ref.labels == {
        "workflow.kube-zen.io/template": "build",
        "workflow.kube-zen.io/cluster-template": "true",
    }
    assert str(missing_template(ref, "team-a")) == (
        'spec.templateRef.name: Not found: "build": ClusterJobFlowTemplate "build" not found'
    )
    plain = template_ref({"templateRef": {"name": "build", "clusterScope": False}})
    assert plain is not None
    assert (plain.kind, plain.labels) == ("JobFlowTemplate", {"workflow.kube-zen.io/template": "build"})


def test_cluster_scope_is_a_boolean() -> None:
    bad = as_flow({"templateRef": {"name": "build", "clusterScope": "true"}})
    assert [str(e) for e in validate_jobflow(bad)] == [
        'spec.templateRef.clusterScope: Invalid value: "true": must be a boolean, not string'
    ]
    assert validate_jobflow(as_flow(cluster_spec())) == []


def test_a_cluster_template_is_checked_with_the_jobflow_rules() -> None:
    tpl = template(
        steps=[{"name": "a", "template": JOB, "dependencies": ["ghost"]}], templateRef={"name": "x"}
    )
    tpl = {**tpl, "kind": "ClusterJobFlowTemplate", "metadata": {"name": "build"}}
    assert [str(e) for e in validate_clusterjobflowtemplate(tpl)] == [
        "spec.templateRef: Forbidden: a ClusterJobFlowTemplate holds steps; it cannot name another template"
    ]
    del tpl["spec"]["templateRef"]
    assert [str(e) for e in validate_clusterjobflowtemplate(tpl)] == [
        'spec.steps[0].dependencies[0]: Not found: "ghost"'
    ]
    assert [e.path for e in validate_clusterjobflowtemplate(template())] == ["kind"]  # a JobFlowTemplate


def test_cluster_scope_cannot_change_once_the_flow_started() -> None:
    old = as_flow({"templateRef": {"name": "build"}})
    old["status"] = {"phase": "Running"}
    new = copy.deepcopy(old)
    new["spec"]["templateRef"]["clusterScope"] = True
    assert [str(e) for e in validate_update(old, new)] == [
        "spec.templateRef: Forbidden: templateRef cannot change after the flow started"
    ]


def test_a_templates_matrix_argument_left_empty_is_filled_by_its_flows() -> None:
    # A template is not yet a flow: an empty argument a matrix reads is the flows' to set (-p, templateRef
    # arguments), which are checked as JSON arrays then; a value that is set must still be one.
    step = {
        "name": "deploy",
        "template": JOB,
        "matrix": {"parameters": [{"name": "region", "valueFrom": {"argument": "regions"}}]},
    }
    empty = template(steps=[step], arguments={"parameters": [{"name": "regions", "value": ""}]})
    assert validate_jobflowtemplate(empty) == []
    unset = template(steps=[step], arguments={"parameters": [{"name": "regions"}]})
    assert validate_jobflowtemplate(unset) == []
    wrong = template(steps=[step], arguments={"parameters": [{"name": "regions", "value": "eu,us"}]})
    assert [e.path for e in validate_jobflowtemplate(wrong)] == [
        "spec.steps[0].matrix.parameters[0].valueFrom.argument"
    ]
    flow = as_flow({"steps": [step], "arguments": {"parameters": [{"name": "regions", "value": ""}]}})
    assert [e.path for e in validate_jobflow(flow)] == [
        "spec.steps[0].matrix.parameters[0].valueFrom.argument"
    ]


def test_the_templates_own_locks_are_the_flows_unless_the_flow_names_its_own() -> None:
    locks = {"mutexes": [{"name": "deploy"}]}
    spec = expand(flow_spec(), template(synchronization=locks), "team-a").spec
    assert spec is not None
    assert spec["synchronization"] == locks
    assert validate_jobflow(as_flow(spec)) == []
    own = {"semaphores": [{"name": "deploy", "limit": 2}]}
    spec = expand(flow_spec(synchronization=own), template(synchronization=locks), "team-a").spec
    assert spec is not None
    assert spec["synchronization"] == own
    assert "synchronization" not in (expand(flow_spec(), template(), "team-a").spec or {})
