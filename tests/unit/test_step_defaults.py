"""`spec.stepDefaults`: what every Job step's Job gets where the step does not say it (docs/API.md,
"Defaults for every step"): the Jobs built, the merge rules, the validation, the template layer, and
the rule that they cannot change once the flow started."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cel
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.api.constants import LABEL_INSTANCE
from zen_flow.controller.first_jobs import FirstJobs
from zen_flow.core.matrix import effective_flow
from zen_flow.core.step_defaults import POD_FIELDS, apply_pod_defaults, layer
from zen_flow.planner import CreateJob, plan
from zen_flow.validation import validate_jobflow, validate_update
from zen_flow.validation.cronjobflow import validate_cronjobflow
from zen_flow.validation.expansion import expand
from zen_flow.validation.flow_template import validate_jobflowtemplate
from zen_flow_dev.testing.flows import flow_manifest, job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
POLICIES = Path(__file__).parents[2] / "config" / "crd" / "admission-policies.yaml"
QUEUE = "kueue.x-k8s.io/queue-name"
DEFAULTS: dict[str, Any] = {
    "metadata": {"labels": {QUEUE: "team-a", "team": "data"}, "annotations": {"cost-centre": "42"}},
    "podSpec": {
        "serviceAccountName": "runner",
        "nodeSelector": {"pool": "batch", "kubernetes.io/os": "linux"},
        "tolerations": [{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "imagePullSecrets": [{"name": "registry"}],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
        "priorityClassName": "batch-low",
        "runtimeClassName": "gvisor",
        "schedulerName": "batch-scheduler",
    },
    "activeDeadlineSeconds": 3600,
}


def jobs(flow: Any) -> dict[str, dict[str, Any]]:
    """The Jobs the first plan of `flow` creates, by step."""
    return {a.step: a.body for a in plan(flow, [], T0).actions if isinstance(a, CreateJob)}


def pod(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


# --- the Jobs --------------------------------------------------------------------------------------------


def test_every_job_step_gets_the_defaults_on_its_job_and_pods() -> None:
    job = jobs(make_flow([job_step("a")], step_defaults=DEFAULTS))["a"]
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"][QUEUE] == "team-a"  # where Kueue reads it: the Job
        assert meta["labels"]["team"] == "data"
        assert meta["annotations"] == {"cost-centre": "42"}
    assert {k: v for k, v in pod(job).items() if k in POD_FIELDS} == DEFAULTS["podSpec"]
    assert job["spec"]["activeDeadlineSeconds"] == 3600


def test_the_steps_own_values_win_maps_key_by_key_lists_and_objects_whole() -> None:
    template = job_step("a")["template"]
    template["metadata"] = {"labels": {"team": "ml"}, "annotations": {"cost-centre": "7"}}
    template["spec"]["activeDeadlineSeconds"] = 60
    template["spec"]["template"]["spec"].update(
        serviceAccount="legacy",  # the deprecated name of serviceAccountName counts as it
        nodeSelector={"pool": "gpu"},
        tolerations=[],  # an empty list is the step's own: no tolerations
        securityContext={"runAsUser": 0},
    )
    step = job_step("a", template=template, metadata={"labels": {QUEUE: "team-b"}})
    job = jobs(make_flow([step], step_defaults=DEFAULTS))["a"]
    labels = job["metadata"]["labels"]
    assert (labels[QUEUE], labels["team"]) == ("team-b", "ml")
    assert job["metadata"]["annotations"] == {"cost-centre": "7"}
    spec = pod(job)
    assert "serviceAccountName" not in spec
    assert spec["nodeSelector"] == {"pool": "gpu", "kubernetes.io/os": "linux"}
    assert spec["tolerations"] == []
    assert spec["securityContext"] == {"runAsUser": 0}  # whole: runAsNonRoot is not mixed in
    assert spec["imagePullSecrets"] == [{"name": "registry"}]  # not set by the step: the default's
    assert job["spec"]["activeDeadlineSeconds"] == 60


def test_zen_flows_own_labels_win_over_the_defaults_and_the_instance_label_is_never_a_defaults() -> None:
    forged = {
        "workflow.kube-zen.io/flow": "other",
        "workflow.kube-zen.io/step": "other",
        "workflow.kube-zen.io/attempt": "9",
        "app.kubernetes.io/managed-by": "me",
        LABEL_INSTANCE: "team-b",
    }
    flow = make_flow([job_step("a")], name="etl", step_defaults={"metadata": {"labels": forged}})
    job = jobs(flow)["a"]
    for meta in (job["metadata"], job["spec"]["template"]["metadata"]):
        assert meta["labels"] == {
            "workflow.kube-zen.io/flow": "etl",
            "workflow.kube-zen.io/step": "a",
            "workflow.kube-zen.io/attempt": "0",
            "app.kubernetes.io/managed-by": "zen-flow",
        }


def test_the_defaults_reach_matrix_items_and_no_two_jobs_share_a_value() -> None:
    matrix = {"parameters": [{"name": "os", "values": ["linux", "darwin"]}]}
    flow = effective_flow(make_flow([job_step("build", matrix=matrix)], step_defaults=DEFAULTS))
    built = jobs(flow)
    assert sorted(built) == ["build-0", "build-1"]
    first, second = (pod(built[name]) for name in ("build-0", "build-1"))
    assert first["tolerations"] == second["tolerations"] == DEFAULTS["podSpec"]["tolerations"]
    assert first["tolerations"] is not second["tolerations"]


def test_a_flow_steps_child_and_a_manual_step_get_nothing() -> None:
    child = {"name": "sub", "type": "Flow", "flow": {"templateRef": {"name": "nightly"}}}
    flow = make_flow([child, manual_step("gate")], step_defaults=DEFAULTS)
    created = jobs(flow)
    assert sorted(created) == ["sub"]
    assert "stepDefaults" not in created["sub"]["spec"]  # the child is made from its own template


def deadline_of(step: dict[str, Any]) -> Any:
    return jobs(make_flow([step], step_defaults=DEFAULTS))["a"]["spec"].get("activeDeadlineSeconds")


def test_a_steps_own_timeout_or_deadline_wins_over_the_defaults_deadline_larger_or_smaller() -> None:
    assert deadline_of(job_step("a")) == 3600
    assert deadline_of(job_step("a", timeoutSeconds=60)) == 60
    # An hour's default never cuts a step that asks for two.
    assert deadline_of(job_step("a", timeoutSeconds=7200)) == 7200
    template = job_step("a")["template"]
    template["spec"]["activeDeadlineSeconds"] = 7200
    assert deadline_of(job_step("a", template=template)) == 7200
    sim = Simulator(make_flow([job_step("a", timeoutSeconds=7200)], step_defaults=DEFAULTS), T0)
    sim.reconcile()
    sim.advance(7200)
    sim.fail(
        sim.running()[0], reason="DeadlineExceeded", message="Job was active longer than specified deadline"
    )
    sim.reconcile()
    (status,) = sim.flow.status.steps
    assert status.message == "timed out after 7200s"  # the step's timeout, not the defaults'


def test_the_defaults_deadline_is_named_when_it_stops_a_job() -> None:
    sim = Simulator(make_flow([job_step("a")], step_defaults=DEFAULTS), T0)
    sim.reconcile()
    sim.advance(3600)
    sim.fail(
        sim.running()[0], reason="DeadlineExceeded", message="Job was active longer than specified deadline"
    )
    sim.reconcile()
    (status,) = sim.flow.status.steps
    assert status.message == (
        "Job failed: DeadlineExceeded: Job was active longer than specified deadline"
        " (stepDefaults.activeDeadlineSeconds: 3600s)"
    )


def test_placeholders_of_the_flow_and_step_are_filled_in_per_step() -> None:
    defaults = {
        "metadata": {"annotations": {"origin": "{{.JobFlow.Namespace}}/{{.JobFlow.Name}}/{{.StepName}}"}}
    }
    flow = make_flow([job_step("a"), job_step("b")], name="etl", namespace="data", step_defaults=defaults)
    built = jobs(flow)
    assert [built[s]["metadata"]["annotations"]["origin"] for s in ("a", "b")] == ["data/etl/a", "data/etl/b"]


# --- the merge rule, as properties ---------------------------------------------------------------------

_text = st.text("abc", min_size=1, max_size=3)
_maps = st.dictionaries(_text, _text, max_size=3)
_whole = st.one_of(_text, st.lists(st.fixed_dictionaries({"name": _text}), max_size=2))
# A pod spec, or the defaults' podSpec: any of the fields, nodeSelector a map, the others taken whole.
_pod_specs = st.fixed_dictionaries(
    {}, optional={field: _maps if field == "nodeSelector" else _whole for field in POD_FIELDS}
)


@settings(max_examples=300, deadline=None)
@given(own=_pod_specs, defaults=_pod_specs)
def test_the_steps_own_values_always_read_back_and_the_rest_is_the_defaults(
    own: dict[str, Any], defaults: dict[str, Any]
) -> None:
    merged = apply_pod_defaults(copy.deepcopy(own), defaults)
    for field in POD_FIELDS:
        if field == "nodeSelector":
            assert merged.get(field, {}) == {**defaults.get(field, {}), **own.get(field, {})}
        elif field in own:
            assert merged[field] == own[field]
        else:
            assert merged.get(field) == defaults.get(field)


_layers = st.fixed_dictionaries(
    {},
    optional={
        "metadata": st.fixed_dictionaries({}, optional={"labels": _maps, "annotations": _maps}),
        "podSpec": st.fixed_dictionaries({}, optional={"nodeSelector": _maps, "serviceAccountName": _text}),
        "activeDeadlineSeconds": st.integers(1, 9),
    },
)


def read(value: Any, *keys: str) -> Any:
    """The value at `keys`, {} where there is none."""
    for key in keys:
        value = value.get(key, {}) if isinstance(value, dict) else {}
    return value


@settings(max_examples=300, deadline=None)
@given(base=_layers, over=_layers, top=_layers)
def test_a_flows_defaults_over_its_templates_keep_the_flows_values_and_layer_associatively(
    base: dict[str, Any], over: dict[str, Any], top: dict[str, Any]
) -> None:
    merged = layer(base, over)
    for path in (("metadata", "labels"), ("metadata", "annotations"), ("podSpec", "nodeSelector")):
        assert read(merged, *path) == {**read(base, *path), **read(over, *path)}
    for path in (("podSpec", "serviceAccountName"), ("activeDeadlineSeconds",)):
        assert read(merged, *path) == (read(over, *path) or read(base, *path))
    assert layer(layer(base, over), top) == layer(base, layer(over, top))
    assert layer(base, None) == base
    assert layer(None, over) == over


# --- validation ------------------------------------------------------------------------------------------


def errors_of(defaults: Any) -> list[str]:
    return [
        str(e) for e in validate_jobflow(flow_manifest("f", "ns", [job_step("a")], stepDefaults=defaults))
    ]


def test_valid_defaults_pass() -> None:
    assert errors_of(DEFAULTS) == []


@pytest.mark.parametrize(
    ("defaults", "says"),
    [
        (
            {"podSpec": {"serviceAccountName": "Runner_1"}},
            "spec.stepDefaults.podSpec.serviceAccountName: Invalid value",
        ),
        (
            {"podSpec": {"priorityClassName": "a b"}},
            "spec.stepDefaults.podSpec.priorityClassName: Invalid value",
        ),
        (
            {"podSpec": {"nodeSelector": {"pool": "a b"}}},
            "spec.stepDefaults.podSpec.nodeSelector[pool]: Invalid value",
        ),
        (
            {"podSpec": {"nodeSelector": {"a b": "x"}}},
            "spec.stepDefaults.podSpec.nodeSelector: Invalid value",
        ),
        (
            {"podSpec": {"tolerations": [{"key": "k", "operator": "Maybe"}]}},
            'spec.stepDefaults.podSpec.tolerations[0].operator: Unsupported value: "Maybe"',
        ),
        (
            {"podSpec": {"tolerations": [{"operator": "Equal", "value": "v"}]}},
            "spec.stepDefaults.podSpec.tolerations[0].operator: Invalid value",
        ),
        (
            {"podSpec": {"tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]}},
            "spec.stepDefaults.podSpec.tolerations[0].tolerationSeconds: Forbidden",
        ),
        (
            {"podSpec": {"imagePullSecrets": [{}]}},
            "spec.stepDefaults.podSpec.imagePullSecrets[0].name: Required value",
        ),
        ({"podSpec": {"affinity": "near"}}, "spec.stepDefaults.podSpec.affinity: Invalid value"),
        (
            {"podSpec": {"containers": []}},
            'spec.stepDefaults.podSpec.containers: Unsupported value: "containers"',
        ),
        ({"podSpec": {"hostNetwork": True}}, "spec.stepDefaults.podSpec.hostNetwork: Unsupported value"),
        ({"metadata": {"labels": {"team": "a b"}}}, "spec.stepDefaults.metadata.labels[team]: Invalid value"),
        ({"metadata": {"annotations": {"-x": "1"}}}, "spec.stepDefaults.metadata.annotations: Invalid value"),
        ({"activeDeadlineSeconds": 0}, "spec.stepDefaults.activeDeadlineSeconds: Invalid value: 0"),
        ({"timeoutSeconds": 5}, 'spec.stepDefaults.timeoutSeconds: Unsupported value: "timeoutSeconds"'),
        (
            {"metadata": {"annotations": {"x": "{{inputs.parameters.env}}"}}},
            "spec.stepDefaults.metadata.annotations.x: Invalid value",
        ),
        ({"podSpec": "runner"}, "spec.stepDefaults.podSpec: Invalid value"),
    ],
)
def test_bad_defaults_are_refused_naming_the_field(defaults: Any, says: str) -> None:
    found = errors_of(defaults)
    assert any(e.startswith(says) for e in found), found


def test_a_templates_and_a_cronjobflows_defaults_are_checked_at_their_paths() -> None:
    bad = {"podSpec": {"serviceAccountName": "Runner_1"}}
    template = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "JobFlowTemplate",
        "metadata": {"name": "t", "namespace": "ns"},
        "spec": {"steps": [job_step("a")], "stepDefaults": bad},
    }
    assert [e.path for e in validate_jobflowtemplate(template)] == [
        "spec.stepDefaults.podSpec.serviceAccountName"
    ]
    cron = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "CronJobFlow",
        "metadata": {"name": "c", "namespace": "ns"},
        "spec": {
            "schedule": "@daily",
            "jobFlowTemplate": {"spec": {"steps": [job_step("a")], "stepDefaults": bad}},
        },
    }
    assert [e.path for e in validate_cronjobflow(cron)] == [
        "spec.jobFlowTemplate.spec.stepDefaults.podSpec.serviceAccountName"
    ]


def test_the_defaults_cannot_change_once_the_flow_started() -> None:
    old = flow_manifest("f", "ns", [job_step("a")], stepDefaults=DEFAULTS)
    new = copy.deepcopy(old)
    new["spec"]["stepDefaults"]["podSpec"]["serviceAccountName"] = "admin"
    assert validate_update(old, new) == []  # not started: an edit is a new definition
    old["status"] = {"phase": "Running"}
    assert [str(e) for e in validate_update(old, new)] == [
        "spec.stepDefaults: Forbidden: stepDefaults cannot change after the flow started"
    ]
    added = flow_manifest("f", "ns", [job_step("a")])
    added["status"] = {"phase": "Running"}
    assert [e.path for e in validate_update(added, old)] == ["spec.stepDefaults"]


def immutable_policy_refusals(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The messages of the spec-immutability admission policy that refuse the UPDATE `old` -> `new`: the
    rule without the webhook (config/crd/admission-policies.yaml), evaluated with the CEL library."""
    (policy,) = [
        d["spec"]
        for d in yaml.safe_load_all(POLICIES.read_text())
        if d["kind"] == "ValidatingAdmissionPolicy"
        and d["metadata"]["name"].startswith("jobflow-spec-immutable.")
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


def test_without_the_webhook_the_admission_policy_keeps_the_defaults_of_a_started_flow() -> None:
    old = flow_manifest("f", "ns", [job_step("a")], stepDefaults=DEFAULTS)
    old["status"] = {"phase": "Pending"}
    new = copy.deepcopy(old)
    new["spec"]["stepDefaults"]["metadata"]["labels"][QUEUE] = "team-b"
    assert immutable_policy_refusals(old, new) == []
    old["status"] = {"phase": "Running"}
    new["status"] = old["status"]
    refused = ["spec.stepDefaults cannot change once the flow has started; create a new JobFlow instead"]
    assert immutable_policy_refusals(old, new) == refused
    del new["spec"]["stepDefaults"]
    assert immutable_policy_refusals(old, new) == refused
    assert immutable_policy_refusals(new, old) == refused
    assert immutable_policy_refusals(old, copy.deepcopy(old)) == []


def test_first_jobs_built_from_changed_defaults_are_replaced() -> None:
    flow = make_flow([job_step("a"), job_step("b")], step_defaults=DEFAULTS)
    actions = plan(flow, [], T0).actions
    created = {a.body["metadata"]["name"]: "uid" for a in actions if isinstance(a, CreateJob)}
    first = FirstJobs()
    first.unrecorded(flow, created, actions)
    assert first.outdated(flow) == ()
    changed = make_flow(
        [job_step("a"), job_step("b")], step_defaults={**DEFAULTS, "activeDeadlineSeconds": 60}
    )
    assert sorted(d.step for d in first.outdated(changed)) == ["a", "b"]


# --- a flow made from a template ---------------------------------------------------------------------------


def test_a_flows_defaults_merge_over_its_templates_the_flows_keys_winning() -> None:
    template = {
        "spec": {
            "steps": [job_step("a")],
            "stepDefaults": {
                "metadata": {"labels": {QUEUE: "shared", "team": "data"}},
                "podSpec": {"serviceAccountName": "runner", "nodeSelector": {"pool": "batch"}},
                "activeDeadlineSeconds": 3600,
            },
        }
    }
    spec = {
        "templateRef": {"name": "t"},
        "stepDefaults": {
            "metadata": {"labels": {QUEUE: "team-a"}},
            "podSpec": {"nodeSelector": {"zone": "b"}, "tolerations": [{"operator": "Exists"}]},
        },
    }
    expanded = expand(spec, template, "ns")
    assert expanded.errors == ()
    assert expanded.spec is not None
    assert expanded.spec["stepDefaults"] == {
        "metadata": {"labels": {QUEUE: "team-a", "team": "data"}},
        "podSpec": {
            "serviceAccountName": "runner",
            "nodeSelector": {"pool": "batch", "zone": "b"},
            "tolerations": [{"operator": "Exists"}],
        },
        "activeDeadlineSeconds": 3600,
    }
    neither = expand({"templateRef": {"name": "t"}}, {"spec": {"steps": [job_step("a")]}}, "ns").spec
    assert neither is not None
    assert "stepDefaults" not in neither
