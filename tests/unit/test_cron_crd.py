"""The CronJobFlow CRD agrees with the models and constants it mirrors (a field in one and not the other
would be pruned by the apiserver, or never read)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from zen_flow.api import constants
from zen_flow.api.cronjobflow import (
    CronJobFlowSpec,
    CronJobFlowStatus,
    JobFlowTemplate,
    RunRef,
    TemplateMetadata,
)
from zen_flow.api.meta import Condition
from zen_flow.core.cron import MAX_SCHEDULE
from zen_flow.validation.cronjobflow import MAX_CRON_NAME

ROOT = Path(__file__).resolve().parents[2]
CRD = yaml.safe_load((ROOT / "config" / "crd" / f"{constants.CRON_CRD_NAME}.yaml").read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
SPEC = SCHEMA["properties"]["spec"]
STATUS = SCHEMA["properties"]["status"]


def wire_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_names_match_the_api_constants() -> None:
    names = CRD["spec"]["names"]
    assert CRD["metadata"]["name"] == constants.CRON_CRD_NAME
    assert (names["kind"], names["plural"], names["singular"]) == (
        constants.CRON_KIND,
        constants.CRON_PLURAL,
        constants.CRON_SINGULAR,
    )
    assert CRD["spec"]["group"] == constants.GROUP
    assert VERSION["name"] == constants.VERSION
    assert VERSION["subresources"] == {"status": {}}


def test_every_model_field_is_in_the_schema_and_back() -> None:
    assert set(SPEC["properties"]) == wire_names(CronJobFlowSpec)
    template = SPEC["properties"]["jobFlowTemplate"]
    assert set(template["properties"]) == wire_names(JobFlowTemplate)
    assert set(template["properties"]["metadata"]["properties"]) == wire_names(TemplateMetadata)
    assert set(STATUS["properties"]) == wire_names(CronJobFlowStatus)
    assert set(STATUS["properties"]["active"]["items"]["properties"]) == wire_names(RunRef)
    assert set(STATUS["properties"]["conditions"]["items"]["properties"]) == wire_names(Condition)


def test_defaults_enums_and_limits_are_the_codes() -> None:
    props = SPEC["properties"]
    assert props["concurrencyPolicy"]["default"] == constants.DEFAULT_CONCURRENCY_POLICY
    assert props["concurrencyPolicy"]["enum"] == [p.value for p in constants.ConcurrencyPolicy]
    assert props["successfulJobsHistoryLimit"]["default"] == constants.DEFAULT_SUCCESSFUL_HISTORY_LIMIT
    assert props["failedJobsHistoryLimit"]["default"] == constants.DEFAULT_FAILED_HISTORY_LIMIT
    assert props["schedule"]["maxLength"] == MAX_SCHEDULE
    [rule] = SCHEMA["x-kubernetes-validations"]
    assert rule["rule"] == f"self.metadata.name.size() <= {MAX_CRON_NAME}"


def test_printer_columns_are_cronjobs_and_read_real_fields() -> None:
    columns = {c["name"]: c["jsonPath"] for c in VERSION["additionalPrinterColumns"] if not c.get("priority")}
    assert list(columns) == ["Schedule", "Suspend", "Active", "Last Schedule", "Age"]
    for path in columns.values():
        parts = path.lstrip(".").split(".")
        node: dict[str, Any] = SCHEMA
        for part in parts:
            if part == "metadata":
                break
            node = node["properties"][part]


def test_the_template_spec_is_kept_whole_for_the_webhook_to_check() -> None:
    spec = SPEC["properties"]["jobFlowTemplate"]["properties"]["spec"]
    assert spec == {**spec, "type": "object", "x-kubernetes-preserve-unknown-fields": True}


@pytest.mark.parametrize(
    ("field", "says"),
    [
        ("concurrencyPolicy", "up to 100 active runs"),
        ("concurrencyPolicy", "their finally steps do not run"),
        ("schedule", "Kubernetes CronJob's syntax"),
        ("schedule", "Refused: six fields, L, W, #, 7 for Sunday, TZ= in the schedule, @every"),
    ],
)
def test_kubectl_explain_says_the_limits_and_the_syntax(field: str, says: str) -> None:
    spec = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert says in " ".join(spec[field]["description"].split())


def _nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from _nodes(prop, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from _nodes(schema["items"], f"{path}[]")


def test_every_field_has_a_description() -> None:
    # `kubectl explain cjf.spec` and `cjf.status` said nothing, as the JobFlow CRD's never do.
    missing = [
        path
        for path, node in _nodes(SCHEMA)
        if path and path != "metadata" and not path.endswith("[]") and not node.get("description")
    ]
    assert missing == []
