"""AdmissionReview (admission.k8s.io/v1) in, AdmissionReview response out: pure functions.

The server only moves bytes; everything a test wants to check about a decision happens here. A review
that is not a well-formed AdmissionReview raises `ReviewError` (the server answers HTTP 400); any
decision, including a denial, is a normal response (HTTP 200), as the apiserver expects.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from zen_flow.api.constants import GROUP, KIND
from zen_flow.validation import (
    NAME_READERS,
    AcceptedSpecs,
    ErrorType,
    FieldError,
    has_approvals,
    render,
    status_bound,
    validate_jobflow,
    validate_update,
)
from zen_flow.validation.errors import MAX_ERRORS
from zen_flow.validation.warnings import flow_warnings, spec_may_warn
from zen_flow.webhook.envelope import (
    ADMISSION_API_VERSION,
    ADMISSION_KIND,
    AdmissionRequest,
    RawObject,
    ReviewError,
    parse_review,
)
from zen_flow.webhook.gate_approvers import gate_refusal
from zen_flow.webhook.mutation import (
    SPEC_READ,
    SPEC_READ_DECIDING,
    mutation_ops,
    request_decisions,
    request_values,
    withdrawals,
)

__all__ = ["ReviewError", "mutate_request", "mutate_review", "validate_review"]

_CAUSE_REASONS = {
    ErrorType.NOT_FOUND: "FieldValueNotFound",
    ErrorType.REQUIRED: "FieldValueRequired",
    ErrorType.DUPLICATE: "FieldValueDuplicate",
    ErrorType.INVALID: "FieldValueInvalid",
    ErrorType.NOT_SUPPORTED: "FieldValueNotSupported",
    ErrorType.FORBIDDEN: "FieldValueForbidden",
    ErrorType.TOO_LONG: "FieldValueTooLong",
    ErrorType.TOO_MANY: "FieldValueTooMany",
}
# Bound what one denial carries back through the apiserver to kubectl, in its causes and its message
# alike: a validator's errors as listed (errors.listed: the first MAX_ERRORS and how many more) fit.
_MAX_CAUSES = MAX_ERRORS + 1
# The specs this process accepted lately, by their bytes as the apiserver sent them (envelope.py).
ACCEPTED = AcceptedSpecs()
_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder().decode


def _envelope(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": ADMISSION_API_VERSION, "kind": ADMISSION_KIND, "response": response}


def allow(
    uid: str, patch: list[dict[str, Any]] | None = None, warnings: list[str] | None = None
) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = warnings
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    return _envelope(response)


def deny(
    uid: str, code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    status: dict[str, Any] = {"status": "Failure", "code": code, "reason": reason, "message": message}
    if details:
        status["details"] = details
    return _envelope({"uid": uid, "allowed": False, "status": status})


def deny_invalid(request: AdmissionRequest, errors: list[FieldError], kind: str = KIND) -> dict[str, Any]:
    """422 Invalid with every error, shaped like the apiserver's own validation failures.

    kubectl prints an Invalid status that has `details` from the details alone (`The JobFlow "x" is
    invalid:` and one `field: message` line per cause) and drops the message, so the causes must carry
    every error users need to see, and kind and name make kubectl name the flow.
    """
    subject = f'{kind} "{request.name}"' if request.name else kind
    shown = errors[:_MAX_CAUSES]
    more = f"and {len(errors) - _MAX_CAUSES} more errors" if len(errors) > _MAX_CAUSES else ""
    message = f"{subject} is invalid:\n{render(shown)}" + (f"\n{more}" if more else "")
    causes: list[dict[str, str]] = [
        {"reason": _CAUSE_REASONS[e.type], "message": e.body(), "field": e.path} for e in shown
    ]
    if more:
        causes.append({"message": more})
    details = {"name": request.name, "group": GROUP, "kind": kind, "causes": causes}
    return deny(request.uid, 422, "Invalid", message, details)


def _internal(request: AdmissionRequest, what: str, exc: Exception) -> dict[str, Any]:
    # A bug must not let an unchecked object through, nor look like the user's fault.
    return deny(request.uid, 500, "InternalError", f"zen-flow {what} failed: {type(exc).__name__}: {exc}")


@dataclass(frozen=True)
class Decisions:
    """The Manual-step decisions an admission request takes: the server asks the apiserver whether the
    user may take them (webhook/approvers.py) before the validating webhook answers."""

    uid: str
    namespace: str
    name: str
    user: Mapping[str, Any]
    steps: tuple[str, ...]


def review_whole(
    body: bytes,
    validate: Callable[[Mapping[str, Any]], list[FieldError]],
    kind: str,
    ratchet: Callable[[Mapping[str, Any], Mapping[str, Any] | None], list[FieldError]] | None = None,
) -> dict[str, Any]:
    """The validating review of a resource checked whole by `validate` (a CronJobFlow, a JobFlowTemplate),
    except an UPDATE that keeps the spec as stored: a rule added since it was accepted must not refuse a
    label or a finalizer (ratcheting, as for JobFlows). `ratchet`, when given, adds the errors of a rule
    that sees the stored object too (None on CREATE), so it can spare what that object already held. A
    new spec that passes draws the warnings of the flow spec it holds, as a JobFlow's does."""
    request = parse_review(body)
    if request.sub_resource or request.operation not in ("CREATE", "UPDATE"):
        return allow(request.uid)
    spec = request.object.raw("spec")
    if request.operation == "UPDATE" and spec is not None and spec == request.old_object.raw("spec"):
        return allow(request.uid)  # the name cannot change; the spec is the one accepted before
    try:
        obj = request.object.decode()
        errors = validate(obj)
        if ratchet is not None:
            old = request.old_object.decode() if request.operation == "UPDATE" else None
            errors += ratchet(obj, old if isinstance(old, Mapping) else None)
        warnings = [] if errors else list(_warnings(obj, spec))
    except Exception as exc:  # fail closed, with a message, never a 500 traceback
        return _internal(request, "validation", exc)
    if errors:
        return deny_invalid(request, errors, kind)
    return allow(request.uid, warnings=warnings)


def validate_review(body: bytes) -> dict[str, Any]:
    """The validating webhook: CREATE checks the object, UPDATE also the transition; the rest passes."""
    return validate_review_decisions(body)[0]


def validate_review_decisions(body: bytes) -> tuple[dict[str, Any], Decisions | None]:
    """`validate_review`, and the decisions on Manual steps an allowed request takes (None: none). They
    are the validating webhook's to authorize: it sees the object as stored, after every mutating
    webhook (one that adds a decision included) and with the name a `generateName` got."""
    request = parse_review(body)
    if request.sub_resource or request.operation not in ("CREATE", "UPDATE"):
        return allow(request.uid), None
    try:
        if request.operation == "CREATE":
            errors, warnings = _check_create(request.object)
        else:
            errors, warnings = _check_update(request.old_object, request.object)
        if errors:
            return deny_invalid(request, errors), None
        meta = request.object.member("metadata")
        old = {"metadata": request.old_object.member("metadata")} if request.operation == "UPDATE" else None
        steps = request_decisions(request.operation, {"metadata": meta}, old)
        # Supplying a gate's values takes the authority of deciding it (RBAC's approve, its approvers):
        # they are what its approval lets through.
        valued = request_values(request.operation, {"metadata": meta}, old)
        # The request names the flow; the object too, should a `generateName` leave the request's empty.
        name = request.name or (meta.get("name") if isinstance(meta, dict) else None) or ""
        flow = f"{request.namespace}/{name}" if name else f"(a new one) in {request.namespace}"
        # The steps are decoded for a decision only: their `approval` may name who can take it. Taking an
        # approval back is left to RBAC's verb alone: it cannot open a gate, and an operator who is not
        # named must be able to clear a timed-out gate's approvals for its rerun.
        named = (steps - withdrawals(request.operation, {"metadata": meta}, old)) | valued
        steps |= valued
        refusal = gate_refusal(_steps(request.object), named, request.user, flow) if named else None
    except Exception as exc:  # fail closed, with a message, never a 500 traceback
        return _internal(request, "validation", exc), None
    if refusal is not None:
        return deny(request.uid, 403, "Forbidden", refusal), None
    decisions = None
    if steps:
        decisions = Decisions(request.uid, request.namespace, name, request.user, tuple(sorted(steps)))
    return allow(request.uid, warnings=list(warnings)), decisions


def _steps(raw: RawObject) -> Any:
    spec = raw.member_part("spec", ("steps",))
    return spec.get("steps") if isinstance(spec, dict) else None


# A request's field errors, and its warnings (validation/warnings.py) when it has none: a new spec's (a
# create, or an update that changes the spec), found when its spec is checked and remembered with it
# (`ACCEPTED`), so no spec is decoded for them alone. An approval or a label says nothing again.
Checked = tuple[list[FieldError], tuple[str, ...]]


def _warnings(obj: Mapping[str, Any], spec: bytes | None) -> tuple[str, ...]:
    return tuple(flow_warnings(obj)) if spec_may_warn(spec) else ()


def _check_create(raw: RawObject) -> Checked:
    spec, meta = raw.raw("spec"), raw.member("metadata")
    key = _spec_key(raw, meta, spec)
    known = None if key is None or spec is None else ACCEPTED.recall(key, len(spec))
    if known is not None:
        # Only the metadata and the argument values are new; the rest of the spec is decoded only if
        # approval annotations name its steps.
        if has_approvals(meta):
            obj = raw.decode(reuse={"metadata": meta})
        else:
            obj = raw.decode(skip=("spec",), reuse={"metadata": meta})
            obj["spec"] = raw.member_part("spec", ("arguments",))
        return validate_jobflow(obj, known=known, approvals=True), known.warnings
    obj = raw.decode(reuse={"metadata": meta, "spec": raw.decode_spec()})
    bound: list[int] = []  # the size check's status bound, remembered below rather than computed again
    # Listed together: the spec's listed errors joined to the approvals' would be cut twice.
    errors = validate_jobflow(obj, spec_bytes=spec, bound=bound, approvals=True)
    if errors:
        return errors, ()
    warnings = _warnings(obj, spec)
    if key is not None:
        ACCEPTED.add(key, bound[0] if bound else status_bound(obj["spec"]), warnings)
    return errors, warnings


def _check_update(old_raw: RawObject, new_raw: RawObject) -> Checked:
    spec, meta = new_raw.raw("spec"), new_raw.member("metadata")
    if spec not in (None, b"null") and spec == old_raw.raw("spec"):  # a null spec is never ratcheted
        # A label, a finalizer, an approval: the spec is decoded (once, for both objects) only when
        # approval annotations name its steps.
        skip = () if has_approvals(meta) else ("spec",)
        new = new_raw.decode(skip=skip, reuse={"metadata": meta})
        old = old_raw.decode(skip=skip, reuse=None if skip else {"spec": new["spec"]})
        return validate_update(old if isinstance(old, Mapping) else {}, new, spec_kept=True), ()
    new, old = new_raw.decode(reuse={"metadata": meta, "spec": new_raw.decode_spec()}), old_raw.decode()
    old = old if isinstance(old, Mapping) else {}
    key = _spec_key(new_raw, meta, spec)
    known = None if key is None or spec is None else ACCEPTED.recall(key, len(spec))
    bound: list[int] = []  # as in _check_create
    errors = validate_update(old, new, known=known, spec_bytes=spec, bound=bound)
    if errors:
        return errors, ()
    if known is not None:
        return errors, known.warnings
    # The spec is new: its warnings are said, whatever the bytes (an equal spec in other bytes too).
    warnings = _warnings(new, spec)
    # Not a spec equal to the stored one in other bytes: its problems are ratcheted, not checked. Nor one
    # that passed only because the stored flow had its problems too (validate_update left `bound` empty):
    # a CREATE of it must be refused. An empty `bound` for another reason costs a full check next time.
    if key is not None and bound and new["spec"] != old.get("spec"):
        ACCEPTED.add(key, bound[0], warnings)
    return errors, warnings


def _spec_key(raw: RawObject, meta: Any, spec: bytes | None) -> bytes | None:
    """What `ACCEPTED` knows the spec by (accepted.py): its bytes, or its members with the argument values
    left out; with the flow's name only when the spec's checks read it."""
    if spec is None:
        return None
    members = raw.members_of("spec")
    reads_name = members is None or not NAME_READERS.isdisjoint(members)
    name = _flow_name(meta) if reads_name else None
    # A matrix may take its values from an argument (core/matrix.py): then the values decide the steps.
    if members is None or "arguments" not in members or b'"matrix"' in spec:
        return ACCEPTED.key(name, (spec,))
    return ACCEPTED.key(name, _without_argument_values(members))


def _without_argument_values(members: Mapping[str, msgspec.Raw]) -> Iterator[bytes]:
    """The spec's members as JSON tokens (each delimits itself, so no two specs give the same stream),
    `arguments` without its parameters' `value`s."""
    yield b"argument values aside\0"
    for key, raw in members.items():
        yield _ENCODE(key)
        yield _argument_shape(raw) if key == "arguments" else bytes(raw)


def _argument_shape(raw: msgspec.Raw) -> bytes:
    try:
        arguments = _DECODE(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):  # a number beyond 64 bits: keyed as it is
        return bytes(raw)
    params = arguments.get("parameters") if isinstance(arguments, dict) else None
    if not isinstance(params, list):
        return bytes(raw)
    shape = [{k: v for k, v in p.items() if k != "value"} if isinstance(p, dict) else p for p in params]
    return _ENCODE({**arguments, "parameters": shape})


def _flow_name(meta: Any) -> str:
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else ""


def mutate_review(body: bytes) -> dict[str, Any]:
    """The mutating webhook: defaults and audit annotations as a JSONPatch (omitted when empty)."""
    return mutate_request(parse_review(body))


def mutate_request(request: AdmissionRequest) -> dict[str, Any]:
    """`mutate_review` of a parsed request (webhook/templates.py expands a flow naming a template first)."""
    if request.sub_resource or request.operation not in ("CREATE", "UPDATE"):
        return allow(request.uid)
    obj = _mutation_view(request.object)
    if not isinstance(obj, Mapping):
        return allow(request.uid)  # nothing to patch; the validating webhook explains
    old = _mutation_view(request.old_object)
    try:
        if request_decisions(request.operation, obj, old if isinstance(old, Mapping) else None):
            # A decision: which of its gates are tallied (`approval`) is in the steps, decoded only now.
            obj = _mutation_view(request.object, SPEC_READ_DECIDING)
        ops = mutation_ops(
            request.operation, obj, old if isinstance(old, Mapping) else None, request.username
        )
    except Exception as exc:
        return _internal(request, "defaulting", exc)
    return allow(request.uid, ops)


def _mutation_view(raw: RawObject, spec_read: tuple[str, ...] = SPEC_READ) -> Any:
    """The object as far as mutation reads it: all but the spec, and of the spec only `spec_read`."""
    obj = raw.decode(skip=("spec",))
    if isinstance(obj, dict) and raw.raw("spec") is not None:
        obj["spec"] = raw.member_part("spec", spec_read)
    return obj
