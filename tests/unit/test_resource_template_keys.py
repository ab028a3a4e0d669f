"""spec.resourceTemplates cannot carry zen-flow's own label and annotation keys (`workflow.kube-zen.io/...`
and its subdomains): the controller creates the objects under its own identity, and it trusts those keys
(a ConfigMap labelled `workflow.kube-zen.io/memo-cache: "true"` is a memoize cache whose entries become
other flows' step outputs). Admission refuses them naming the field and the key; a flow that got one past
admission fails before the object is made."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from zen_flow.api import JobFlow
from zen_flow.api.constants import LABEL_FLOW, LABEL_INSTANCE, FlowPhase
from zen_flow.api.flow_status import ObjectRef
from zen_flow.api.jobflow import ResourceTemplates
from zen_flow.api.meta import format_time, parse_time
from zen_flow.cli.validate import validate_paths
from zen_flow.controller.metrics import Metrics
from zen_flow.controller.reconciler import Controller
from zen_flow.machinery.expectations import Expectations
from zen_flow.machinery.workqueue import WorkQueue
from zen_flow.planner import CreateResource, DeleteJob
from zen_flow.planner.memoization import MEMO_CACHE_LABEL, MemoEntry, data_key, encode_entry
from zen_flow.planner.resources import build_resource
from zen_flow.validation import validate_jobflow, validate_jobflowtemplate
from zen_flow.validation.errors import ErrorType
from zen_flow_dev.testing.apiserver_fake import FakeApiServer
from zen_flow_dev.testing.clock import FakeClock
from zen_flow_dev.testing.flows import flow_manifest, job_step, make_flow
from zen_flow_dev.testing.simulator import Simulator

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NS = "team-a"
CLAIM_SPEC = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}


def with_templates(doc: dict[str, Any], **templates: Any) -> dict[str, Any]:
    doc["spec"]["resourceTemplates"] = templates
    return doc


def config_map(name: str = "cache", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, **meta}, "data": {"k": "v"}}


@pytest.mark.parametrize(
    ("templates", "path", "key"),
    [
        (
            {"configMapTemplates": [config_map(labels={MEMO_CACHE_LABEL: "true", "team": "a"})]},
            "spec.resourceTemplates.configMapTemplates[0].metadata.labels",
            MEMO_CACHE_LABEL,
        ),
        (
            {"configMapTemplates": [config_map(), config_map("x", annotations={LABEL_FLOW: "other"})]},
            "spec.resourceTemplates.configMapTemplates[1].metadata.annotations",
            LABEL_FLOW,
        ),
        (
            {
                "volumeClaimTemplates": [
                    {"metadata": {"name": "d", "labels": {LABEL_INSTANCE: "b"}}, "spec": CLAIM_SPEC}
                ]
            },
            "spec.resourceTemplates.volumeClaimTemplates[0].metadata.labels",
            LABEL_INSTANCE,
        ),
        (  # a subdomain of zen-flow's: the approval keys' prefixes are
            {"configMapTemplates": [config_map(annotations={"approved-by.workflow.kube-zen.io/gate": "x"})]},
            "spec.resourceTemplates.configMapTemplates[0].metadata.annotations",
            "approved-by.workflow.kube-zen.io/gate",
        ),
    ],
)
def test_admission_refuses_zen_flows_own_keys_naming_the_field_and_the_key(
    templates: dict[str, Any], path: str, key: str
) -> None:
    doc = with_templates(flow_manifest("ci", NS, [job_step("a")]), **templates)
    [error] = validate_jobflow(doc)
    assert error.path == f"{path}[{key}]"
    assert error.type == ErrorType.FORBIDDEN
    assert "zen-flow's own" in str(error)
    # A template's resourceTemplates are a flow's: refused when the JobFlowTemplate is written.
    template = {"apiVersion": doc["apiVersion"], "kind": "JobFlowTemplate", "metadata": {"name": "t"}}
    [error] = validate_jobflowtemplate({**template, "spec": doc["spec"]})
    assert error.path == f"{path}[{key}]"


def test_other_keys_are_accepted() -> None:
    labels = {
        "team": "a",
        "example.com/workflow.kube-zen.io": "x",  # the name part is not the domain
        "kube-zen.io/owner": "x",  # the parent domain is not zen-flow's
        "notworkflow.kube-zen.io/x": "y",  # nor a name that only ends like it
        "app.kubernetes.io/managed-by": "helm",  # overwritten with zen-flow's own value, as before
    }
    doc = with_templates(
        flow_manifest("ci", NS, [job_step("a")]),
        configMapTemplates=[config_map(labels=labels, annotations=labels)],
    )
    assert validate_jobflow(doc) == []


def test_zen_flow_validate_names_the_file_the_field_and_the_key(tmp_path: Path) -> None:
    doc = with_templates(
        flow_manifest("ci", NS, [job_step("a")]),
        configMapTemplates=[config_map(labels={MEMO_CACHE_LABEL: "true"})],
    )
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(doc))
    out, err = io.StringIO(), io.StringIO()
    assert validate_paths([str(path)], out, err) == 2
    [line] = out.getvalue().splitlines()
    field = f"spec.resourceTemplates.configMapTemplates[0].metadata.labels[{MEMO_CACHE_LABEL}]"
    assert line.startswith(f"{path}: {field}: Forbidden: ")


def running_with(templates: ResourceTemplates) -> Simulator:
    """A flow whose first step runs, then given `templates` (stored without the webhook, which would
    refuse the edit)."""
    sim = Simulator(make_flow([job_step("a"), job_step("b", "a")], name="ci", namespace=NS), T0)
    sim.reconcile()
    assert [s.phase for s in sim.flow.status.steps] == ["Running", "Pending"]
    sim.flow = sim.flow.model_copy(
        update={"spec": sim.flow.spec.model_copy(update={"resource_templates": templates})}
    )
    return sim


def test_a_flow_that_got_one_past_admission_fails_before_the_object_is_made_saying_why() -> None:
    cache = config_map(labels={MEMO_CACHE_LABEL: "true"})
    sim = running_with(ResourceTemplates(config_map_templates=(config_map("settings"), cache)))
    running = sim.running()
    result = sim.reconcile()
    assert not [a for a in result.actions if isinstance(a, CreateResource)]  # neither is made
    assert [a.name for a in result.actions if isinstance(a, DeleteJob)] == running
    assert sim.phase == FlowPhase.FAILED
    failed = next(c for c in sim.flow.status.conditions if c.type == "Failed")
    assert failed.reason == "ResourceConflict"
    field = f"spec.resourceTemplates.configMapTemplates[1].metadata.labels[{MEMO_CACHE_LABEL}]"
    assert f"ConfigMap ci-cache: {field}: Forbidden: " in failed.message
    assert not sim.resources


def test_objects_created_before_the_rule_do_not_fail_the_flow() -> None:
    # Made and recorded by an earlier version: the flow runs on (refusing now would fail running work).
    cache = config_map(labels={MEMO_CACHE_LABEL: "true"})
    made = ObjectRef(api_version="v1", kind="ConfigMap", name="ci-cache", namespace=NS, uid="uid-old")
    sim = Simulator(make_flow([job_step("a")], name="ci", namespace=NS), T0)
    sim.flow = sim.flow.model_copy(
        update={
            "spec": sim.flow.spec.model_copy(
                update={"resource_templates": ResourceTemplates(config_map_templates=(cache,))}
            ),
            "status": sim.flow.status.model_copy(update={"resource_refs": (made,)}),
        }
    )
    sim.reconcile()
    assert sim.phase == FlowPhase.RUNNING
    assert len(sim.running()) == 1


KEYS = st.sampled_from(
    [MEMO_CACHE_LABEL, LABEL_FLOW, LABEL_INSTANCE, "approve.workflow.kube-zen.io/g", "team", "example.com/x"]
)


@given(st.dictionaries(KEYS, st.sampled_from(["true", "b", "x"])), st.booleans())
def test_a_built_object_carries_only_zen_flows_own_values_of_its_keys(
    labels: dict[str, str], instance: bool
) -> None:
    flow = make_flow(
        [job_step("a")], name="ci", namespace=NS, labels={LABEL_INSTANCE: "a"} if instance else None
    )
    body = build_resource(flow, "ConfigMap", config_map(labels=labels, annotations=labels))
    meta = body["metadata"]
    own = {k: v for k, v in meta["labels"].items() if "kube-zen.io/" in k}
    assert own == {LABEL_FLOW: "ci", **({LABEL_INSTANCE: "a"} if instance else {})}
    assert not [k for k in meta.get("annotations", {}) if "workflow.kube-zen.io/" in k]
    assert {k: v for k, v in meta["labels"].items() if k in ("team", "example.com/x")} == {
        k: v for k, v in labels.items() if k in ("team", "example.com/x")
    }


# --- red team 5's proof, end to end: a flow author plants a cache for another flow's memoized step ---


def victim() -> JobFlow:
    """Another user's flow: a memoized build step whose output later steps would use."""
    build = job_step(
        "build",
        inputs={"parameters": [{"name": "commit", "value": "abc123"}]},
        outputs={"parameters": [{"name": "image", "valueFrom": {"jsonPath": "$.succeeded"}}]},
        memoize={"key": "build-{{inputs.parameters.commit}}", "cache": {"configMap": {"name": "ci-cache"}}},
    )
    doc = flow_manifest("release", NS, [build])
    doc["metadata"]["uid"] = "uid-release"
    return JobFlow.model_validate(doc)


def planted(now: datetime) -> dict[str, Any]:
    """A flow whose only effect would be a ConfigMap `ci-cache` (flow `ci` + template `cache`) labelled
    as a memoize cache, holding the victim's key with an image of the attacker's choosing."""
    entry = MemoEntry(
        key="build-abc123",
        outputs={"image": "evil.example/backdoor:latest"},
        flow=f"{NS}/release",
        step="build",
        time=parse_time(format_time(now)),
    )
    cache = {
        "metadata": {"name": "cache", "labels": {MEMO_CACHE_LABEL: "true", "grafana_datasource": "1"}},
        "data": {data_key("build-abc123"): encode_entry(entry)},
    }
    doc = with_templates(flow_manifest("ci", NS, [job_step("noop")]), configMapTemplates=[cache])
    doc["metadata"]["uid"] = "uid-ci"
    return doc


@pytest.mark.parametrize("started", [False, True])
async def test_a_flow_author_cannot_plant_a_cache_that_serves_another_flows_memoized_step(
    started: bool,
) -> None:
    clock = FakeClock()
    api = FakeApiServer(clock)
    controller = Controller(
        flows=api, jobs=api, api=api, queue=WorkQueue(clock=clock),
        expectations=Expectations(clock), events=api, clock=clock, metrics=Metrics(),
    )  # fmt: skip
    api.on_flow = controller.on_flow_event
    api.on_job = controller.on_job_event

    doc = planted(clock.now() - timedelta(seconds=1))
    [error] = validate_jobflow(doc)  # admission refuses it
    assert error.path.endswith(f"metadata.labels[{MEMO_CACHE_LABEL}]")
    # Stored anyway (no webhook): as it is, or added to a flow already running (not checked again then).
    templates = doc["spec"].pop("resourceTemplates")
    bad = api.create_flow(
        JobFlow.model_validate(
            doc if started else {**doc, "spec": {**doc["spec"], "resourceTemplates": templates}}
        )
    )
    if started:
        for _ in range(2):
            api.sync()
            await controller.reconcile(bad.key)
        assert api.flows[bad.key].status.phase == FlowPhase.RUNNING
        edited = JobFlow.model_validate({**doc, "spec": {**doc["spec"], "resourceTemplates": templates}}).spec
        api.update_flow(bad.key, lambda f: f.model_copy(update={"spec": edited}))
    api.sync()
    await controller.reconcile(bad.key)
    api.sync()
    assert api.flows[bad.key].status.phase == FlowPhase.FAILED
    assert api.config_maps == {}  # nothing was made for it

    good = api.create_flow(victim())
    for _ in range(4):
        api.sync()
        await controller.reconcile(good.key)
    api.sync()
    step = api.flows[good.key].status.step("build")
    assert step is not None
    assert step.phase == "Running"  # its own Job runs: no entry of anyone else's served it
    assert [j for j in api.job_creates if j.startswith("release-")]
