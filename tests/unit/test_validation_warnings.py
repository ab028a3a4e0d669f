"""Admission warnings: what is accepted but does not do what the manifest suggests (validation/warnings.py),
sent by the validating webhook (kubectl prints them) and printed by `zen-flow validate` and `submit`."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

import yaml
from test_webhook_review import review
from validation_samples import base_flow, step

from zen_flow.cli.validate import validate_paths
from zen_flow.validation import AcceptedSpecs
from zen_flow.validation.warnings import MAX_WARNINGS, flow_warnings, spec_may_warn
from zen_flow.webhook import review as review_module
from zen_flow.webhook.review import validate_review

WARNING = (
    "spec.steps[0].outputs.artifacts[0]: no s3, so out is stored nowhere (the flow sets no "
    "spec.artifactRepository) and no later step can take it (the original meant to keep it in a ConfigMap)"
)


def kept_nowhere() -> dict[str, Any]:
    flow = base_flow()
    del step(flow, "a")["outputs"]["artifacts"][0]["s3"]
    return flow


def test_an_output_artifact_without_s3_draws_a_warning_and_one_with_s3_none() -> None:
    assert flow_warnings(kept_nowhere()) == [WARNING]
    assert flow_warnings(base_flow()) == []


def test_the_stored_nowhere_warning_names_a_cron_job_flow_s_field_and_a_template_s_way_out() -> None:
    cron = {"kind": "CronJobFlow", "spec": {"jobFlowTemplate": {"spec": kept_nowhere()["spec"]}}}
    assert flow_warnings(cron) == [WARNING.replace("spec.", "spec.jobFlowTemplate.spec.")]
    template = {"kind": "JobFlowTemplate", "spec": kept_nowhere()["spec"]}
    assert flow_warnings(template) == [
        WARNING.replace(
            "stored nowhere (the flow",
            "stored nowhere unless the flow made from this template sets its own artifactRepository "
            "(the template",
        )
    ]


def test_many_warnings_are_summed_up() -> None:
    flow = kept_nowhere()
    artifact = step(flow, "a")["outputs"]["artifacts"][0]
    step(flow, "a")["outputs"]["artifacts"] = [{**artifact, "name": f"o{i}"} for i in range(25)]
    warnings = flow_warnings(flow)
    assert len(warnings) == MAX_WARNINGS
    assert warnings[-1] == f"and {25 - MAX_WARNINGS + 1} more artifacts without s3"


def test_a_spec_without_artifacts_is_not_decoded_for_warnings() -> None:
    assert not spec_may_warn(json.dumps({"steps": [{"name": "a"}]}).encode())
    assert spec_may_warn(json.dumps(kept_nowhere()["spec"]).encode())
    assert not spec_may_warn(None)


def graced(*, final: bool) -> dict[str, Any]:
    flow = base_flow()
    flow["spec"]["executionPolicy"] = {"activeDeadlineSeconds": 3600, "finallyGraceSeconds": 300}
    if final:
        flow["spec"]["steps"].append({**copy.deepcopy(step(flow, "a")), "name": "cleanup", "finally": True})
        del flow["spec"]["steps"][-1]["outputs"]
    return flow


def test_a_finally_grace_without_a_finally_step_draws_a_warning() -> None:
    # Admitted (the flow keeps its deadline), but the grace keeps time for nothing.
    flow = graced(final=False)
    assert spec_may_warn(json.dumps(flow["spec"]).encode())
    assert flow_warnings(flow) == [
        "spec.executionPolicy.finallyGraceSeconds: the flow has no finally step, so no time of its deadline "
        "is kept for one: it changes nothing (the deadline stops the flow at activeDeadlineSeconds)"
    ]
    created = validate_review(review(flow))["response"]
    assert created["allowed"] is True
    assert flow_warnings(graced(final=True)) == []


def test_the_webhook_warns_on_a_new_spec_not_on_an_update_that_keeps_it() -> None:
    flow = kept_nowhere()
    created = validate_review(review(flow))["response"]
    assert (created["allowed"], created["warnings"]) == (True, [WARNING])
    labelled = copy.deepcopy(flow)
    labelled["metadata"]["labels"] = {"team": "a"}
    assert "warnings" not in validate_review(review(labelled, "UPDATE", old=flow))["response"]
    fine = validate_review(review(base_flow()))["response"]
    assert fine["allowed"]
    assert "warnings" not in fine


def test_the_webhook_sends_no_warning_with_a_refusal() -> None:
    flow = kept_nowhere()
    step(flow, "b")["dependencies"] = ["zzz"]
    answer = validate_review(review(flow))["response"]
    assert not answer["allowed"]
    assert "warnings" not in answer


def test_validate_prints_the_warning_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(kept_nowhere()))
    out, err = io.StringIO(), io.StringIO()
    assert validate_paths([str(path)], out, err) == 0
    assert out.getvalue() == ""
    assert f"{path}: Warning: {WARNING}\n" in err.getvalue()


def test_a_remembered_spec_warns_again_without_being_checked_again() -> None:
    # The same spec created twice (a dry run and the apply, flows from one generateName manifest): the
    # second is answered from what the webhook remembered, warning included.
    with patch.object(review_module, "ACCEPTED", AcceptedSpecs()) as remembered:
        first = validate_review(review(kept_nowhere()))["response"]
        assert len(remembered) == 1
        second = validate_review(review(kept_nowhere()))["response"]
    assert first["warnings"] == second["warnings"] == [WARNING]
