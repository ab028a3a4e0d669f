"""The JobFlow CRD and the pydantic models agree field by field, and the schema is fully structural.

The walker goes through a model class and the CRD's OpenAPI schema side by side, so a field added to one
and forgotten in the other fails here instead of being pruned by the apiserver (the original's bug).
"""

from __future__ import annotations

import re
import types
from collections.abc import Iterator, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import cel
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel
from pydantic.dataclasses import is_pydantic_dataclass

from zen_flow.api import constants
from zen_flow.api.constants import (
    ApprovalDecision,
    BackoffType,
    ConcurrencyPolicy,
    DependencyPolicy,
    FlowPhase,
    JobRetention,
    StepPhase,
    StepType,
)
from zen_flow.api.flow_status import JobFlowStatus
from zen_flow.api.jobflow import JobFlow, JobFlowSpec
from zen_flow.api.transfer import ARCHIVES
from zen_flow.core import naming
from zen_flow.core.durations import parse_duration
from zen_flow.planner import status as planner_status
from zen_flow.planner import steps as planner_steps
from zen_flow.validation import limits, outputs, policy, size, validate_jobflow
from zen_flow.validation.repository import MAX_KEY_PREFIX
from zen_flow_dev.testing.examples import all_flow_params
from zen_flow_dev.testing.flows import flow_manifest, job_step

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "config" / "crd" / f"{constants.CRD_NAME}.yaml"

# The models keep enumerated fields as plain strings (parsing must not fail on a value the validator
# reports), so this is the one place that says which StrEnum (or validator tuple, where the API has no
# StrEnum) each enumerated schema path mirrors.
ENUMS: dict[str, type[StrEnum] | Sequence[str]] = {
    "spec.executionPolicy.concurrencyPolicy": ConcurrencyPolicy,
    "spec.executionPolicy.jobRetention": JobRetention,
    "spec.executionPolicy.podFailurePolicy.rules[].action": policy.POD_FAILURE_ACTIONS,
    "spec.executionPolicy.podFailurePolicy.rules[].onExitCodes.operator": policy.EXIT_CODE_OPERATORS,
    "spec.executionPolicy.podFailurePolicy.rules[].onPodConditions[].status": policy.CONDITION_STATUSES,
    "spec.steps[].type": StepType,
    "spec.steps[].approval.approvers[].kind": constants.APPROVER_KINDS,
    "spec.steps[].dependencyPolicy": DependencyPolicy,
    "spec.steps[].retryPolicy.backoff.type": BackoffType,
    "spec.steps[].outputs.artifacts[].archive.format": outputs.ARCHIVE_FORMATS,
    "spec.steps[].outputs.artifacts[].archive.compression": outputs.COMPRESSIONS,
    "status.phase": FlowPhase,
    "status.conditions[].status": policy.CONDITION_STATUSES,
    "status.steps[].phase": StepPhase,
    "status.audit.approvals[].decision": ApprovalDecision,
    "status.steps[].outputs.artifacts[].archive": ARCHIVES,
}

SCALARS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def load_crd() -> dict[str, Any]:
    with CRD_PATH.open() as f:
        crd: dict[str, Any] = yaml.safe_load(f)
    return crd


CRD = load_crd()
VERSION = next(v for v in CRD["spec"]["versions"] if v["name"] == constants.VERSION)
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]


# --- the walker --------------------------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    """Strip `X | None` and `Annotated[X, ...]` down to X."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            assert len(args) == 1, f"unsupported union {annotation}"
            annotation = args[0]
        else:
            return annotation


def compare_model(model: type[BaseModel], schema: dict[str, Any], path: str) -> Iterator[str]:
    """Every mismatch between a model class and the object schema at `path`, in both directions."""
    if schema.get("type") != "object" or "properties" not in schema:
        yield f"{path}: model {model.__name__} needs an object schema with properties"
        return
    props: dict[str, Any] = schema["properties"]
    # A model's fields, or a record's (pydantic keeps both in `__pydantic_fields__`).
    # An excluded field is never serialized: no part of the resource (JobFlowSpec.matrix_groups).
    fields = {
        (info.alias or name): info for name, info in model.__pydantic_fields__.items() if not info.exclude
    }
    for alias in sorted(fields.keys() - props.keys()):
        yield f"{path}.{alias}: model field missing from the CRD (the apiserver would prune it)"
    for alias in sorted(props.keys() - fields.keys()):
        yield f"{path}.{alias}: CRD property missing from model {model.__name__}"
    required = set(schema.get("required", ()))
    for alias in sorted(required - fields.keys()):
        yield f"{path}: CRD requires {alias!r}, which the model does not have"
    for alias, info in fields.items():
        if alias not in props:
            continue
        if info.is_required() and alias not in required:
            # The apiserver would store objects the controller cannot parse.
            yield f"{path}.{alias}: required by the model but optional in the CRD"
        enum = props[alias].get("enum")
        default = info.get_default()
        if enum is not None and isinstance(default, str) and default not in enum:
            yield f"{path}.{alias}: model default {default!r} is not in the CRD enum {enum}"
        yield from compare_type(info.annotation, props[alias], f"{path}.{alias}")


def compare_type(annotation: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    tp = _unwrap(annotation)
    origin = get_origin(tp)
    kind = schema.get("type")
    if tp in SCALARS:
        if kind != SCALARS[tp]:
            yield f"{path}: model {tp.__name__} but CRD type {kind!r}"
    elif tp is datetime:
        if kind != "string" or schema.get("format") != "date-time":
            yield f"{path}: model timestamp but CRD is not a date-time string"
    elif origin in (tuple, list):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        if kind != "array" or "items" not in schema:
            yield f"{path}: model sequence but CRD type {kind!r}"
        else:
            yield from compare_type(args[0], schema["items"], f"{path}[]")
    elif origin is dict:
        key, value = get_args(tp)
        assert key is str, f"{path}: map keys must be strings"
        if kind != "object" or "properties" in schema:
            yield f"{path}: model map but CRD is not a property-less object"
        elif value is Any:
            if (
                schema.get("x-kubernetes-preserve-unknown-fields") is not True
                or "additionalProperties" in schema
            ):
                yield f"{path}: free-form model dict needs x-kubernetes-preserve-unknown-fields"
        else:
            extra = schema.get("additionalProperties")
            if not isinstance(extra, dict):
                yield f"{path}: model dict[str, {value.__name__}] needs additionalProperties"
            else:
                yield from compare_type(value, extra, f"{path}.*")
    elif origin is Literal:
        if kind != "string" or sorted(schema.get("enum", ())) != sorted(get_args(tp)):
            yield f"{path}: model Literal{list(get_args(tp))} but CRD enum {schema.get('enum')}"
    elif isinstance(tp, type) and (issubclass(tp, BaseModel) or is_pydantic_dataclass(tp)):
        yield from compare_model(tp, schema, path)
    else:
        yield f"{path}: the walker does not know model type {tp!r}"


def schema_nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every node of the schema with its dotted path (`[]` for array items, `.*` for map values)."""
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from schema_nodes(prop, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from schema_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_nodes(schema["additionalProperties"], f"{path}.*")


def node_at(path: str) -> dict[str, Any] | None:
    """The schema node at a dotted path of the form schema_nodes() yields, or None."""
    nodes = dict(schema_nodes(SCHEMA))
    return nodes.get(path)


# --- models <-> CRD ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "key"), [(JobFlowSpec, "spec"), (JobFlowStatus, "status")])
def test_model_and_crd_agree_field_by_field(model: type[BaseModel], key: str) -> None:
    assert list(compare_model(model, SCHEMA["properties"][key], key)) == []


def test_top_level_holds_exactly_the_resource_fields() -> None:
    assert SCHEMA["properties"].keys() == {info.alias for info in JobFlow.model_fields.values()}
    assert SCHEMA["properties"]["metadata"] == {"type": "object"}  # the apiserver owns ObjectMeta


def test_the_walker_finds_a_missing_field_a_stray_property_and_a_wrong_type() -> None:
    class Inner(BaseModel):
        count: int = 0

    class Outer(BaseModel):
        items: tuple[Inner, ...] = ()
        tags: dict[str, str] = {}
        name: str

    schema = {
        "type": "object",
        "properties": {
            "items": {
                "type": "array",
                "items": {"type": "object", "properties": {"count": {"type": "string"}}},
            },
            "tags": {"type": "object"},
            "stray": {"type": "string"},
        },
    }
    assert sorted(compare_model(Outer, schema, "x")) == [
        "x.items[].count: model int but CRD type 'string'",
        "x.name: model field missing from the CRD (the apiserver would prune it)",
        "x.stray: CRD property missing from model Outer",
        "x.tags: model dict[str, str] needs additionalProperties",
    ]


# --- structure, descriptions, enums, defaults, limits ------------------------------------------------


def test_schema_is_structural_nothing_is_pruned_silently() -> None:
    bad = [
        path
        for path, node in schema_nodes(SCHEMA)
        if "type" not in node
        or (
            node["type"] == "object"
            and path != "metadata"
            and not ({"properties", "additionalProperties"} & node.keys())
            and node.get("x-kubernetes-preserve-unknown-fields") is not True
        )
    ]
    assert bad == []


def test_every_field_has_a_description() -> None:
    missing = [
        path
        for path, node in schema_nodes(SCHEMA)
        if path and path != "metadata" and not path.endswith(("[]", ".*")) and not node.get("description")
    ]
    assert missing == []


@pytest.mark.parametrize(
    ("path", "says"),
    [
        # A graceful stop runs the finally steps; only the other stops end the flow without them.
        ("spec.steps[].finally", "RunFinally stops the other steps, then runs the finally steps"),
        # The failed attempt's Job is kept only without jobRetention LastAttempt.
        ("spec.steps[].retryPolicy", "unless executionPolicy.jobRetention is LastAttempt"),
        ("spec.executionPolicy.jobRetention", "or that attempt was served"),
        ("spec.executionPolicy.parallelism", "memoized step served from its cache takes no slot"),
    ],
)
def test_kubectl_explain_says_what_the_features_do_together(path: str, says: str) -> None:
    node = node_at(path)
    assert node is not None
    assert says in " ".join(node["description"].split())


def test_every_enum_mirrors_its_strenum() -> None:
    enums = {path: node["enum"] for path, node in schema_nodes(SCHEMA) if "enum" in node}
    assert enums.keys() == ENUMS.keys()
    for path, values in enums.items():
        assert values == [str(member) for member in ENUMS[path]], path
        assert all(isinstance(v, str) for v in values), f"{path}: YAML turned an enum value into a non-string"


def test_defaults_are_the_documented_ones_and_always_apply() -> None:
    policy = SCHEMA["properties"]["spec"]["properties"]["executionPolicy"]
    # The apiserver defaults a field only when its parent exists, so the parent defaults to {}.
    assert policy["default"] == {}
    defaults = {name: prop["default"] for name, prop in policy["properties"].items() if "default" in prop}
    assert defaults == {
        "concurrencyPolicy": constants.DEFAULT_CONCURRENCY_POLICY.value,
        "ttlSecondsAfterFinished": constants.DEFAULT_TTL_SECONDS_AFTER_FINISHED,
        "backoffLimit": constants.DEFAULT_BACKOFF_LIMIT,
    }
    others = [
        path for path, node in schema_nodes(SCHEMA) if "default" in node and ".executionPolicy" not in path
    ]
    # No default on steps[].type: a step without type and template is a Manual gate (as in the original).
    assert others == []


def limit(path: str, keyword: str) -> Any:
    node = node_at(path)
    assert node is not None, path
    return node[keyword]


def test_string_limits_added_after_release_stay_out_of_the_atomic_steps_list() -> None:
    # spec.steps is atomic, so not ratcheted: a bound there refuses every status write of a stored flow
    # that breaks it. The webhook and the controller hold these (validation/limits.MAX_JSON_PATH, 253).
    for io in ("inputs", "outputs"):
        assert "maxLength" not in node_at(f"spec.steps[].{io}.parameters[].valueFrom.jsonPath"), io
    assert "maxLength" not in node_at("spec.steps[].inputs.parameters[].valueFrom.secretKeyRef.name")


def test_spec_limits_are_the_validators() -> None:
    assert limit("spec.steps", "maxItems") == limits.MAX_STEPS
    assert limit("spec.steps[].dependencies", "maxItems") == limits.MAX_STEPS
    for path in ("spec.steps[].name", "spec.steps[].dependencies[]", "status.steps[].name"):
        assert limit(path, "maxLength") == naming.MAX_NAME, path
    assert limit("spec.steps[].message", "maxLength") == limits.MAX_MESSAGE
    assert limit("spec.steps[].when", "maxLength") == limits.MAX_WHEN
    assert limit("spec.steps[].timeoutSeconds", "maximum") == limits.MAX_TIMEOUT_SECONDS
    rules = "spec.executionPolicy.podFailurePolicy.rules"
    assert limit(rules, "maxItems") == limits.MAX_POD_FAILURE_RULES
    assert limit(f"{rules}[].onExitCodes.values", "maxItems") == limits.MAX_EXIT_CODE_VALUES
    assert limit(f"{rules}[].onPodConditions", "maxItems") == limits.MAX_POD_CONDITION_PATTERNS
    assert limit("spec.steps[].outputs.parameters", "maxItems") == size.MAX_OUTPUT_PARAMETERS
    assert f"size() <= {limits.MAX_FLOW_NAME}" in SCHEMA["x-kubernetes-validations"][0]["rule"]


def test_the_planner_writes_status_within_the_schemas_bounds() -> None:
    # A status write over a bound fails with 422 and the flow would stop making progress.
    assert limit("status.steps", "maxItems") == limits.MAX_STEPS
    assert limit("status.steps[].message", "maxLength") >= planner_steps.MAX_MESSAGE
    assert limit("status.message", "maxLength") >= planner_status.MAX_FLOW_MESSAGE
    assert limit("status.conditions[].message", "maxLength") >= planner_status.MAX_CONDITION_MESSAGE
    assert len(f"{limits.MAX_STEPS}/{limits.MAX_STEPS}") <= limit("status.progressSummary", "maxLength")


@pytest.mark.parametrize(
    ("name", "valid"),
    [("step1", True), ("extract-a", True), ("a" * 63, True), ("a" * 64, False), ("Step", False),
     ("a.b", False), ("-a", False), ("a-", False), ("", False)],
)  # fmt: skip
def test_step_name_pattern_is_the_dns1123_label_rule(name: str, valid: bool) -> None:
    node = node_at("spec.steps[].name")
    assert node is not None
    in_schema = (
        bool(re.fullmatch(node["pattern"], name)) and node["minLength"] <= len(name) <= node["maxLength"]
    )
    assert in_schema is valid
    assert naming.is_dns1123_label(name) is valid


DURATION = st.text(alphabet="0123456789.nsumh-", max_size=12)


@given(st.one_of(DURATION, st.from_regex(r"([0-9]{1,3}(\.[0-9])?(ns|us|ms|s|m|h)){1,3}", fullmatch=True)))
def test_duration_pattern_accepts_what_the_validator_parses(value: str) -> None:
    # The range (0s < d <= 720h) is a CEL rule, which the integration tests exercise.
    for path in ("spec.steps[].retryPolicy.backoff.duration", "spec.steps[].retryPolicy.backoff.maxDuration"):
        in_schema = re.fullmatch(limit(path, "pattern"), value) is not None and len(value) <= limit(
            path, "maxLength"
        )
        assert in_schema is (parse_duration(value) is not None)


def test_list_map_keys_are_required_fields() -> None:
    for path, node in schema_nodes(SCHEMA):
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required", ())), path


# --- CEL rules, printer columns ----------------------------------------------------------------------


def test_cel_rules_have_messages_and_valid_field_paths() -> None:
    rules = [
        (path, rule)
        for path, node in schema_nodes(SCHEMA)
        for rule in node.get("x-kubernetes-validations", [])
    ]
    assert len(rules) >= 3
    for path, rule in rules:
        assert rule.get("message"), rule["rule"]
        if "fieldPath" in rule:
            target = f"{path}{rule['fieldPath']}" if path else rule["fieldPath"].lstrip(".")
            assert node_at(target) is not None, f"{path}: fieldPath {rule['fieldPath']} is not in the schema"


def test_no_crd_rule_compares_with_the_old_object() -> None:
    # CRD rules run on every write, the controller's status writes included (the apiserver evaluates
    # them all and only ratchets their errors); comparing spec.steps there cost 7-9 % of each status
    # write. Transition rules live in the admission policy, which matches writes to the flow only.
    for path, node in schema_nodes(SCHEMA):
        for rule in node.get("x-kubernetes-validations", []):
            assert "oldSelf" not in rule["rule"], f"{path or '<root>'}: {rule['rule']}"
    docs = list(yaml.safe_load_all((CRD_PATH.parent / "admission-policies.yaml").read_text()))
    operations, failure = {}, {}
    for vap, binding in zip(docs[::2], docs[1::2], strict=True):
        (match,) = vap["spec"]["matchConstraints"]["resourceRules"]
        assert match["resources"] == [constants.PLURAL]  # not jobflows/status
        assert match["apiGroups"] == [constants.GROUP]
        operations[vap["metadata"]["name"]] = match["operations"]
        failure[vap["metadata"]["name"]] = vap["spec"]["failurePolicy"]
        assert binding["spec"]["policyName"] == vap["metadata"]["name"]
        assert binding["spec"]["validationActions"] == ["Deny"]
    assert operations == {
        f"jobflow-spec-immutable.{constants.GROUP}": ["UPDATE"],
        f"jobflow-steps.{constants.GROUP}": ["CREATE", "UPDATE"],
        f"jobflow-parameters.{constants.GROUP}": ["CREATE", "UPDATE"],
    }
    # The parameter rules' cost grows with the parameters and their paths past what the apiserver allows
    # a policy: a flow past it is admitted (the webhook and the controller check it), not refused.
    assert failure == {
        f"jobflow-spec-immutable.{constants.GROUP}": "Fail",
        f"jobflow-steps.{constants.GROUP}": "Fail",
        f"jobflow-parameters.{constants.GROUP}": "Ignore",
    }


def test_the_step_policy_says_the_finally_rules_as_the_webhook_does() -> None:
    # Without the webhook, the policy refuses what the validator would, in the same words.
    docs = list(yaml.safe_load_all((CRD_PATH.parent / "admission-policies.yaml").read_text()))
    (steps_policy,) = [
        d
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicy"
        and d["metadata"]["name"] == f"jobflow-steps.{constants.GROUP}"
    ]
    messages = " ".join(" ".join(v["messageExpression"].split()) for v in steps_policy["spec"]["validations"])
    for text in (constants.MANUAL_FINALLY, constants.FLOW_MATRIX, *constants.FINALLY_CROSSING.values()):
        assert text in messages


@pytest.mark.parametrize(
    "grace",
    [
        {},
        {"activeDeadlineSeconds": 10},
        {"finallyGraceSeconds": 5},
        {"activeDeadlineSeconds": 10, "finallyGraceSeconds": 5},
        {"activeDeadlineSeconds": 2, "finallyGraceSeconds": 1},
        {"activeDeadlineSeconds": 10, "finallyGraceSeconds": 10},
        {"activeDeadlineSeconds": 10, "finallyGraceSeconds": 11},
    ],
)
@pytest.mark.parametrize("named", [False, True])
def test_the_crd_rules_on_the_finally_grace_refuse_what_the_validator_refuses_in_its_words(
    grace: dict[str, Any], named: bool
) -> None:
    # Without the webhook the CRD's rules on the spec hold it (the apiserver names the fieldPath). A flow
    # naming a template (`named`), not expanded yet, is merged with the template's policy first: neither
    # says anything of it then (the deadline may be the template's); its expansion is checked merged.
    field = "spec.executionPolicy.finallyGraceSeconds"
    rules = [
        r for r in SCHEMA["properties"]["spec"]["x-kubernetes-validations"] if "finallyGrace" in r["rule"]
    ]
    assert len(rules) == 2
    assert all(r["fieldPath"] == ".executionPolicy.finallyGraceSeconds" for r in rules)
    if named:
        flow = flow_manifest("f", "default", [], executionPolicy=grace)
        flow["spec"] = {"templateRef": {"name": "t"}, "executionPolicy": grace}
    else:
        flow = flow_manifest("f", "default", [job_step("a")], executionPolicy=grace)
    spec = flow["spec"]
    said = [" ".join(r["message"].split()) for r in rules if not cel.evaluate(r["rule"], {"self": spec})]
    assert said == [e.detail for e in validate_jobflow(flow) if e.path == field]
    if named:
        assert said == []


def test_no_crd_rule_runs_once_per_step() -> None:
    # A rule on spec.steps[] runs for every step on every status write (three of them cost 15 % of a
    # 500-step flow's); what every step must be is the step policy's (admission-policies.yaml). Rules on
    # optional parts of a step (retry durations, output sources) only run where a step has them.
    steps = node_at("spec.steps[]")
    assert steps is not None
    assert "x-kubernetes-validations" not in steps


def test_printer_columns_reference_existing_fields() -> None:
    columns = VERSION["additionalPrinterColumns"]
    names = [c["name"] for c in columns]
    assert names[:2] == ["Phase", "Progress"]
    assert names[-2:] == ["Age", "Message"]  # the message last: it is the longest
    types_for = {"string": {"string"}, "integer": {"integer"}, "date": {"string"}}
    for column in columns:
        path = column["jsonPath"].lstrip(".")
        if path == "metadata.creationTimestamp":
            continue
        node = node_at(path)
        assert node is not None, column
        assert node["type"] in types_for[column["type"]], column


def test_crd_identity_matches_the_constants() -> None:
    names = CRD["spec"]["names"]
    assert CRD["metadata"]["name"] == constants.CRD_NAME
    assert CRD["spec"]["group"] == constants.GROUP
    assert (names["kind"], names["plural"], names["singular"]) == (
        constants.KIND,
        constants.PLURAL,
        constants.SINGULAR,
    )
    assert names["shortNames"] == ["jf", "flow"]
    assert names["categories"] == ["zen-flow"]
    assert CRD["spec"]["scope"] == "Namespaced"
    assert VERSION["served"] is VERSION["storage"] is True
    assert VERSION["subresources"] == {"status": {}}


# --- the examples and the original's field forms --------------------------------------------------------


def pruned_paths(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """Paths in `value` that the schema does not describe: the apiserver would drop them."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema:
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if props is not None and key in props:
                yield from pruned_paths(item, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from pruned_paths(item, extra, f"{path}.{key}")
            else:
                yield f"{path}.{key}"
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from pruned_paths(item, schema.get("items", {}), f"{path}[{i}]")


@pytest.mark.parametrize("example", all_flow_params())
def test_every_field_of_the_examples_is_in_the_schema(example: Path) -> None:
    doc = yaml.safe_load(example.read_text())
    del doc["metadata"]  # ObjectMeta is the apiserver's, not part of our schema
    assert list(pruned_paths(doc, SCHEMA, "")) == []


@pytest.mark.parametrize("example", all_flow_params())
def test_the_models_keep_every_field_of_the_examples(example: Path) -> None:
    doc = yaml.safe_load(example.read_text())
    flow = JobFlow.model_validate(doc)
    assert flow.spec.model_dump(by_alias=True, exclude_unset=True, mode="json") == doc["spec"]


def test_the_crd_bounds_the_key_prefix_as_the_validator_does() -> None:
    repository = SCHEMA["properties"]["spec"]["properties"]["artifactRepository"]["properties"]["s3"]
    # The CRD counts characters, the validator bytes: a prefix the CRD lets through is checked again.
    assert repository["properties"]["keyPrefix"]["maxLength"] == MAX_KEY_PREFIX


# Each bad prefix breaks one rule (the webhook names only the first it breaks); the good ones none.
PREFIXES = ["team/../x", "./x", "team/.", "team\x07x", "team\x7f", "//", "é" * 257]
PREFIXES += ["team-a/artifacts", "/x/", "a..b/c.d", "é" * 256, "a" * MAX_KEY_PREFIX]


@pytest.mark.parametrize(
    "crd_name", [constants.CRD_NAME, constants.TEMPLATE_CRD_NAME, constants.CLUSTER_TEMPLATE_CRD_NAME]
)
@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_crd_rules_on_the_key_prefix_refuse_what_the_webhook_refuses_in_its_words(
    crd_name: str, prefix: str
) -> None:
    # Without the webhook the apiserver runs these rules (the JobFlow CRD's, copied into the template
    # CRDs): a prefix one lets through and the other refuses, or a message of other words, is drift.
    crd = yaml.safe_load((CRD_PATH.parent / f"{crd_name}.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    node = spec["properties"]["artifactRepository"]["properties"]["s3"]["properties"]["keyPrefix"]
    rules = node["x-kubernetes-validations"]
    assert len(rules) == 4
    said = [r["message"] for r in rules if not cel.evaluate(r["rule"], {"self": prefix})]
    flow = flow_manifest("f", "default", [job_step("a")])
    flow["spec"]["artifactRepository"] = {"s3": {"bucket": "b", "keyPrefix": prefix}}
    field = "spec.artifactRepository.s3.keyPrefix"
    assert said == [e.detail for e in validate_jobflow(flow) if e.path == field]
