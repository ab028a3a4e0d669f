"""The JobFlowTemplate CRD: its spec schema is the JobFlow CRD's (the same properties, copied), named as
the constants say, with the name rule of a label value; and the JobFlow CRD lets a flow name a template
instead of writing steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from zen_flow.api import constants
from zen_flow.validation.limits import MAX_FLOW_NAME

ROOT = Path(__file__).resolve().parents[2]


def crd(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "config" / "crd" / f"{name}.yaml").read_text())
    return loaded


TEMPLATE = crd(constants.TEMPLATE_CRD_NAME)
VERSION = TEMPLATE["spec"]["versions"][0]
SCHEMA = VERSION["schema"]["openAPIV3Schema"]
FLOW_SPEC = crd(constants.CRD_NAME)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_names_match_the_api_constants() -> None:
    names = TEMPLATE["spec"]["names"]
    assert TEMPLATE["metadata"]["name"] == constants.TEMPLATE_CRD_NAME
    assert (names["kind"], names["plural"], names["singular"]) == (
        constants.TEMPLATE_KIND,
        constants.TEMPLATE_PLURAL,
        constants.TEMPLATE_SINGULAR,
    )
    assert names["shortNames"] == ["jft"]
    assert (TEMPLATE["spec"]["group"], VERSION["name"]) == (constants.GROUP, constants.VERSION)
    assert "subresources" not in VERSION
    assert "status" not in SCHEMA["properties"]


def test_the_spec_schema_is_the_jobflows_without_the_flows_own_fields() -> None:
    spec = SCHEMA["properties"]["spec"]
    assert set(spec["properties"]) == set(FLOW_SPEC["properties"]) - {"suspend", "templateRef"}
    for name, schema in spec["properties"].items():
        assert schema == FLOW_SPEC["properties"][name], f"spec.{name} differs from the JobFlow CRD's"
    assert spec["required"] == ["steps"]


def test_the_name_is_at_most_a_label_value() -> None:
    [rule] = SCHEMA["x-kubernetes-validations"]
    assert rule["rule"] == f"self.metadata.name.size() <= {MAX_FLOW_NAME}"


def test_printer_columns_are_the_age_alone() -> None:
    assert [c["name"] for c in VERSION["additionalPrinterColumns"]] == ["Age"]


def test_a_jobflow_needs_steps_or_a_template_ref() -> None:
    assert "required" not in FLOW_SPEC
    [rule] = FLOW_SPEC["x-kubernetes-validations"]
    assert rule["rule"] == "has(self.steps) != has(self.templateRef)"  # exactly one
    ref = FLOW_SPEC["properties"]["templateRef"]
    assert ref["required"] == ["name"]
    assert ref["properties"]["name"]["maxLength"] == MAX_FLOW_NAME


def test_the_template_crd_is_generated_from_the_jobflow_crd() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "template-crd.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
