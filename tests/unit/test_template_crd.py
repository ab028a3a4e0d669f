"""The JobFlowTemplate and ClusterJobFlowTemplate CRDs: their spec schema is the JobFlow CRD's (the same
properties, copied), named as the constants say, with the name rule of a label value; and the JobFlow CRD
lets a flow name a template instead of writing steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import cel
import pytest
import yaml

from zen_flow.api import constants
from zen_flow.api.jobflow import FLOWS_OWN
from zen_flow.validation.flow_template import validate_clusterjobflowtemplate, validate_jobflowtemplate
from zen_flow.validation.limits import MAX_FLOW_NAME
from zen_flow.validation.unknown_keys import document_unknown_keys
from zen_flow_dev.testing.flows import job_step

ROOT = Path(__file__).resolve().parents[2]


def crd(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "config" / "crd" / f"{name}.yaml").read_text())
    return loaded


FLOW_SPEC = crd(constants.CRD_NAME)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
# (CRD name, kind, plural, singular, short name, scope)
KINDS = [
    pytest.param(
        constants.TEMPLATE_CRD_NAME,
        constants.TEMPLATE_KIND,
        constants.TEMPLATE_PLURAL,
        constants.TEMPLATE_SINGULAR,
        "jft",
        "Namespaced",
        id="JobFlowTemplate",
    ),
    pytest.param(
        constants.CLUSTER_TEMPLATE_CRD_NAME,
        constants.CLUSTER_TEMPLATE_KIND,
        constants.CLUSTER_TEMPLATE_PLURAL,
        constants.CLUSTER_TEMPLATE_SINGULAR,
        "cjft",
        "Cluster",
        id="ClusterJobFlowTemplate",
    ),
]
CRD_NAMES = [pytest.param(p.values[0], id=p.id) for p in KINDS]


def version(name: str) -> dict[str, Any]:
    first: dict[str, Any] = crd(name)["spec"]["versions"][0]
    return first


def schema(name: str) -> dict[str, Any]:
    root: dict[str, Any] = version(name)["schema"]["openAPIV3Schema"]
    return root


@pytest.mark.parametrize(("name", "kind", "plural", "singular", "short", "scope"), KINDS)
def test_names_match_the_api_constants(
    name: str, kind: str, plural: str, singular: str, short: str, scope: str
) -> None:
    template = crd(name)
    names = template["spec"]["names"]
    assert template["metadata"]["name"] == name == f"{plural}.{constants.GROUP}"
    assert (names["kind"], names["plural"], names["singular"]) == (kind, plural, singular)
    assert names["shortNames"] == [short]
    assert template["spec"]["scope"] == scope
    assert (template["spec"]["group"], version(name)["name"]) == (constants.GROUP, constants.VERSION)
    assert "subresources" not in version(name)
    assert "status" not in schema(name)["properties"]


@pytest.mark.parametrize("name", CRD_NAMES)
def test_the_spec_schema_is_the_jobflows_without_the_flows_own_fields(name: str) -> None:
    spec = schema(name)["properties"]["spec"]
    assert set(spec["properties"]) == set(FLOW_SPEC["properties"]) - FLOWS_OWN
    for prop, prop_schema in spec["properties"].items():
        assert prop_schema == FLOW_SPEC["properties"][prop], f"spec.{prop} differs from the JobFlow CRD's"
    assert spec["required"] == ["steps"]


@pytest.mark.parametrize(("name", "kind"), [pytest.param(p.values[0], p.values[1], id=p.id) for p in KINDS])
def test_zen_flow_validate_knows_each_kinds_spec_keys_as_its_crd_does(name: str, kind: str) -> None:
    # `zen-flow validate` names a key the apiserver would prune: every top-level key of the CRD's spec is
    # known, and every other one (a JobFlow's own `suspend`, `templateRef`) named unknown.
    flow_keys = set(FLOW_SPEC["properties"])
    crd_keys = set(schema(name)["properties"]["spec"]["properties"])
    doc = {"kind": kind, "spec": dict.fromkeys(flow_keys, None)}
    unknown = {found.path for found in document_unknown_keys(doc)}
    assert unknown == {f"spec.{key}" for key in flow_keys - crd_keys} != set()
    assert document_unknown_keys({"kind": constants.KIND, "spec": dict.fromkeys(flow_keys, None)}) == []


@pytest.mark.parametrize("name", CRD_NAMES)
def test_the_name_is_at_most_a_label_value(name: str) -> None:
    [rule] = schema(name)["x-kubernetes-validations"]
    assert rule["rule"] == f"self.metadata.name.size() <= {MAX_FLOW_NAME}"


@pytest.mark.parametrize("name", CRD_NAMES)
def test_printer_columns_are_the_age_alone(name: str) -> None:
    assert [c["name"] for c in version(name)["additionalPrinterColumns"]] == ["Age"]


def test_a_jobflow_needs_steps_or_a_template_ref() -> None:
    assert "required" not in FLOW_SPEC
    rule = FLOW_SPEC["x-kubernetes-validations"][0]
    assert rule["rule"] == "has(self.steps) != has(self.templateRef)"  # exactly one
    ref = FLOW_SPEC["properties"]["templateRef"]
    assert ref["required"] == ["name"]
    assert ref["properties"]["name"]["maxLength"] == MAX_FLOW_NAME
    assert ref["properties"]["clusterScope"]["type"] == "boolean"  # Argo's name for a cluster template


def test_the_template_crd_is_generated_from_the_jobflow_crd() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "template-crd.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", CRD_NAMES)
@pytest.mark.parametrize(
    "grace",
    [
        {"activeDeadlineSeconds": 10},
        {"finallyGraceSeconds": 5},
        {"activeDeadlineSeconds": 10, "finallyGraceSeconds": 5},
        {"activeDeadlineSeconds": 10, "finallyGraceSeconds": 10},
    ],
)
def test_a_templates_finally_grace_rules_refuse_what_its_validator_refuses(
    name: str, grace: dict[str, Any]
) -> None:
    # The JobFlow CRD's rules moved to its spec (they skip a flow naming a template); a template's spec,
    # not copied from there, carries its own, which the template validator agrees with.
    rules = schema(name)["properties"]["spec"]["x-kubernetes-validations"]
    spec = {"steps": [job_step("a")], "executionPolicy": grace}
    said = [" ".join(r["message"].split()) for r in rules if not cel.evaluate(r["rule"], {"self": spec})]
    kind = "JobFlowTemplate" if name == constants.TEMPLATE_CRD_NAME else "ClusterJobFlowTemplate"
    template = {
        "apiVersion": f"{constants.GROUP}/{constants.VERSION}",
        "kind": kind,
        "metadata": {"name": "t", **({"namespace": "team"} if kind == "JobFlowTemplate" else {})},
        "spec": spec,
    }
    validate = validate_jobflowtemplate if kind == "JobFlowTemplate" else validate_clusterjobflowtemplate
    field = "spec.executionPolicy.finallyGraceSeconds"
    assert said == [e.detail for e in validate(template) if e.path == field]
