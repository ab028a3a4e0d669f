"""A spec written for a newer zen-flow is recognised (api/known_fields.py): a key or an enumerated value
this release's CRD does not have, anywhere in a JobFlow's or CronJobFlow's spec, is named by its path;
what the CRD lets hold any key (Job templates, resourceTemplates, ...) never is. The enums are held to
config/crd here, so a CRD enum widened without the table fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from zen_flow.api.cronjobflow import CronJobFlowSpec
from zen_flow.api.jobflow import JobFlowSpec
from zen_flow.api.known_fields import ENUMS, newer_field
from zen_flow_dev.testing.flows import flow_manifest, job_step

ROOT = Path(__file__).resolve().parents[2]
CRDS = {
    JobFlowSpec: ROOT / "config" / "crd" / "jobflows.workflow.kube-zen.io.yaml",
    CronJobFlowSpec: ROOT / "config" / "crd" / "cronjobflows.workflow.kube-zen.io.yaml",
}


def spec_schema(model: type[BaseModel]) -> dict[str, Any]:
    crd = yaml.safe_load(CRDS[model].read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def walk(schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every structural schema node of the spec with its path (`[]` for a list's items); the subtrees
    that keep unknown fields are not entered."""
    found = [(path, schema)]
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return found
    for key, sub in (schema.get("properties") or {}).items():
        found += walk(sub, (*path, key))
    if "items" in schema:
        found += walk(schema["items"], (*path, "[]"))
    return found


def document(path: tuple[str, ...], value: Any) -> Any:
    """The smallest spec holding `value` at `path`."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    return [document(rest, value)] if head == "[]" else {head: document(rest, value)}


# A value for each required field a document may lack: one of its enum's if it has one.
FILLERS = {"action": "FailJob", "kind": "User"}


def parsed(model: type[BaseModel], raw: Any) -> BaseModel:
    """`raw` parsed, each required field it lacks filled in."""
    for _ in range(20):
        try:
            return model.model_validate(raw)
        except ValidationError as err:
            missing = [e["loc"] for e in err.errors() if e["type"] == "missing"]
            if not missing:
                raise
            for loc in missing:
                node = raw
                for part in loc[:-1]:
                    node = node[part]
                node[loc[-1]] = FILLERS.get(str(loc[-1]), "x")
    raise AssertionError("could not fill the required fields")


def shown(path: tuple[str, ...]) -> str:
    return "spec" + "".join("[0]" if p == "[]" else f".{p}" for p in path)


ENUM_PATHS = [
    (model, path, node["enum"]) for model in CRDS for path, node in walk(spec_schema(model)) if "enum" in node
]
OBJECT_PATHS = [
    (model, path)
    for model in CRDS
    for path, node in walk(spec_schema(model))
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields")
]


def test_the_table_has_each_enum_of_the_crds_once() -> None:
    assert len(ENUMS) == len(ENUM_PATHS)


@pytest.mark.parametrize(("model", "path", "values"), ENUM_PATHS, ids=lambda v: str(v))
def test_every_value_of_a_crd_enum_is_known_and_any_other_is_newer(
    model: type[BaseModel], path: tuple[str, ...], values: list[str]
) -> None:
    for value in values:
        assert newer_field(parsed(model, document(path, value))) is None
    found = newer_field(parsed(model, document(path, "FromTheFuture")))
    assert found is not None
    assert found.startswith(f'{shown(path)}: "FromTheFuture" is not a value this release knows')


@pytest.mark.parametrize(("model", "path"), OBJECT_PATHS, ids=lambda v: str(v))
def test_a_key_the_crd_does_not_declare_is_newer_at_every_level(
    model: type[BaseModel], path: tuple[str, ...]
) -> None:
    raw = document((*path, "fieldFromTheFuture"), True)
    assert newer_field(parsed(model, raw)) == (
        f"{shown((*path, 'fieldFromTheFuture'))}: a field this release does not know"
    )


SAMPLES = {"string": "x", "integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
FIELD_PATHS = [
    (model, path, node)
    for model in CRDS
    for path, node in walk(spec_schema(model))
    if path and path[-1] != "[]"
]


@pytest.mark.parametrize(("model", "path", "node"), FIELD_PATHS, ids=lambda v: str(v))
def test_every_key_the_crd_declares_is_known(
    model: type[BaseModel], path: tuple[str, ...], node: dict[str, Any]
) -> None:
    # Else a flow using it would wait for a newer zen-flow for ever.
    value = node["enum"][0] if "enum" in node else SAMPLES.get(node.get("type", "object"), "x")
    assert newer_field(parsed(model, document(path, value))) is None


def test_the_subtrees_that_keep_any_key_are_never_newer() -> None:
    manifest = flow_manifest("f", "default", [job_step("a")])
    spec = manifest["spec"]
    step = spec["steps"][0]
    step["template"]["spec"]["template"]["spec"]["someFutureKubeField"] = {"x": 1}
    step["retryPolicy"] = {"limit": 1, "affinity": {"nodeAntiAffinity": {"anything": True}}}
    spec["resourceTemplates"] = {"configMapTemplates": [{"metadata": {"name": "c"}, "newField": 1}]}
    spec["stepDefaults"] = {"podSpec": {"affinity": {"newAffinity": {}}, "securityContext": {"newKnob": 1}}}
    assert newer_field(JobFlowSpec.model_validate(spec)) is None
    cron = {"schedule": "@daily", "jobFlowTemplate": {"spec": {"steps": [], "newFlowField": 1}}}
    assert newer_field(CronJobFlowSpec.model_validate(cron)) is None


@given(st.integers(1, 30), st.lists(st.integers(0, 29), min_size=1, max_size=3))
def test_the_first_unknown_key_is_named_with_its_step(count: int, marked: list[int]) -> None:
    steps: list[dict[str, Any]] = [{"name": f"s{i}", "type": "Manual"} for i in range(count)]
    for at in marked:
        steps[at % count]["allowRetryFromTheFuture"] = True
    first = min(at % count for at in marked)
    found = newer_field(JobFlowSpec.model_validate({"steps": steps}))
    assert found == f"spec.steps[{first}].allowRetryFromTheFuture: a field this release does not know"


def test_a_large_spec_that_this_release_knows_is_not_newer() -> None:
    steps = [job_step(f"s{i}", *[f"s{i - 1}"][: min(i, 1)]) for i in range(500)]
    manifest = flow_manifest("f", "default", steps)
    manifest["spec"]["executionPolicy"] = {"jobRetention": "FailedOnly", "concurrencyPolicy": "Forbid"}
    assert newer_field(JobFlowSpec.model_validate(manifest["spec"])) is None
