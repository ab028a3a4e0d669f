"""Hostile input: a name, key or duration ending in a newline is refused at its field. Python's `$` matches
before a final "\\n", so a `^...$` pattern tried with `re.match` took "a\\n" for "a"; the apiserver's patterns
(Go's RE2, where `$` is the end of the text) refuse it, and a flow the webhook admitted would then fail when
its Job or pod is created."""

from __future__ import annotations

from typing import Any

import pytest

from zen_flow import config
from zen_flow.cli import build_parser
from zen_flow.validation import validate_jobflow
from zen_flow_dev.testing.flows import flow_manifest, job_step, job_template


def labelled_template(labels: dict[str, str]) -> dict[str, Any]:
    template = job_template()
    template["metadata"] = {"labels": labels}
    return template


def input_from(**value_from: Any) -> dict[str, Any]:
    return {"inputs": {"parameters": [{"name": "v", "valueFrom": value_from}]}}


def header_from(name: str) -> dict[str, Any]:
    ref = {"name": "s", "key": "k"}
    http = {"url": "https://example.com", "headersFrom": [{"name": name, "secretKeyRef": ref}]}
    return {"inputs": {"artifacts": [{"name": "page", "http": http}]}}


STEP = "spec.steps[0]"
# name: (the step, the field the webhook names)
REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "a step name (DNS-1123 label)": (job_step("a\n"), f"{STEP}.name"),
    "a ConfigMap's name (DNS-1123 subdomain)": (
        job_step("a", **input_from(configMapKeyRef={"name": "c\n", "key": "k"})),
        f"{STEP}.inputs.parameters[0].valueFrom.configMapKeyRef.name",
    ),
    "a ConfigMap's key (config key)": (
        job_step("a", **input_from(configMapKeyRef={"name": "c", "key": "k\n"})),
        f"{STEP}.inputs.parameters[0].valueFrom.configMapKeyRef.key",
    ),
    "a label key (qualified name)": (
        job_step("a", template=labelled_template({"app\n": "x"})),
        f"{STEP}.template.metadata.labels",
    ),
    "a label value": (
        job_step("a", template=labelled_template({"app": "x\n"})),
        f"{STEP}.template.metadata.labels[app]",
    ),
    "an HTTP header name (RFC 9110 token)": (
        job_step("a", **header_from("Authorization\n")),
        f"{STEP}.inputs.artifacts[0].http.headersFrom[0].name",
    ),
    "a backoff duration (Go duration)": (
        job_step("a", retryPolicy={"limit": 1, "backoff": {"duration": "10s\n"}}),
        f"{STEP}.retryPolicy.backoff.duration",
    ),
    "a child flow's template name": (
        {"name": "a", "type": "Flow", "flow": {"templateRef": {"name": "build\n"}}},
        f"{STEP}.flow.templateRef.name",
    ),
}


@pytest.mark.parametrize(("step", "field"), REFUSED.values(), ids=REFUSED.keys())
def test_a_value_ending_in_a_newline_is_refused_at_its_field(step: dict[str, Any], field: str) -> None:
    errors = validate_jobflow(flow_manifest("f", "default", [step]))
    assert field in [e.path for e in errors], errors
    # Without the newline the same step is admitted: the newline alone is what is refused.
    assert not validate_jobflow(flow_manifest("f", "default", [strip_newlines(step)]))


def strip_newlines(value: Any) -> Any:
    if isinstance(value, str):
        return value.rstrip("\n")
    if isinstance(value, dict):
        return {strip_newlines(k): strip_newlines(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_newlines(v) for v in value]
    return value


def test_a_lease_name_ending_in_a_newline_is_refused_naming_the_flag() -> None:
    with pytest.raises(ValueError, match=r"--leader-election-name: 'zen-flow\\n' is not a valid Lease name"):
        config.load(build_parser().parse_args(["run", "--leader-election-name", "zen-flow\n"]), env={})
    assert config.load(build_parser().parse_args(["run", "--leader-election-name", "zen-flow"]), env={})
