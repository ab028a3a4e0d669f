"""Our own exceptions for apiserver failures, so no aiohttp type leaks upward.

The apiserver answers errors with a `Status` object (`{"kind": "Status", "code": 409, "reason":
"AlreadyExists", "message": ...}`); `from_status` maps it to the narrowest class here. Callers catch by
class (`except NotFound`) instead of comparing status codes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class KubeError(Exception):
    """Anything that went wrong talking to the apiserver."""


class TransportError(KubeError):
    """The request did not get an HTTP answer: connection refused/reset, TLS failure, client timeout."""


class RequestTimedOut(TransportError):
    """The apiserver took the request but no whole answer came within the client's timeout for it."""

    def __init__(self, request: str, server: str, seconds: float) -> None:
        super().__init__(f"{request}: no answer within {seconds:g}s")
        self.server = server
        self.seconds = seconds


def describe(err: BaseException) -> str:
    """A transport failure in words (`ClientConnectorError: Cannot connect to host 127.0.0.1:1 ...`), not
    its repr (which nests the connection key and the OS error); the type alone when it says nothing
    (`TimeoutError`)."""
    text = str(err)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


class ApiError(KubeError):
    """The apiserver answered with an error status."""

    def __init__(self, status: int, reason: str = "", message: str = "", retry_after: float | None = None):
        super().__init__(f"{status} {reason}: {message}" if reason else f"{status}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        # Seconds the server asked us to wait (Retry-After header or details.retryAfterSeconds).
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth a short retry: throttling or a server-side hiccup, not a verdict on the request."""
        return self.status in (429, 500, 502, 503, 504) and not self.too_large

    @property
    def too_large(self) -> bool:
        """The object or the request is too big to store: 413, or etcd's "request is too large", which
        the apiserver passes on as a 500."""
        return self.status == 413 or (self.status == 500 and "too large" in self.message.lower())

    @property
    def permanent(self) -> bool:
        """A verdict on this request: sending it again cannot succeed (bad request, invalid, too big)."""
        return self.status in (400, 413, 422) or self.too_large


class Forbidden(ApiError):
    """403: RBAC (or an admission plugin) refuses this identity the request."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409: a stale resourceVersion, a failed precondition, or (subclass) the name is taken."""


class AlreadyExists(Conflict):
    """409 with reason AlreadyExists: a create found an object of that name (adopt it)."""


class BadRequest(ApiError):
    """400: the request is malformed for this object (e.g. a patch of the wrong shape)."""


class RequestTooLarge(ApiError):
    """413: the request body is over the apiserver's limit."""


class Invalid(ApiError):
    """422: the object failed validation or admission (a webhook's or CEL rule's denial)."""


class Expired(ApiError):
    """410 Gone / Expired: the resourceVersion or continue token is too old; relist."""


class TooManyRequests(ApiError):
    """429: throttled by API priority and fairness; `retry_after` says for how long."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Expired,
    413: RequestTooLarge,
    422: Invalid,
    429: TooManyRequests,
}


def from_status(
    status: int, body: Mapping[str, Any] | None, retry_after_header: str | None = None
) -> ApiError:
    """Build the right exception from an HTTP status and a decoded `Status` body (may be empty)."""
    body = body or {}
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or "")
    code = body.get("code")
    if isinstance(code, int) and code >= 400:
        status = code  # a watch ERROR event carries the real code in the body
    retry_after = _retry_after(retry_after_header, body)
    cls = _BY_STATUS.get(status, ApiError)
    if cls is Conflict and reason == "AlreadyExists":
        cls = AlreadyExists
    # A list at a resourceVersion newer than the cache answers 504 "Too large resource version"; like
    # client-go we treat it as "expired" so the reflector falls back to a consistent list.
    if status == 504 and _has_cause(body, "ResourceVersionTooLarge"):
        cls = Expired
    return cls(status, reason, message, retry_after)


def from_response(status: int, raw: bytes, retry_after_header: str | None = None) -> ApiError:
    try:
        decoded = json.loads(raw) if raw else {}
    except ValueError:
        decoded = {"message": raw[:512].decode("utf-8", "replace")}
    body = decoded if isinstance(decoded, dict) else {}
    return from_status(status, body, retry_after_header)


def _retry_after(header: str | None, body: Mapping[str, Any]) -> float | None:
    if header:
        try:
            return max(0.0, float(header))
        except ValueError:
            pass  # an HTTP-date: the apiserver never sends one; ignore rather than parse
    details = body.get("details")
    if isinstance(details, dict):
        seconds = details.get("retryAfterSeconds")
        if isinstance(seconds, int | float):
            return max(0.0, float(seconds))
    return None


def _has_cause(body: Mapping[str, Any], reason: str) -> bool:
    details = body.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    return isinstance(causes, list) and any(isinstance(c, dict) and c.get("reason") == reason for c in causes)
