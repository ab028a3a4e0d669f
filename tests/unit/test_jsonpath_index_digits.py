"""A JSONPath list index of thousands of digits is refused naming its field, everywhere a path is checked.

Python's int() raises a plain ValueError past 4,300 digits (int_max_str_digits); the callers catch only
JsonPathError, so such a path made the webhook answer 500 naming no field, and in the CRD-only mode the
controller raised on every reconcile and left the flow Pending with no condition.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_webhook_review import review
from validation_samples import base_flow, step

from zen_flow.api import JobFlow
from zen_flow.cli.validate import validate_paths
from zen_flow.controller.validity import Validity
from zen_flow.validation import validate_cronjobflow, validate_jobflow
from zen_flow.webhook.review import validate_review

BIG = "$[" + "1" * 4301 + "]"
INPUT = "spec.steps[4].inputs.parameters[0].valueFrom.jsonPath"
OUTPUT = "spec.steps[0].outputs.parameters[1].valueFrom.jsonPath"


def with_input() -> dict[str, Any]:
    flow = base_flow()
    step(flow, "d")["inputs"] = {"parameters": [{"name": "p", "valueFrom": {"jsonPath": "a:" + BIG}}]}
    return flow


def with_output() -> dict[str, Any]:
    flow = base_flow()
    step(flow, "a")["outputs"]["parameters"].append({"name": "q", "valueFrom": {"jsonPath": BIG}})
    return flow


CASES = [pytest.param(with_input, INPUT, id="input"), pytest.param(with_output, OUTPUT, id="output")]


@pytest.mark.parametrize(("make", "field"), CASES)
def test_the_validator_refuses_the_path_naming_its_field(make: Any, field: str) -> None:
    errors = validate_jobflow(make())
    assert [e.path for e in errors] == [field]
    # Too long for a JSONPath too (512 characters, test_webhook_retained_memory.py): either says why.
    assert "at most 18 digits" in str(errors[0]) or "Too long" in str(errors[0])


def test_an_index_of_19_digits_is_refused_for_its_digits() -> None:
    flow = base_flow()
    step(flow, "a")["outputs"]["parameters"].append(
        {"name": "q", "valueFrom": {"jsonPath": "$[" + "9" * 19 + "]"}}
    )
    (error,) = validate_jobflow(flow)
    assert error.path == OUTPUT
    assert "an index has at most 18 digits" in str(error)


@pytest.mark.parametrize(("make", "field"), CASES)
def test_the_webhook_denies_it_naming_the_field_not_as_an_internal_error(make: Any, field: str) -> None:
    response = validate_review(review(make()))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] != 500
    assert field in response["status"]["message"]


@pytest.mark.parametrize(("make", "field"), CASES)
async def test_in_crd_only_mode_the_controller_fails_the_flow_naming_the_field(make: Any, field: str) -> None:
    flow = make()
    stored = {**flow, "metadata": {**flow["metadata"], "uid": "u1", "generation": 1}}
    errors = await Validity(lambda key: None).checked(JobFlow.model_validate(stored))
    assert any(e.startswith(field) for e in errors), errors


def test_a_cronjobflow_whose_template_holds_it_is_refused_naming_the_field() -> None:
    cron = {
        "apiVersion": "workflow.kube-zen.io/v1alpha1",
        "kind": "CronJobFlow",
        "metadata": {"name": "c", "namespace": "default"},
        "spec": {"schedule": "*/5 * * * *", "jobFlowTemplate": {"spec": with_input()["spec"]}},
    }
    paths = [e.path for e in validate_cronjobflow(cron)]
    assert paths == [INPUT.replace("spec.", "spec.jobFlowTemplate.spec.", 1)]


def test_zen_flow_validate_prints_the_field_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(yaml.safe_dump(with_input(), sort_keys=False))
    out, err = io.StringIO(), io.StringIO()
    assert validate_paths([str(path)], out, err) == 2
    assert INPUT in out.getvalue()
    assert "Traceback" not in err.getvalue()
