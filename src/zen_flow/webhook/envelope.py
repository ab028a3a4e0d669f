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
from dataclasses import dataclass, field
from typing import Any

import msgspec

from zen_flow.core import nesting
from zen_flow.validation import STEP_WIRING

ADMISSION_API_VERSION = "admission.k8s.io/v1"
ADMISSION_KIND = "AdmissionReview"

_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ANY = msgspec.json.Decoder()
_STEP_MEMBERS = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])


class ReviewError(ValueError):
    """The body is not an admission.k8s.io/v1 AdmissionReview request."""


@dataclass(frozen=True)
class RawObject:
    """A request's `object` or `oldObject`: its members as raw JSON, or `value` when it is not a JSON
    object (null for a DELETE's object; anything else the validator reports)."""

    members: Mapping[str, msgspec.Raw] | None
    value: Any = None
    _nested: dict[str, Mapping[str, msgspec.Raw] | None] = field(
        default_factory=dict, compare=False, repr=False
    )

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

    def member_part(self, member: str, keys: Iterable[str]) -> Any:
        """The member decoded with only `keys` of it when it is an object (absent keys stay absent); as
        a whole when it is not."""
        members = self.members_of(member)
        if members is None:
            return self.member(member)
        return {key: _ANY.decode(members[key]) for key in keys if key in members}

    def decode_spec(self) -> Any:
        """The spec as `decode` gives it, except that members of different steps that are equal JSON are
        one Python object (all but a step's name and wiring, `STEP_WIRING`, which are its own): the ~30
        objects of a Job template a 500-step flow repeats are decoded once and freed once, and the
        validator's step memo (validation/memo.py) knows a repeated step by identity instead of
        serialising it. Only for reading: a change to one step would show in its equals."""
        members = self.members_of("spec")
        if members is None:
            return self.member("spec")
        return {
            key: _shared_steps(raw) if key == "steps" else _ANY.decode(raw) for key, raw in members.items()
        }

    def members_of(self, member: str) -> Mapping[str, msgspec.Raw] | None:
        """The member's own members as raw JSON when it is an object, else None; scanned once per
        request (the spec's keys, then its steps: each scan of a 500-step spec is ~0.5 ms)."""
        if member not in self._nested:
            found = self.members.get(member) if self.members is not None else None
            try:
                self._nested[member] = None if found is None else _MEMBERS.decode(found)
            except msgspec.ValidationError:  # not an object
                self._nested[member] = None
        return self._nested[member]

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


def _shared_steps(raw: msgspec.Raw) -> Any:
    try:
        steps = _STEP_MEMBERS.decode(raw)
    except msgspec.ValidationError:  # not a list of objects: as it is, for the validator to report
        return _ANY.decode(raw)
    decoded: dict[bytes, Any] = {}
    out = []
    for step in steps:
        item = {}
        for key, member in step.items():
            if key in STEP_WIRING:  # a step's own: nothing to share, no copy to look up
                item[key] = _ANY.decode(member)
                continue
            text = bytes(member)
            if (value := decoded.get(text)) is None:
                value = decoded[text] = _ANY.decode(text)
            item[key] = value
        out.append(item)
    return out


@dataclass(frozen=True)
class AdmissionRequest:
    uid: str
    operation: str
    object: RawObject
    old_object: RawObject
    # The requesting user's userInfo as the apiserver sent it (username, uid, groups, extra): what a
    # SubjectAccessReview asks about (webhook/approvers.py).
    user: Mapping[str, Any]
    sub_resource: str
    name: str
    namespace: str
    dry_run: bool

    @property
    def username(self) -> str:
        name = self.user.get("username")
        return name if isinstance(name, str) else ""


class _Request(msgspec.Struct, rename="camel"):
    uid: Any = None
    operation: Any = None
    object: dict[str, msgspec.Raw] | None = None
    old_object: dict[str, msgspec.Raw] | None = None
    user_info: Any = None
    sub_resource: Any = None
    name: Any = None
    namespace: Any = None
    dry_run: Any = None


class _Review(msgspec.Struct, rename="camel"):
    api_version: Any = None
    kind: Any = None
    request: _Request | None = None


# The usual review in one pass: the request's objects come out as members, their bytes scanned once (a
# pass per level was ~1 ms of a 500-step flow's review). Anything else takes the member-by-member way.
_REVIEW = msgspec.json.Decoder(_Review)


def parse_review(body: bytes) -> AdmissionRequest:
    """The request of an AdmissionReview; ReviewError (the server answers 400) when it is not one."""
    try:
        review = _REVIEW.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return _parse_by_members(body)
    request = review.request
    _check_kind(review.api_version, review.kind)
    if request is None:
        raise ReviewError("the AdmissionReview has no request")
    return _request(
        request,
        RawObject(request.object),
        RawObject(request.old_object),
    )


def _parse_by_members(body: bytes) -> AdmissionRequest:
    """What `_REVIEW` refused: not a review (said precisely), or objects that are not JSON objects."""
    try:
        review = _MEMBERS.decode(body)
    except msgspec.ValidationError:
        raise ReviewError("the body must be a JSON object (an AdmissionReview)") from None
    except RecursionError:
        # JSON nested deeper than msgspec decodes (the apiserver stores 10,000 levels): what was too
        # deep is cut, and still too deep for the validator, which denies the flow naming the field.
        # Mutation never writes inside a template, so its patch holds nothing that was cut.
        cut = nesting.cut_deep(body)
        if cut == body:
            raise ReviewError("the body is not JSON: nested too deep") from None
        return parse_review(cut)
    except msgspec.DecodeError as exc:  # the whole body is read here
        raise ReviewError(f"the body is not JSON: {exc}") from None
    _check_kind(_member(review, "apiVersion"), _member(review, "kind"))
    try:
        members = _MEMBERS.decode(review.get("request", b"null"))
    except msgspec.ValidationError:
        raise ReviewError("the AdmissionReview has no request") from None
    fields = {key: _ANY.decode(raw) for key, raw in members.items() if key not in ("object", "oldObject")}
    return _request(
        msgspec.convert(fields, _Request),
        RawObject.parse(members.get("object")),
        RawObject.parse(members.get("oldObject")),
    )


def _check_kind(api_version: Any, kind: Any) -> None:
    if kind != ADMISSION_KIND or api_version != ADMISSION_API_VERSION:
        raise ReviewError(
            f"expected apiVersion {ADMISSION_API_VERSION} kind {ADMISSION_KIND}, got "
            f"apiVersion {api_version!r} kind {kind!r}"
        )


def _request(request: _Request, obj: RawObject, old: RawObject) -> AdmissionRequest:
    uid, operation, user = request.uid, request.operation, request.user_info
    if not isinstance(uid, str) or not uid:
        raise ReviewError("the AdmissionReview request has no uid")
    if not isinstance(operation, str) or not operation:
        raise ReviewError("the AdmissionReview request has no operation")
    return AdmissionRequest(
        uid=uid,
        operation=operation,
        object=obj,
        old_object=old,
        user=user if isinstance(user, dict) else {},
        sub_resource=_text(request.sub_resource),
        name=_text(request.name),
        namespace=_text(request.namespace),
        dry_run=request.dry_run is True,
    )


def _member(members: Mapping[str, msgspec.Raw], key: str) -> Any:
    found = members.get(key)
    return None if found is None else _ANY.decode(found)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
