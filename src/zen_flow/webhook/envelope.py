"""An AdmissionReview's bytes, decoded only as far as a decision needs.

A 500-step flow's review is ~350 KB: `json.loads` built ~30,000 Python objects from it (~5 ms, and ~2 ms
more to free them, with the collector's pauses on top), although a spec accepted before needs only its
metadata decoded, and an update that keeps the spec needs it decoded once, not twice. So the request's
`object` and `oldObject` stay raw JSON, member by member (msgspec finds a member's bytes without
building anything), and a member is decoded when a check asks for it.

The spec's raw bytes are what `AcceptedSpecs` keys on and what the size check measures: the apiserver
encodes an object with Go's encoder, which writes map keys sorted, so equal specs arrive as equal bytes,
and those bytes are what etcd will store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

ADMISSION_API_VERSION = "admission.k8s.io/v1"
ADMISSION_KIND = "AdmissionReview"

_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ANY = msgspec.json.Decoder()


class ReviewError(ValueError):
    """The body is not an admission.k8s.io/v1 AdmissionReview request."""


@dataclass(frozen=True)
class RawObject:
    """A request's `object` or `oldObject`: its members as raw JSON, or `value` when it is not a JSON
    object (null for a DELETE's object; anything else the validator reports)."""

    members: Mapping[str, msgspec.Raw] | None
    value: Any = None

    @classmethod
    def parse(cls, raw: msgspec.Raw | None) -> RawObject:
        if raw is None:
            return cls(None)
        try:
            return cls(_MEMBERS.decode(raw))
        except msgspec.ValidationError:  # valid JSON (the envelope parsed), but not an object
            return cls(None, _ANY.decode(raw))

    def raw(self, member: str) -> bytes | None:
        """The member's JSON as it arrived; None when absent (or when this is not an object)."""
        if self.members is None or (found := self.members.get(member)) is None:
            return None
        return bytes(found)

    def member(self, member: str) -> Any:
        """The member decoded (None when absent)."""
        return None if self.members is None else _member(self.members, member)

    def member_keys(self, member: str) -> frozenset[str] | None:
        """The keys of the member when it is an object (None when absent or not an object)."""
        found = self.members.get(member) if self.members is not None else None
        if found is None:
            return None
        try:
            return frozenset(_MEMBERS.decode(found))
        except msgspec.ValidationError:
            return None

    def member_part(self, member: str, keys: Iterable[str]) -> Any:
        """The member decoded with only `keys` of it when it is an object (absent keys stay absent); as
        a whole when it is not."""
        found = self.members.get(member) if self.members is not None else None
        if found is None:
            return None
        try:
            members = _MEMBERS.decode(found)
        except msgspec.ValidationError:
            return _ANY.decode(found)
        return {key: _ANY.decode(members[key]) for key in keys if key in members}

    def decode(self, *, skip: Iterable[str] = (), reuse: Mapping[str, Any] | None = None) -> Any:
        """The object as `json.loads` would give it, without the members in `skip`; a member in `reuse`
        is that value instead of a new decoding (metadata decoded already, an update's unchanged spec
        decoded once for both objects)."""
        if self.members is None:
            return self.value
        skipped, reused = frozenset(skip), reuse or {}
        return {
            key: reused[key] if key in reused else _ANY.decode(raw)
            for key, raw in self.members.items()
            if key not in skipped
        }


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    operation: str
    object: RawObject
    old_object: RawObject
    username: str
    sub_resource: str
    name: str
    namespace: str
    dry_run: bool


def parse_review(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview; ReviewError (the server answers 400) when it is not one."""
    try:
        review = _MEMBERS.decode(body)
    except msgspec.ValidationError:
        raise ReviewError("the body must be a JSON object (an AdmissionReview)") from None
    except (msgspec.DecodeError, RecursionError) as exc:  # the whole body is read here, nesting too
        raise ReviewError(f"the body is not JSON: {exc}") from None
    api_version, kind = _member(review, "apiVersion"), _member(review, "kind")
    if kind != ADMISSION_KIND or api_version != ADMISSION_API_VERSION:
        raise ReviewError(
            f"expected apiVersion {ADMISSION_API_VERSION} kind {ADMISSION_KIND}, got "
            f"apiVersion {api_version!r} kind {kind!r}"
        )
    try:
        request = _MEMBERS.decode(review.get("request", b"null"))
    except msgspec.ValidationError:
        raise ReviewError("the AdmissionReview has no request") from None
    uid = _member(request, "uid")
    if not isinstance(uid, str) or not uid:
        raise ReviewError("the AdmissionReview request has no uid")
    operation = _member(request, "operation")
    if not isinstance(operation, str) or not operation:
        raise ReviewError("the AdmissionReview request has no operation")
    user = _member(request, "userInfo")
    username = user.get("username") if isinstance(user, dict) else None
    return AdmissionRequest(
        uid=uid,
        operation=operation,
        object=RawObject.parse(request.get("object")),
        old_object=RawObject.parse(request.get("oldObject")),
        username=username if isinstance(username, str) else "",
        sub_resource=_text(request, "subResource"),
        name=_text(request, "name"),
        namespace=_text(request, "namespace"),
        dry_run=_member(request, "dryRun") is True,
    )


def _member(members: Mapping[str, msgspec.Raw], key: str) -> Any:
    found = members.get(key)
    return None if found is None else _ANY.decode(found)


def _text(members: Mapping[str, msgspec.Raw], key: str) -> str:
    value = _member(members, key)
    return value if isinstance(value, str) else ""
