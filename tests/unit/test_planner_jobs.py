"""Planner: the Job manifest created for a step attempt."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from zen_flow.api.meta import OwnerReference
from zen_flow.core.matrix import effective_flow
from zen_flow.core.naming import is_dns1123_subdomain, job_name
from zen_flow.planner import CreateJob, on_its_way_out, plan
from zen_flow.validation import render, validate_jobflow
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2025, 1, 1, tzinfo=UTC)
POLICY = {
    "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}
}


def body_for(step: dict[str, Any], **flow_kw: Any) -> dict[str, Any]:
    result = plan(make_flow([step], name="etl", namespace="data", **flow_kw), [], T0)
    creates = [a for a in result.actions if isinstance(a, CreateJob)]
    assert len(creates) == 1
    return creates[0].body


def test_job_identity_owner_and_labels() -> None:
    step = job_step("extract", metadata={"labels": {"team": "data", "app.kubernetes.io/managed-by": "me"}})
    step["template"]["metadata"] = {
        "name": "ignored",
        "generateName": "x-",
        "namespace": "other",
        "labels": {"from": "template"},
        "annotations": {"note": "kept"},
        "resourceVersion": "123",
    }
    body = body_for(step)
    meta = body["metadata"]
    assert (body["apiVersion"], body["kind"]) == ("batch/v1", "Job")
    assert meta["name"] == job_name("etl", "extract", 0)
    assert meta["namespace"] == "data"
    assert "generateName" not in meta
    assert "resourceVersion" not in meta
    assert meta["labels"] == {
        "from": "template",
        "team": "data",
        "workflow.kube-zen.io/flow": "etl",
        "workflow.kube-zen.io/step": "extract",
        "workflow.kube-zen.io/attempt": "0",
        "app.kubernetes.io/managed-by": "zen-flow",  # ours win
    }
    assert meta["annotations"] == {"note": "kept"}
    assert meta["ownerReferences"] == [
        {
            "apiVersion": "workflow.kube-zen.io/v1alpha1",
            "kind": "JobFlow",
            "name": "etl",
            "uid": "uid-etl",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def test_pods_carry_the_same_labels_and_step_metadata() -> None:
    step = job_step("extract", metadata={"labels": {"team": "data"}, "annotations": {"a": "1"}})
    body = body_for(step)
    pod_meta = body["spec"]["template"]["metadata"]
    assert pod_meta["labels"]["workflow.kube-zen.io/flow"] == "etl"
    assert pod_meta["labels"]["workflow.kube-zen.io/step"] == "extract"
    assert pod_meta["labels"]["team"] == "data"
    assert pod_meta["annotations"] == {"a": "1"}


def test_the_template_is_not_mutated() -> None:
    step = job_step("extract", timeoutSeconds=5)
    flow = make_flow([step])
    before = copy.deepcopy(flow.spec.steps[0].template)
    plan(flow, [], T0)
    assert flow.spec.steps[0].template == before


def test_pod_failure_policy_maps_to_the_native_field_when_restart_policy_is_never() -> None:
    body = body_for(job_step("a"), execution_policy=POLICY)
    assert body["spec"]["podFailurePolicy"] == {
        "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]
    }


def test_pod_failure_policy_is_left_out_with_restart_on_failure() -> None:
    step = job_step("a")
    step["template"] = job_template(restart_policy="OnFailure")
    body = body_for(step, execution_policy=POLICY)
    assert "podFailurePolicy" not in body["spec"]


@pytest.mark.parametrize("unset", [{}, {"restartPolicy": None}, {"restartPolicy": ""}])
def test_a_template_without_restart_policy_runs_as_admission_accepted_it(unset: dict[str, Any]) -> None:
    # Admission counts an unset restartPolicy as Never, the only one a podFailurePolicy works with; the Job
    # API refuses an unset one (`spec.template.spec.restartPolicy: Required value`). So every Job made of
    # such a template has Never and the flow's podFailurePolicy: a plain step's, a matrix item's, a
    # finally step's.
    template = job_template()
    pod = template["spec"]["template"]["spec"]
    del pod["restartPolicy"]
    pod.update(unset)
    steps = [
        job_step("a", template=template),
        job_step("m", "a", template=template, matrix={"parameters": [{"name": "n", "values": ["1", "2"]}]}),
        {**job_step("f", template=template), "finally": True},
    ]
    manifest = flow_manifest("etl", "data", steps, executionPolicy=POLICY)
    assert [render(e) for e in validate_jobflow(manifest)] == []
    flow = make_flow(steps, name="etl", namespace="data", execution_policy=POLICY)
    sim = Simulator(effective_flow(flow), T0)
    for _ in range(5):
        sim.reconcile()
        for name in sim.running():
            sim.complete(name)
    assert sim.phase == "Succeeded"
    creates = [a for p in sim.plans for a in p.actions if isinstance(a, CreateJob)]
    assert sorted(a.step for a in creates) == ["a", "f", "m-0", "m-1"]
    for create in creates:
        assert create.body["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        assert create.body["spec"]["podFailurePolicy"] == POLICY["podFailurePolicy"]


def test_a_template_pod_failure_policy_wins() -> None:
    step = job_step("a")
    own = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    step["template"]["spec"]["podFailurePolicy"] = own
    body = body_for(step, execution_policy=POLICY)
    assert body["spec"]["podFailurePolicy"] == own


def test_long_names_stay_valid() -> None:
    name = "s" * 60 + ".x-" + "y" * 80
    result = plan(make_flow([job_step(name)], name="f" * 200), [], T0)
    body = next(a for a in result.actions if isinstance(a, CreateJob)).body
    job = body["metadata"]["name"]
    assert len(job) <= 63
    assert is_dns1123_subdomain(job)
    labels = body["metadata"]["labels"]
    assert all(len(v) <= 63 for v in labels.values())


@pytest.mark.parametrize(
    ("api_version", "kind", "name", "uid", "waits"),
    [
        ("workflow.kube-zen.io/v1alpha1", "JobFlow", "etl", "old", True),  # a deleted flow of this name
        ("workflow.kube-zen.io/v1", "JobFlow", "etl", "old", True),  # any version of our group
        ("workflow.kube-zen.io/v1alpha1", "JobFlow", "etl", "uid-etl", False),  # the flow itself
        ("workflow.kube-zen.io/v1alpha1", "JobFlow", "other", "old", False),  # another flow
        ("batch.example.com/v1", "JobFlow", "etl", "old", False),  # another project's JobFlow kind
        ("v1", "JobFlow", "etl", "old", False),
    ],
)
def test_only_our_own_kinds_deleted_flow_of_the_same_name_is_waited_for(
    api_version: str, kind: str, name: str, uid: str, waits: bool
) -> None:
    flow = make_flow([job_step("a")], name="etl")
    flow = flow.model_copy(update={"metadata": flow.metadata.model_copy(update={"uid": "uid-etl"})})
    owner = OwnerReference(api_version=api_version, kind=kind, name=name, uid=uid, controller=True)
    assert on_its_way_out(owner, False, flow) is waits
    assert on_its_way_out(owner, True, flow) is True  # being deleted: it goes whoever owns it
