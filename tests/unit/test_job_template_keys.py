"""A step's Job, its pods and what is merged onto them (the step's `metadata`, `stepDefaults.metadata`)
cannot carry zen-flow's own label and annotation keys (`workflow.kube-zen.io/...` and its subdomains'):
only zen-flow writes them on what it creates, as for `spec.resourceTemplates`
(test_resource_template_keys.py). Admission and `zen-flow validate` refuse them, naming the field and the
key; the flow's own metadata keeps the keys users set there (concurrency-key, correlation-id, approvals).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from zen_flow.api.constants import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_MATRIX,
    ANNOTATION_SCHEDULED_TIME,
    LABEL_CONCURRENCY_KEY,
    LABEL_CRON,
    LABEL_FLOW,
    LABEL_INSTANCE,
    LABEL_PARENT,
)
from zen_flow.cli.validate import validate_paths
from zen_flow.core.own_keys import OWN_KEY_REFUSAL
from zen_flow.planner.memoization import MEMO_CACHE_LABEL
from zen_flow.validation import validate_cronjobflow, validate_jobflow, validate_jobflowtemplate
from zen_flow.validation.errors import ErrorType
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template

NS = "team-a"
OWN = [MEMO_CACHE_LABEL, LABEL_FLOW, LABEL_CRON, LABEL_PARENT, LABEL_INSTANCE, ANNOTATION_CREATED_BY,
       ANNOTATION_SCHEDULED_TIME, ANNOTATION_MATRIX, "approve.workflow.kube-zen.io/gate"]  # fmt: skip
OTHERS = ["team", "kueue.x-k8s.io/queue-name", "kube-zen.io/owner", "notworkflow.kube-zen.io/x",
          "example.com/workflow.kube-zen.io", "app.kubernetes.io/managed-by"]  # fmt: skip
STEP = "spec.steps[0]"
# Where a step's labels and annotations are written, each the path of its `metadata`.
PLACES = {
    "job": STEP + ".template.metadata",
    "pod": STEP + ".template.spec.template.metadata",
    "step": STEP + ".metadata",
    "defaults": "spec.stepDefaults.metadata",
}


def with_keys(place: str, field: str, keys: dict[str, str]) -> dict[str, Any]:
    doc = flow_manifest("ci", NS, [job_step("a")])
    add_keys(doc, place, field, keys)
    return doc


def add_keys(doc: dict[str, Any], place: str, field: str, keys: dict[str, str]) -> None:
    spec = doc["spec"]
    if place == "defaults":
        holder = spec.setdefault("stepDefaults", {})
    elif place == "step":
        holder = spec["steps"][0]
    else:
        job = spec["steps"][0]["template"]
        holder = job if place == "job" else job["spec"]["template"]
    holder.setdefault("metadata", {}).setdefault(field, {}).update(keys)


@pytest.mark.parametrize("field", ["labels", "annotations"])
@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("key", [MEMO_CACHE_LABEL, ANNOTATION_CREATED_BY, "approve.workflow.kube-zen.io/g"])
def test_admission_refuses_zen_flows_own_keys_naming_the_field_and_the_key(
    place: str, field: str, key: str
) -> None:
    doc = with_keys(place, field, {key: "true", "team": "a"})
    [error] = validate_jobflow(doc)
    assert error.path == f"{PLACES[place]}.{field}[{key}]"
    assert error.type == ErrorType.FORBIDDEN
    assert str(error) == f"{PLACES[place]}.{field}[{key}]: Forbidden: {OWN_KEY_REFUSAL}"


@pytest.mark.parametrize("field", ["labels", "annotations"])
@pytest.mark.parametrize("place", PLACES)
def test_other_keys_are_accepted(place: str, field: str) -> None:
    assert validate_jobflow(with_keys(place, field, dict.fromkeys(OTHERS, "x"))) == []


def test_the_flows_own_metadata_keeps_the_keys_users_set_there() -> None:
    doc = flow_manifest(
        "ci", NS, [job_step("a")], labels={LABEL_CONCURRENCY_KEY: "nightly"},
        annotations={"workflow.kube-zen.io/correlation-id": "t-7", "approve.workflow.kube-zen.io/a": "true"},
    )  # fmt: skip
    assert validate_jobflow(doc) == []


def test_a_matrix_steps_items_carry_zen_flows_annotation_and_are_accepted() -> None:
    doc = flow_manifest(
        "ci", NS, [job_step("a", matrix={"parameters": [{"name": "os", "values": ["x", "y"]}]})]
    )
    assert validate_jobflow(doc) == []
    doc["spec"]["steps"][0]["metadata"] = {"annotations": {ANNOTATION_MATRIX: "{}"}}
    [error] = validate_jobflow(doc)  # said once, for the step as written
    assert error.path == f"{STEP}.metadata.annotations[{ANNOTATION_MATRIX}]"


def test_a_job_flow_template_and_a_cron_job_flows_runs_refuse_them_too() -> None:
    doc = with_keys("pod", "labels", {LABEL_FLOW: "other"})
    path = f"{PLACES['pod']}.labels[{LABEL_FLOW}]"
    template = {"apiVersion": doc["apiVersion"], "kind": "JobFlowTemplate", "metadata": {"name": "t"}}
    assert [e.path for e in validate_jobflowtemplate({**template, "spec": doc["spec"]})] == [path]
    cron = {
        "apiVersion": doc["apiVersion"],
        "kind": "CronJobFlow",
        "metadata": {"name": "nightly", "namespace": NS},
        "spec": {"schedule": "0 2 * * *", "jobFlowTemplate": {"spec": doc["spec"]}},
    }
    assert [e.path for e in validate_cronjobflow(cron)] == [f"spec.jobFlowTemplate.{path}"]


def test_zen_flow_validate_names_the_file_the_field_and_the_key(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(with_keys("job", "annotations", {ANNOTATION_SCHEDULED_TIME: "x"})))
    out, err = io.StringIO(), io.StringIO()
    assert validate_paths([str(path)], out, err) == 2
    [line] = out.getvalue().splitlines()
    assert line.startswith(f"{path}: {PLACES['job']}.annotations[{ANNOTATION_SCHEDULED_TIME}]: Forbidden: ")


PLACED = st.tuples(
    st.sampled_from(list(PLACES)), st.sampled_from(["labels", "annotations"]), st.sampled_from(OWN + OTHERS)
)


@settings(max_examples=150, deadline=None)
@given(st.lists(PLACED, max_size=8))
def test_exactly_the_own_keys_are_refused_wherever_they_are(keys: list[tuple[str, str, str]]) -> None:
    doc = flow_manifest("ci", NS, [job_step("a", template=job_template())])
    for place, field, key in keys:
        add_keys(doc, place, field, {key: "v"})
    expected = {f"{PLACES[p]}.{f}[{k}]" for p, f, k in keys if k in OWN}
    errors = validate_jobflow(doc)
    assert {e.path for e in errors} == expected
    assert all(e.type == ErrorType.FORBIDDEN for e in errors)
