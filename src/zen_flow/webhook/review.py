"""AdmissionReview (admission.k8s.io/v1) in, AdmissionReview response out: pure functions.

The server only moves bytes; everything a test wants to check about a decision happens here. A review
that is not a well-formed AdmissionReview raises `ReviewError` (the server answers HTTP 400); any
decision, including a denial, is a normal response (HTTP 200), as the apiserver expects.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zen_flow.api.constants import GROUP, KIND
from zen_flow.validation import (
    AcceptedSpecs,
    ErrorType,
    FieldError,
    render,
    validate_approvals,
    validate_jobflow,
    validate_update,
)
from zen_flow.webhook.mutation import mutation_ops

ADMISSION_API_VERSION = "admission.k8s.io/v1"
ADMISSION_KIND = "AdmissionReview"
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
# Bound what one denial carries back through the apiserver to kubectl.
_MAX_CAUSES = 100
# The specs this process accepted lately (a review's object is decoded JSON).
ACCEPTED = AcceptedSpecs()


class ReviewError(ValueError):
    """The body is not an admission.k8s.io/v1 AdmissionReview request."""


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    operation: str
    object: Any
    old_object: Any
    username: str
    sub_resource: str
    name: str
    namespace: str
    dry_run: bool


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    return value if isinstance(value, str) else ""


def parse_review(review: Any) -> AdmissionRequest:
    if not isinstance(review, Mapping):
        raise ReviewError("the body must be a JSON object (an AdmissionReview)")
    if review.get("kind") != ADMISSION_KIND or review.get("apiVersion") != ADMISSION_API_VERSION:
        raise ReviewError(
            f"expected apiVersion {ADMISSION_API_VERSION} kind {ADMISSION_KIND}, got "
            f"apiVersion {review.get('apiVersion')!r} kind {review.get('kind')!r}"
        )
    request = review.get("request")
    if not isinstance(request, Mapping):
        raise ReviewError("the AdmissionReview has no request")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("the AdmissionReview request has no uid")
    operation = request.get("operation")
    if not isinstance(operation, str) or not operation:
        raise ReviewError("the AdmissionReview request has no operation")
    user = request.get("userInfo")
    username = user.get("username") if isinstance(user, Mapping) else None
    return AdmissionRequest(
        uid=uid,
        operation=operation,
        object=request.get("object"),
        old_object=request.get("oldObject"),
        username=username if isinstance(username, str) else "",
        sub_resource=_text(request, "subResource"),
        name=_text(request, "name"),
        namespace=_text(request, "namespace"),
        dry_run=request.get("dryRun") is True,
    )


def _envelope(response: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": ADMISSION_API_VERSION, "kind": ADMISSION_KIND, "response": response}


def allow(uid: str, patch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
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


def deny_invalid(request: AdmissionRequest, errors: list[FieldError]) -> dict[str, Any]:
    """422 Invalid with every error, shaped like the apiserver's own validation failures.

    kubectl prints an Invalid status that has `details` from the details alone (`The JobFlow "x" is
    invalid:` and one `field: message` line per cause) and drops the message, so the causes must carry
    every error users need to see, and kind and name make kubectl name the flow.
    """
    subject = f'JobFlow "{request.name}"' if request.name else "JobFlow"
    message = f"{subject} is invalid:\n{render(errors)}"
    causes: list[dict[str, str]] = [
        {"reason": _CAUSE_REASONS[e.type], "message": e.body(), "field": e.path} for e in errors[:_MAX_CAUSES]
    ]
    if len(errors) > _MAX_CAUSES:
        causes.append({"message": f"and {len(errors) - _MAX_CAUSES} more errors"})
    details = {"name": request.name, "group": GROUP, "kind": KIND, "causes": causes}
    return deny(request.uid, 422, "Invalid", message, details)


def _internal(request: AdmissionRequest, what: str, exc: Exception) -> dict[str, Any]:
    # A bug must not let an unchecked object through, nor look like the user's fault.
    return deny(request.uid, 500, "InternalError", f"zen-flow {what} failed: {type(exc).__name__}: {exc}")


def validate_review(review: Any) -> dict[str, Any]:
    """The validating webhook: CREATE checks the object, UPDATE also the transition; the rest passes."""
    request = parse_review(review)
    if request.sub_resource or request.operation not in ("CREATE", "UPDATE"):
        return allow(request.uid)
    try:
        if request.operation == "CREATE":
            errors = validate_jobflow(request.object, accepted=ACCEPTED) + validate_approvals(request.object)
        else:
            old = request.old_object if isinstance(request.old_object, Mapping) else {}
            errors = validate_update(old, request.object, ACCEPTED)
    except Exception as exc:  # fail closed, with a message, never a 500 traceback
        return _internal(request, "validation", exc)
    return deny_invalid(request, errors) if errors else allow(request.uid)


def mutate_review(review: Any) -> dict[str, Any]:
    """The mutating webhook: defaults and audit annotations as a JSONPatch (omitted when empty)."""
    request = parse_review(review)
    if request.sub_resource or request.operation not in ("CREATE", "UPDATE"):
        return allow(request.uid)
    if not isinstance(request.object, Mapping):
        return allow(request.uid)  # nothing to patch; the validating webhook explains
    old = request.old_object if isinstance(request.old_object, Mapping) else None
    try:
        ops = mutation_ops(request.operation, request.object, old, request.username)
    except Exception as exc:
        return _internal(request, "defaulting", exc)
    return allow(request.uid, ops)
