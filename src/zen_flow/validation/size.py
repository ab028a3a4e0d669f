"""A flow must fit in etcd for its whole life, status included (decision 14).

etcd refuses a request above 1.5 MiB (`--max-request-bytes`). The spec is known at admission; the status
grows while the flow runs, with one entry per step and the output values the steps record. Every part of
the status is bounded (step messages 256 characters, output values 1 KiB, names by their formats), so
its largest possible size can be computed from the spec, and a flow whose spec plus worst-case status
could outgrow etcd is refused at admission instead of hanging half-way with every status write refused.

The figures are generous (field names, managedFields that repeat the spec's shape, some JSON escaping)
without assuming every character of every message is an escaped control character: should a status
still be refused for its size, the controller ends the flow Failed with a minimal write that says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic_core import to_json

from zen_flow.api.constants import (
    AUDIT_RETRIES_BYTES,
    CONDITION_TYPES,
    MAX_APPROVERS,
    MAX_FAILED_NODES,
    failed_nodes_kept,
)
from zen_flow.api.jobflow import needed_approvals
from zen_flow.core.matrix import expand_matrix, has_matrix
from zen_flow.core.matrix_parameters import MAX_EFFECTIVE_STEPS, MAX_ITEMS, MAX_ITEMS_FIELD, bound_of
from zen_flow.core.matrix_sources import is_dynamic
from zen_flow.validation.errors import forbidden, too_long
from zen_flow.validation.limits import MAX_FLOW_NAME
from zen_flow.validation.reader import Reader

# etcd's default request limit, minus room for metadata (labels, annotations, ownerReferences).
MAX_OBJECT_BYTES = 1_400_000
# Serialized spec size; the apiserver's managedFields repeat its shape (about a third more).
MAX_SPEC_BYTES = 1024 * 1024
MANAGED_FIELDS_FACTOR = 1.3
METADATA_BYTES = 16 * 1024

MAX_OUTPUT_PARAMETERS = 32  # per step (CRD maxItems)
OUTPUT_VALUE_BYTES = 1024 + 64  # planner/outputs.py MAX_VALUE_BYTES, and some escaping
STEP_MESSAGE_BYTES = 256 + 64  # 256 characters (planner/steps.py MAX_MESSAGE), and some escaping
# One status.steps[] entry without outputs: field names and punctuation, name, four timestamps,
# jobRef (Job name and namespace up to 63 each, UID, kind), retryCount, message.
STEP_ENTRY_BYTES = 300 + 63 + 4 * 30 + (63 + 63 + 36 + 40) + 20 + STEP_MESSAGE_BYTES
# Conditions (one of each type, messages up to 1 KiB), phase, times, progress, message,
# observedGeneration, and heldLocks (the flow's own locks: at most 8 names of 63 characters).
CONDITION_BYTES = 1024 + 200
FLOW_STATUS_BYTES = len(CONDITION_TYPES) * CONDITION_BYTES + 256 * 3 + 800 + 8 * (63 + 3) + 16
# A plain gate: approvedBy, and status.audit.approvals[]: step, user, time and the decision message (1 KiB,
# planner/observation.py): 400 plain gates approved with a long message outgrew the bound without it.
APPROVAL_BYTES = 2 * 256 + 63 + 30 + 80 + 1024
# On a gate with `approval`: each approver in approvedBy (", "-joined), and each audited approval or
# rejection, its decision message (1 KiB, planner/observation.py) included.
APPROVER_BYTES = 256 + 2
TALLIED_ENTRY_BYTES = 256 + 63 + 30 + 80 + 1024 + 64
# The audit entry of the approval that opens a gate with supplied outputs names who supplied them (one per
# gate: an opened gate stays Succeeded, a rerun never reaches it again).
SUPPLIED_BY_BYTES = 256 + 20
RESOURCE_REF_BYTES = 400  # status.resourceRefs[]
AUDIT_BYTES = 600  # initiatedBy and correlationID
# status.audit.retries: the newest request (its id, user, time, and the steps it reran: any of the flow's,
# each name with its quotes and comma) and earlier ones in AUDIT_RETRIES_BYTES (planner.interventions).
RETRY_ENTRY_BYTES = 253 + 256 + 30 + 80
RETRY_STEP_BYTES = 3
# Every stored output records its url (planner/artifacts.output_url), s3://<bucket>/<key>. A default key
# (the repository's, or an own `s3` without `key`) is <prefix>/<key tail>, the tail
# <namespace>/<flow>/<uid prefix>/<step>/<artifact> (planner/artifacts.storage_key), here without the
# prefix and the artifact's name (added per artifact): "s3://", the slashes, a namespace (63), a flow
# name (MAX_FLOW_NAME, the validator's cap: counting more would refuse flows that fit), 8 of the uid, a
# step name (63) with a matrix item's "-NNN".
REPOSITORY_URL_BYTES = 5 + 6 + 63 + MAX_FLOW_NAME + 8 + 63 + 4
DEFAULT_PREFIX = "zen-flow"  # planner/artifacts.DEFAULT_PREFIX (validation does not import the planner)
# status.steps[].failedNodes of a step whose retries avoid its failed attempts' nodes
# (retryPolicy.affinity.nodeAntiAffinity): at most api.constants.failed_nodes_kept(limit) node names
# (DNS subdomains, 253 characters), each with its quotes, comma and a space, and the field's name.
FAILED_NODE_BYTES = 253 + 4
FAILED_NODES_FIELD_BYTES = 20


def spec_json(spec: Mapping[str, Any]) -> bytes:
    """Compact JSON, as the apiserver stores it (serialized in Rust: a 500-step spec takes 1.6 ms where
    `json.dumps` took 7). Raises ValueError for what is not JSON (a YAML alias cycle)."""
    return to_json(spec, fallback=str)


def failed_nodes_bytes(kept: int) -> int:
    """What a status.steps[].failedNodes of `kept` names of the longest kind takes."""
    return kept * FAILED_NODE_BYTES + FAILED_NODES_FIELD_BYTES


def status_bound(spec: Mapping[str, Any]) -> int:
    """The largest status.* this spec can produce, in bytes of JSON: that of its effective flow, each
    item of a matrix step a step of its own (core/matrix.py)."""
    return _status_bound(spec)[0]


def failed_nodes_bound(spec: Mapping[str, Any]) -> int:
    """The part of `status_bound` that status.steps[].failedNodes may take: a too-large flow's refusal
    names it when it is most of the bound."""
    return _status_bound(spec)[1]


def _status_bound(spec: Mapping[str, Any]) -> tuple[int, int]:
    """(the status bound, its failedNodes part)."""
    weights: dict[str, int] = {}
    if has_matrix(spec):
        weights = _run_time_items(spec)
        spec = expand_matrix(spec).spec
    steps = _items(spec.get("steps"))
    count = len(steps) + sum(weights.values()) - len(weights)
    total = FLOW_STATUS_BYTES + AUDIT_BYTES + STEP_ENTRY_BYTES * count
    total += AUDIT_RETRIES_BYTES + RETRY_ENTRY_BYTES + sum(_name_bytes(s) + RETRY_STEP_BYTES for s in steps)
    # A stand-in's items: its name with "-NNN", once per item.
    total += sum((len(name) + 4 + RETRY_STEP_BYTES) * (n - 1) for name, n in weights.items())
    # By identity: the webhook decodes equal outputs of different steps as one object (decode_spec).
    by_outputs: dict[int, int] = {}
    nodes = 0
    url = _repository_url_bytes(spec)
    for step in steps:
        outputs = step.get("outputs")
        if isinstance(outputs, dict):
            if (size := by_outputs.get(id(outputs))) is None:
                size = by_outputs[id(outputs)] = _outputs_bound(outputs, url)
            name = step.get("name")
            total += size * (weights.get(name, 1) if isinstance(name, str) else 1)
        if (kept := _failed_nodes_kept(step)) is not None:
            name = step.get("name")
            nodes += failed_nodes_bytes(kept) * (weights.get(name, 1) if isinstance(name, str) else 1)
        if step.get("type") == "Manual" or (not step.get("type") and not step.get("template")):
            total += _approvals_bound(step)
            if isinstance(outputs, dict) and _supplies(outputs):
                total += SUPPLIED_BY_BYTES
    templates = _mapping(spec.get("resourceTemplates"))
    for kind in ("volumeClaimTemplates", "configMapTemplates"):
        total += RESOURCE_REF_BYTES * len(_items(templates.get(kind)))
    return total + nodes, nodes


def _run_time_items(spec: Mapping[str, Any]) -> dict[str, int]:
    """How many items each matrix step whose items an output gives (core/matrix_sources.py) may run as,
    at most: its `maxItems` (256 unset) each, and the flow at most 500 steps once they are expanded (the
    controller fails a step whose items would pass either), so its stand-in is counted as that many
    steps."""
    steps = _items(spec.get("steps"))
    dynamic = [
        (s["name"], bound_of(s["matrix"], MAX_ITEMS_FIELD) or MAX_ITEMS)
        for s in steps
        if s.get("matrix") is not None and is_dynamic(s) and isinstance(s.get("name"), str)
    ]
    room = max(MAX_EFFECTIVE_STEPS - len(steps), 0)
    found: dict[str, int] = {}
    for name, most in dynamic:
        extra = min(most - 1, room)
        room -= extra
        found[name] = 1 + extra
    return found


def _name_bytes(step: Mapping[str, Any]) -> int:
    name = step.get("name")
    return len(name) if isinstance(name, str) else 63


def _repository_url_bytes(spec: Mapping[str, Any]) -> int | None:
    """What the url of an output the flow's repository stores takes, but its artifact's name; None
    without a repository."""
    s3 = _mapping(_mapping(spec.get("artifactRepository")).get("s3"))
    if not s3:
        return None
    prefix = s3.get("keyPrefix")
    prefix = prefix if isinstance(prefix, str) and prefix.strip("/") else DEFAULT_PREFIX
    return REPOSITORY_URL_BYTES + _bytes(prefix) + _bytes(s3.get("bucket"))


def _own_url_bytes(s3: Mapping[str, Any]) -> int:
    """What the url of an output stored in its own `s3` takes, but its artifact's name: s3://bucket/key,
    or the default key (planner/artifacts.storage_key) without `key`."""
    key = s3.get("key")
    if isinstance(key, str) and key:  # the artifact's name, added by the caller, is then to spare
        return len("s3://") + _bytes(s3.get("bucket")) + 1 + _bytes(key)
    return REPOSITORY_URL_BYTES + len(DEFAULT_PREFIX) + _bytes(s3.get("bucket"))


def _outputs_bound(outputs: Mapping[str, Any], repository_url: int | None = None) -> int:
    total = 0
    for param in _items(outputs.get("parameters")):
        name = param.get("name")
        total += (len(name) if isinstance(name, str) else 253) + OUTPUT_VALUE_BYTES + 40
    # name, path, size and digest once artifacts are recorded
    artifacts = _items(outputs.get("artifacts"))
    for artifact in artifacts:  # and the url of each one stored: in its own s3, or in the repository
        s3 = artifact.get("s3")
        url = repository_url if s3 is None else _own_url_bytes(_mapping(s3))
        if url is not None:  # None: stored nowhere, no url
            name = artifact.get("name")
            total += url + (len(name) if isinstance(name, str) else 253)
    return total + 600 * len(artifacts)


def _bytes(value: Any) -> int:
    return len(value.encode(errors="surrogatepass")) if isinstance(value, str) else 0


def _supplies(outputs: Mapping[str, Any]) -> bool:
    return any(
        isinstance(p.get("valueFrom"), dict) and p["valueFrom"].get("supplied") is not None
        for p in _items(outputs.get("parameters"))
    )


def object_bound(spec_size: int, status: int) -> int:
    """The largest stored JobFlow a spec of `spec_size` bytes whose status bound is `status` can become
    (spec, its managedFields, status, metadata)."""
    return int(spec_size * MANAGED_FIELDS_FACTOR) + status + METADATA_BYTES


def _approvals_bound(step: Mapping[str, Any]) -> int:
    """What a gate's decisions add to the status: one, or on a gate with `approval` its approvers in
    approvedBy and its audit per reach, bounded by the planner (Observation.tally): up to `required - 1`
    approvals that do not open it and the `required` that do, or those and the rejection. A rerun reaches
    a gate again: the planner keeps only that many of its newest entries (planner.approvals)."""
    approval = step.get("approval")
    if approval is None:
        return APPROVAL_BYTES
    required = approval.get("required") if isinstance(approval, dict) else None
    needed = needed_approvals(required)
    needed = needed if needed <= MAX_APPROVERS else 1  # more is refused (validation/gates.py)
    return APPROVER_BYTES * needed + TALLIED_ENTRY_BYTES * (2 * needed - 1)


def _failed_nodes_kept(step: Mapping[str, Any]) -> int | None:
    """How many nodes the step records of its failed attempts (retryPolicy.affinity.nodeAntiAffinity);
    None when it records none. A limit that is no integer (refused elsewhere) counts the most."""
    # Read inline: this runs for every step of every review, and few steps ask for it.
    retry = step.get("retryPolicy")
    if not isinstance(retry, dict):
        return None
    affinity = retry.get("affinity")
    if not isinstance(affinity, dict) or affinity.get("nodeAntiAffinity") is None:
        return None
    limit = retry.get("limit")
    if limit is None or (isinstance(limit, int) and not isinstance(limit, bool)):
        return failed_nodes_kept(limit)
    return MAX_FAILED_NODES


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> Sequence[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def check_size(r: Reader, size: int, status: int, spec: Mapping[str, Any] | None = None) -> None:
    """`size`: the spec's JSON in bytes; `status`: its status bound (size.status_bound) of `spec`."""
    if size > MAX_SPEC_BYTES:
        r.add(
            too_long(
                "spec",
                None,
                MAX_SPEC_BYTES,
                f"the serialized spec is {size} bytes; etcd stores at most 1.5 MiB per object and the "
                "flow's status needs room to grow while it runs",
            )
        )
        return
    bound = object_bound(size, status)
    if bound > MAX_OBJECT_BYTES:
        parts = "steps, output parameters, messages, approvals"
        advice = "use fewer steps, output parameters or required approvals, or split the flow"
        # Mostly the nodes its steps' failed attempts ran on: say so, or the user looks elsewhere.
        if spec is not None and 2 * (nodes := failed_nodes_bound(spec)) > status:
            parts = (
                f"{nodes:,} of them for the nodes status.steps[].failedNodes records, up to "
                "retryPolicy.limit + 1 names (16 at most) per step and matrix item with "
                f"retryPolicy.affinity.nodeAntiAffinity; {parts}"
            )
            advice = (
                "lower those steps' retryPolicy.limit, drop their nodeAntiAffinity, use fewer matrix items, "
                "or split the flow"
            )
        r.add(
            forbidden(
                "spec",
                f"too large to run: its status can grow to {status:,} bytes ({parts}) and with the spec "
                f"({size:,} bytes) the stored flow could reach {bound:,} bytes, over the "
                f"{MAX_OBJECT_BYTES:,} that fit in etcd; {advice}",
            )
        )
