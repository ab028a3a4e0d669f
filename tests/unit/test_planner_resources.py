"""Planner: spec.resourceTemplates become owned, labelled objects before the first step starts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api.constants import FlowPhase
from zen_flow.api.jobflow import JobFlow, ResourceTemplates
from zen_flow.core.naming import MAX_OBJECT_NAME, is_dns1123_subdomain, resource_name
from zen_flow.planner import CreateJob, CreateResource, fail_resources, plan
from zen_flow_dev.testing.flows import job_step, make_flow, manual_step
from zen_flow_dev.testing.simulator import Simulator, run

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CLAIM: dict[str, Any] = {
    "metadata": {"name": "data", "labels": {"team": "a"}, "uid": "stale", "resourceVersion": "9"},
    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
}
CONFIG: dict[str, Any] = {"metadata": {"name": "settings"}, "data": {"mode": "fast"}}


def with_templates(flow: JobFlow, claims: list[dict[str, Any]], configs: list[dict[str, Any]]) -> JobFlow:
    templates = ResourceTemplates(volume_claim_templates=tuple(claims), config_map_templates=tuple(configs))
    return flow.model_copy(update={"spec": flow.spec.model_copy(update={"resource_templates": templates})})


def flow_with_resources(**kwargs: Any) -> JobFlow:
    return with_templates(make_flow([job_step("a"), job_step("b", "a")], **kwargs), [CLAIM], [CONFIG])


def creates(result: Any) -> list[Any]:
    return [a for a in result.actions if isinstance(a, CreateResource)]


def test_resources_are_created_first_and_no_step_starts_in_that_reconcile() -> None:
    sim = Simulator(flow_with_resources(), T0)
    first = sim.reconcile()
    assert [(c.kind, c.name) for c in creates(first)] == [
        ("PersistentVolumeClaim", "flow-data"),
        ("ConfigMap", "flow-settings"),
    ]
    assert not [a for a in first.actions if isinstance(a, CreateJob)]
    assert sim.phase == FlowPhase.PENDING
    assert sim.flow.status.start_time is None
    assert sim.flow.status.message == "creating PersistentVolumeClaim flow-data, ConfigMap flow-settings"
    refs = [(r.api_version, r.kind, r.name, r.namespace) for r in sim.flow.status.resource_refs]
    assert refs == [
        ("v1", "PersistentVolumeClaim", "flow-data", "default"),
        ("v1", "ConfigMap", "flow-settings", "default"),
    ]
    assert "ResourcesCreated" in [e.reason for e in first.events]


def test_steps_start_once_the_refs_are_recorded_and_nothing_is_created_twice() -> None:
    sim = Simulator(flow_with_resources(), T0)  # strict: a second create of an object raises
    sim.reconcile()
    second = sim.reconcile()
    assert not creates(second)
    assert [a.step for a in second.actions if isinstance(a, CreateJob)] == ["a"]
    run(sim, lambda _: "complete")
    assert sim.phase == FlowPhase.SUCCEEDED
    assert len(sim.resources) == 2


def test_a_lost_status_write_plans_the_creates_again() -> None:
    flow = flow_with_resources()
    lost = plan(flow, [], T0)
    assert len(creates(lost)) == 2
    again = plan(flow, [], T0)  # the status was never written: same deterministic names again
    assert [c.body for c in creates(again)] == [c.body for c in creates(lost)]


def test_the_object_is_the_template_with_our_name_labels_and_owner() -> None:
    flow = flow_with_resources(name="etl", namespace="team-a")
    claim = creates(plan(flow, [], T0))[0].body
    meta = claim["metadata"]
    assert claim["apiVersion"] == "v1"
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["spec"] == CLAIM["spec"]
    assert meta["name"] == "etl-data"
    assert meta["namespace"] == "team-a"
    assert meta["labels"] == {
        "team": "a",
        "workflow.kube-zen.io/flow": "etl",
        "app.kubernetes.io/managed-by": "zen-flow",
    }
    assert "uid" not in meta
    assert "resourceVersion" not in meta
    [owner] = meta["ownerReferences"]
    assert owner["uid"] == "uid-etl"
    assert owner["kind"] == "JobFlow"
    assert owner["controller"] is True
    assert CLAIM["metadata"]["name"] == "data"  # the spec's template is not modified


def test_only_missing_objects_are_created_when_some_are_recorded() -> None:
    sim = Simulator(flow_with_resources(), T0)
    sim.reconcile()
    # The user adds a template to a flow whose other objects exist.
    sim.flow = with_templates(sim.flow, [CLAIM], [CONFIG, {"metadata": {"name": "more"}}])
    result = sim.reconcile()
    assert [c.name for c in creates(result)] == ["flow-more"]
    assert len(sim.flow.status.resource_refs) == 3


def test_a_flow_without_templates_starts_at_once() -> None:
    result = plan(make_flow([job_step("a")]), [], T0)
    assert not creates(result)
    assert [a.step for a in result.actions if isinstance(a, CreateJob)] == ["a"]
    assert result.status.resource_refs == ()


def test_a_suspended_flow_creates_nothing_until_resumed() -> None:
    sim = Simulator(flow_with_resources(suspend=True), T0)
    assert not creates(sim.reconcile())
    sim.set_suspend(False)
    assert len(creates(sim.reconcile())) == 2


def test_terminal_flows_are_untouched() -> None:
    sim = Simulator(with_templates(make_flow([manual_step("gate")]), [], [CONFIG]), T0)
    sim.reconcile()
    sim.annotate("approve.workflow.kube-zen.io/gate", "true")
    sim.reconcile()
    assert sim.phase == FlowPhase.SUCCEEDED
    finished = sim.flow.model_copy(
        update={"status": sim.flow.status.model_copy(update={"resource_refs": ()})}
    )
    assert not creates(plan(finished, [], T0))


def test_a_conflict_fails_the_flow_with_a_clear_condition() -> None:
    flow = flow_with_resources()
    result = fail_resources(
        flow, ["ConfigMap flow-settings already exists and was not created by this flow"], T0
    )
    assert result.status.phase == FlowPhase.FAILED
    failed = next(c for c in result.status.conditions if c.type == "Failed")
    assert failed.status == "True"
    assert failed.reason == "ResourceConflict"
    assert "flow-settings already exists" in failed.message
    valid = next(c for c in result.status.conditions if c.type == "Valid")
    assert valid.status == "True"
    assert {s.phase for s in result.status.steps} == {"Skipped"}


@given(st.text("abcdefghij-", min_size=1, max_size=260), st.text("abcdefghij-", min_size=1, max_size=260))
def test_resource_names_fit_and_differ(flow: str, template: str) -> None:
    flow, template = "f" + flow + "f", "t" + template + "t"
    name = resource_name(flow, template)
    assert len(name) <= MAX_OBJECT_NAME
    assert is_dns1123_subdomain(name)
    if len(flow) + 1 + len(template) <= MAX_OBJECT_NAME:
        assert name == f"{flow}-{template}"
    else:
        assert name != resource_name(flow, template + "x")
